"""The block's other excitations (ECA's Conv1D, the trained fixed gain), its biases, and SGD with momentum:
each trains, stops and resumes to the same bits, visualizes, and loads from .keras without the project."""

import os
import subprocess
import sys

import numpy as np
import pytest

import senet_lenet
import visualize
from helpers import StopAfterEpoch, synthetic_digits, without_seconds
from selenet import errors, runs
from selenet.mnist import load_mnist, select
from selenet.predict import predictor
from selenet.settings import Settings

NEW_SETTINGS = {
    "eca": {"excitation": "conv1d"},
    "eca-both-k5": {"excitation": "conv1d", "se_position": "both", "eca_kernel": 5},
    "fixed": {"excitation": "fixed"},
    "bias": {"se_bias": True},
    "sgd-momentum": {"optimizer": "sgd", "momentum": 0.9},
}

LOAD_WITHOUT_THE_PROJECT = """
import importlib.util, sys
import keras, numpy as np
assert importlib.util.find_spec("senet_lenet") is None, "the project is importable here"
images = np.load(sys.argv[1])
for path in sys.argv[2:]:
    outputs = keras.models.load_model(path)(images, training=False)
    np.savez(path + ".npz", *[np.asarray(o) for o in outputs])
"""


def settings_of(name):
    return Settings(epochs=2, train_samples=300, test_samples=200, seed=2, **NEW_SETTINGS[name])


@pytest.fixture(scope="module")
def new_setting_runs(tmp_path_factory, synthetic_mnist_dir):
    """{name: (run folder, run folder stopped after epoch 1 and resumed)} for each of NEW_SETTINGS."""
    train_data, test_data = load_mnist(synthetic_mnist_dir)
    quiet = {"log": lambda line: None, "warn": lambda line: None, "verbose": False}
    folders = {}
    for name in NEW_SETTINGS:
        settings = settings_of(name)
        data = select(train_data, settings.train_samples), select(test_data, settings.test_samples)
        whole, stopped = (str(tmp_path_factory.mktemp(name) / kind) for kind in ("whole", "stopped"))
        senet_lenet.train_run(settings, *data, whole, **quiet)
        with pytest.raises(errors.Interrupted):
            senet_lenet.train_run(settings, *data, stopped, stop=StopAfterEpoch(stopped, 1), **quiet)
        senet_lenet.train_run(settings, *data, stopped, resume=True, **quiet)
        folders[name] = whole, stopped
    return folders


@pytest.mark.parametrize("name", NEW_SETTINGS)
def test_a_new_setting_resumes_to_the_same_bits_and_is_recorded(new_setting_runs, name):
    whole, stopped = new_setting_runs[name]
    run, resumed = runs.read_run(whole), runs.read_run(stopped)
    assert run["settings"] == resumed["settings"] == settings_of(name)
    assert run["sha256"][runs.WEIGHTS_FILE] == resumed["sha256"][runs.WEIGHTS_FILE]
    assert without_seconds(run["history"]) == without_seconds(resumed["history"])


@pytest.mark.parametrize("name", ["eca-both-k5", "fixed", "bias"])
def test_a_new_setting_visualizes(new_setting_runs, synthetic_mnist_dir, name, capsys):
    whole, _ = new_setting_runs[name]
    assert visualize.main(["--run-dir", whole, "--data-dir", synthetic_mnist_dir, "--max-batches", "1"]) == 0
    out = capsys.readouterr().out
    assert ("a trained fixed gain" in out) == (name == "fixed") and "the block is dead" not in out
    assert os.path.exists(os.path.join(whole, "se_features", "0_se_feature.png"))
    assert os.path.exists(os.path.join(whole, "se_features_conv1", "0_se_feature.png")) == (name == "eca-both-k5")
    role = dict(line.split(",") for line in open(os.path.join(whole, runs.ROLE_FILE)).read().split()[1:])
    if name == "fixed":  # the same excitation for every image: its mean and any shuffle of it change nothing
        assert role["learned"] == role["train_mean"] == role["shuffled"] and float(role["range_conv2"]) == 0


def test_the_new_settings_load_from_keras_files_without_the_project(new_setting_runs, synthetic_mnist_dir, tmp_path):
    images, _ = select(load_mnist(synthetic_mnist_dir, train=False)[1], 50)
    np.save(tmp_path / "images.npy", images)
    paths = [os.path.join(new_setting_runs[name][0], runs.MODEL_FILE) for name in NEW_SETTINGS]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    script = [sys.executable, "-c", LOAD_WITHOUT_THE_PROJECT, str(tmp_path / "images.npy"), *paths]
    result = subprocess.run(script, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    for name, path in zip(NEW_SETTINGS, paths, strict=True):
        model = senet_lenet.build_model(settings_of(name))
        model.load_weights(os.path.join(new_setting_runs[name][0], runs.WEIGHTS_FILE))
        ours = predictor(model)(images)
        with np.load(path + ".npz") as loaded:
            theirs = [loaded[f"arr_{i}"] for i in range(len(loaded.files))]
        for a, b in zip([ours[0], *ours[1]], theirs, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_gate_scale_multiplies_the_excitation_and_adds_no_weight():
    images = synthetic_digits(20)[0]
    plain = senet_lenet.build_model(Settings())
    doubled = senet_lenet.build_model(Settings(gate_scale=2.0))
    doubled.set_weights(plain.get_weights())
    assert doubled.count_params() == plain.count_params()
    assert "se_gate_scale" in [layer.name for layer in doubled.layers]
    assert "se_gate_scale" not in [layer.name for layer in plain.layers]
    (_, excitation), (_, twice) = predictor(plain)(images), predictor(doubled)(images)
    np.testing.assert_allclose(twice[0], 2 * excitation[0], rtol=1e-6)
    assert 0.6 < float(twice[0].mean()) < 1.4  # starts near 1 (untrained), as without a block
