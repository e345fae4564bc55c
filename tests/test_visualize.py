"""visualize.py: the data drawn and the files written (the two-run comparison: test_train.py)."""

import glob
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import visualize
from helpers import ROOT, assert_one_line_error, synthetic_digits, write_synthetic_run
from selenet import excitation_stats, heatmaps
from selenet.settings import Settings


def test_heatmap_draws_the_batch_sorted_by_label():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=100).astype(np.uint8)
    labels[labels == 6] = 7  # a digit missing from the batch gets no tick
    features = rng.random((100, 16)).astype(np.float32)
    figure = heatmaps.HeatmapFigure(100, 16).draw(features, labels, "SE excitations, test batch 3")
    axes = figure.axes[0]
    drawn = np.asarray(axes.images[0].get_array())

    order = np.argsort(labels, kind="stable")
    np.testing.assert_array_equal(drawn, features[order])
    # each drawn row is a real sample, and rows of one digit keep their batch order
    for digit in np.unique(labels):
        rows = [np.flatnonzero((features == row).all(axis=1))[0] for row in drawn[labels[order] == digit]]
        assert rows == sorted(rows) and all(labels[r] == digit for r in rows)
    ticks = axes.get_yticks().tolist()
    tick_labels = [t.get_text() for t in axes.get_yticklabels()]
    sorted_labels = labels[order]
    assert tick_labels == [str(d) for d in np.unique(labels)] and "6" not in tick_labels
    assert all(
        sorted_labels[int(t)] == int(d) and (t == 0 or sorted_labels[int(t) - 1] != int(d))
        for t, d in zip(ticks, tick_labels, strict=True)
    )
    assert axes.get_title() == "SE excitations, test batch 3"
    assert axes.images[0].get_cmap().name == "hot"
    assert axes.images[0].get_clim() == (0.0, 1.0)


def test_heatmap_figure_is_reused_without_leftovers():
    heatmap = heatmaps.HeatmapFigure(4, 16)
    heatmap.draw(np.zeros((4, 16)), np.array([0, 1, 2, 3]), "first")
    figure = heatmap.draw(np.ones((4, 16)), np.array([5, 5, 5, 5]), "second")
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["5"]
    assert np.asarray(figure.axes[0].images[0].get_array()).min() == 1


def test_the_saved_heatmap_is_the_figure_a_plain_savefig_draws(tmp_path):
    """The second batch's file, drawn on the reused figure, against a full draw of the same state:
    nothing of the first batch (ticks, title) is left and nothing is missing (spines, colour bar)."""
    import PIL.Image

    rng = np.random.default_rng(1)
    heatmap = heatmaps.HeatmapFigure(100, 16)
    heatmap.draw(rng.random((100, 16)), rng.integers(0, 10, 100), "SE excitations, test batch 0")
    heatmap.save(tmp_path / "0.png")
    heatmap.draw(rng.random((100, 16)), rng.integers(3, 8, 100), "SE excitations, test batch 1")
    heatmap.save(tmp_path / "1.png")
    for artist in heatmap.changing:
        artist.set_animated(False)
    heatmap.figure.savefig(tmp_path / "plain.png", dpi=heatmap.figure.dpi)

    saved, plain = (np.asarray(PIL.Image.open(tmp_path / name).convert("RGB")) for name in ("1.png", "plain.png"))
    assert saved.shape == plain.shape
    np.testing.assert_array_equal(saved, plain)


def test_the_worker_draws_the_files_this_process_would(tmp_path):
    """Enough heatmaps for the second process: every other batch drawn there, byte-identical files."""
    rng = np.random.default_rng(2)
    batches = heatmaps.WORKER_MIN_HEATMAPS
    features, labels = rng.random((10 * batches, 16)).astype(np.float32), rng.integers(0, 10, 10 * batches)
    with heatmaps.worker(batches) as pool:
        assert pool is not None  # two cores or more: CI's machines have two
        assert heatmaps.save_heatmaps(features, labels, tmp_path / "two", 10, pool=pool) == batches
    with heatmaps.worker(batches - 1) as pool:
        assert pool is None  # too few to pay for its start-up
        heatmaps.save_heatmaps(features, labels, tmp_path / "one", 10, pool=pool)
    names = sorted(os.listdir(tmp_path / "one" / heatmaps.HEATMAP_DIR))
    assert names == sorted(os.listdir(tmp_path / "two" / heatmaps.HEATMAP_DIR)) and len(names) == batches
    for name in names:
        one, two = (tmp_path / run / heatmaps.HEATMAP_DIR / name for run in ("one", "two"))
        assert one.read_bytes() == two.read_bytes(), name


def test_class_means():
    features = np.array([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0]])
    labels = np.array([3, 3, 9])
    means = excitation_stats.class_means(features, labels)
    assert means.shape == (10, 2)
    np.testing.assert_allclose(means[3], [0.5, 1.0])
    np.testing.assert_allclose(means[9], [0.5, 0.0])
    assert np.isnan(means[0]).all()


def test_class_mean_summary_finds_the_distinct_digit():
    means = np.full((10, 16), 0.5)
    means[:, 0] = 0.9  # a channel that is high for every digit: between channels, not between digits
    means[3, 7] = 0.1  # digit 3 alone turns channel 7 down
    features = np.repeat(means, 5, axis=0)
    line = visualize.class_mean_summary(means, features)
    assert "max 0.120, channel 7" in line
    assert "most distinct digit 3 (channels 7," in line


def test_visualize_a_run(synthetic_run, synthetic_mnist_dir, capsys):
    args = ["--run-dir", str(synthetic_run), "--data-dir", synthetic_mnist_dir]
    assert visualize.main([*args, "--batch-size", "50"]) == 0  # six heatmaps; three of them go below
    assert visualize.main(["--run-dir", str(synthetic_run), "--data-dir", synthetic_mnist_dir]) == 0
    out = capsys.readouterr().out
    assert re.search(r"test accuracy (\d+\.\d\d) % \(recorded in run.json: \1 %\)", out), out

    heatmaps = sorted(os.listdir(synthetic_run / "se_features"))
    assert heatmaps == sorted(f"{i}_se_feature.png" for i in range(3))  # 300 test images, batches of 100
    assert (synthetic_run / "se_class_mean.png").stat().st_size > 0
    with np.load(synthetic_run / "se_features.npz") as saved:
        assert saved["excitation"].shape == (300, 16)
        assert ((saved["excitation"] > 0) & (saved["excitation"] < 1)).all()
        np.testing.assert_array_equal(saved["label"], synthetic_digits(10000, seed=1)[1][:300])
        assert saved["prediction"].shape == (300,)
        accuracy = 100 * np.mean(saved["prediction"] == saved["label"])
    assert f"test accuracy {accuracy:.2f} %" in out


def test_max_batches_and_batch_size(synthetic_run, synthetic_mnist_dir):
    args = [
        "--run-dir",
        str(synthetic_run),
        "--data-dir",
        synthetic_mnist_dir,
        "--batch-size",
        "64",
        "--max-batches",
        "3",
    ]
    assert visualize.main(args) == 0
    assert sorted(os.listdir(synthetic_run / "se_features")) == [f"{i}_se_feature.png" for i in range(3)]


def test_the_drawing_worker_never_loads_tensorflow():
    """The spawned worker runs visualize.py's top level: it must not import TensorFlow. Nor is anything forked."""
    code = "import sys; sys.argv = ['visualize.py']; import visualize; print('tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
    sources = [*glob.glob(os.path.join(ROOT, "*.py")), *glob.glob(os.path.join(ROOT, "benchmarks", "*.py"))]
    assert not [path for path in sources if '"fork"' in open(path).read()]


def test_compare_draws_each_run_on_its_gates_scale_and_the_difference_on_its_own():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, (100, 16)), rng.uniform(-1, 1, (100, 16))  # tanh excitations
    labels = rng.integers(0, 10, 100)
    figure = visualize.comparison_figure(a, b, labels, ["a", "b"], 0, (-1.0, 1.0))
    first, second, difference = (axes.images[0] for axes in figure.axes[:3])
    assert first.get_clim() == second.get_clim() == (-1.0, 1.0)
    assert difference.get_clim() == (0.0, pytest.approx(np.abs(a - b).max()))
    assert "in this batch" in figure.axes[2].get_title()


def test_compare_refuses_runs_with_different_gates(tmp_path, synthetic_mnist_dir, capsys):
    for name, gate in (("sigmoid", "sigmoid"), ("tanh", "tanh")):
        write_synthetic_run(
            tmp_path / name, synthetic_mnist_dir, Settings(epochs=1, train_samples=300, test_samples=200, gate=gate)
        )
    args = ["--compare", str(tmp_path / "sigmoid"), str(tmp_path / "tanh"), "--data-dir", synthetic_mnist_dir]
    assert visualize.main(args) == 2
    assert_one_line_error(capsys.readouterr().err, "have different gates (sigmoid and tanh)")


def test_a_dead_block_names_no_distinct_digit():
    features = np.full((50, 16), 0.5)  # one hidden unit stuck at zero: the same excitation for every image
    line = visualize.class_mean_summary(excitation_stats.class_means(features, np.arange(50) % 10), features)
    assert "std between digits 0.000" in line and "the block is dead" in line and "most distinct" not in line


def test_the_wrote_line_names_every_file_of_both_blocks(tmp_path, synthetic_mnist_dir, capsys):
    settings = Settings(epochs=1, train_samples=300, test_samples=200, se_position="both")
    write_synthetic_run(tmp_path / "both", synthetic_mnist_dir, settings)
    assert visualize.main(["--run-dir", str(tmp_path / "both"), "--data-dir", synthetic_mnist_dir]) == 0
    (wrote,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Wrote")]
    written = {
        os.path.relpath(os.path.join(folder, name), tmp_path / "both")
        for folder, _, names in os.walk(tmp_path / "both")
        for name in names
    }
    for name in written - set(visualize.runs.run_file_names(settings)) - {"manifest.json", ".selenet.lock"}:
        if "/" not in name:
            assert name in wrote, name
    assert "2 heatmaps in se_features/ and in se_features_conv1/;" in wrote
    assert {"se_class_mean_conv1.png", "se_class_profile_conv1.png"} <= written


def test_compare_says_when_both_runs_are_one(synthetic_run, synthetic_mnist_dir, capsys):
    args = ["--compare", str(synthetic_run), str(synthetic_run), "--data-dir", synthetic_mnist_dir]
    assert visualize.main(args) == 0
    out = capsys.readouterr().out
    assert "are the same run folder" in out and "Max |excitation difference| over 300 test images: 0" in out


def test_one_test_image_of_500_is_not_wrong_data():
    """Bug d: with 500 test images one image is 0.2 point; three are wrong data or weights."""
    visualize.check_accuracy("run", 98.2, 98.0, 500)
    visualize.check_accuracy("run", 98.95, 98.87, 10000)  # 8 images of 10,000: within 0.1
    with pytest.raises(visualize.errors.UsageError, match="by more than 0.2 point"):
        visualize.check_accuracy("run", 98.6, 98.0, 500)
    with pytest.raises(visualize.errors.UsageError, match="by more than 0.1 point"):
        visualize.check_accuracy("run", 98.99, 98.87, 10000)


def test_the_heatmap_worker_counts_the_cores_this_process_may_use(monkeypatch):
    """Bug e: under taskset -c 0 (one core allowed of several) no second drawing process starts."""
    from selenet import heatmaps

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    with heatmaps.worker(1000) as pool:
        assert pool is None
