"""MNIST from local files: the four IDX files (.gz or plain) or Keras's mnist.npz, validated.

Every reader checks what it reads (IDX magic number, 28x28 images, the record
counts, labels 0-9, a length that fits the header) and says what is wrong in
one line naming the file: MNISTDataError.
"""

import gzip
import os
import zlib

import numpy as np

from selenet.errors import MNISTDataError
from selenet.settings import NUM_CLASSES, ceil_div

IMAGE_SIZE = 28
STEPS_PER_CALL = 50  # training steps per tf.function call (and progress-bar update): speed, not results
TRAIN_RECORDS = 60000
TEST_RECORDS = 10000
IDX_FILES = {  # role -> file name in the MNIST distribution
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension


def _read_file_bytes(path):
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise MNISTDataError(f"{path}: cannot read: {e}") from e


def _parse_idx(path, data, magic, item_shape, expected_records):
    header_size = 4 * (2 + len(item_shape))  # magic, record count, item dimensions
    found = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and found != magic:
        raise MNISTDataError(f"{path}: bad magic number {found:#010x}, expected {magic:#010x}")
    if len(data) < header_size:
        raise MNISTDataError(f"{path}: {len(data)} bytes is too short for an IDX header ({header_size} bytes)")
    header = np.frombuffer(data, dtype=">u4", count=header_size // 4)
    records, shape = int(header[1]), tuple(int(d) for d in header[2:])
    if shape != item_shape:
        raise MNISTDataError(f"{path}: items are {shape}, expected {item_shape}")
    if expected_records is not None and records != expected_records:
        raise MNISTDataError(f"{path}: header says {records} records, expected {expected_records}")
    expected_size = header_size + records * int(np.prod(item_shape, dtype=np.int64))
    if len(data) != expected_size:
        raise MNISTDataError(
            f"{path}: file holds {len(data)} bytes, its header ({records} records) "
            f"needs {expected_size}: truncated or padded"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape((records,) + item_shape)


def _check_labels(path, labels):
    if labels.size and labels.max() >= NUM_CLASSES:
        raise MNISTDataError(f"{path}: label {int(labels.max())} is outside 0-9")


def read_idx_images(path, expected_records=None):
    """Reads an IDX image file (.gz or plain) into a uint8 array (N, 28, 28)."""
    path = os.fspath(path)
    data = _read_file_bytes(path)
    return _parse_idx(path, data, IDX_IMAGES_MAGIC, (IMAGE_SIZE, IMAGE_SIZE), expected_records)


def read_idx_labels(path, expected_records=None):
    """Reads an IDX label file (.gz or plain) into a uint8 array (N,) of digits 0-9."""
    path = os.fspath(path)
    labels = _parse_idx(path, _read_file_bytes(path), IDX_LABELS_MAGIC, (), expected_records)
    _check_labels(path, labels)
    return labels


def read_npz(path, train_records=TRAIN_RECORDS, test_records=TEST_RECORDS):
    """Reads Keras's mnist.npz: ((x_train, y_train), (x_test, y_test)), validated.

    A record count of None accepts any number of records.
    """
    path = os.fspath(path)
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys if k not in npz.files]
            if missing:
                raise MNISTDataError(f"{path}: missing arrays {', '.join(missing)}")
            arrays = {k: npz[k] for k in keys}
    except MNISTDataError:
        raise
    except Exception as e:  # numpy and zipfile raise many types for damaged files
        raise MNISTDataError(f"{path}: not a readable .npz file: {type(e).__name__}: {e}") from e
    for split, records in (("train", train_records), ("test", test_records)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        count = len(x) if records is None and x.ndim else records
        if x.dtype != np.uint8 or x.shape != (count, IMAGE_SIZE, IMAGE_SIZE):
            raise MNISTDataError(f"{path}: x_{split} is {x.dtype} {x.shape}, expected uint8 ({count}, 28, 28)")
        if y.dtype.kind not in "iu" or y.shape != (count,):
            raise MNISTDataError(f"{path}: y_{split} is {y.dtype} {y.shape}, expected integer labels ({count},)")
        if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
            raise MNISTDataError(f"{path}: y_{split} has labels outside 0-9")
    return (arrays["x_train"], arrays["y_train"].astype(np.uint8)), (
        arrays["x_test"],
        arrays["y_test"].astype(np.uint8),
    )


def find_idx_files(data_dir):
    found = {}
    for role, name in IDX_FILES.items():
        for candidate in (name, name + ".gz"):
            path = os.path.join(data_dir, candidate)
            if os.path.isfile(path):
                found[role] = path
                break
    return found


def load_mnist(data_dir=None, train=True):
    """MNIST as uint8 arrays ((x_train, y_train), (x_test, y_test)).

    From data_dir (else $MNIST_DIR): the four IDX files or mnist.npz. With
    neither set, keras.datasets.mnist.load_data(), which downloads once.
    train=False skips reading the training IDX files (the pair is then None).
    """
    data_dir = data_dir or os.environ.get("MNIST_DIR") or None
    if data_dir is None:
        try:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as cli.py does: no C++ info lines
            import keras  # only here: reading local files needs no TensorFlow

            return keras.datasets.mnist.load_data()
        except Exception as e:  # urllib, ssl and Keras raise many types offline
            raise MNISTDataError(
                f"could not download MNIST from Google's storage ({download_failure(e)}); offline or where it "
                "cannot be reached, pass --data-dir DIR (or set MNIST_DIR=DIR), DIR holding the four MNIST IDX "
                "files (.gz or plain, from any MNIST mirror) or mnist.npz"
            ) from e
    if not os.path.isdir(data_dir):
        raise MNISTDataError(f"MNIST data directory {data_dir} does not exist")
    found = find_idx_files(data_dir)
    if len(found) == len(IDX_FILES):
        train_data = None
        if train:
            train_data = (
                read_idx_images(found["train_images"], TRAIN_RECORDS),
                read_idx_labels(found["train_labels"], TRAIN_RECORDS),
            )
        return train_data, (
            read_idx_images(found["test_images"], TEST_RECORDS),
            read_idx_labels(found["test_labels"], TEST_RECORDS),
        )
    npz_path = os.path.join(data_dir, "mnist.npz")
    if os.path.isfile(npz_path):
        return read_npz(npz_path)
    if found:
        missing = [IDX_FILES[role] for role in IDX_FILES if role not in found]
        raise MNISTDataError(f"{data_dir}: missing MNIST files {', '.join(missing)} (.gz or plain)")
    raise MNISTDataError(f"{data_dir} holds neither the four MNIST IDX files (.gz or plain) nor mnist.npz")


def download_failure(error):
    """Why a download failed, in a few words: the innermost cause Keras wrapped (a DNS error, a certificate
    error on a python.org macOS build without its certificates installed, a refused connection)."""
    while (error.__cause__ or error.__context__) is not None:
        error = error.__cause__ or error.__context__
    reason = getattr(error, "reason", None) or error
    text = next((line.strip() for line in str(reason).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def select(data, samples):
    """The first `samples` records of (images, labels); all of them for None."""
    images, labels = data
    return images[:samples], labels[:samples]


def balanced_sample(data, size, seed):
    """`size` records of (images, labels), size // 10 of each digit, drawn with `seed`, in MNIST's order.

    Its own random stream, [seed, 0]: the epochs' orders use [seed, pass] with passes from 1."""
    images, labels = data
    per_class = size // NUM_CLASSES
    smallest = int(np.bincount(labels, minlength=NUM_CLASSES).min())
    if per_class > smallest:
        raise MNISTDataError(
            f"a class-balanced sample of {size} training images needs {per_class} of each digit; "
            f"the training set has {smallest} of its rarest digit (train_size at most {smallest * NUM_CLASSES})"
        )
    rng = np.random.default_rng([seed, 0])
    chosen = [rng.choice(np.flatnonzero(labels == digit), per_class, replace=False) for digit in range(NUM_CLASSES)]
    kept = np.sort(np.concatenate(chosen))
    return images[kept], labels[kept]


def run_data(train_data, test_data, settings):
    """The (train, test) data a run of `settings` uses: the first --train-samples / --test-samples, or
    the class-balanced train_size sample of its seed; all of MNIST by default. train_data None: None."""
    if train_data is not None:
        if settings.train_size is not None:
            train_data = balanced_sample(train_data, settings.train_size, settings.seed)
        else:
            train_data = select(train_data, settings.train_samples)
    return train_data, select(test_data, settings.test_samples)


# ---- The order a run sees the training data in ----


def pass_order(seed, pass_number, size):
    """The training-data order of one pass over it (passes count from 1): a function of the seed and the pass only."""
    return np.random.default_rng([seed, pass_number]).permutation(size).astype(np.int32)


def epoch_chunks(seed, epoch, size, batch_size, steps_per_epoch):
    """(first step, last step, images' order) of each tf.function call of an epoch: at most STEPS_PER_CALL
    steps, all in one pass over the training data. The run's steps go pass after pass, each pass in
    pass_order; with one pass an epoch (the default), epoch N is pass N."""
    steps_per_pass = ceil_div(size, batch_size)
    start = (epoch - 1) * steps_per_epoch  # the run's steps before this epoch
    step, end, order = start, start + steps_per_epoch, None
    while step < end:
        done, in_pass = divmod(step, steps_per_pass)
        last = min(step + STEPS_PER_CALL, end, (done + 1) * steps_per_pass)
        if in_pass == 0 or order is None:
            order = pass_order(seed, done + 1, size)
        yield step - start, last - start, order[in_pass * batch_size : (last - done * steps_per_pass) * batch_size]
        step = last
