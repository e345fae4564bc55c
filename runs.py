"""A run folder: its files, written atomically; checkpoints; stopping on a signal; resume rules;
and the command-line pieces every script shares (one-line errors, argument types).

    OUT/run.json          settings, per-epoch history, final accuracies (after every epoch)
    OUT/history.csv       the history as CSV (after every epoch)
    OUT/checkpoints/      the state after each of the last two epochs, for --resume
"""

import argparse
import contextlib
import csv
import io
import json
import math
import os
import shutil
import signal
import sys

import numpy as np

from mnist import MNISTDataError
from settings import LEARNING_RATES, Settings, SettingsError, se_hidden_units

WEIGHTS_FILE = "selenet.weights.h5"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds"]
# Checkpoints: OUT/checkpoints/epoch_NNNN/ with the model's weights, the
# optimizer's variables and the history. The data order of an epoch depends only
# on the seed and the epoch, so nothing else is needed to continue bit for bit.
CHECKPOINT_DIR = "checkpoints"
KEEP_CHECKPOINTS = 2


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


class RunNotFound(UsageError):
    """No run.json where a run was expected."""


USER_ERRORS = (UsageError, MNISTDataError, SettingsError)  # each reported as one line, exit code 2


def report_error(prog, error):
    """Prints a user error as one line on stderr; returns the exit code 2."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return 2


# ----------------------------------------------------------------------------
# Files, each written atomically
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
        raise UsageError(f"cannot write to output directory {path}: {e.strerror}") from e


def csv_text(rows, fields):
    """Rows (dicts) as CSV text with a header line."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ----------------------------------------------------------------------------
# run.json and history.csv
# ----------------------------------------------------------------------------


def read_run(run_dir):
    """run.json of a run folder, its settings as Settings: RunNotFound if there is none,
    UsageError if it is damaged or was not written by senet_lenet.py."""
    path = os.path.join(run_dir, RUN_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            run = json.load(f)
        if not isinstance(run, dict):
            raise TypeError(f"an object expected, got {type(run).__name__}")
        missing = [key for key in ("settings", "history", "final", "finished") if key not in run]
        if missing:
            raise KeyError(f"no {', '.join(missing)}")
        run["settings"] = Settings.from_dict(run["settings"])
    except FileNotFoundError:
        raise RunNotFound(f"{path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path} is not a run.json written by senet_lenet.py ({e})") from e
    return run


def save_progress(run, out_dir):
    """run.json and history.csv, after every epoch (run["finished"] says whether it is the last)."""
    record = {**run, "settings": run["settings"].as_dict()}
    write_text(os.path.join(out_dir, RUN_FILE), json.dumps(record, indent=2) + "\n")
    write_text(os.path.join(out_dir, HISTORY_FILE), csv_text(run["history"], HISTORY_FIELDS))


# ----------------------------------------------------------------------------
# The training curves
# ----------------------------------------------------------------------------


def plot_training_curves(history, title):
    """Loss and accuracy per epoch, train against test: training_curves.png."""
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


# ----------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------


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
        raise UsageError(f"checkpoint {path} cannot be loaded: {type(e).__name__}: {e}") from e


def discard_checkpoints(out_dir):
    """Removes an earlier run's checkpoints before a new run starts in out_dir."""
    shutil.rmtree(os.path.join(out_dir, CHECKPOINT_DIR), ignore_errors=True)


# ----------------------------------------------------------------------------
# Stopping on a signal
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Resume
# ----------------------------------------------------------------------------


def run_to_resume(out_dir, given):
    """(run.json, newest checkpoint) of the run in out_dir; the checkpoint is None if the run finished.

    given: the settings typed as flags, {name: value}. UsageError if there is no run to resume,
    a given setting contradicts it or its checkpoints are gone.
    """
    try:
        run = read_run(out_dir)
    except RunNotFound:
        raise UsageError(
            f"nothing to resume in {out_dir}: no {RUN_FILE}, so no epoch was completed there; "
            "start the run without --resume"
        ) from None
    recorded = run["settings"].as_dict()
    for name, value in sorted(given.items()):
        if value != recorded[name]:
            raise UsageError(
                f"{SETTING_FLAGS[name][0]} conflicts with the run being resumed, which has {name} = "
                f"{recorded[name]!r} in {os.path.join(out_dir, RUN_FILE)}; --resume continues a run with its "
                "recorded settings"
            )
    if run["finished"]:
        return run, None
    checkpoints = checkpoint_dirs(out_dir)
    if not checkpoints:
        raise UsageError(f"no checkpoint in {os.path.join(out_dir, CHECKPOINT_DIR)} to resume from")
    return run, checkpoints[-1]


def interrupted_message(prog, interrupted, out_dir):
    """The one line that says where a stopped run can be resumed from."""
    saved = checkpoint_dirs(out_dir)
    if not saved:
        return f"{prog}: stopped by {interrupted} before the first epoch ended; nothing to resume"
    epoch = int(os.path.basename(saved[-1])[6:])
    return (
        f"{prog}: stopped by {interrupted}; epoch {epoch} is the last one saved. "
        f"Resume with: python {prog} --out-dir {out_dir} --resume"
    )


# ----------------------------------------------------------------------------
# Command-line pieces shared by the scripts
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
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def reduction_arg(text):
    value = positive_int(text)
    try:
        se_hidden_units(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return value


# setting -> (flag, argparse options, help); the defaults are Settings'
SETTING_FLAGS = {
    "epochs": ("--epochs", {"type": positive_int}, "passes over the training set"),
    "batch_size": ("--batch-size", {"type": positive_int}, "images per training step"),
    "optimizer": ("--optimizer", {"choices": sorted(LEARNING_RATES)}, "the optimizer"),
    "lr": ("--lr", {"type": positive_float}, "learning rate"),
    "reduction": ("--reduction", {"type": reduction_arg}, "SE reduction ratio r: 16 // r hidden units"),
    "se": ("--no-se", {"action": "store_false"}, "plain LeNet-5 without the SE block (for comparison)"),
    "seed": ("--seed", {"type": int}, "seeds weights and data order; same seed, same machine => same bits"),
    "train_samples": ("--train-samples", {"type": positive_int}, "train on the first N training images only"),
    "test_samples": ("--test-samples", {"type": positive_int}, "test on the first N test images only"),
}


def add_setting_flags(parser, names=tuple(SETTING_FLAGS)):
    """A flag per setting, in the namespace only when given, so that --resume can tell them from defaults."""
    defaults = Settings().as_dict()
    defaults["lr"] = ", ".join(f"{lr} for {name}" for name, lr in LEARNING_RATES.items())
    for name in names:
        flag, options, text = SETTING_FLAGS[name]
        default = "all" if defaults[name] is None else defaults[name]
        if name != "se":
            text = f"{text} (default: {default})"
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=text, **options)


def given_settings(args):
    """The settings typed as flags: {name: value}."""
    return {name: value for name, value in vars(args).items() if name in SETTING_FLAGS}


def add_data_dir_flag(parser):
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the four MNIST IDX files (.gz or plain) or mnist.npz "
        "(default: $MNIST_DIR, else download with keras.datasets.mnist)",
    )
