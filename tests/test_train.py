"""The training loop on a slice of real MNIST: run files, determinism, save and load."""

import csv
import json
import os
import re
import sys

import keras
import numpy as np
import pytest

import senet_lenet as selenet
import visualize
from conftest import QUICK, run_script


def quick_settings(**changes):
    settings = {
        "epochs": 1, "batch_size": 100, "optimizer": "adam", "lr": 0.001, "reduction": 4,
        "seed": 0, "train_samples": 2000, "test_samples": 300,
    }  # fmt: skip
    settings.update(changes)
    return settings


def train_slice(mnist, **changes):
    """Trains on a slice in this process; returns (model, history, test excitations)."""
    settings = quick_settings(**changes)
    train_data = selenet.select(mnist[0], settings["train_samples"])
    test_data = selenet.select(mnist[1], settings["test_samples"])
    model = selenet.seeded_model(settings)
    optimizer = selenet.make_optimizer(settings, model)
    history = selenet.train(model, optimizer, settings, train_data, test_data, log=lambda line: None)
    _, excitation = model(selenet.to_model_input(test_data[0]))
    return model, history, excitation.numpy()


def test_same_seed_gives_identical_bits(mnist):
    model_a, history_a, excitation_a = train_slice(mnist, seed=3)
    model_b, history_b, excitation_b = train_slice(mnist, seed=3)
    np.testing.assert_array_equal(excitation_a, excitation_b)
    for a, b in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_array_equal(a, b)
    strip = lambda history: [{k: v for k, v in r.items() if k != "seconds"} for r in history]  # noqa: E731
    assert strip(history_a) == strip(history_b)


def test_different_seeds_give_different_excitations(mnist):
    _, _, excitation_a = train_slice(mnist, seed=1)
    _, _, excitation_b = train_slice(mnist, seed=2)
    assert np.abs(excitation_a - excitation_b).max() > 1e-3


def test_epoch_order_depends_on_seed_and_epoch_only():
    first = selenet.epoch_order(5, 2, 1000)
    assert sorted(first.tolist()) == list(range(1000))
    np.testing.assert_array_equal(first, selenet.epoch_order(5, 2, 1000))
    assert not np.array_equal(first, selenet.epoch_order(5, 3, 1000))
    assert not np.array_equal(first, selenet.epoch_order(6, 2, 1000))


def test_batch_size_that_does_not_divide_the_data(mnist):
    """The last, short batch is trained too: every sample counts once in the epoch's accuracy."""
    _, history, _ = train_slice(mnist, batch_size=128, train_samples=1000)
    (record,) = history
    correct = record["accuracy"] * 1000 / 100
    assert abs(correct - round(correct)) < 1e-3  # a whole number of the 1000 images


def test_sgd_learns(mnist):
    _, history, _ = train_slice(mnist, optimizer="sgd", lr=0.1, epochs=3)
    losses = [r["loss"] for r in history]
    assert losses[0] > losses[1] > losses[2]


def test_save_and_load_give_identical_outputs(quick_run, mnist):
    images = selenet.to_model_input(mnist[1][0][:200])
    run = json.loads((quick_run / "run.json").read_text())
    model = selenet.build_model(run["settings"]["reduction"])
    model.load_weights(str(quick_run / selenet.WEIGHTS_FILE))
    again = selenet.build_model(run["settings"]["reduction"])
    again.load_weights(str(quick_run / selenet.WEIGHTS_FILE))
    for a, b in zip(model(images), again(images)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # and they are the trained weights, not a fresh model's
    _, features, accuracy = visualize.excitations(model, selenet.select(mnist[1], 500))
    assert accuracy == pytest.approx(run["final"]["test_accuracy"], abs=0.005)


def test_run_files(quick_run):
    names = set(os.listdir(quick_run))
    assert {
        "selenet.weights.h5", "run.json", "history.csv", "model_summary.txt",
        "SELeNet.png", "training_curves.png",
    } <= names  # fmt: skip
    assert not [n for n in names if ".tmp" in n]  # no temporary file left behind
    run = json.loads((quick_run / "run.json").read_text())
    assert run["settings"] == {
        "epochs": 2, "batch_size": 100, "optimizer": "adam", "lr": 0.001, "reduction": 4,
        "se": True, "seed": 0, "train_samples": 3000, "test_samples": 500,
    }  # fmt: skip
    assert run["finished"] is True
    assert run["model"] == {"name": "SELeNet", "parameters": 44554}
    assert run["versions"]["keras"] == keras.__version__
    assert [r["epoch"] for r in run["history"]] == [1, 2]
    assert run["final"]["test_accuracy"] == run["history"][-1]["test_accuracy"]
    assert run["final"]["train_accuracy"] == run["history"][-1]["accuracy"]
    with open(quick_run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == selenet.HISTORY_FIELDS
    assert [float(r["test_accuracy"]) for r in rows] == [r["test_accuracy"] for r in run["history"]]
    summary = (quick_run / "model_summary.txt").read_text()
    assert 'Model: "SELeNet"' in summary and "44,554" in summary and "se_expand" in summary
    with open(quick_run / "SELeNet.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_epoch_lines_in_the_assignments_form(tmp_path, mnist_dir, capsys):
    assert selenet.main([*QUICK, "--epochs", "1", "--data-dir", mnist_dir, "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    pattern = r"^Epoch 1, Loss: \d+\.\d{4}, Accuracy: \d+\.\d{2}, Test Loss: \d+\.\d{4}, Test Accuracy: \d+\.\d{2}$"
    assert len(re.findall(pattern, out, flags=re.MULTILINE)) == 1, out


def test_without_graphviz_the_run_writes_dot_and_succeeds(tmp_path, mnist_dir):
    """PATH without Graphviz's dot: SELeNet.dot instead of the PNG, one warning, exit 0."""
    python_only = tmp_path / "bin"
    python_only.mkdir()
    os.symlink(os.path.realpath(sys.executable), python_only / "python")
    out_dir = tmp_path / "out"
    result = run_script(
        "senet_lenet.py", *QUICK, "--epochs", "1", "--data-dir", mnist_dir, "--out-dir", out_dir,
        env={"PATH": str(python_only)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (out_dir / "SELeNet.dot").read_text().startswith("digraph")
    assert "se_expand" in (out_dir / "SELeNet.dot").read_text()
    assert not (out_dir / "SELeNet.png").exists()
    assert (out_dir / "training_curves.png").exists() and (out_dir / "selenet.weights.h5").exists()
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "apt-get install graphviz" in warnings[0]
