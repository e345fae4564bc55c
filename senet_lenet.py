"""SE-LeNet: a Squeeze-and-Excitation block on LeNet-5, trained on MNIST.

The SE block squeezes each of the 16 feature maps of LeNet's second convolution
to one number (global average pooling), passes the 16 numbers through a small
bottleneck MLP ending in a sigmoid, and rescales each feature map by its
sigmoid output, the "excitation". The model returns the class probabilities
and the 16-dim excitation, so it can be studied (see visualize.py).

    python senet_lenet.py                      # Adam, lr 0.001, batch 100, 10 epochs
    python senet_lenet.py --optimizer sgd      # SGD, lr 0.01
    python senet_lenet.py --data-dir ../shared/mnist

Data comes from --data-dir or $MNIST_DIR (the four MNIST IDX files, .gz or
plain, or Keras's mnist.npz); with neither, from keras.datasets.mnist.
A run writes the weights, run.json, history.csv, the model summary, the model
diagram and the training curves to --out-dir, and a checkpoint after every
epoch: after Ctrl-C, `python senet_lenet.py --out-dir DIR --resume` continues
to the same bits as an uninterrupted run.
"""

import argparse
import contextlib
import csv
import gzip
import io
import json
import os
import platform
import shutil
import signal
import sys
import time
import zlib

# Hides TensorFlow's C++ info lines (CPU features); warnings and errors still
# show. The oneDNN notice is logged before this setting is read and stays.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
import keras

# Defaults: the assignment's best run.
EPOCHS = 10  # passes over the 60,000 training images
BATCH_SIZE = 100  # images per optimizer step
OPTIMIZER = "adam"  # "adam" or "sgd"
LEARNING_RATES = {"adam": 0.001, "sgd": 0.01}  # default lr per optimizer
REDUCTION = 4  # SE bottleneck: 16 channels -> 16 // 4 hidden units
SEED = 0  # seeds weights and data order; same seed => same bits
OUT_DIR = "outputs"

# Speed knobs that do not change results.
STEPS_PER_CALL = 50  # training steps per tf.function call (and per progress-bar update)
EVAL_BATCH_SIZE = 1000  # test images per test_step call

WEIGHTS_FILE = "selenet.weights.h5"
RUN_FILE = "run.json"
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds"]


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


class MNISTDataError(UsageError):
    """A missing, unreadable or malformed MNIST file."""


class RunNotFound(UsageError):
    """No run.json where a run was expected."""


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

IMAGE_SIZE = 28
NUM_CLASSES = 10
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
        raise MNISTDataError(f"{path}: cannot read: {e}") from None


def _parse_idx(path, data, magic, item_shape, expected_records):
    header_size = 4 * (2 + len(item_shape))  # magic, record count, item dimensions
    found = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and found != magic:
        raise MNISTDataError(f"{path}: bad magic number {found:#010x}, expected {magic:#010x}")
    if len(data) < header_size:
        raise MNISTDataError(
            f"{path}: {len(data)} bytes is too short for an IDX header ({header_size} bytes)"
        )
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
        raise MNISTDataError(f"{path}: not a readable .npz file: {type(e).__name__}: {e}") from None
    for split, records in (("train", train_records), ("test", test_records)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        count = len(x) if records is None and x.ndim else records
        if x.dtype != np.uint8 or x.shape != (count, IMAGE_SIZE, IMAGE_SIZE):
            raise MNISTDataError(
                f"{path}: x_{split} is {x.dtype} {x.shape}, expected uint8 ({count}, 28, 28)"
            )
        if y.dtype.kind not in "iu" or y.shape != (count,):
            raise MNISTDataError(
                f"{path}: y_{split} is {y.dtype} {y.shape}, expected integer labels ({count},)"
            )
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
            return keras.datasets.mnist.load_data()
        except Exception as e:
            raise MNISTDataError(
                f"could not download MNIST ({type(e).__name__}); offline, pass --data-dir DIR "
                "or set MNIST_DIR=DIR, DIR holding the four MNIST IDX files (.gz or plain) or mnist.npz"
            ) from None
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
    raise MNISTDataError(
        f"{data_dir} holds neither the four MNIST IDX files (.gz or plain) nor mnist.npz"
    )


def to_model_input(images):
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1]."""
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


# ----------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------


def se_hidden_units(channels, reduction):
    """Units of the SE bottleneck; ValueError if `reduction` leaves none."""
    if isinstance(reduction, bool) or not isinstance(reduction, (int, np.integer)) or reduction < 1:
        raise ValueError(f"SE reduction must be a positive integer, got {reduction!r}")
    if channels // reduction < 1:
        raise ValueError(
            f"SE reduction {reduction} leaves no hidden unit for {channels} channels "
            f"({channels} // {reduction} = 0); use a reduction from 1 to {channels}"
        )
    return channels // reduction


def se_block(x, reduction=REDUCTION, name="se"):
    """Squeeze-and-Excitation on x (N, H, W, C). Returns (scaled x, excitation (N, C))."""
    channels = x.shape[-1]
    hidden = se_hidden_units(channels, reduction)
    squeezed = keras.layers.GlobalAveragePooling2D(name=f"{name}_squeeze")(x)  # (N, C)
    reduced = keras.layers.Dense(hidden, activation="relu", use_bias=False, name=f"{name}_reduce")(
        squeezed
    )  # (N, C // r)
    excitation = keras.layers.Dense(
        channels, activation="sigmoid", use_bias=False, name=f"{name}_expand"
    )(reduced)  # (N, C), each in (0, 1)
    scale = keras.layers.Reshape((1, 1, channels), name=f"{name}_excite")(excitation)  # (N, 1, 1, C)
    scaled = keras.layers.Multiply(name=f"{name}_scale")([x, scale])  # (N, H, W, C)
    return scaled, excitation


def build_model(reduction=REDUCTION, se=True):
    """LeNet-5 with an SE block after conv2; outputs [predictions (N, 10), excitation (N, 16)].

    With se=False, plain LeNet-5 (the ablation's baseline): predictions only.
    """
    layers = keras.layers
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), name="image")
    x = layers.Conv2D(6, 5, activation="relu", name="conv1")(inputs)  # (N, 24, 24, 6)
    x = layers.MaxPooling2D(2, padding="same", name="pool1")(x)  # (N, 12, 12, 6)
    x = layers.Conv2D(16, 5, activation="relu", name="conv2")(x)  # (N, 8, 8, 16)
    if se:
        x, excitation = se_block(x, reduction, name="se")
    x = layers.MaxPooling2D(2, padding="same", name="pool2")(x)  # (N, 4, 4, 16)
    x = layers.Flatten(name="flatten")(x)  # (N, 256)
    x = layers.Dense(120, activation="relu", name="fc1")(x)
    x = layers.Dense(84, activation="relu", name="fc2")(x)
    predictions = layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    if not se:
        return keras.Model(inputs, predictions, name="LeNet5")
    return keras.Model(inputs, [predictions, excitation], name="SELeNet")


def forward(model, images, training=False):
    """(predictions, excitation) of either model; excitation is None without SE."""
    outputs = model(images, training=training)
    if isinstance(outputs, (list, tuple)):
        return outputs[0], outputs[1]
    return outputs, None


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------


def make_optimizer(settings, model):
    """The optimizer `settings` name, with its state variables built for `model`."""
    name, learning_rate = settings["optimizer"], settings["lr"]
    if name == "adam":
        optimizer = keras.optimizers.Adam(learning_rate)
    elif name == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate)
    else:
        raise UsageError(f"unknown optimizer {name!r}; choose adam or sgd")
    optimizer.build(model.trainable_variables)
    return optimizer


def epoch_order(seed, epoch, size):
    """The training-data order of one epoch: a function of the seed and the epoch only."""
    return np.random.default_rng([seed, epoch]).permutation(size).astype(np.int32)


def make_test_step(model, loss_fn, loss_metric, accuracy_metric):
    @tf.function
    def test_step(images, labels):
        predictions, excitation = forward(model, images)
        loss_metric.update_state(loss_fn(labels, predictions))
        accuracy_metric.update_state(labels, predictions)
        return predictions, excitation

    return test_step


def evaluate(test_step, images, labels, batch_size=EVAL_BATCH_SIZE):
    """Runs test_step over the data in order; returns (predictions, excitations) as NumPy.

    Excitations are None for a model without SE."""
    predictions, excitations = [], []
    for start in range(0, len(images), batch_size):
        p, e = test_step(images[start : start + batch_size], labels[start : start + batch_size])
        predictions.append(p.numpy())
        if e is not None:
            excitations.append(e.numpy())
    return np.concatenate(predictions), (np.concatenate(excitations) if excitations else None)


def seeded_model(settings):
    """Seeds Python, NumPy and TensorFlow, turns on deterministic ops, builds the model."""
    keras.utils.set_random_seed(settings["seed"])
    tf.config.experimental.enable_op_determinism()
    return build_model(settings["reduction"], se=settings.get("se", True))


class Interrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after the last completed epoch was saved."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal:
    """While active, SIGINT and SIGTERM only set `signum`; the training loop stops
    at the next chunk of steps, never in the middle of writing a file."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        self.signum = signum

    def check(self):
        if self.signum is not None:
            raise Interrupted(self.signum)


def train(
    model, optimizer, settings, train_data, test_data,
    history=(), on_epoch_end=None, stop=None, log=print, progress=True,
):  # fmt: skip
    """Trains `model` from the epoch after `history` to settings["epochs"]; returns the history.

    on_epoch_end(history) runs after each epoch; stop.check() between chunks of steps.
    """
    batch_size = settings["batch_size"]
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    train_loss = keras.metrics.Mean(name="train_loss")
    train_accuracy = keras.metrics.SparseCategoricalAccuracy(name="train_accuracy")
    test_loss = keras.metrics.Mean(name="test_loss")
    test_accuracy = keras.metrics.SparseCategoricalAccuracy(name="test_accuracy")

    @tf.function
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            predictions, _ = forward(model, images, training=True)
            loss = loss_fn(labels, predictions)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        train_loss.update_state(loss)
        train_accuracy.update_state(labels, predictions)

    # Many steps per call: one step is a few milliseconds, so Python's
    # per-call overhead would otherwise be a large share of an epoch.
    @tf.function(
        input_signature=[
            tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32),
            tf.TensorSpec([None], tf.uint8),
            tf.TensorSpec([None], tf.int32),
        ]
    )
    def train_steps(images, labels, order):
        steps = (tf.shape(order)[0] + batch_size - 1) // batch_size
        for step in tf.range(steps):
            batch = order[step * batch_size : (step + 1) * batch_size]
            train_step(tf.gather(images, batch), tf.gather(labels, batch))

    test_step = make_test_step(model, loss_fn, test_loss, test_accuracy)

    x_train = tf.constant(to_model_input(train_data[0]))
    y_train = tf.constant(train_data[1])
    x_test = tf.constant(to_model_input(test_data[0]))
    y_test = tf.constant(test_data[1])
    steps_per_epoch = -(-len(train_data[1]) // batch_size)
    history = list(history)
    for epoch in range(len(history) + 1, settings["epochs"] + 1):
        started = time.perf_counter()
        for metric in (train_loss, train_accuracy, test_loss, test_accuracy):
            metric.reset_state()
        order = epoch_order(settings["seed"], epoch, len(train_data[1]))
        progbar = keras.utils.Progbar(
            steps_per_epoch, verbose=1 if progress else 0, stateful_metrics=["loss", "accuracy"]
        )
        for first_step in range(0, steps_per_epoch, STEPS_PER_CALL):
            last_step = min(first_step + STEPS_PER_CALL, steps_per_epoch)
            train_steps(x_train, y_train, order[first_step * batch_size : last_step * batch_size])
            progbar.update(
                last_step,
                [("loss", float(train_loss.result())), ("accuracy", float(train_accuracy.result()))],
            )
            if stop is not None:
                stop.check()
        evaluate(test_step, x_test, y_test)
        record = {  # accuracies in percent: 4 decimals hold one test image (0.01)
            "epoch": epoch,
            "loss": round(float(train_loss.result()), 6),
            "accuracy": round(100 * float(train_accuracy.result()), 4),
            "test_loss": round(float(test_loss.result()), 6),
            "test_accuracy": round(100 * float(test_accuracy.result()), 4),
            "seconds": round(time.perf_counter() - started, 3),
        }
        history.append(record)
        log(
            f"Epoch {epoch}, Loss: {record['loss']:.4f}, Accuracy: {record['accuracy']:.2f}, "
            f"Test Loss: {record['test_loss']:.4f}, Test Accuracy: {record['test_accuracy']:.2f}"
        )
        if on_epoch_end is not None:
            on_epoch_end(history)
    return history


# ----------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary name beside `path`, renamed over `path` only if the block succeeds.

    The temporary name keeps the file's extensions, since Keras and Matplotlib
    pick the format from them.
    """
    directory, name = os.path.split(path)
    stem, dot, extensions = name.partition(".")
    temporary = os.path.join(directory, f".{stem}.tmp{os.getpid()}{dot}{extensions}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path, text):
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)


def save_figure(figure, path):
    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100)


def ensure_writable_dir(path):
    """Creates `path` if needed and proves a file can be written there (else UsageError)."""
    probe = os.path.join(path, f".write-test-{os.getpid()}")
    try:
        os.makedirs(path, exist_ok=True)
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise UsageError(f"cannot write to output directory {path}: {e.strerror}") from None


def model_summary_text(model):
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    return "\n".join(lines) + "\n"


def save_model_diagram(model, out_dir, warn=print):
    """SELeNet.png via plot_model; without Graphviz, SELeNet.dot and a warning. Returns the path."""
    options = dict(show_shapes=True, show_layer_names=True, show_layer_activations=True, dpi=96)
    png_path = os.path.join(out_dir, f"{model.name}.png")
    if shutil.which("dot"):
        with atomic_path(png_path) as temporary:
            keras.utils.plot_model(model, to_file=temporary, **options)
        return png_path
    dot_path = os.path.join(out_dir, f"{model.name}.dot")
    write_text(dot_path, keras.utils.model_to_dot(model, **options).to_string())
    warn(
        f"warning: Graphviz's `dot` program was not found, so {png_path} was not drawn; "
        f"wrote the graph as {dot_path}. Install Graphviz (Debian/Ubuntu: apt-get install "
        f"graphviz; macOS: brew install graphviz; Windows: winget install graphviz) and rerun, "
        f"or render it with: dot -Tpng {dot_path} -o {png_path}"
    )
    return dot_path


def plot_training_curves(history, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for axes, key, label in ((loss_axes, "loss", "loss"), (accuracy_axes, "accuracy", "accuracy (%)")):
        axes.plot(epochs, [r[key] for r in history], "o-", label="train")
        axes.plot(epochs, [r[f"test_{key}"] for r in history], "s-", label="test")
        axes.set_xlabel("epoch")
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(title)
    return figure


def csv_text(rows, fields):
    """Rows (dicts) as CSV text with a header line."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def run_record(model, settings, history):
    """What run.json holds: enough to rebuild the model and to resume or judge the run."""
    last = history[-1]
    return {
        "settings": settings,
        "model": {"name": model.name, "parameters": model.count_params()},
        "weights": WEIGHTS_FILE,
        "final": {"train_accuracy": last["accuracy"], "test_accuracy": last["test_accuracy"]},
        "history": history,
        "finished": len(history) == settings["epochs"],
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }


def read_run(run_dir):
    """run.json of a run folder: RunNotFound if there is none, UsageError if it is damaged."""
    path = os.path.join(run_dir, RUN_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        missing = [key for key in ("settings", "history", "final", "finished") if key not in run]
        missing += [key for key in RUN_SETTINGS if key not in run.get("settings", {})]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
    except FileNotFoundError:
        raise RunNotFound(f"{path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UsageError(f"{path} is not a run.json written by senet_lenet.py ({e})") from None
    return run


def save_progress(run, out_dir):
    """run.json and history.csv, after every epoch (run["finished"] says whether it is the last)."""
    write_text(os.path.join(out_dir, RUN_FILE), json.dumps(run, indent=2) + "\n")
    write_text(os.path.join(out_dir, "history.csv"), csv_text(run["history"], HISTORY_FIELDS))


def save_run(model, settings, history, out_dir, warn=print):
    """Writes every file of a finished run to out_dir, each atomically; returns run.json's contents."""
    import matplotlib.pyplot as plt

    with atomic_path(os.path.join(out_dir, WEIGHTS_FILE)) as temporary:
        model.save_weights(temporary)
    run = run_record(model, settings, history)
    save_progress(run, out_dir)
    write_text(os.path.join(out_dir, "model_summary.txt"), model_summary_text(model))
    save_model_diagram(model, out_dir, warn=warn)
    figure = plot_training_curves(history, f"{model.name} on MNIST")
    save_figure(figure, os.path.join(out_dir, "training_curves.png"))
    plt.close(figure)
    return run


# Checkpoints: out_dir/checkpoints/epoch_NNNN/ with the model's weights, the
# optimizer's variables and the history. The data order of an epoch depends only
# on the seed and the epoch, so nothing else is needed to continue bit for bit.
CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2


def checkpoint_dirs(out_dir):
    """The run's complete checkpoints, oldest first."""
    root = os.path.join(out_dir, CHECKPOINT_DIR)
    if not os.path.isdir(root):
        return []
    names = sorted(n for n in os.listdir(root) if n.startswith("epoch_") and n[6:].isdigit())
    return [os.path.join(root, n) for n in names]


def save_checkpoint(out_dir, model, optimizer, history):
    """Writes the state after history[-1]'s epoch into a folder renamed into place; keeps the newest two."""
    root = os.path.join(out_dir, CHECKPOINT_DIR)
    name = f"epoch_{history[-1]['epoch']:04d}"
    temporary = os.path.join(root, f".{name}.tmp{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    os.makedirs(temporary)
    try:
        model.save_weights(os.path.join(temporary, "model.weights.h5"))
        with open(os.path.join(temporary, "optimizer.npz"), "wb") as f:
            np.savez(f, *[variable.numpy() for variable in optimizer.variables])
        with open(os.path.join(temporary, "history.json"), "w", encoding="utf-8") as f:
            json.dump(history, f)
        shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        os.replace(temporary, os.path.join(root, name))
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    for old in checkpoint_dirs(out_dir)[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old)


def restore_checkpoint(path, model, optimizer):
    """Loads a checkpoint into model and optimizer; returns the history up to it."""
    try:
        model.load_weights(os.path.join(path, "model.weights.h5"))
        with np.load(os.path.join(path, "optimizer.npz")) as saved:
            values = [saved[f"arr_{i}"] for i in range(len(saved.files))]
        if [v.shape for v in values] != [tuple(v.shape) for v in optimizer.variables]:
            raise ValueError("optimizer state does not fit the optimizer run.json names")
        for variable, value in zip(optimizer.variables, values):
            variable.assign(value)
        with open(os.path.join(path, "history.json"), encoding="utf-8") as f:
            return json.load(f)
    except Exception as e:  # h5py, numpy and Keras raise many types for a damaged file
        raise UsageError(f"checkpoint {path} cannot be loaded: {type(e).__name__}: {e}") from None


def train_run(
    settings, train_data, test_data, out_dir,
    resume_from=None, stop=None, log=print, warn=print, verbose=True,
):  # fmt: skip
    """Builds, trains and saves one run as `settings` say; returns its run.json contents.

    resume_from: a checkpoint folder to continue from. stop: a StopOnSignal.
    verbose: print the model summary and a progress bar per epoch.
    """
    ensure_writable_dir(out_dir)
    model = seeded_model(settings)
    optimizer = make_optimizer(settings, model)
    history = []
    if resume_from is not None:
        history = restore_checkpoint(resume_from, model, optimizer)
        log(f"Resuming {out_dir} after epoch {len(history)} of {settings['epochs']}")
    else:
        shutil.rmtree(os.path.join(out_dir, CHECKPOINT_DIR), ignore_errors=True)  # an earlier run's
    if verbose:
        log(model_summary_text(model).rstrip("\n"))
        log(
            f"Training on {len(train_data[1])} images, testing on {len(test_data[1])}: "
            f"{settings['optimizer']} lr {settings['lr']}, batch {settings['batch_size']}, "
            f"{settings['epochs']} epochs, seed {settings['seed']}"
        )

    def on_epoch_end(history):
        save_checkpoint(out_dir, model, optimizer, history)
        if len(history) < settings["epochs"]:
            save_progress(run_record(model, settings, history), out_dir)

    history = train(
        model, optimizer, settings, train_data, test_data,
        history=history, on_epoch_end=on_epoch_end, stop=stop, log=log, progress=verbose,
    )  # fmt: skip
    return save_run(model, settings, history, out_dir, warn=warn)


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line, exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0 or not np.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def reduction_arg(text):
    value = positive_int(text)
    try:
        se_hidden_units(16, value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


def parse_args(argv=None):
    parser = ArgumentParser(
        prog="senet_lenet.py",
        description="Train SE-LeNet (LeNet-5 with a Squeeze-and-Excitation block) on MNIST.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--epochs", type=positive_int, default=EPOCHS, help="passes over the training set")
    parser.add_argument("--batch-size", type=positive_int, default=BATCH_SIZE, help="images per training step")
    parser.add_argument("--optimizer", choices=sorted(LEARNING_RATES), default=OPTIMIZER, help="optimizer")
    parser.add_argument(
        "--lr", type=positive_float, default=None, help="learning rate (default: 0.001 for adam, 0.01 for sgd)"
    )
    parser.add_argument(
        "--reduction", type=reduction_arg, default=REDUCTION, help="SE reduction ratio r: 16 // r hidden units"
    )
    parser.add_argument(
        "--seed", type=int, default=SEED, help="seeds weights and data order; same seed, same machine => same bits"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the four MNIST IDX files (.gz or plain) or mnist.npz "
        "(default: $MNIST_DIR, else download with keras.datasets.mnist)",
    )
    parser.add_argument("--no-se", action="store_true", help="plain LeNet-5 without the SE block (for comparison)")
    parser.add_argument("--out-dir", default=OUT_DIR, help="where the run's files go")
    parser.add_argument(
        "--train-samples",
        type=positive_int,
        default=None,
        help="train on the first N training images only, for quick trials (default: all 60000)",
    )
    parser.add_argument(
        "--test-samples",
        type=positive_int,
        default=None,
        help="test on the first N test images only, for quick trials (default: all 10000)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out-dir from its last completed epoch, with the settings in its run.json",
    )
    args = parser.parse_args(argv)
    # Parsed again over a namespace of placeholders: argparse fills in defaults
    # only for names it lacks, so what stays a placeholder was not given.
    placeholders = argparse.Namespace(**{name: _NOT_GIVEN for name in vars(args)})
    args.given = {name for name, value in vars(parser.parse_args(argv, placeholders)).items() if value is not _NOT_GIVEN}
    if args.lr is None:
        args.lr = LEARNING_RATES[args.optimizer]
    return args


_NOT_GIVEN = object()


RUN_SETTINGS = (
    "epochs", "batch_size", "optimizer", "lr", "reduction", "se", "seed", "train_samples", "test_samples",
)  # fmt: skip


def run_settings(args):
    """The settings that define a run, as saved in run.json (the keys of RUN_SETTINGS)."""
    return {
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": args.lr,
        "reduction": args.reduction,
        "se": not args.no_se,
        "seed": args.seed,
        "train_samples": args.train_samples,
        "test_samples": args.test_samples,
    }


def select(data, samples):
    """The first `samples` records of (images, labels); all of them for None."""
    images, labels = data
    return images[:samples], labels[:samples]


def run_to_resume(args):
    """run.json of the run in --out-dir; UsageError if there is none or a flag contradicts it."""
    try:
        run = read_run(args.out_dir)
    except RunNotFound:
        raise UsageError(
            f"nothing to resume in {args.out_dir}: no {RUN_FILE}, so no epoch was completed there; "
            "start the run without --resume"
        ) from None
    recorded, path = run["settings"], os.path.join(args.out_dir, RUN_FILE)
    wanted = run_settings(args)
    for name in sorted(args.given - {"data_dir", "out_dir", "resume"}):
        key = "se" if name == "no_se" else name
        if wanted[key] != recorded.get(key):
            flag = "--" + name.replace("_", "-")
            raise UsageError(
                f"{flag} conflicts with the run being resumed, which has {key} = {recorded.get(key)!r} "
                f"in {path}; --resume continues a run with its recorded settings"
            )
    return run


def main(argv=None):
    args = parse_args(argv)
    warn = lambda message: print(message, file=sys.stderr)  # noqa: E731
    try:
        with StopOnSignal() as stop:
            settings, checkpoint = run_settings(args), None
            if args.resume:
                run = run_to_resume(args)
                settings = run["settings"]
                if run["finished"]:
                    print(f"{args.out_dir} already finished all {settings['epochs']} epochs: nothing to resume")
                    return 0
                checkpoints = checkpoint_dirs(args.out_dir)
                if not checkpoints:
                    raise UsageError(f"no checkpoint in {os.path.join(args.out_dir, CHECKPOINT_DIR)} to resume from")
                checkpoint = checkpoints[-1]
            ensure_writable_dir(args.out_dir)
            train_data, test_data = load_mnist(args.data_dir)
            train_data = select(train_data, settings["train_samples"])
            test_data = select(test_data, settings["test_samples"])
            train_run(settings, train_data, test_data, args.out_dir, resume_from=checkpoint, stop=stop, warn=warn)
    except UsageError as e:
        print(f"senet_lenet.py: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(flush=True)  # ends the progress bar's line
        saved = checkpoint_dirs(args.out_dir)
        if saved:
            epoch = int(os.path.basename(saved[-1])[6:])
            warn(
                f"senet_lenet.py: stopped by {e}; epoch {epoch} is the last one saved. "
                f"Resume with: python senet_lenet.py --out-dir {args.out_dir} --resume"
            )
        else:
            warn(f"senet_lenet.py: stopped by {e} before the first epoch ended; nothing to resume")
        return 128 + e.signum
    print(f"Saved the run to {args.out_dir}/ (weights, run.json, history.csv, figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
