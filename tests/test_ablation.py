"""ablation.py on a quick configuration: files, rows, the summary's arithmetic, resuming."""

import csv
import math
import os
import shutil
import statistics
import types

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import ablation
import visualize
from helpers import SYNTHETIC_STUDY
from study import stats as stats_module
from study.stats import Comparison, holm

QUICK_STUDY = [
    *"--seeds 2 --epochs 1 --train-samples 2000 --test-samples 500 --reductions 2 4 --optimizers adam sgd".split(),
    *"--squeezes avg --gates sigmoid --positions conv2 --excitations dense --se-biases off".split(),  # the other axes:
    # test_a_study_of_every_axis
    *"--workers 1".split(),  # in this process (workers: tests/test_threads_and_workers.py)
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
        assert f"| 2 | {want} |" in line, line
    for optimizer in ("adam", "sgd"):
        acc = {r["run"]: float(r["final_test_accuracy"]) for r in rows}
        diffs = [acc[f"se-r4_{optimizer}_seed{s}"] - acc[f"no-se_{optimizer}_seed{s}"] for s in (0, 1)]
        mean, half = statistics.fmean(diffs), 12.706 * statistics.stdev(diffs) / 2**0.5  # t(0.975, df 1)
        interval = f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}] | {half:.2f} |"
        assert f"| se-r4_{optimizer} − no-se_{optimizer} | effect | 2 | {interval}" in markdown


@pytest.mark.e2e
def test_second_invocation_trains_nothing(study, mnist_dir, capsys):
    weights = {p: os.stat(p).st_mtime_ns for p in study.glob("*/selenet.weights.h5")}
    assert ablation.main([*QUICK_STUDY, "--data-dir", mnist_dir, "--out-dir", str(study)]) == 0
    out = capsys.readouterr().out
    assert "10 runs: 10 finished already, 0 to do" in out
    assert {p: os.stat(p).st_mtime_ns for p in study.glob("*/selenet.weights.h5")} == weights


@pytest.mark.e2e
def test_no_se_run_has_no_excitations_to_draw(study, mnist_dir, capsys):
    assert visualize.main(["--run-dir", str(study / "no-se_adam_seed0"), "--data-dir", mnist_dir]) == 2
    assert "without the SE block" in capsys.readouterr().err


# ---- The study's design, on synthetic digits -------------------------------------------------------------------


def test_configurations_and_their_names():
    sweeps = ["avg", "max"], ["sigmoid", "relu"], ["conv2", "both"], ["dense", "conv1d", "fixed"], [False, True]
    configs = ablation.configurations(["adam", "sgd", "sgd-momentum"], [2, 4], *sweeps)
    names = [ablation.config_name(c) for c in configs]
    assert names == [
        "se-r4_adam", "se-r4_sgd", "se-r4_sgd-momentum", "no-se_adam", "no-se_sgd", "no-se_sgd-momentum",
        "se-r2_adam", "se-r4-max_adam", "se-r4-relu_adam", "se-r4-both_adam", "se-eca_adam", "se-fixed_adam",
        "se-r4-bias_adam",
    ]  # fmt: skip
    args = ablation.cli.study_parser().parse_args([])
    settings = {ablation.config_name(c): ablation.run_settings(args, c, 0) for c in configs}
    assert (settings["se-r4_sgd-momentum"].optimizer, settings["se-r4_sgd-momentum"].momentum) == ("sgd", 0.9)
    assert settings["se-r4_sgd"].momentum == 0 and settings["se-r4_adam"] == ablation.Settings(seed=0)
    assert settings["se-eca_adam"].excitation == "conv1d" and settings["se-r4-bias_adam"].se_bias
    default = ablation.configurations(args.optimizers, args.reductions, args.squeezes, args.gates, args.positions)
    assert len(default) == 15 and len(ablation.configurations(args.optimizers, [4], *sweeps)) == 12


def test_comparisons_use_students_t():
    c = Comparison("a − b", "effect", [1.0, 2.0, 3.0])
    assert c.half_width == pytest.approx(4.302653 / 3**0.5)  # t(0.975, df 2) · 1 / sqrt(3)
    assert c.p == pytest.approx(0.07417990, rel=1e-6)  # t = 2 · sqrt(3), df 2
    assert c.seeds_for_target == 387  # sd 1: t(0.975, n - 1) / sqrt(n) <= 0.1 first at n = 387


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-40, 40), min_size=2, max_size=20))
def test_seeds_for_target_is_the_fewest_seeds_that_reach_it(differences):
    c = Comparison("a − b", "effect", differences)
    assume(c.testable)
    n = c.seeds_for_target
    assert stats_module._half_width(c.std, n) <= stats_module.TARGET_HALF_WIDTH
    assert n == 2 or stats_module._half_width(c.std, n - 1) > stats_module.TARGET_HALF_WIDTH


def test_seeds_for_target_of_a_wide_spread():
    """Like lr 0.1's SE − no SE (a std of about 35 points: failed runs on both sides): some 455,000 seeds."""
    c = Comparison("a − b", "lr", [-34.0, 34.0] * 10)
    assert 440_000 < c.seeds_for_target < 480_000


@pytest.mark.parametrize(
    "p, adjusted",
    [
        ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),  # 3 · 0.01; max(0.03, 2 · 0.03); max(0.06, 1 · 0.04)
        ([0.02, 0.5], [0.04, 0.5]),
        (
            [0.01, 0.012, 0.5, 0.04],
            [0.04, 0.04, 0.5, 0.08],
        ),  # 4 · 0.01; max(0.04, 3 · 0.012); ...; max(0.036, 2 · 0.04)
        ([0.3, 0.6], [0.6, 0.6]),  # 2 · 0.3; max(0.6, 0.6)
        ([0.01, math.nan, 0.04], [0.02, math.nan, 0.04]),  # the untestable one is not counted
    ],
)
def test_holm_on_worked_examples(p, adjusted):
    family = holm([types.SimpleNamespace(p=value, holm_p=math.nan) for value in p])
    assert [c.holm_p for c in family] == pytest.approx(adjusted, nan_ok=True)


@pytest.mark.parametrize("differences", [[0.5, 0.5, 0.5], [0.0, 0.0], [0.3]])
def test_a_comparison_without_spread_cannot_be_tested(differences):
    """All differences equal (few seeds, few test images): no interval and no p-value, never 'survives'."""
    c = holm([Comparison("a − b", "effect", differences), Comparison("c − d", "effect", [0.1, 0.3, 0.2])])[0]
    assert not c.testable and not c.survives
    assert math.isnan(c.p) and math.isnan(c.half_width) and math.isnan(c.holm_p)
    markdown = ablation.summary_markdown([], [], [c])
    (row,) = [line for line in markdown.splitlines() if line.startswith("| a − b | effect |")]
    assert row.endswith("| – | – | cannot test |") and "nan" not in row


def fake_curves(curves):
    """Test accuracy per epoch as the study reads it, {(configuration, seed): [...]}, from {configuration:
    [per seed: test accuracy per epoch]}."""
    return {(name, seed): accuracies for name, per_seed in curves.items() for seed, accuracies in enumerate(per_seed)}


def test_the_gap_per_epoch_is_paired_by_seed():
    curves = fake_curves(
        {
            "se-r4_sgd": [[90.0, 96.0], [88.0, 95.0], [91.0, 97.0]],
            "no-se_sgd": [[93.0, 96.5], [92.0, 96.0], [92.0, 97.0]],
            "se-r4_adam": [[98.0, 99.0], [98.0, 99.0], [98.0, 99.0]],  # no no-se_adam: no gap
        }
    )
    gaps = ablation.epoch_gaps(curves, ablation.grid(["sgd", "adam"]))
    assert list(gaps) == ["sgd"]
    assert [c.differences for c in gaps["sgd"]] == [[-3.0, -4.0, -1.0], [-0.5, -1.0, 0.0]]
    table = ablation.epoch_gaps_markdown(gaps)
    first = Comparison("", "", [-3.0, -4.0, -1.0])
    assert f"| 1 | -2.67 [{-8 / 3 - first.half_width:+.2f}, {-8 / 3 + first.half_width:+.2f}] |" in table
    assert "| 2 | -0.50 [-1.74, +0.74] |" in table  # sd 0.5: t(0.975, 2) · 0.5 / sqrt(3) = 1.24
    figure = ablation.curves_figure(curves, ablation.grid(["sgd", "adam"]))
    assert [axes.get_title() for axes in figure.axes] == ["sgd", "adam"]  # a panel per optimizer
    assert [len(axes.get_lines()) for axes in figure.axes] == [2, 1]


@pytest.mark.xdist_group("synthetic_study")
def test_a_study_of_every_axis(synthetic_study, tmp_path, synthetic_mnist_dir, capsys):
    rows = {r["run"]: r for r in read_rows(synthetic_study)}
    names = ("se-r4_adam", "se-r4_sgd", "no-se_adam", "no-se_sgd", "se-r8_adam")
    names += ("se-r4-max_adam", "se-r4-relu_adam", "se-r4-both_adam", "se-eca_adam", "se-fixed_adam", "se-r4-bias_adam")
    assert list(rows) == [f"{name}_seed0" for name in names]
    assert rows["se-fixed_adam_seed0"]["excitation"] == "fixed" and rows["se-fixed_adam_seed0"]["dead_blocks"] == ""
    assert rows["se-eca_adam_seed0"]["reduction"] == "" and rows["se-r4-bias_adam_seed0"]["se_bias"] == "True"
    assert rows["se-r4-both_adam_seed0"]["se_position"] == "both" and rows["se-r4-max_adam_seed0"]["squeeze"] == "max"
    assert rows["se-r8_adam_seed0"]["reduction"] == "8" and rows["no-se_sgd_seed0"]["lr"] == "0.01"
    for row in rows.values():
        role = [row[f"role_{v}"] for v in ("learned", "train_mean", "ones", "shuffled")]
        assert all(role) if row["model"] == "se" else not any(role)
        if row["model"] == "se":
            assert float(row["role_learned"]) == float(row["final_test_accuracy"])
    assert rows["se-r4-both_adam_seed0"]["conv1_reduction"] == "2" and rows["se-r4_adam_seed0"]["conv1_reduction"] == ""
    markdown = (synthetic_study / "ablation.md").read_text()
    assert "| se-r4-both_adam | adam | conv1 r2 (3), conv2 r4 (4) |" in markdown
    with open(synthetic_study / "ablation_comparisons.csv", newline="") as f:
        compared = {r["comparison"]: r for r in csv.DictReader(f)}
    assert compared["se-r4_sgd − no-se_sgd"]["family"] == "effect"
    assert compared["se-r4-max_adam: train_mean − learned"]["family"] == "role"
    assert (
        compared["se-eca_adam − se-r4_adam"]["family"] == compared["se-fixed_adam − se-r4_adam"]["family"] == "effect"
    )
    assert "se-fixed_adam: shuffled − learned" not in compared  # equal by design: nothing to test
    assert (
        "| se-eca_adam | adam | conv2 ECA k3 |" in markdown
        and "| se-fixed_adam | adam | conv2 fixed gain |" in markdown
    )

    study = tmp_path / "study"
    shutil.copytree(synthetic_study, study)
    args = [*SYNTHETIC_STUDY, "--data-dir", synthetic_mnist_dir, "--out-dir", str(study)]
    assert ablation.main(args) == 0  # everything reused: nothing trained or evaluated again
    out = capsys.readouterr().out
    assert "11 runs: 11 finished already, 0 to do" in out and "training " not in out and "resuming " not in out
    assert (study / "ablation.md").read_text() == markdown


@pytest.mark.xdist_group("synthetic_study")
def test_an_optimizer_given_twice_draws_the_grid_alone(synthetic_study, tmp_path, synthetic_mnist_dir, monkeypatch):
    """--optimizers adam adam: the grid is SE and no SE with Adam, once each; the curves figure draws those
    two and no run of a sweep."""
    study = tmp_path / "study"
    shutil.copytree(synthetic_study, study)
    drawn = []
    curves_figure = ablation.curves_figure
    monkeypatch.setattr(
        ablation,
        "curves_figure",
        lambda curves, configs: (
            drawn.append([ablation.config_name(c) for c in configs]) or curves_figure(curves, configs)
        ),
    )
    args = [
        *SYNTHETIC_STUDY,
        "--optimizers",
        "adam",
        "adam",
        "--data-dir",
        synthetic_mnist_dir,
        "--out-dir",
        str(study),
    ]
    assert ablation.main(args) == 0
    assert drawn == [["se-r4_adam", "no-se_adam"]]


def test_differences_equal_to_the_accuracys_resolution_have_no_spread():
    """Bug a: SE one 500-image test image (0.2 point) ahead at every seed, as floats subtract it."""
    se, plain = [98.2, 97.6, 99.4], [98.0, 97.4, 99.2]
    differences = [a - b for a, b in zip(se, plain, strict=True)]
    assert len(set(differences)) > 1  # 0.20000000000000284, 0.19999999999998863, ...
    (c,) = holm([Comparison("se − no se", "effect", differences)])
    assert not c.testable and not c.survives and math.isnan(c.p) and math.isnan(c.half_width)
    assert c.mean == pytest.approx(0.2)


def test_the_parameters_are_the_learned_ones():
    """Bug f: the fixed gain's constant input layer (16 + 1 frozen weights) is not counted."""
    from selenet.settings import Settings

    def learned(settings):
        return ablation.learned_parameters(settings, {"model": {"parameters": 44459}})

    assert learned(Settings(excitation="fixed")) == 44459 - 17
    assert learned(Settings()) == learned(Settings(se=False)) == 44459  # nothing frozen: all of them


NEW_AXES = [
    *"--seeds 2 --epochs 1 --train-samples 300 --test-samples 200 --optimizers adam sgd sgd-momentum".split(),
    *"--reductions 4 --squeezes avg --gates sigmoid --positions conv2 --excitations dense --se-biases off".split(),
    *"--sgd-lrs 0.003 0.01 --scale-controls --train-sizes 100 --workers 1".split(),
]


def test_a_study_of_the_new_axes(tmp_path, synthetic_mnist_dir, capsys):
    """The learning-rate grid, the starting-scale controls and a training-set size: their runs, columns,
    families, tables and figure."""
    out = tmp_path / "study"
    assert ablation.main([*NEW_AXES, "--data-dir", synthetic_mnist_dir, "--out-dir", str(out)]) == 0
    rows = {r["run"]: r for r in read_rows(out)}
    assert len(rows) == 2 * 16
    sized, full = rows["se-r4-n100_adam_seed1"], rows["se-r4_adam_seed1"]
    assert (sized["config"], sized["train_images"], sized["steps"]) == ("se-r4-n100_adam", "100", "3")  # 300 // 100
    assert (full["train_images"], full["steps"]) == ("300", "3")
    assert rows["se-r4_sgd-momentum-lr0.003_seed0"]["lr"] == "0.003"
    assert rows["se-r4-x2_sgd_seed0"]["gate_scale"] == "2.0" and rows["no-se_sgd_seed0"]["gate_scale"] == ""
    with open(out / "ablation_comparisons.csv", newline="") as f:
        families = [r["family"] for r in csv.DictReader(f)]
    counts = {family: families.count(family) for family in dict.fromkeys(families)}
    # effect: SE − no SE per optimizer; role: the grid's SE runs; then the new families.
    assert counts == {"effect": 3, "role": 6, "lr": 3, "scale": 8, "size": 2, "size-role": 4}
    markdown = (out / "ablation.md").read_text()
    assert "| 0.003 |" in markdown and "Best learning rate: SE" in markdown
    assert "| adam | 100 |" in markdown and "| sgd-momentum | 100 |" in markdown
    assert (out / ablation.SIZE_FIGURE).stat().st_size > 0
    assert "se-r4-x2_sgd − no-se_sgd" in (out / "ablation_comparisons.csv").read_text()
