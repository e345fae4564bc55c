"""The training loop: the data order, the epoch lines, the run files; on the real MNIST, determinism."""

import csv
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import senet_lenet
import visualize
from helpers import QUICK, synthetic_digits, without_seconds
from selenet import files, runs
from selenet.mnist import epoch_chunks, load_mnist, pass_order, select
from selenet.predict import accuracy_percent, predictor
from selenet.settings import Settings


def train_synthetic(**changes):
    """Trains on synthetic digits in this process; returns the history."""
    settings = Settings(**{"epochs": 1, "train_samples": 1000, "test_samples": 200, **changes})
    model = senet_lenet.seeded_model(settings)
    optimizer = senet_lenet.make_optimizer(settings, model)
    train_data = synthetic_digits(settings.train_samples)
    test_data = synthetic_digits(settings.test_samples, seed=1)
    return senet_lenet.train(model, optimizer, settings, (train_data, test_data), log=lambda line: None, progress=False)


def test_pass_order_depends_on_seed_and_pass_only():
    first = pass_order(5, 2, 1000)
    assert sorted(first.tolist()) == list(range(1000))
    np.testing.assert_array_equal(first, pass_order(5, 2, 1000))
    assert not np.array_equal(first, pass_order(5, 3, 1000))
    assert not np.array_equal(first, pass_order(6, 2, 1000))


def chunks(epoch, size, batch_size, steps_per_epoch, seed=5):
    return list(epoch_chunks(seed, epoch, size, batch_size, steps_per_epoch))


def test_an_epoch_of_one_pass_is_that_passes_order_in_calls_of_at_most_50_steps():
    """The default (the assignment's and every earlier run's): epoch N is pass N, the last batch short."""
    calls = chunks(3, 1050, 100, 11)
    assert [(first, last) for first, last, _ in calls] == [(0, 11)]
    np.testing.assert_array_equal(calls[0][2], pass_order(5, 3, 1050))
    calls = chunks(2, 12000, 100, 120)
    assert [(first, last) for first, last, _ in calls] == [(0, 50), (50, 100), (100, 120)]
    np.testing.assert_array_equal(np.concatenate([o for *_, o in calls]), pass_order(5, 2, 12000))


def test_an_epoch_of_many_passes_goes_pass_after_pass():
    """600 images, 600 steps an epoch at batch 100: epoch 2 is passes 101 to 200, each whole, in its order."""
    calls = chunks(2, 600, 100, 600)
    assert len(calls) == 100 and calls[-1][1] == 600
    assert all(last - first == 6 for first, last, _ in calls)
    for number, (*_, order) in enumerate(calls, start=101):
        np.testing.assert_array_equal(order, pass_order(5, number, 600))


def test_an_epoch_that_ends_inside_a_pass_continues_it_in_the_next():
    """250 images (3 batches a pass, the last of 50), 4 steps an epoch: epoch 2 starts at pass 2's second batch."""
    first_epoch, second_epoch = chunks(1, 250, 100, 4), chunks(2, 250, 100, 4)
    pass_1, pass_2, pass_3 = (pass_order(5, n, 250) for n in (1, 2, 3))
    np.testing.assert_array_equal(np.concatenate([o for *_, o in first_epoch]), np.concatenate([pass_1, pass_2[:100]]))
    np.testing.assert_array_equal(second_epoch[0][2], pass_2[100:])
    np.testing.assert_array_equal(second_epoch[1][2], pass_3[:200])
    assert [(f, last) for f, last, _ in second_epoch] == [(0, 2), (2, 4)]


def test_batch_size_that_does_not_divide_the_data():
    """The last, short batch is trained too: every sample counts once in the epoch's accuracy."""
    (record,) = train_synthetic(batch_size=128, train_samples=1000)
    correct = record["accuracy"] * 1000 / 100
    assert abs(correct - round(correct)) < 1e-3  # a whole number of the 1000 images


def test_losses_are_means_over_images_not_over_batches():
    """A test set of 1,500 images is evaluated as batches of 1,000 and 500: the recorded test loss is the
    mean over the 1,500 images, as Keras computes it, not the mean of the two batch means."""
    settings = Settings(epochs=1, train_samples=1000, test_samples=1500, batch_size=300)  # train: 300 ×3, 100
    model = senet_lenet.seeded_model(settings)
    optimizer = senet_lenet.make_optimizer(settings, model)
    data = synthetic_digits(1000), synthetic_digits(1500, seed=1)
    (record,) = senet_lenet.train(model, optimizer, settings, data, log=lambda line: None, progress=False)
    predictions, _ = predictor(model)(data[1][0])
    per_image = keras.losses.sparse_categorical_crossentropy(data[1][1], predictions).numpy()
    assert record["test_loss"] == pytest.approx(float(per_image.mean()), abs=2e-6)
    batch_means = [per_image[:1000].mean(), per_image[1000:].mean()]
    assert abs(float(np.mean(batch_means)) - float(per_image.mean())) > 2e-5  # 10 × the tolerance: they differ


def test_sgd_learns():
    losses = [r["loss"] for r in train_synthetic(optimizer="sgd", lr=0.1, epochs=3)]
    assert losses[0] > losses[1] > losses[2]


@pytest.mark.parametrize("terminal", [False, True])
def test_epoch_lines_in_the_assignments_form(terminal, tmp_path, synthetic_mnist_dir, capsys, monkeypatch):
    """A progress bar on a terminal; redirected (a log file, CI), one line per epoch and no control characters."""
    monkeypatch.setattr(sys.stdout, "isatty", lambda: terminal)
    args = ["--epochs", "2", "--train-samples", "500", "--test-samples", "100"]
    assert senet_lenet.main([*args, "--data-dir", synthetic_mnist_dir, "--out-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    pattern = r"^Epoch \d, Loss: \d+\.\d{4}, Accuracy: \d+\.\d{2}, Test Loss: \d+\.\d{4}, Test Accuracy: \d+\.\d{2}$"
    assert len(re.findall(pattern, out, flags=re.MULTILINE)) == 2, out
    assert ("\r" in out and "\x1b[" in out and "5/5" in out) == terminal, out
    if not terminal:
        training = out[out.index("Training on") :].splitlines()
        assert len(training) == 1 + 2 + 1, out  # what it trains, two epochs, where it saved


def test_without_graphviz_the_run_writes_dot_and_succeeds(tmp_path, synthetic_mnist_dir, monkeypatch, capsys):
    """PATH without Graphviz's dot: SELeNet.dot instead of the PNG, one warning, exit 0."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out_dir = tmp_path / "out"
    args = ["--epochs", "1", "--train-samples", "300", "--test-samples", "100"]
    assert senet_lenet.main([*args, "--data-dir", synthetic_mnist_dir, "--out-dir", str(out_dir)]) == 0
    assert (out_dir / "SELeNet.dot").read_text().startswith("digraph")
    assert "se_expand" in (out_dir / "SELeNet.dot").read_text()
    assert not (out_dir / "SELeNet.png").exists()
    assert (out_dir / "training_curves.png").exists() and (out_dir / "selenet.weights.h5").exists()
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "apt-get install graphviz" in warnings[0]


# ---- On the real MNIST ----------------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_save_and_load_give_identical_outputs(quick_run, mnist):
    images = mnist[1][0][:200]
    run = runs.read_run(quick_run)
    model = senet_lenet.build_model(run["settings"])
    model.load_weights(str(quick_run / runs.WEIGHTS_FILE))
    whole = keras.models.load_model(str(quick_run / runs.MODEL_FILE))  # the other file the run saved
    for a, b in zip(model(images), whole(images), strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    # and they are the trained weights, not a fresh model's: the test accuracy the run recorded
    images, labels = select(mnist[1], 500)
    accuracy = accuracy_percent(predictor(model)(images)[0], labels)
    assert accuracy == pytest.approx(run["final"]["test_accuracy"], abs=0.005)


@pytest.mark.e2e
def test_run_files(quick_run):
    names = set(os.listdir(quick_run))
    assert {
        "selenet.weights.h5",
        "run.json",
        "history.csv",
        "model_summary.txt",
        "SELeNet.png",
        "training_curves.png",
    } <= names
    assert not [n for n in names if files.is_temporary(n)]  # no temporary file left behind
    run = json.loads((quick_run / "run.json").read_text())
    assert run["settings"] == Settings(epochs=2, train_samples=3000, test_samples=500).as_dict()
    assert run["finished"] is True
    assert run["model"] == {"name": "SELeNet", "parameters": 44554}
    assert run["versions"]["keras"] == keras.__version__
    assert [r["epoch"] for r in run["history"]] == [1, 2]
    assert run["final"]["test_accuracy"] == run["history"][-1]["test_accuracy"]
    assert run["final"]["train_accuracy"] == run["history"][-1]["accuracy"]
    with open(quick_run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == runs.HISTORY_FIELDS
    assert [float(r["test_accuracy"]) for r in rows] == [r["test_accuracy"] for r in run["history"]]
    summary = (quick_run / "model_summary.txt").read_text()
    assert 'Model: "SELeNet"' in summary and "44,554" in summary and "se_expand" in summary
    with open(quick_run / "SELeNet.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def twin_runs(tmp_path_factory, mnist_dir):
    """Two quick one-epoch runs with seed 3 and one with seed 1, each in its own folder."""
    root = tmp_path_factory.mktemp("twins")
    for name, seed in (("a", "3"), ("b", "3"), ("c", "1")):
        args = [*QUICK, "--epochs", "1", "--seed", seed, "--data-dir", mnist_dir, "--out-dir", str(root / name)]
        assert senet_lenet.main(args) == 0
    return root


def compare(capsys, mnist_dir, run_a, run_b, batch):
    """visualize.py --compare; returns the largest excitation difference it printed."""
    args = ["--compare", str(run_a), str(run_b), "--batch", str(batch), "--data-dir", mnist_dir]
    assert visualize.main(args) == 0
    out = capsys.readouterr().out
    return float(re.search(r"Max \|excitation difference\| over 500 test images: (\S+)", out).group(1))


@pytest.mark.e2e
def test_same_seed_gives_identical_bits(twin_runs, mnist_dir, capsys):
    """The assignment's extended experiment: same seed, same weights, history and feature maps."""
    a, b = twin_runs / "a", twin_runs / "b"
    model_a, model_b = senet_lenet.build_model(), senet_lenet.build_model()
    model_a.load_weights(str(a / runs.WEIGHTS_FILE))
    model_b.load_weights(str(b / runs.WEIGHTS_FILE))
    for weights_a, weights_b in zip(model_a.get_weights(), model_b.get_weights(), strict=True):
        np.testing.assert_array_equal(weights_a, weights_b)
    history_a, history_b = (runs.read_run(d)["history"] for d in (a, b))
    assert without_seconds(history_a) == without_seconds(history_b)
    assert compare(capsys, mnist_dir, a, b, 2) == 0.0
    assert (b / "compare_2.png").exists()


@pytest.mark.e2e
def test_different_seeds_give_different_excitations(twin_runs, mnist_dir, capsys):
    assert compare(capsys, mnist_dir, twin_runs / "a", twin_runs / "c", 0) > 0.01
    assert (twin_runs / "c" / "compare_0.png").exists()


LOAD_WITHOUT_THE_PROJECT = """
import importlib.util, sys
import keras, numpy as np
assert importlib.util.find_spec("senet_lenet") is None, "the project is importable here"
model = keras.models.load_model(sys.argv[1])
predictions, excitation = model(np.load(sys.argv[2]), training=False)
np.savez(sys.argv[3], predictions=np.asarray(predictions), excitation=np.asarray(excitation))
"""


def test_the_keras_file_loads_without_the_project(trained_synthetic_run, synthetic_mnist_dir, tmp_path):
    """selenet.keras in a fresh interpreter that cannot import this project: the project's outputs."""
    run = runs.read_run(trained_synthetic_run)
    images, labels = select(load_mnist(synthetic_mnist_dir, train=False)[1], run["settings"].test_samples)
    np.save(tmp_path / "images.npy", images)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    args = [trained_synthetic_run / runs.MODEL_FILE, tmp_path / "images.npy", tmp_path / "outputs.npz"]
    result = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_THE_PROJECT, *map(str, args)], cwd=tmp_path, env=env, capture_output=True
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]

    model = senet_lenet.build_model()
    model.load_weights(str(trained_synthetic_run / runs.WEIGHTS_FILE))
    predictions, (excitation,) = predictor(model)(images)
    accuracy = accuracy_percent(predictions, labels)
    assert accuracy == run["final"]["test_accuracy"]
    with np.load(tmp_path / "outputs.npz") as loaded:
        np.testing.assert_allclose(loaded["predictions"], predictions, rtol=0, atol=1e-6)
        np.testing.assert_allclose(loaded["excitation"], excitation, rtol=0, atol=1e-6)


def stopped_and_resumed(settings, data, tmp_path):
    """(run.json of a whole run, of the same run stopped after epoch 1 and resumed), with their folders."""
    from helpers import StopAfterEpoch
    from selenet import errors

    quiet = {"log": lambda line: None, "warn": lambda line: None, "verbose": False}
    whole, stopped = str(tmp_path / "whole"), str(tmp_path / "stopped")
    a = senet_lenet.train_run(settings, *data, whole, **quiet)
    with pytest.raises(errors.Interrupted):
        senet_lenet.train_run(settings, *data, stopped, stop=StopAfterEpoch(stopped, 1), **quiet)
    b = senet_lenet.train_run(settings, *data, stopped, resume=True, **quiet)
    return a, b


def test_a_small_sample_with_many_passes_an_epoch_resumes_to_the_same_bits(tmp_path, synthetic_mnist_dir):
    """600 images, 12 steps an epoch at batch 100: two passes an epoch, stopped after epoch 1."""
    from selenet.mnist import run_data

    settings = Settings(epochs=3, train_size=600, epoch_steps=12, test_samples=200)
    data = run_data(*load_mnist(synthetic_mnist_dir), settings)
    whole, resumed = stopped_and_resumed(settings, data, tmp_path)
    assert whole["training"] == resumed["training"] == {"images": 600, "steps": 36}
    assert without_seconds(whole["history"]) == without_seconds(resumed["history"])
    assert whole["sha256"][runs.WEIGHTS_FILE] == resumed["sha256"][runs.WEIGHTS_FILE]  # .keras: a save date


@pytest.mark.e2e
def test_a_600_image_run_with_the_full_runs_steps_resumes_to_the_same_bits(tmp_path, mnist_dir):
    """The study's data-size runs on the real MNIST: 600 balanced images, 600 steps an epoch (100 passes)."""
    from selenet.mnist import run_data

    settings = Settings(epochs=2, train_size=600, epoch_steps=600, seed=3)
    data = run_data(*load_mnist(mnist_dir), settings)
    assert np.bincount(data[0][1]).tolist() == [60] * 10
    whole, resumed = stopped_and_resumed(settings, data, tmp_path)
    assert whole["training"] == {"images": 600, "steps": 1200}
    assert without_seconds(whole["history"]) == without_seconds(resumed["history"])
    assert whole["sha256"][runs.WEIGHTS_FILE] == resumed["sha256"][runs.WEIGHTS_FILE]  # .keras: a save date
