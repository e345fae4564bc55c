"""SE-LeNet: a Squeeze-and-Excitation block on LeNet-5, trained on MNIST with a tf.GradientTape loop.

The SE block squeezes each of the 16 feature maps of LeNet's second convolution to one number (global
average pooling), passes the 16 numbers through a small bottleneck MLP ending in a sigmoid, and rescales
each feature map by its sigmoid output, the "excitation". The model returns the class probabilities and
the 16-dim excitation, so that visualize.py can draw it.

    python senet_lenet.py                             # Adam, lr 0.001, batch 100, 10 epochs -> outputs/
    python senet_lenet.py --optimizer sgd             # SGD, lr 0.01
    python senet_lenet.py --data-dir path/to/mnist    # offline: the four MNIST files there
    python senet_lenet.py --resume                    # after Ctrl-C: continue, to the same bits

This file is the whole run, top to bottom: settings, data, model, training loop, checkpoints, saving.
"""

import argparse
import contextlib
import csv
import functools
import glob
import gzip
import hashlib
import io
import json
import math
import os
import pathlib
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow loads: none of its C++ info lines
# oneDNN picks its kernels by the CPU's instruction set, and the bits follow them: capped at AVX2 unless the
# user's ONEDNN_MAX_CPU_ISA or --isa says otherwise. oneDNN reads it once, when TensorFlow loads.
ISA_VARIABLE, DEFAULT_ISA = "ONEDNN_MAX_CPU_ISA", "AVX2"
if "tensorflow" not in sys.modules:  # else oneDNN has read it already: left as it was then
    os.environ.setdefault(ISA_VARIABLE, DEFAULT_ISA)

# ---- Settings ------------------------------------------------------------------
PROG = "senet_lenet.py"
OUT_DIR = "outputs"
LEARNING_RATES = {"adam": 0.001, "sgd": 0.01}  # the assignment's, per optimizer
FORMAT = 2  # run.json's layout; a folder written by an older version is refused
STEPS_PER_CALL = 50  # training steps per tf.function call: speed only, not results
EVAL_BATCH_SIZE = 1000  # test images per call: speed only, not results
MNIST_FILES = {  # split -> (images, labels, records), as the MNIST distribution names them (.gz or plain)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}
# What a run writes in its folder; it removes nothing else (visualize.py's names are in its own docstring).
RUN_FILES = ("run.json", "history.csv", "selenet.weights.h5", "selenet.keras", "model_summary.txt")
RUN_FILES += ("training_curves.png", "SELeNet.png", "SELeNet.dot", "LeNet5.png", "LeNet5.dot")
CHECKPOINTS, LOGS = "checkpoints", "logs"  # checkpoints/epoch-N.*, checkpoints/checkpoint; logs/{train,validation}/


class UsageError(Exception):
    """Bad input (a flag, the data, a run folder): one line, exit code 2."""


class Stopped(Exception):
    """SIGINT or SIGTERM, noted and acted on between chunks of steps: exit code 128 + its number."""


def number(low=1, high=math.inf, kind=int, above=False):
    """An argparse type: a `kind` from low (or above it) up to high (a whole number: high too; a float: below it)."""

    def check(text):
        try:
            value = kind(text)
            if not math.isfinite(value):
                raise ValueError
        except ValueError:
            kind_name = "whole" if kind is int else "finite"
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind_name} number") from None
        if not ((low < value) if above else (low <= value)) or not (value <= high if kind is int else value < high):
            top = f" and {'at most' if kind is int else 'below'} {high}" if high < math.inf else ""
            raise argparse.ArgumentTypeError(f"must be {'above' if above else 'at least'} {low}{top}")
        return value

    return check


# setting -> (flag, argparse options); the defaults are the assignment's. run.json records them all.
SETTINGS = {
    "epochs": ("--epochs", dict(type=number(), default=10, help="passes over the training set")),
    "batch_size": ("--batch-size", dict(type=number(), default=100, help="images per training step")),
    "optimizer": ("--optimizer", dict(choices=sorted(LEARNING_RATES), default="adam", help="the optimizer")),
    "lr": ("--lr", dict(type=number(0, kind=float, above=True), help="learning rate (default: 0.001 adam, 0.01 sgd)")),
    "momentum": ("--momentum", dict(type=number(0, 1, kind=float), default=0.0, help="SGD's momentum")),
    "reduction": ("--reduction", dict(type=number(1, 16), default=4, help="SE reduction r: 16 // r hidden units")),
    "se": ("--no-se", dict(action="store_false", dest="se", help="plain LeNet-5, without the SE block")),
    "seed": ("--seed", dict(type=number(0, 2**32 - 1), default=0, help="seeds the weights and the data order")),
    "threads": ("--threads", dict(type=number(0, 1024), default=1, help="TensorFlow's threads: the bits follow it")),
    "train_samples": ("--train-samples", dict(type=number(), help="train on the first N training images only")),
    "test_samples": ("--test-samples", dict(type=number(), help="test on the first N test images only")),
}


class ArgumentParser(argparse.ArgumentParser):
    """argparse, a bad flag answered in one line (exit code 2), no abbreviated flags."""

    def __init__(self, prog, description):
        super().__init__(prog=prog, description=description, allow_abbrev=False)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parser():
    p = ArgumentParser(PROG, __doc__.split("\n")[0])
    for flag, options in SETTINGS.values():
        p.add_argument(flag, **options)
    p.add_argument("--data-dir", help="folder with the four MNIST IDX files (default: $MNIST_DIR, else download)")
    isas = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "DEFAULT")
    text = f"oneDNN's instruction-set cap, the bits follow it (default: ${ISA_VARIABLE}, else {DEFAULT_ISA})"
    p.add_argument("--isa", type=str.upper, choices=isas, help=text)
    p.add_argument("--out-dir", default=OUT_DIR, help=f"where the run's files go (default: {OUT_DIR})")
    p.add_argument("--resume", action="store_true", help="continue the run in --out-dir (--epochs may change)")
    p.add_argument("--overwrite", action="store_true", help="replace the run that --out-dir holds")
    return p


def settings_of(args):
    """The run's settings from parsed flags: a dict of SETTINGS' names, lr filled in by the optimizer."""
    settings = {name: getattr(args, name) for name in SETTINGS}
    settings["lr"] = settings["lr"] or LEARNING_RATES[settings["optimizer"]]
    if settings["momentum"] and settings["optimizer"] != "sgd":
        raise UsageError("--momentum is SGD's: use it with --optimizer sgd")
    return settings


def exit_at_once(signum, frame):  # until TensorFlow has loaded: nothing is written yet
    print(f"{PROG}: stopped by {signal.Signals(signum).name} before training started", file=sys.stderr, flush=True)
    os._exit(128 + signum)


if __name__ == "__main__":
    _isa = parser().parse_args().isa  # --help and a bad flag are answered before TensorFlow loads (seconds)
    if _isa:
        os.environ[ISA_VARIABLE] = _isa
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, exit_at_once)

import keras
import numpy as np
import tensorflow as tf
from keras import layers


# ---- Data ----------------------------------------------------------------------
def read_idx(path, shape):
    """An IDX file of unsigned bytes (.gz or plain) as a uint8 array of `shape`; UsageError saying what is wrong."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise UsageError(f"{path}: cannot read: {e}") from e
    header = 4 * (1 + len(shape))
    if data[:4] != bytes([0, 0, 8, len(shape)]):  # unsigned bytes, len(shape) dimensions
        raise UsageError(f"{path}: not an MNIST IDX file (its first bytes are {data[:4].hex() or 'missing'})")
    found = tuple(int.from_bytes(data[i : i + 4], "big") for i in range(4, header, 4))
    if found != shape or len(data) != header + int(np.prod(shape)):
        raise UsageError(
            f"{path}: holds {found} in {len(data)} bytes, expected MNIST's {shape}: damaged or another file"
        )
    array = np.frombuffer(data, np.uint8, offset=header).reshape(shape)
    if len(shape) == 1 and array.max() > 9:
        raise UsageError(f"{path}: label {array.max()} is not a digit")
    return array


def load_mnist(data_dir=None):
    """((train images, labels), (test images, labels)) as uint8: the four IDX files in data_dir (else $MNIST_DIR),
    else keras.datasets.mnist's download."""
    data_dir = data_dir or os.environ.get("MNIST_DIR")
    if not data_dir:
        try:
            return keras.datasets.mnist.load_data()
        except Exception as e:  # urllib, ssl and Keras raise many types offline
            raise UsageError(
                f"could not download MNIST ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}); "
                "offline, pass --data-dir DIR (or set MNIST_DIR), DIR holding the four MNIST IDX files"
            ) from e
    if not os.path.isdir(data_dir):
        raise UsageError(f"MNIST data directory {data_dir} does not exist")
    splits = []
    for images, labels, records in MNIST_FILES.values():
        paths = []
        for name in (images, labels):
            found = [
                os.path.join(data_dir, n) for n in (name, name + ".gz") if os.path.isfile(os.path.join(data_dir, n))
            ]
            if not found:
                raise UsageError(f"{data_dir} lacks the MNIST file {name} (.gz or plain)")
            paths.append(found[0])
        splits.append((read_idx(paths[0], (records, 28, 28)), read_idx(paths[1], (records,))))
    return tuple(splits)


def first(data, samples):
    return data[0][:samples], data[1][:samples]


def pass_order(seed, pass_number, size):
    """The order of one pass over the training data (passes count from 1): a function of the seed and the pass only,
    so that a resumed run sees what an uninterrupted one sees."""
    return np.random.default_rng([seed, pass_number]).permutation(size).astype(np.int32)


def epoch_chunks(seed, epoch, size, batch_size, steps_per_epoch):
    """(last step of the epoch, images' order) of each tf.function call of an epoch: at most STEPS_PER_CALL steps,
    all in one pass. The run's steps go pass after pass; with one pass an epoch (the default) epoch N is pass N."""
    steps_per_pass = -(-size // batch_size)
    start = (epoch - 1) * steps_per_epoch
    step, end, order = start, start + steps_per_epoch, None
    while step < end:
        done, in_pass = divmod(step, steps_per_pass)
        last = min(step + STEPS_PER_CALL, end, (done + 1) * steps_per_pass)
        if in_pass == 0 or order is None:
            order = pass_order(seed, done + 1, size)
        yield last - start, order[in_pass * batch_size : (last - done * steps_per_pass) * batch_size]
        step = last


# ---- Model ---------------------------------------------------------------------
def scale_channels(x, excitation, name="se"):
    """x (N, H, W, C) with each channel multiplied by its excitation (N, C)."""
    scale = layers.Reshape((1, 1, x.shape[-1]), name=f"{name}_excite")(excitation)  # (N, 1, 1, C)
    return layers.Multiply(name=f"{name}_scale")([x, scale])


def se_block(x, reduction=4, name="se"):
    """Squeeze-and-Excitation on x (N, H, W, C): (x rescaled per channel, the excitation (N, C))."""
    channels = x.shape[-1]
    squeezed = layers.GlobalAveragePooling2D(name=f"{name}_squeeze")(x)  # (N, C)
    reduced = layers.Dense(channels // reduction, activation="relu", use_bias=False, name=f"{name}_reduce")(squeezed)
    excitation = layers.Dense(channels, activation="sigmoid", use_bias=False, name=f"{name}_expand")(reduced)
    return scale_channels(x, excitation, name), excitation  # (N, H, W, C), (N, C) each in (0, 1)


def build_model(reduction=4, se=True, blocks=None):
    """LeNet-5 with the SE block after conv2: outputs [predictions (N, 10), excitation (N, 16)]; without SE,
    predictions only. blocks: {"conv1" or "conv2": block(x) -> (x scaled, excitation)} instead (ablation.py's)."""
    if blocks is None:
        blocks = {"conv2": lambda x: se_block(x, reduction)} if se else {}
    excitations = []

    def after(conv, x):
        if conv not in blocks:
            return x
        x, excitation = blocks[conv](x)
        excitations.append(excitation)
        return x

    image = keras.Input(shape=(28, 28), dtype="uint8", name="image")  # raw MNIST: 0-255
    x = layers.Rescaling(1 / 255, name="rescale")(image)
    x = layers.Reshape((28, 28, 1), name="add_channel")(x)
    x = after("conv1", layers.Conv2D(6, 5, activation="relu", name="conv1")(x))  # (N, 24, 24, 6)
    x = layers.MaxPooling2D(2, padding="same", name="pool1")(x)  # (N, 12, 12, 6)
    x = after("conv2", layers.Conv2D(16, 5, activation="relu", name="conv2")(x))  # (N, 8, 8, 16)
    x = layers.MaxPooling2D(2, padding="same", name="pool2")(x)  # (N, 4, 4, 16)
    x = layers.Flatten(name="flatten")(x)  # (N, 256)
    x = layers.Dense(120, activation="relu", name="fc1")(x)
    x = layers.Dense(84, activation="relu", name="fc2")(x)
    predictions = layers.Dense(10, activation="softmax", name="predictions")(x)
    name = "SELeNet" if blocks else "LeNet5"
    return keras.Model(image, [predictions, *excitations] if excitations else predictions, name=name)


def outputs(model, images, training=False):
    """(predictions, [excitation of each SE block]) of a model with or without SE."""
    result = model(images, training=training)
    return (result[0], list(result[1:])) if isinstance(result, (list, tuple)) else (result, [])


def predict(model, inputs):
    """(predictions, [excitations]) as NumPy, EVAL_BATCH_SIZE images a call; inputs: the images, or a list of
    arrays for a model of several inputs."""
    inputs = inputs if isinstance(inputs, list) else [inputs]
    step = tf.function(lambda *batch: outputs(model, list(batch) if len(batch) > 1 else batch[0]))
    results = [step(*(x[i : i + EVAL_BATCH_SIZE] for x in inputs)) for i in range(0, len(inputs[0]), EVAL_BATCH_SIZE)]
    predictions = np.concatenate([p.numpy() for p, _ in results])
    return predictions, [np.concatenate([e[b].numpy() for _, e in results]) for b in range(len(results[0][1]))]


# ---- Training ------------------------------------------------------------------
def use_threads(threads):
    """`threads` intra-op threads and one inter-op thread: the bits follow them, so they are a setting."""
    config = tf.config.threading
    if (config.get_intra_op_parallelism_threads(), config.get_inter_op_parallelism_threads()) == (threads, 1):
        return
    try:
        config.set_intra_op_parallelism_threads(threads)
        config.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow takes them only before its first op
        raise UsageError(
            f"TensorFlow already runs with other threads in this process; --threads {threads} needs a new "
            "process (in a notebook: !python senet_lenet.py ...)"
        ) from None


def seeded_model(settings, build=None):
    """The run's model, built after its threads, seeds and deterministic ops are set: the same bits every time."""
    use_threads(settings["threads"])
    keras.utils.set_random_seed(settings["seed"])
    tf.config.experimental.enable_op_determinism()
    return build() if build else build_model(settings["reduction"], settings["se"])


def make_optimizer(settings, model):
    if settings["optimizer"] == "sgd":
        optimizer = keras.optimizers.SGD(settings["lr"], momentum=settings["momentum"])
    else:
        optimizer = keras.optimizers.Adam(settings["lr"])
    optimizer.build(model.trainable_variables)
    return optimizer


def train(model, optimizer, settings, data, history=(), on_epoch_end=None, check=None, log=print, steps=None, bar=True):
    """Trains from the epoch after `history` to settings["epochs"]; returns the history. on_epoch_end(history,
    test excitations) after each epoch; check() between chunks of steps; steps: per epoch (default: one pass);
    bar: a progress bar on a terminal (redirected, its carriage returns would be noise)."""
    (x_train, y_train), (x_test, y_test) = (tuple(map(tf.constant, part)) for part in data)
    batch_size, size = settings["batch_size"], len(data[0][1])
    steps = steps or -(-size // batch_size)
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    loss, accuracy = keras.metrics.Mean(), keras.metrics.SparseCategoricalAccuracy()
    test_loss, test_accuracy = keras.metrics.Mean(), keras.metrics.SparseCategoricalAccuracy()

    def train_step(images, labels):
        with tf.GradientTape() as tape:
            predictions, _ = outputs(model, images, training=True)
            batch_loss = loss_fn(labels, predictions)
        gradients = tape.gradient(batch_loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        loss.update_state(batch_loss, sample_weight=tf.shape(labels)[0])  # a last, smaller batch counts per image
        accuracy.update_state(labels, predictions)

    # All the steps of a chunk in one call: a step takes milliseconds, and Python's per-call overhead is not small.
    signature = [
        tf.TensorSpec([None, 28, 28], tf.uint8),
        tf.TensorSpec([None], tf.uint8),
        tf.TensorSpec([None], tf.int32),
    ]

    @tf.function(input_signature=signature)
    def train_steps(images, labels, order):
        for step in tf.range((tf.shape(order)[0] + batch_size - 1) // batch_size):
            batch = order[step * batch_size : (step + 1) * batch_size]
            train_step(tf.gather(images, batch), tf.gather(labels, batch))
        # The loss alone can stay finite while weights overflow: the cross-entropy clips the probabilities.
        finite = [tf.reduce_all(tf.math.is_finite(v)) for v in model.trainable_variables]
        return tf.reduce_all([tf.math.is_finite(loss.result()), *finite])

    @tf.function
    def test_step(images, labels):
        predictions, excitations = outputs(model, images)
        test_loss.update_state(loss_fn(labels, predictions), sample_weight=tf.shape(labels)[0])
        test_accuracy.update_state(labels, predictions)
        return excitations

    history = list(history)
    for epoch in range(len(history) + 1, settings["epochs"] + 1):
        started = time.perf_counter()
        for metric in (loss, accuracy, test_loss, test_accuracy):
            metric.reset_state()
        progbar = keras.utils.Progbar(
            steps, verbose=int(bar and sys.stdout.isatty()), stateful_metrics=["loss", "accuracy"]
        )
        for last_step, order in epoch_chunks(settings["seed"], epoch, size, batch_size, steps):
            if not train_steps(x_train, y_train, order):  # before this epoch's checkpoint: the last one is finite
                raise FloatingPointError(
                    f"training diverged in epoch {epoch} by step {last_step}: loss {float(loss.result()):.4g}, and "
                    "weights or loss are no longer finite numbers; lower --lr"
                )
            # accuracy in percent, as the epoch line prints it
            progbar.update(last_step, [("loss", float(loss.result())), ("accuracy", 100 * float(accuracy.result()))])
            if check:
                check()
        batches = [
            test_step(x_test[i : i + EVAL_BATCH_SIZE], y_test[i : i + EVAL_BATCH_SIZE])
            for i in range(0, len(y_test), EVAL_BATCH_SIZE)
        ]
        excitations = [np.concatenate([b[k].numpy() for b in batches]) for k in range(len(batches[0]))]
        history.append({
            "epoch": epoch,
            "loss": round(float(loss.result()), 6),
            "accuracy": round(100 * float(accuracy.result()), 4),  # percent: 4 decimals hold one test image
            "test_loss": round(float(test_loss.result()), 6),
            "test_accuracy": round(100 * float(test_accuracy.result()), 4),
            "seconds": round(time.perf_counter() - started, 3),
        })  # fmt: skip
        log(epoch_line(history[-1]))
        if on_epoch_end:
            on_epoch_end(history, excitations)
    return history


def plural(count, word):
    return f"{count} {word}{'' if count == 1 else 's'}"


def epoch_line(r):
    return (
        f"Epoch {r['epoch']}, Loss: {r['loss']:.4f}, Accuracy: {r['accuracy']:.2f}, "
        f"Test Loss: {r['test_loss']:.4f}, Test Accuracy: {r['test_accuracy']:.2f}"
    )


# ---- The run folder: checkpoints, TensorBoard, saving ----------------------------
def write_whole(path, write):
    """write(temporary) beside `path`, then a rename over it: a file is whole or absent, never half-written."""
    temporary = os.path.join(os.path.dirname(path), ".tmp-" + os.path.basename(path))  # keeps the extension Keras reads
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def write_text(path, text):
    write_whole(path, lambda temporary: pathlib.Path(temporary).write_text(text, "utf-8", newline="\n"))


def csv_text(rows, fields):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def sha256(path):
    with contextlib.suppress(OSError), open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# Everything the project writes in a run folder (visualize.py's too); --overwrite and a new run remove these
# names, and nothing else: a user's other files there are never touched.
OWN_NAMES = (*RUN_FILES, ".tmp-*", f"{CHECKPOINTS}/checkpoint", f"{CHECKPOINTS}/epoch-*", f"{CHECKPOINTS}/.tmp-*")
OWN_NAMES += (f"{LOGS}/train/events.out.tfevents.*", f"{LOGS}/validation/events.out.tfevents.*")
DRAWN = ("se_features/[0-9]*_se_feature.png", "se_features.npz", "se_class_mean.png", "se_class_profile.png")
DRAWN += ("se_anatomy.png", "excitation_role.csv", "compare_[0-9]*.png")
OWN_FOLDERS = (f"{LOGS}/train", f"{LOGS}/validation", LOGS, CHECKPOINTS, "se_features")


def remove_own(out_dir, names):
    """Removes what matches the project's `names` in out_dir, then its folders that are left empty."""
    for name in names:
        for path in glob.glob(name, root_dir=out_dir, include_hidden=True):
            path = os.path.join(out_dir, path)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    for folder in OWN_FOLDERS:
        with contextlib.suppress(OSError):  # not there, or holding a file of the user's
            os.rmdir(os.path.join(out_dir, folder))


def check_settings(settings):
    """ValueError unless `settings` are what this version's flags can give (run.json may have been edited)."""
    if set(settings) != set(SETTINGS):
        raise ValueError(f"its settings are not {', '.join(SETTINGS)}")
    for name, (flag, options) in SETTINGS.items():
        value = settings[name]
        if name == "se":
            good = isinstance(value, bool)
        elif value is None or isinstance(value, bool):
            good = value is None and name.endswith("_samples")
        elif "choices" in options:
            good = value in options["choices"]
        else:
            parsed = options["type"](str(value))  # the flag's own check: ArgumentTypeError if it refuses
            good = parsed == value and type(parsed) is type(value)
        if not good:
            raise ValueError(f"{name} = {value!r} is not a value of {flag}")


def read_run(out_dir):
    """run.json of out_dir, checked (None where there is none); UsageError if an older version wrote it, or it is
    damaged or was edited into something no run writes."""
    path = os.path.join(out_dir, "run.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        if run.get("format") != FORMAT:
            raise ValueError(f"format {run.get('format')!r}, not {FORMAT}")
        check_settings(run["settings"])
        history, epochs = run["history"], run["settings"]["epochs"]
        if [r["epoch"] for r in history] != list(range(1, len(history) + 1)) or len(history) > epochs:
            raise ValueError("its history is not epochs 1, 2, 3, ...")
        numbers = [r[key] for r in history for key in ("loss", "accuracy", "test_loss", "test_accuracy", "seconds")]
        if not all(isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers):
            raise ValueError("its history holds something other than numbers")
        if not isinstance(run["finished"], bool) or run["finished"] and len(history) != epochs:
            raise ValueError(f"finished = {run['finished']!r} with {len(history)} of {epochs} epochs done")
        if not isinstance(run["sha256"], dict):
            raise ValueError("its sha256 is not a table of files")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, argparse.ArgumentTypeError) as e:
        raise UsageError(
            f"{path} is not a run.json of this version of {PROG} ({type(e).__name__}: {e}); "
            "replace the run with --overwrite, or choose another --out-dir"
        ) from None
    return run


@functools.cache
def onednn_isa():
    """The instruction set oneDNN says it uses under this process's cap ("Intel AVX2"), or why none is known:
    TensorFlow tells it nowhere, so a probe process with the same environment asks oneDNN's verbose mode."""
    probe = "import tensorflow as tf; tf.nn.conv2d(tf.ones([1, 4, 4, 1]), tf.ones([2, 2, 1, 1]), 1, 'VALID')"
    try:
        env = {**os.environ, "ONEDNN_VERBOSE": "1"}
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown: the probe failed ({type(e).__name__})"
    found = re.search(r"^onednn_verbose,.*?,isa:(.*)$", done.stdout, re.MULTILINE)
    return found[1].strip() if found else "none reported: TensorFlow does not use oneDNN here"


def machine():
    """What a run's bits depend on besides its settings: the versions, the CPU (its model name) and the instruction
    set oneDNN uses (with its cap, and how it was found)."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    versions = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__}
    versions["numpy"] = np.__version__
    isa = {"onednn": onednn_isa(), "cap": os.environ.get(ISA_VARIABLE, "none")}
    isa["found_by"] = "ONEDNN_VERBOSE=1 in a probe process with this process's environment"
    return {
        "versions": versions,
        "machine": {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "isa": isa},
    }


def save_run_json(out_dir, settings, model, history, steps, images, study=None, files=None):
    """run.json and history.csv up to history[-1]; `files` (their SHA-256 and the diagram): the finished run's."""
    fields = ["epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds"]
    write_text(os.path.join(out_dir, "history.csv"), csv_text(history, fields))
    run = {"format": FORMAT, "settings": settings, **({"study": study} if study else {})}
    run["model"] = {"name": model.name, "parameters": model.count_params()}
    run["training"] = {"images": images, "steps": steps * len(history)}
    run["history"], run["finished"] = history, files is not None and len(history) == settings["epochs"]
    run.update(files or {"sha256": {}}, **machine())
    write_text(os.path.join(out_dir, "run.json"), json.dumps(run, indent=2) + "\n")
    return run


def restore_newest(manager, checkpoint, warn):
    """The history up to the newest checkpoint that restores (the model and optimizer now hold it); a damaged one
    is passed over in one line. TensorFlow checksums the data: a damaged file is an error, never other weights."""
    for path in reversed(manager.checkpoints):
        try:
            checkpoint.restore(path).assert_consumed()
            history = json.loads(checkpoint.history.numpy().decode())
            if len(history) != int(path.rsplit("-", 1)[1]):
                raise ValueError(f"it holds {len(history)} epochs")
            return history
        except Exception as e:  # DataLossError, NotFoundError, ...: TensorFlow's many ways to say damaged
            warn(f"skipped checkpoint {path}: {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}")
    return []


def log_epoch(writers, record, excitations):
    """TensorBoard, named as Keras's callback names it (a model.fit run overlays ours): loss, accuracy (a fraction),
    each SE channel's excitation over the test set as a histogram."""
    for writer, prefix in zip(writers, ("", "test_"), strict=True):
        with writer.as_default(step=record["epoch"]):
            tf.summary.scalar("epoch_loss", record[f"{prefix}loss"])
            tf.summary.scalar("epoch_accuracy", record[f"{prefix}accuracy"] / 100)
    with writers[1].as_default(step=record["epoch"]):
        for block, excitation in enumerate(excitations):
            tag = "excitation" if len(excitations) == 1 else f"excitation_{block + 1}"
            for channel in range(excitation.shape[1]):
                tf.summary.histogram(f"{tag}/channel_{channel:02d}", excitation[:, channel])
    for writer in writers:
        writer.flush()


def save_figures(model, history, out_dir, warn):
    """The summary, the diagram (plot_model; SELeNet.dot without Graphviz) and the training curves; the diagram's
    name."""
    from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left alone

    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    write_text(os.path.join(out_dir, "model_summary.txt"), "\n".join(lines) + "\n")
    options = dict(show_shapes=True, show_layer_names=True, show_layer_activations=True, dpi=96)
    diagram = f"{model.name}.png" if shutil.which("dot") else f"{model.name}.dot"
    if diagram.endswith(".png"):
        write_whole(os.path.join(out_dir, diagram), lambda path: keras.utils.plot_model(model, to_file=path, **options))
    else:
        write_text(os.path.join(out_dir, diagram), keras.utils.model_to_dot(model, **options).to_string())
        warn(
            f"warning: Graphviz's `dot` was not found, so {diagram} holds the diagram's source: install Graphviz "
            f"(apt-get/brew/winget install graphviz) and run again, or: dot -Tpng {diagram} -o {model.name}.png"
        )
    figure = Figure(figsize=(10, 4), layout="constrained")
    for axes, key, label in zip(figure.subplots(1, 2), ("loss", "accuracy"), ("loss", "accuracy (%)"), strict=True):
        axes.plot([r["epoch"] for r in history], [r[key] for r in history], "o-", label="train")
        axes.plot([r["epoch"] for r in history], [r[f"test_{key}"] for r in history], "s-", label="test")
        axes.set(xlabel="epoch", ylabel=label)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.suptitle(f"{model.name} on MNIST")
    write_whole(os.path.join(out_dir, "training_curves.png"), lambda path: figure.savefig(path, format="png", dpi=100))
    return diagram


def train_run(settings, data, out_dir, resume=False, build=None, steps=None, study=None, check=None, **printing):
    """Trains one run into out_dir (checked by the caller) and saves it; returns its run.json contents.
    resume: from the newest checkpoint that restores (none: from the start). build() -> model, steps per epoch,
    study (recorded in run.json): the study's. printing: log and warn (print), verbose (summary, progress bar)."""
    log, warn, verbose = printing.get("log", print), printing.get("warn", print), printing.get("verbose", True)
    model = seeded_model(settings, build)
    optimizer = make_optimizer(settings, model)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, history=tf.Variable("[]"))
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(out_dir, CHECKPOINTS), 2, checkpoint_name="epoch")
    history = restore_newest(manager, checkpoint, warn) if resume else []
    remove_own(out_dir, DRAWN + (RUN_FILES[2:] if resume else OWN_NAMES))  # what older weights drew goes
    images, steps = len(data[0][1]), steps or -(-len(data[0][1]) // settings["batch_size"])
    save_run_json(out_dir, settings, model, history, steps, images, study)
    if resume:
        log(f"Resuming {out_dir} after epoch {len(history)} of {settings['epochs']}")
    if verbose:
        model.summary(print_fn=lambda line, **kwargs: log(line))
        log(
            f"Training on {images} images, testing on {len(data[1][1])}: {settings['optimizer']} lr {settings['lr']}, "
            f"batch {settings['batch_size']}, {plural(settings['epochs'], 'epoch')} of {plural(steps, 'step')}, "
            f"seed {settings['seed']}"
        )
    writers = [tf.summary.create_file_writer(os.path.join(out_dir, LOGS, run)) for run in ("train", "validation")]

    def on_epoch_end(history, excitations):  # a stop loses at most the epoch under way
        log_epoch(writers, history[-1], excitations)
        checkpoint.history.assign(json.dumps(history))
        manager.save(checkpoint_number=history[-1]["epoch"])
        save_run_json(out_dir, settings, model, history, steps, images, study)

    try:
        history = train(model, optimizer, settings, data, history, on_epoch_end, check, log, steps, verbose)
    finally:
        for writer in writers:
            writer.close()
    files = {"sha256": {}, "diagram": save_figures(model, history, out_dir, warn)}
    for name, save in (("selenet.weights.h5", model.save_weights), ("selenet.keras", model.save)):
        write_whole(os.path.join(out_dir, name), save)
        files["sha256"][name] = sha256(os.path.join(out_dir, name))
    return save_run_json(out_dir, settings, model, history, steps, images, study, files)  # last: says finished


# ---- A trained run, for visualize.py and explore.py --------------------------
def load_run(run_dir, threads=None):
    """(run.json, the model with its weights) of a finished SE run of this script, for visualize.py and
    explore.py; UsageError otherwise. TensorFlow runs with the run's threads (or `threads`), set before its first op."""
    if not os.path.isdir(run_dir):
        raise UsageError(f"run directory {run_dir} does not exist; train first: python {PROG}")
    run = read_run(run_dir)
    again = command(PROG, "--out-dir", run_dir, "--resume")
    if run is None:
        raise UsageError(f"{run_dir} holds no run.json: is it a run folder of {PROG}?")
    if "study" in run:
        raise UsageError(f"{run_dir} is a run of the study's (ablation.py); this shows {PROG}'s runs")
    if not run["finished"]:
        done = plural(len(run["history"]), "epoch")
        raise UsageError(f"{run_dir} is unfinished ({done} done); finish it with: {again}")
    if not run["settings"]["se"]:
        raise UsageError(f"{run_dir} is a run without the SE block (--no-se): it has no excitations to draw")
    path = os.path.join(run_dir, "selenet.weights.h5")
    if sha256(path) != run["sha256"].get("selenet.weights.h5"):
        state = "is missing" if not os.path.exists(path) else "is not the file the run saved (its SHA-256 differs)"
        raise UsageError(f"{path} {state}; write it again from the run's checkpoint with: {again}")
    use_threads(run["settings"]["threads"] if threads is None else threads)
    model = build_model(run["settings"]["reduction"])
    model.load_weights(path)
    return run, model


def with_excitation(model):
    """The trained model, sharing its layers, with each SE block's excitation given instead of computed: inputs
    [image, one (N, C) per block], output the predictions; so that another excitation can take the learned one's
    place (visualize.py's excitation role, explore.py)."""
    image = keras.Input((28, 28), dtype="uint8", name="image")
    given, x = [], image
    for layer in model.layers[1:]:  # in the graph's order: a chain, but for the SE blocks' branches
        if isinstance(layer, layers.Multiply):  # the block's scale: by the given excitation instead
            given.append(keras.Input((x.shape[-1],), name=f"{layer.name}_given"))
            x = scale_channels(x, given[-1], layer.name.removesuffix("_scale"))
        elif not layer.name.startswith("se"):  # the rest of the block computes the excitation: left out
            x = layer(x)
    return keras.Model([image, *given], x)


# ---- Command line --------------------------------------------------------------
def command(*args):
    """A command line for this platform's shell (cmd.exe and PowerShell quote with double quotes)."""
    return (subprocess.list2cmdline if os.name == "nt" else shlex.join)(["python", *args])


def prepare_folder(args, typed):
    """The settings of the run to train in args.out_dir, after refusing what it must not replace; None when a
    resumed run has nothing left to do. typed: the flags given on the command line."""
    out_dir = args.out_dir
    try:
        os.makedirs(out_dir, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as e:
        raise UsageError(f"cannot write to output directory {out_dir}: {e.strerror}") from None
    run = None if args.overwrite and not args.resume else read_run(out_dir)
    if not args.resume:
        if run is not None:
            done = len(run["history"])
            state = "a finished run" if run["finished"] else f"an unfinished run ({plural(done, 'epoch')} done)"
            hint = "" if run["finished"] else "continue it with --resume, "
            raise UsageError(f"{out_dir} holds {state}; {hint}replace it with --overwrite, or choose another --out-dir")
        if not os.path.isfile(os.path.join(out_dir, "run.json")):
            theirs = [n for n in os.listdir(out_dir) if os.path.isfile(os.path.join(out_dir, n)) and n[0] != "."]
            if theirs:
                raise UsageError(
                    f"{out_dir} holds files but no run ({theirs[0]}, ...); choose an empty or new --out-dir"
                )
        return settings_of(args)
    if run is None:
        raise UsageError(f"nothing to resume in {out_dir}: it holds no run.json; start the run without --resume")
    settings = run["settings"]
    for name, (flag, _) in SETTINGS.items():
        value = getattr(args, name) if name != "lr" else settings_of(args)["lr"]
        if flag in typed and name != "epochs" and value != settings[name]:
            raise UsageError(f"{flag} conflicts with the run in {out_dir}, which has {name} = {settings[name]!r}")
    done, epochs = len(run["history"]), args.epochs if "--epochs" in typed else settings["epochs"]
    if epochs < done:
        raise UsageError(f"--epochs {epochs} is fewer than the {plural(done, 'epoch')} done in {out_dir}")
    whole = all(sha256(os.path.join(out_dir, name)) == digest for name, digest in run["sha256"].items())
    if run["finished"] and epochs == done and whole:
        print(f"{out_dir} already finished its {plural(done, 'epoch')}: nothing to resume")
        return None
    return {**settings, "epochs": epochs}


@contextlib.contextmanager
def signals_noted():
    """SIGINT (Ctrl-C) and SIGTERM only note themselves; check() stops the run with Stopped between chunks of
    steps, never inside a file. In a thread other than the main one (a notebook's) the handlers stay."""
    noted = []

    def check():
        if noted:
            raise Stopped(noted[0])

    main_thread = threading.current_thread() is threading.main_thread()
    previous = (
        {s: signal.signal(s, lambda n, f: noted.append(n)) for s in (signal.SIGINT, signal.SIGTERM)}
        if main_thread
        else {}
    )
    try:
        yield check
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv=None):
    for stream in (sys.stdout, sys.stderr):  # a console that cannot encode the summary's lines prints "?"
        with contextlib.suppress(AttributeError):
            stream.reconfigure(errors="replace", line_buffering=True)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    try:
        if args.isa and args.isa != os.environ.get(ISA_VARIABLE):  # main() called where TensorFlow has loaded
            raise UsageError(f"--isa {args.isa} needs a new process: oneDNN read its cap when TensorFlow loaded")
        with signals_noted() as check:
            settings = prepare_folder(args, {arg.split("=")[0] for arg in argv})
            if settings is None:
                return 0
            train_data, test_data = load_mnist(args.data_dir)
            data = first(train_data, settings["train_samples"]), first(test_data, settings["test_samples"])
            if settings["batch_size"] > len(data[0][1]):
                raise UsageError(f"--batch-size {settings['batch_size']} is more than the {len(data[0][1])} images")
            check()
            train_run(settings, data, args.out_dir, args.resume, check=check, warn=lambda s: print(s, file=sys.stderr))
            check()  # a signal while the last files were written: reported, not lost
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except (FloatingPointError, OSError, tf.errors.OpError) as e:  # divergence, a full disk
        print(f"\n{PROG}: error: {e}", file=sys.stderr)
        return 1
    except (Stopped, KeyboardInterrupt) as e:
        signum = e.args[0] if isinstance(e, Stopped) else signal.SIGINT
        run = read_run(args.out_dir) or {"finished": False, "history": []}
        saved = plural(len(run["history"]), "epoch")
        done = "after the run finished" if run["finished"] else f"with {saved} saved"
        given = [(flag, value) for flag, value in (("--data-dir", args.data_dir), ("--isa", args.isa)) if value]
        again = [PROG, "--out-dir", args.out_dir, *(part for pair in given for part in pair), "--resume"]
        print(
            f"\n{PROG}: stopped by {signal.Signals(signum).name} {done}; continue with: {command(*again)}",
            file=sys.stderr,
        )
        return 128 + signum
    print(f"Saved the run to {args.out_dir}/ (weights, run.json, history.csv, figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
