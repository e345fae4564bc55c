"""TensorBoard logs as Keras names them: the history's numbers, 16 excitation histograms and the class-mean
image per epoch; no change to the bits."""

import glob
import os

import matplotlib
import numpy as np
import pytest
import tensorflow as tf

import senet_lenet
import visualize
from helpers import synthetic_digits
from selenet import excitation_stats, runs
from selenet.mnist import load_mnist
from selenet.predict import predictor
from selenet.settings import Settings


def read_events(log_dir):
    """{(tag, step): value} of every event file in log_dir; a histogram's value is its (buckets, 3) array."""
    values = {}
    for path in glob.glob(os.path.join(log_dir, "events.out.tfevents.*")):
        for record in tf.data.TFRecordDataset(path):
            event = tf.compat.v1.Event.FromString(record.numpy())
            for value in event.summary.value:
                values[(value.tag, event.step)] = tf.make_ndarray(value.tensor)
    return values


def test_event_files_hold_the_history_and_the_excitations(trained_synthetic_run, synthetic_mnist_dir):
    history = runs.read_run(trained_synthetic_run)["history"]
    assert sorted(os.listdir(trained_synthetic_run / "logs")) == ["train", "validation"]
    train = read_events(trained_synthetic_run / "logs" / "train")
    validation = read_events(trained_synthetic_run / "logs" / "validation")
    assert {step for _, step in train} == {step for _, step in validation} == {1, 2}
    for record in history:
        epoch = record["epoch"]
        assert train[("epoch_loss", epoch)] == pytest.approx(record["loss"], rel=1e-6)
        assert train[("epoch_accuracy", epoch)] == pytest.approx(record["accuracy"] / 100, rel=1e-6)
        assert validation[("epoch_loss", epoch)] == pytest.approx(record["test_loss"], rel=1e-6)
        assert validation[("epoch_accuracy", epoch)] == pytest.approx(record["test_accuracy"] / 100, rel=1e-6)
        histograms = sorted(tag for tag, step in validation if step == epoch and tag.startswith("excitation/"))
        assert histograms == [f"excitation/channel_{c:02d}" for c in range(16)]
        counts = [validation[(tag, epoch)][:, 2].sum() for tag in histograms]
        assert counts == [200] * 16  # every test image in every channel's histogram
    # The last epoch's image is the class means of the final model's test excitations, coloured by `hot`.
    test_images, labels = (part[:200] for part in load_mnist(synthetic_mnist_dir)[1])
    model = visualize.restore_model(trained_synthetic_run, runs.read_run(trained_synthetic_run))
    _, (excitation,) = predictor(model)(test_images)
    encoded = validation[("class_mean_excitation", 2)]  # [width, height, PNG]
    assert encoded[:2].tolist() == [b"256", b"160"]
    pixels = tf.io.decode_png(encoded[2]).numpy()
    means = excitation_stats.class_means(excitation, labels)
    expected = (matplotlib.colormaps["hot"](means)[..., :3] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(pixels[::16, ::16], expected)


def test_logs_do_not_change_the_trained_bits(tmp_path):
    settings = Settings(epochs=2, train_samples=400, test_samples=100, seed=4)
    data = synthetic_digits(400), synthetic_digits(100, seed=1)
    quiet = dict(log=lambda line: None, warn=lambda line: None, verbose=False)
    senet_lenet.train_run(settings, *data, str(tmp_path), **quiet)  # with logs
    assert os.listdir(tmp_path / "logs") and os.listdir(tmp_path / "logs" / "validation")
    model = senet_lenet.seeded_model(settings)
    optimizer = senet_lenet.make_optimizer(settings, model)
    senet_lenet.train(model, optimizer, settings, data, log=lambda line: None, progress=False)  # without
    logged = senet_lenet.build_model()
    logged.load_weights(str(tmp_path / runs.WEIGHTS_FILE))
    for a, b in zip(logged.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
