"""The study on synthetic digits: its tables, one run by name, worker processes, Ray."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest

import ablation
from helpers import ROOT, assert_one_line_error, run_script, weights_sha

pytestmark = pytest.mark.runs
SMALL = ["--seeds", "2", "--epochs", "1", "--train-samples", "300", "--test-samples", "200", "--configs"]
SMALL += ["se-r4_adam", "se-r4_sgd", "no-se_adam", "no-se_sgd", "se-r4-max_adam", "se-fixed_adam"]


def rows_but_seconds(study):
    with open(os.path.join(study, "ablation.csv"), encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if k != "seconds_per_epoch"} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def study(tmp_path_factory, synthetic_mnist_dir):
    out = tmp_path_factory.mktemp("study")
    assert ablation.main([*SMALL, "--data-dir", synthetic_mnist_dir, "--workers", "1", "--out-dir", str(out)]) == 0
    return out


def test_a_study_writes_its_tables_and_continues_where_it_stopped(study, synthetic_mnist_dir, capsys):
    rows = rows_but_seconds(study)
    assert len(rows) == 12 and {r["config"] for r in rows} >= {"se-r4_adam", "no-se_sgd", "se-fixed_adam"}
    for name in ("ablation.md", "ablation_comparisons.csv", "ablation_curves.png", "ablation_variants.png"):
        assert (study / name).is_file()
    assert all(float(r["role_learned"]) == float(r["final_test_accuracy"]) for r in rows if r["model"] == "se")
    capsys.readouterr()
    assert ablation.main([*SMALL, "--data-dir", synthetic_mnist_dir, "--workers", "1", "--out-dir", str(study)]) == 0
    assert "12 runs: 12 finished already, 0 to do" in capsys.readouterr().out
    assert rows_but_seconds(study) == rows


def test_one_run_of_the_study_is_one_command(study, synthetic_mnist_dir, tmp_path):
    args = ["--run", "se-r4-max_adam_seed1", "--epochs", "1", "--train-samples", "300", "--test-samples", "200"]
    assert ablation.main([*args, "--data-dir", synthetic_mnist_dir, "--out-dir", str(tmp_path)]) == 0
    assert os.listdir(tmp_path) == ["se-r4-max_adam_seed1"]
    assert weights_sha(tmp_path / "se-r4-max_adam_seed1") == weights_sha(study / "se-r4-max_adam_seed1")


def test_a_study_with_other_settings_is_refused(study, synthetic_mnist_dir, capsys):
    other = [*SMALL, "--epochs", "2", "--data-dir", synthetic_mnist_dir, "--workers", "1", "--out-dir", str(study)]
    assert ablation.main(other) == 2
    assert_one_line_error(capsys.readouterr().err, "holds a run with epochs = 1", "another --out-dir")


def test_workers_give_the_serial_studys_bits(study, synthetic_mnist_dir, tmp_path):
    result = run_script(
        "ablation.py", *SMALL, "--data-dir", synthetic_mnist_dir, "--workers", "2", "--out-dir", tmp_path
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "to do in 2 process(es)" in result.stdout
    assert rows_but_seconds(tmp_path) == rows_but_seconds(study)


def children(pid):
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads processes from Linux's /proc")
@pytest.mark.parametrize("kill", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_a_stopped_study_leaves_no_worker_running(tmp_path, synthetic_mnist_dir, kill):
    command = [sys.executable, os.path.join(ROOT, "ablation.py"), *SMALL, "--epochs", "30", "--workers", "2"]
    command += ["--data-dir", synthetic_mnist_dir, "--out-dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in process.stdout:
        if line.startswith("training"):
            break
    workers = children(process.pid)
    time.sleep(2)
    if kill == signal.SIGINT:  # Ctrl-C reaches the whole process group; here the study alone: it tells its workers
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=120) == 130
        assert "stopped by SIGINT" in process.stderr.read()
    else:
        process.kill()
        process.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
        time.sleep(0.5)
    assert workers and not any(os.path.exists(f"/proc/{pid}") for pid in workers)


@pytest.mark.e2e  # starts a Ray cluster: half a minute
@pytest.mark.xdist_group("ray")
def test_a_study_on_ray_equals_the_serial_one(study, synthetic_mnist_dir, tmp_path):
    pytest.importorskip("ray")
    result = run_script(
        "ablation.py", *SMALL, "--data-dir", synthetic_mnist_dir, "--ray", "local", "--out-dir", tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "to do on Ray (local)" in result.stdout
    assert rows_but_seconds(tmp_path) == rows_but_seconds(study)
