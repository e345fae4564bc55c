"""ablation.py on a quick configuration: files, rows, the summary's arithmetic, resuming."""

import csv
import os
import re
import statistics

import pytest

import ablation
import visualize

QUICK_STUDY = [
    *"--seeds 2 --epochs 1 --train-samples 2000 --test-samples 500 --reductions 2 4 --optimizers adam sgd".split(),
    *"--squeezes avg --gates sigmoid --positions conv2".split(),  # the other axes: test_a_study_of_every_axis
]
RUNS = ["se-r4_adam", "se-r4_sgd", "no-se_adam", "no-se_sgd", "se-r2_adam"]


@pytest.fixture(scope="module")
def study(tmp_path_factory, mnist_dir):
    out_dir = tmp_path_factory.mktemp("ablation")
    assert ablation.main([*QUICK_STUDY, "--data-dir", mnist_dir, "--out-dir", str(out_dir)]) == 0
    return out_dir


def read_rows(out_dir):
    with open(out_dir / "ablation.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.e2e
def test_every_file_and_run(study):
    for name in ("ablation.csv", "ablation.md", "ablation_curves.png", "reduction_sweep.png", "ablation_variants.png"):
        assert (study / name).stat().st_size > 0
    rows = read_rows(study)
    assert len(rows) == len(RUNS) * 2  # reduction 4 is not trained twice
    assert sorted(r["run"] for r in rows) == sorted(f"{c}_seed{s}" for c in RUNS for s in (0, 1))
    assert list(rows[0]) == ablation.CSV_FIELDS
    for row in rows:
        assert (study / row["run"] / "run.json").exists()
        assert float(row["best_test_accuracy"]) >= float(row["final_test_accuracy"])
    by_run = {r["run"]: r for r in rows}
    assert by_run["no-se_sgd_seed0"]["lr"] == "0.01" and by_run["no-se_sgd_seed0"]["reduction"] == ""
    assert int(by_run["no-se_adam_seed1"]["parameters"]) == 44426
    assert int(by_run["se-r2_adam_seed0"]["parameters"]) == 44426 + 2 * 16 * 8


@pytest.mark.e2e
def test_summary_is_the_mean_and_std_of_the_rows(study):
    rows = read_rows(study)
    markdown = (study / "ablation.md").read_text()
    for config in RUNS:
        accuracy = [float(r["final_test_accuracy"]) for r in rows if r["run"].startswith(config + "_")]
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {config} |"))
        want = f"{statistics.fmean(accuracy):.2f} ± {statistics.stdev(accuracy):.2f}"
        error = f"{100 - statistics.fmean(accuracy):.2f} ± {statistics.stdev(accuracy):.2f}"
        assert f"| {want} | {error} |" in line, line
    for optimizer in ("adam", "sgd"):
        acc = {r["run"]: float(r["final_test_accuracy"]) for r in rows}
        diffs = [acc[f"se-r4_{optimizer}_seed{s}"] - acc[f"no-se_{optimizer}_seed{s}"] for s in (0, 1)]
        mean, half = statistics.fmean(diffs), 12.706 * statistics.stdev(diffs) / 2**0.5  # t(0.975, df 1)
        assert f"| se-r4_{optimizer} | – | {mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] |" in markdown


@pytest.mark.e2e
def test_second_invocation_trains_nothing(study, mnist_dir, capsys):
    weights = {p: os.stat(p).st_mtime_ns for p in study.glob("*/selenet.weights.h5")}
    assert ablation.main([*QUICK_STUDY, "--data-dir", mnist_dir, "--out-dir", str(study)]) == 0
    out = capsys.readouterr().out
    assert "] training " not in out and len(re.findall(r"already finished", out)) == 10
    assert {p: os.stat(p).st_mtime_ns for p in study.glob("*/selenet.weights.h5")} == weights


@pytest.mark.e2e
def test_no_se_run_has_no_excitations_to_draw(study, mnist_dir, capsys):
    assert visualize.main(["--run-dir", str(study / "no-se_adam_seed0"), "--data-dir", mnist_dir]) == 2
    assert "without the SE block" in capsys.readouterr().err


# ---- The study's design, on synthetic digits -------------------------------------------------------------------


def test_configurations_and_their_names():
    configs = ablation.configurations(["adam", "sgd"], [2, 4], ["avg", "max"], ["sigmoid", "relu"], ["conv2", "both"])
    names = [ablation.config_name(c) for c in configs]
    assert names == [
        "se-r4_adam", "se-r4_sgd", "no-se_adam", "no-se_sgd", "se-r2_adam", "se-r4-max_adam", "se-r4-relu_adam",
        "se-r4-both_adam",
    ]  # fmt: skip


def test_confidence_intervals_use_students_t():
    assert ablation.mean_ci([1.0, 2.0, 3.0]) == "+2.00 [-0.48, +4.48]"  # 4.303 * 1 / sqrt(3) = 2.484
    assert ablation.mean_ci([0.5]) == "+0.50 [–]"


def test_a_study_of_every_axis(tmp_path, synthetic_mnist_dir, capsys):
    args = ["--seeds", "1", "--epochs", "1", "--train-samples", "300", "--test-samples", "200", "--reductions", "4"]
    args += ["--squeezes", "max", "--gates", "relu", "--positions", "both", "--optimizers", "adam"]
    args += ["--data-dir", synthetic_mnist_dir, "--out-dir", str(tmp_path)]
    assert ablation.main(args) == 0
    rows = {r["run"]: r for r in read_rows(tmp_path)}
    names = ("se-r4_adam", "no-se_adam", "se-r4-max_adam", "se-r4-relu_adam", "se-r4-both_adam")
    assert sorted(rows) == sorted(f"{name}_seed0" for name in names)
    assert rows["se-r4-both_adam_seed0"]["se_position"] == "both" and rows["se-r4-max_adam_seed0"]["squeeze"] == "max"
    for row in rows.values():
        role = [row[f"role_{v}"] for v in ("learned", "train_mean", "ones", "shuffled")]
        assert all(role) if row["model"] == "se" else not any(role)
        if row["model"] == "se":
            assert float(row["role_learned"]) == float(row["final_test_accuracy"])
    capsys.readouterr()
    assert ablation.main(args) == 0  # everything reused: nothing trained or evaluated again
    out = capsys.readouterr().out
    assert "] training " not in out and "] evaluating" not in out
