"""What the excitation does: its role at inference, and visualize.py on every SE variant."""

import csv
import os
import shutil

import numpy as np
import pytest

import senet_lenet
import visualize
from helpers import assert_one_line_error, write_synthetic_run
from selenet import runs
from selenet.mnist import load_mnist, select
from selenet.predict import outputs
from selenet.settings import Settings
from study import excitation_role


@pytest.fixture
def finished_run(trained_synthetic_run, tmp_path):
    return shutil.copytree(trained_synthetic_run, tmp_path / "finished")


def run_data(run_dir, data_dir):
    settings = runs.read_run(run_dir)["settings"]
    train_data, test_data = load_mnist(data_dir)
    return settings, select(train_data, settings.train_samples), select(test_data, settings.test_samples)


def test_visualize_writes_the_role_and_learned_is_the_recorded_accuracy(finished_run, synthetic_mnist_dir, capsys):
    assert visualize.main(["--run-dir", str(finished_run), "--data-dir", synthetic_mnist_dir]) == 0
    with open(finished_run / runs.ROLE_FILE, newline="") as f:
        role = {row["measure"]: float(row["value"]) for row in csv.DictReader(f)}
    assert list(role) == [*excitation_role.VARIANTS, "range_conv2"] and role["range_conv2"] > 0
    assert role["learned"] == runs.read_run(finished_run)["final"]["test_accuracy"]
    assert excitation_role.role_line(role) in capsys.readouterr().out


def test_each_variant_really_replaces_the_excitation(trained_synthetic_run, synthetic_mnist_dir):
    settings, train_data, test_data = run_data(trained_synthetic_run, synthetic_mnist_dir)
    model = senet_lenet.build_model(settings)
    model.load_weights(str(trained_synthetic_run / runs.WEIGHTS_FILE))
    role = excitation_role.excitation_role(model, settings, train_data, test_data)

    images, labels = test_data[0], test_data[1]

    def accuracy(predictions):
        return round(100 * float(np.mean(np.argmax(predictions, axis=1) == labels)), 4)

    plain = senet_lenet.build_model(Settings(se=False))  # ones: the SE-less path with unit scale
    for layer in plain.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    assert role["ones"] == accuracy(plain(images).numpy())

    given = excitation_role.with_given_excitations(model, settings)
    (train_excitation,) = outputs(model, train_data[0])[1]
    (learned,) = outputs(model, images)[1]
    mean = np.tile(train_excitation.numpy().mean(axis=0), (len(labels), 1))
    assert role["train_mean"] == accuracy(given([images, mean]).numpy())
    shuffled = learned.numpy()[np.random.default_rng(settings.seed).permutation(len(labels))]
    assert role["shuffled"] == accuracy(given([images, shuffled]).numpy())
    assert role["learned"] == accuracy(model(images)[0].numpy())


@pytest.mark.parametrize(
    "settings",
    [
        Settings(epochs=1, train_samples=300, test_samples=200, se_position="both"),
        Settings(epochs=1, train_samples=300, test_samples=200, gate="relu"),
        Settings(epochs=1, train_samples=300, test_samples=200, gate="tanh", squeeze="max"),
    ],
    ids=["both", "relu", "tanh-max"],
)
def test_visualize_handles_every_variant(tmp_path, synthetic_mnist_dir, settings, capsys):
    run_dir = tmp_path / "run"
    write_synthetic_run(run_dir, synthetic_mnist_dir, settings)
    assert visualize.main(["--run-dir", str(run_dir), "--data-dir", synthetic_mnist_dir]) == 0
    out = capsys.readouterr().out
    blocks = settings.se_blocks
    with np.load(run_dir / "se_features.npz") as saved:
        for block in blocks:
            suffix = "" if block == "conv2" else f"_{block}"
            channels = 16 if block == "conv2" else 6
            assert saved[f"excitation{suffix}"].shape == (200, channels)
            assert sorted(os.listdir(run_dir / f"se_features{suffix}")) == ["0_se_feature.png", "1_se_feature.png"]
            for figure in ("se_class_mean", "se_class_profile"):
                assert (run_dir / f"{figure}{suffix}.png").stat().st_size > 0
    assert out.count("SE class means") == len(blocks)
    assert (run_dir / runs.ROLE_FILE).exists()


def test_visualize_says_why_a_run_without_se_has_nothing_to_draw(tmp_path, synthetic_mnist_dir, capsys):
    write_synthetic_run(tmp_path / "plain", synthetic_mnist_dir, Settings(epochs=1, se=False, test_samples=100))
    assert visualize.main(["--run-dir", str(tmp_path / "plain"), "--data-dir", synthetic_mnist_dir]) == 2
    assert_one_line_error(capsys.readouterr().err, "a run without the SE block (--no-se)")
