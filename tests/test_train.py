"""Training runs on synthetic digits, in this process and as scripts: the promises a user relies on."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

import senet_lenet
import visualize
from helpers import ROOT, TRAINED, USER_ISA, assert_one_line_error, our_lines, run_script, weights_sha, without_seconds

pytestmark = pytest.mark.runs


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def stop_after_epoch(monkeypatch, epoch):
    """A SIGINT to this process once run.json records `epoch` (its checkpoint saved before): as Ctrl-C then."""
    save = senet_lenet.save_run_json

    def save_and_stop(*args, **kwargs):
        run = save(*args, **kwargs)
        if len(run["history"]) == epoch and not run["finished"]:
            os.kill(os.getpid(), signal.SIGINT)
        return run

    monkeypatch.setattr(senet_lenet, "save_run_json", save_and_stop)


def test_a_run_writes_every_file_and_records_them(trained_run, capsys):
    run = read_json(trained_run / "run.json")
    assert run["finished"] and len(run["history"]) == 2 and run["settings"]["seed"] == 3
    for name, digest in run["sha256"].items():
        assert senet_lenet.sha256(trained_run / name) == digest
    for name in ("history.csv", "model_summary.txt", "training_curves.png", run["diagram"], "checkpoints/checkpoint"):
        assert (trained_run / name).is_file(), name
    assert len(os.listdir(trained_run / "logs" / "validation")) == 1
    assert run["training"] == {"images": 500, "steps": 10} and run["versions"]["tensorflow"]


def test_ctrl_c_then_resume_gives_the_same_bits(tmp_path, synthetic_mnist_dir, trained_run, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = [*TRAINED, "--data-dir", synthetic_mnist_dir, "--out-dir", str(out)]
    stop_after_epoch(monkeypatch, 1)
    assert senet_lenet.main(argv) == 130
    line = our_lines(capsys.readouterr().err)[-1]
    assert "stopped by SIGINT with 1 epoch saved; continue with: python senet_lenet.py --out-dir" in line
    monkeypatch.undo()
    assert senet_lenet.main([*argv, "--resume"]) == 0
    assert weights_sha(out) == weights_sha(trained_run)
    assert without_seconds(read_json(out / "run.json")["history"]) == without_seconds(
        read_json(trained_run / "run.json")["history"]
    )


def test_a_damaged_newest_checkpoint_is_passed_over(tmp_path, synthetic_mnist_dir, monkeypatch, capsys):
    argv = ["--epochs", "3", "--train-samples", "400", "--test-samples", "100", "--data-dir", synthetic_mnist_dir]
    assert senet_lenet.main([*argv, "--out-dir", str(tmp_path / "whole")]) == 0
    out = tmp_path / "stopped"
    stop_after_epoch(monkeypatch, 2)
    assert senet_lenet.main([*argv, "--out-dir", str(out)]) == 130
    monkeypatch.undo()
    data = out / "checkpoints" / "epoch-2.data-00000-of-00001"
    damaged = bytearray(data.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    data.write_bytes(bytes(damaged))
    capsys.readouterr()
    assert senet_lenet.main([*argv, "--out-dir", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert [line for line in our_lines(captured.err) if "skipped checkpoint" in line][0].count("\n") == 0
    assert "Resuming" in captured.out and "after epoch 1 of 3" in captured.out
    assert weights_sha(out) == weights_sha(tmp_path / "whole")


def test_an_extended_run_cut_short_is_unfinished_and_resumes(tmp_path, trained_run, synthetic_mnist_dir, monkeypatch):
    """--resume --epochs 3 of a finished run, stopped while its files are saved: run.json says unfinished (3 of 3
    epochs checkpointed, no weights), visualize refuses it, and --resume finishes it as a straight run would."""
    out = shutil.copytree(trained_run, tmp_path / "run")
    argv = [*TRAINED, "--data-dir", synthetic_mnist_dir, "--out-dir", str(out)]

    def killed(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(senet_lenet, "save_figures", killed)
    assert senet_lenet.main([*argv, "--resume", "--epochs", "3"]) == 130
    monkeypatch.undo()
    run = read_json(out / "run.json")
    assert not run["finished"] and len(run["history"]) == 3 and not (out / "selenet.weights.h5").exists()
    with pytest.raises(senet_lenet.UsageError, match="unfinished"):
        senet_lenet.load_run(str(out))
    assert senet_lenet.main(["--data-dir", synthetic_mnist_dir, "--out-dir", str(out), "--resume"]) == 0
    straight = ["--epochs", "3", *TRAINED[2:], "--data-dir", synthetic_mnist_dir]
    assert senet_lenet.main([*straight, "--out-dir", str(tmp_path / "straight")]) == 0
    assert weights_sha(out) == weights_sha(tmp_path / "straight")


def test_a_finished_run_is_replaced_only_with_overwrite(tmp_path, trained_run, synthetic_mnist_dir, capsys):
    out = shutil.copytree(trained_run, tmp_path / "run")
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "mine.txt").write_text("mine")
    argv = [*TRAINED, "--data-dir", synthetic_mnist_dir, "--out-dir", str(out)]
    before = weights_sha(out)
    assert senet_lenet.main(argv) == 2
    assert_one_line_error(capsys.readouterr().err, "holds a finished run", "--overwrite")
    assert senet_lenet.main([*argv, "--resume"]) == 0 and "nothing to resume" in capsys.readouterr().out
    assert senet_lenet.main([*argv, "--overwrite", "--seed", "4"]) == 0
    assert weights_sha(out) != before and (out / "notes.txt").read_text() == "mine"
    assert (out / "checkpoints" / "mine.txt").exists()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("x")
    assert senet_lenet.main([*TRAINED, "--data-dir", synthetic_mnist_dir, "--out-dir", str(mine)]) == 2
    assert_one_line_error(capsys.readouterr().err, "holds files but no run")
    assert os.listdir(mine) == ["data.csv"]


def test_resume_refuses_other_settings_and_fewer_epochs(tmp_path, trained_run, synthetic_mnist_dir, capsys):
    out = str(shutil.copytree(trained_run, tmp_path / "run"))
    assert senet_lenet.main(["--out-dir", out, "--resume", "--seed", "5"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--seed conflicts with the run", "seed = 3")
    assert senet_lenet.main(["--out-dir", out, "--resume", "--epochs", "1"]) == 2
    assert_one_line_error(capsys.readouterr().err, "fewer than the 2 epochs done")
    assert senet_lenet.main(["--out-dir", str(tmp_path / "none"), "--resume"]) == 2
    assert_one_line_error(capsys.readouterr().err, "nothing to resume")


def test_divergence_is_one_line_and_exit_1(tmp_path, synthetic_mnist_dir, capsys):
    argv = ["--optimizer", "sgd", "--lr", "1e9", "--epochs", "1", "--train-samples", "500", "--test-samples", "100"]
    assert senet_lenet.main([*argv, "--data-dir", synthetic_mnist_dir, "--out-dir", str(tmp_path / "r")]) == 1
    assert_one_line_error(capsys.readouterr().err, "training diverged in epoch 1", "lower --lr")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--epochs", "0"], ["argument --epochs: must be at least 1"]),
        (["--optimizer", "rmsprop"], ["invalid choice"]),
        (["--batch-size", "2147483647"], ["is more than the"]),
        (["--data-dir", "/nonexistent"], ["does not exist"]),
    ],
    ids=["epochs", "optimizer", "batch", "data"],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, synthetic_mnist_dir, args, fragments):
    env = {"MNIST_DIR": synthetic_mnist_dir}
    result = run_script("senet_lenet.py", *args, "--out-dir", tmp_path / "r", "--train-samples", "300", env=env)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, *fragments)


def test_sigterm_while_tensorflow_loads_is_one_line(tmp_path):
    process = subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "senet_lenet.py"), "--out-dir", str(tmp_path / "r")],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(0.5)  # parsed, importing TensorFlow (seconds)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM
    assert_one_line_error(stderr, "stopped by SIGTERM before training started")


def test_visualize_draws_checks_and_compares(tmp_path, trained_run, synthetic_mnist_dir, capsys):
    out = shutil.copytree(trained_run, tmp_path / "run")
    argv = ["--data-dir", synthetic_mnist_dir]
    assert visualize.main(["--run-dir", str(out), *argv, "--batch-size", "50"]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "Excitation at inference" in printed and "4 heatmaps" in printed
    assert sorted(os.listdir(out / "se_features")) == [f"{i}_se_feature.png" for i in range(4)]
    for name in (
        "se_features.npz",
        "se_class_mean.png",
        "se_class_profile.png",
        "se_anatomy.png",
        "excitation_role.csv",
    ):
        assert (out / name).is_file()
    assert visualize.main(["--compare", str(out), str(trained_run), *argv, "--batch", "1"]) == 0
    assert "Max |excitation difference| over 200 test images: 0\n" in capsys.readouterr().out
    assert (trained_run / "compare_1.png").is_file()
    os.remove(trained_run / "compare_1.png")
    # A resume that trains again removes what the old weights drew, empty folders included.
    assert senet_lenet.main([*TRAINED, *argv, "--out-dir", str(out), "--resume", "--epochs", "3"]) == 0
    assert not (out / "se_features").exists() and not (out / "se_class_mean.png").exists()
    (out / "selenet.weights.h5").write_bytes(b"not the run's")
    assert visualize.main(["--run-dir", str(out), *argv]) == 2
    assert_one_line_error(capsys.readouterr().err, "SHA-256 differs", "--resume")


def test_visualize_refuses_what_it_cannot_draw(tmp_path, capsys):
    assert visualize.main(["--run-dir", str(tmp_path / "none")]) == 2
    assert_one_line_error(capsys.readouterr().err, "does not exist")
    assert visualize.main(["--run-dir", str(tmp_path)]) == 2
    assert_one_line_error(capsys.readouterr().err, "holds no run.json")


def test_the_instruction_set_is_a_setting_of_the_environment_and_recorded(tmp_path, trained_run, synthetic_mnist_dir):
    """oneDNN reads its cap when TensorFlow loads: --isa reaches it (what oneDNN reports is recorded), and the
    default is AVX2 unless the user's ONEDNN_MAX_CPU_ISA says otherwise."""
    recorded = json.loads((trained_run / "run.json").read_text())["machine"]["isa"]
    if USER_ISA is None:
        assert recorded["cap"] == "AVX2" and recorded["onednn"] == "Intel AVX2"
    env = {k: v for k, v in os.environ.items() if k != senet_lenet.ISA_VARIABLE}
    args = [*TRAINED, "--epochs", "1", "--isa", "sse41", "--data-dir", synthetic_mnist_dir, "--out-dir", tmp_path]
    command = [sys.executable, os.path.join(ROOT, "senet_lenet.py"), *map(str, args)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    isa = json.loads((tmp_path / "run.json").read_text())["machine"]["isa"]
    assert isa["onednn"] == "Intel SSE4.1" and isa["cap"] == "SSE41"
