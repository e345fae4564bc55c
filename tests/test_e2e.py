"""End to end on the real MNIST, as a user types it: full training runs and visualize.py.

These take a few minutes; they need MNIST_DIR and fail in CI without it.
"""

import json
import os
import re

import pytest

from helpers import run_script

pytestmark = pytest.mark.e2e


def train(out_dir, mnist_dir, *args):
    result = run_script("senet_lenet.py", "--out-dir", out_dir, *args, env={"MNIST_DIR": mnist_dir})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out_dir / "run.json").read_text()), result.stdout


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, mnist_dir):
    out_dir = tmp_path_factory.mktemp("default_run")
    run, stdout = train(out_dir, mnist_dir)
    return out_dir, run, stdout


def test_default_run_reaches_the_assignments_accuracy(default_run):
    out_dir, run, stdout = default_run
    assert run["settings"]["optimizer"] == "adam" and run["settings"]["lr"] == 0.001
    assert run["settings"]["batch_size"] == 100 and run["settings"]["epochs"] == 10
    assert run["settings"]["seed"] == 0 and run["settings"]["train_samples"] is None
    assert len(re.findall(r"^Epoch \d+, Loss: ", stdout, flags=re.MULTILINE)) == 10
    assert "\r" not in stdout and "\x1b" not in stdout  # redirected: no progress bar
    assert run["final"]["test_accuracy"] >= 98.5
    assert run["final"]["train_accuracy"] >= 99.0
    for name in ("selenet.weights.h5", "history.csv", "model_summary.txt", "SELeNet.png", "training_curves.png"):
        assert (out_dir / name).stat().st_size > 0


def test_sgd_run_reaches_97_percent(tmp_path, mnist_dir):
    run, _ = train(tmp_path, mnist_dir, "--optimizer", "sgd")
    assert run["settings"]["lr"] == 0.01
    assert run["final"]["test_accuracy"] >= 97.0


def test_visualize_the_default_run(default_run, mnist_dir):
    out_dir, run, _ = default_run
    result = run_script("visualize.py", "--run-dir", out_dir, env={"MNIST_DIR": mnist_dir})
    assert result.returncode == 0, result.stderr[-3000:]
    heatmaps = os.listdir(out_dir / "se_features")
    assert sorted(heatmaps) == sorted(f"{i}_se_feature.png" for i in range(100))
    assert (out_dir / "se_class_mean.png").stat().st_size > 0
    assert (out_dir / "se_features.npz").stat().st_size > 0
    accuracy = float(re.search(r"test accuracy (\d+\.\d+) %", result.stdout).group(1))
    assert accuracy == pytest.approx(run["final"]["test_accuracy"], abs=0.005)  # the same images right
