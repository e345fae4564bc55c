"""mnist.py's readers: valid files read back exactly; every damage gives a one-line error naming the file."""

import gzip
import os

import numpy as np
import pytest

from helpers import assert_one_line_error, idx_bytes, run_script, synthetic_digits
from selenet import mnist
from selenet.mnist import MNISTDataError, balanced_sample, run_data
from selenet.settings import Settings


def write(path, data, compress=None):
    compress = str(path).endswith(".gz") if compress is None else compress
    with (gzip.open if compress else open)(path, "wb") as f:
        f.write(data)
    return str(path)


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(7, 28, 28), dtype=np.uint8)


@pytest.fixture
def labels():
    return np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, images, labels, suffix):
    image_path = write(tmp_path / f"images{suffix}", idx_bytes(images))
    label_path = write(tmp_path / f"labels{suffix}", idx_bytes(labels))
    np.testing.assert_array_equal(mnist.read_idx_images(image_path), images)
    np.testing.assert_array_equal(mnist.read_idx_labels(label_path), labels)
    assert mnist.read_idx_images(image_path, expected_records=7).dtype == np.uint8


def test_bad_magic(tmp_path, images):
    path = write(tmp_path / "images", idx_bytes(images, magic=0x0801))
    with pytest.raises(mnist.MNISTDataError, match=r"images: bad magic number 0x00000801"):
        mnist.read_idx_images(path)


def test_labels_file_given_as_images(tmp_path, labels):
    path = write(tmp_path / "labels", idx_bytes(labels))
    with pytest.raises(mnist.MNISTDataError, match="bad magic number"):
        mnist.read_idx_images(path)


def test_wrong_image_size(tmp_path):
    path = write(tmp_path / "images", idx_bytes(np.zeros((2, 32, 32), np.uint8)))
    with pytest.raises(mnist.MNISTDataError, match=r"items are \(32, 32\), expected \(28, 28\)"):
        mnist.read_idx_images(path)


def test_truncated_payload(tmp_path, images):
    path = write(tmp_path / "images", idx_bytes(images)[:-10])
    with pytest.raises(mnist.MNISTDataError, match="truncated or padded"):
        mnist.read_idx_images(path)


def test_padded_payload(tmp_path, labels):
    path = write(tmp_path / "labels", idx_bytes(labels) + b"\0")
    with pytest.raises(mnist.MNISTDataError, match="truncated or padded"):
        mnist.read_idx_labels(path)


def test_truncated_header(tmp_path):
    path = write(tmp_path / "labels", b"\0\0\x08")
    with pytest.raises(mnist.MNISTDataError, match="too short for an IDX header"):
        mnist.read_idx_labels(path)


def test_label_out_of_range(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.array([1, 10, 2], np.uint8)))
    with pytest.raises(mnist.MNISTDataError, match="label 10 is outside 0-9"):
        mnist.read_idx_labels(path)


def test_wrong_record_count(tmp_path, labels):
    path = write(tmp_path / "labels", idx_bytes(labels))
    with pytest.raises(mnist.MNISTDataError, match="header says 7 records, expected 60000"):
        mnist.read_idx_labels(path, expected_records=60000)


def test_truncated_gzip(tmp_path, images):
    whole = gzip.compress(idx_bytes(images))
    path = write(tmp_path / "images.gz", whole[: len(whole) // 2], compress=False)
    with pytest.raises(mnist.MNISTDataError, match=r"images.gz: cannot read"):
        mnist.read_idx_images(path)


def test_not_gzip_at_all(tmp_path, images):
    path = write(tmp_path / "images.gz", idx_bytes(images), compress=False)
    with pytest.raises(mnist.MNISTDataError, match=r"images.gz: cannot read"):
        mnist.read_idx_images(path)


def full_size_npz(path, **changes):
    arrays = {
        "x_train": np.zeros((60000, 28, 28), np.uint8),
        "y_train": np.arange(60000, dtype=np.uint8) % 10,
        "x_test": np.ones((10000, 28, 28), np.uint8),
        "y_test": np.arange(10000, dtype=np.uint8) % 10,
    }
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return str(path)


def test_npz_round_trip(tmp_path):
    path = full_size_npz(tmp_path / "mnist.npz")
    (x_train, y_train), (x_test, y_test) = mnist.read_npz(path)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train[:12].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert x_test.max() == 1 and y_test.dtype == np.uint8


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"y_test": None}, "missing arrays y_test"),
        ({"x_test": np.ones((9999, 28, 28), np.uint8)}, r"x_test is uint8 \(9999, 28, 28\)"),
        ({"x_train": np.zeros((60000, 28, 28), np.float32)}, "x_train is float32"),
        ({"y_train": np.full(60000, 11, np.uint8)}, "y_train has labels outside 0-9"),
    ],
)
def test_npz_damage(tmp_path, changes, message):
    path = full_size_npz(tmp_path / "mnist.npz", **changes)
    with pytest.raises(mnist.MNISTDataError, match=message):
        mnist.read_npz(path)


def test_npz_not_a_zip(tmp_path):
    path = write(tmp_path / "mnist.npz", b"PK\x03\x04 not really a zip file", compress=False)
    with pytest.raises(mnist.MNISTDataError, match="mnist.npz: not a readable .npz file"):
        mnist.read_npz(path)


def test_data_dir_errors(tmp_path, images):
    with pytest.raises(mnist.MNISTDataError, match="does not exist"):
        mnist.load_mnist(str(tmp_path / "nowhere"))
    with pytest.raises(mnist.MNISTDataError, match="neither the four MNIST IDX files"):
        mnist.load_mnist(str(tmp_path))
    write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(images))
    with pytest.raises(mnist.MNISTDataError, match="missing MNIST files train-labels-idx1-ubyte, t10k"):
        mnist.load_mnist(str(tmp_path))


def test_data_dir_checks_record_counts(tmp_path, images, labels):
    for role, name in mnist.IDX_FILES.items():
        write(tmp_path / name, idx_bytes(images if "images" in role else labels))
    with pytest.raises(mnist.MNISTDataError, match="train-images-idx3-ubyte: header says 7 records, expected 60000"):
        mnist.load_mnist(str(tmp_path))


def test_mnist_dir_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_DIR", str(tmp_path / "from-env"))
    with pytest.raises(mnist.MNISTDataError, match="from-env does not exist"):
        mnist.load_mnist()


@pytest.mark.e2e
def test_real_mnist_is_read_whole(mnist_dir):
    (x_train, y_train), (x_test, y_test) = mnist.load_mnist(mnist_dir)
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert np.bincount(y_train).tolist()[:3] == [5923, 6742, 5958]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_offline_without_data_is_one_clear_line(tmp_path):
    """No data directory and no network: exit 2, a line naming both remedies, no traceback."""
    env = {
        "MNIST_DIR": "",
        "KERAS_HOME": str(tmp_path / "keras-home"),  # an empty cache
        "https_proxy": "http://127.0.0.1:9",  # nothing listens there: the download fails at once
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    result = run_script("senet_lenet.py", "--out-dir", tmp_path / "out", env=env, timeout=300)
    assert result.returncode == 2, result.stderr
    assert_one_line_error(result.stderr, "could not download MNIST", "Connection refused", "--data-dir", "MNIST_DIR")
    assert not os.path.exists(tmp_path / "keras-home" / "datasets" / "mnist.npz")


def test_a_balanced_sample_has_as_many_of_each_digit_and_depends_on_the_seed_only():
    images, labels = synthetic_digits(3000)
    a_images, a_labels = balanced_sample((images, labels), 200, seed=4)
    assert np.bincount(a_labels, minlength=10).tolist() == [20] * 10
    again = balanced_sample((images, labels), 200, seed=4)
    np.testing.assert_array_equal(a_images, again[0])
    other = balanced_sample((images, labels), 200, seed=5)
    assert not np.array_equal(a_images, other[0])
    # Drawn from the data in its order, each image at most once.
    rows = [int(np.flatnonzero((images == image).all(axis=(1, 2)))[0]) for image in a_images]
    assert rows == sorted(set(rows))


def test_a_balanced_sample_larger_than_the_rarest_digit_allows_is_one_line():
    data = synthetic_digits(300)
    rarest = int(np.bincount(data[1], minlength=10).min())
    with pytest.raises(MNISTDataError, match=f"at most {rarest * 10}"):
        balanced_sample(data, (rarest + 1) * 10, seed=0)


def test_run_data_takes_the_sample_of_the_runs_seed():
    train, test = synthetic_digits(2000), synthetic_digits(300, seed=1)
    sample, kept = run_data(train, test, Settings(train_size=100, seed=3, test_samples=50))
    np.testing.assert_array_equal(sample[0], balanced_sample(train, 100, 3)[0])
    assert len(kept[1]) == 50
    first, _ = run_data(train, test, Settings(train_samples=70))
    np.testing.assert_array_equal(first[0], train[0][:70])
