"""A run folder: its files, written atomically; its checkpoints' epochs; stopping on a signal.

OUT/run.json          settings, per-epoch history, final accuracies (after every epoch)
OUT/history.csv       the history as CSV (after every epoch)
OUT/checkpoints/      the state after each of the last two epochs, for --resume (checkpoints.py)
"""

import contextlib
import csv
import errno
import io
import json
import os
import platform
import shlex
import shutil
import signal
import tempfile

from settings import Settings

OUT_DIR = "outputs"  # where a run's files go unless --out-dir says otherwise
WEIGHTS_FILE = "selenet.weights.h5"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds"]
CHECKPOINT_DIR = "checkpoints"  # OUT/checkpoints/epoch-N.*: see checkpoints.py
CHECKPOINT_NAME = "epoch"
KEEP_CHECKPOINTS = 2
LOGS_DIR = "logs"  # OUT/logs/train and OUT/logs/test: TensorBoard's event files
MODEL_FILE = "selenet.keras"  # the whole model, for keras.models.load_model without this project
LOCK_FILE = ".lock"  # held (flock) by the one process that writes the folder
TEMPORARY_MARK = ".tmp"  # .NAME.tmpPID.EXT: a file being written
# What one run leaves in its folder: removed together by --overwrite, so that no two runs mix.
RUN_FILES = (
    *(WEIGHTS_FILE, MODEL_FILE, RUN_FILE, HISTORY_FILE, "model_summary.txt", "training_curves.png"),
    *("SELeNet.png", "SELeNet.dot", "LeNet5.png", "LeNet5.dot", "se_features.npz", "se_class_mean.png"),
)
RUN_DIRS = (CHECKPOINT_DIR, LOGS_DIR, "se_features")


class UsageError(Exception):
    """Bad input from the user: reported as one line, exit code 2."""


class RunNotFound(UsageError):
    """No run.json where a run was expected."""


class Diverged(Exception):
    """The training loss stopped being a finite number: one line, exit code 1."""


class WriteError(Exception):
    """A file that could not be written (a full disk, say): one line naming it, exit code 1."""


def write_failure(path, error):
    """The WriteError for `error` raised while writing `path`."""
    text = str(error)
    if getattr(error, "errno", None) == errno.ENOSPC or "No space left on device" in text:
        reason = "no space left on device"
    else:
        reason = getattr(error, "strerror", None) or next((line for line in text.splitlines() if line), "")
    return WriteError(f"cannot write {path}: {reason}; the files written before it are whole")


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
    temporary = os.path.join(directory, f".{stem}{TEMPORARY_MARK}{os.getpid()}{dot}{extensions}")
    try:
        yield temporary
        os.replace(temporary, path)
    except OSError as e:
        raise write_failure(path, e) from e
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_via_memory(path, write):
    """write(scratch_path) into a memory-backed folder, then the bytes to `path` atomically.

    For libraries that write files themselves: h5py on a full disk can crash the process, so it
    never writes to the run folder; the copy here fails with a plain OSError instead.
    """
    memory = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(dir=memory) as scratch:
        scratch_path = os.path.join(scratch, os.path.basename(path))
        write(scratch_path)
        with atomic_path(path) as temporary:
            shutil.copyfile(scratch_path, temporary)


def write_text(path, text):
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(text)


def save_figure(figure, path):
    """Writes a Matplotlib figure as a PNG and closes it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as temporary:
        figure.savefig(temporary, dpi=100)
    plt.close(figure)


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
        run["settings"] = settings = Settings.from_dict(run["settings"])
        history = run["history"]
        if not isinstance(history, list) or not all(isinstance(record, dict) for record in history):
            raise TypeError("history is not a list of epochs")
        if [record.get("epoch") for record in history] != list(range(1, len(history) + 1)):
            raise ValueError("the history's epochs are not 1, 2, 3, ...")
        if len(history) > settings.epochs:
            raise ValueError(f"the history has {len(history)} epochs, more than epochs = {settings.epochs}")
        if run["finished"] is not (len(history) == settings.epochs):
            raise ValueError(f"finished = {run['finished']} with {len(history)} of {settings.epochs} epochs done")
    except FileNotFoundError:
        raise RunNotFound(f"{path} is missing") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"{path} is not a run.json written by senet_lenet.py ({e})") from e
    return run


def run_record(model, settings, history):
    """What run.json holds: enough to rebuild the model and to resume or judge the run."""
    import keras  # loaded already: there is a model
    import numpy as np
    import tensorflow as tf

    last = history[-1]
    return {
        "settings": settings,
        "model": {"name": model.name, "parameters": model.count_params()},
        "weights": WEIGHTS_FILE,
        "final": {"train_accuracy": last["accuracy"], "test_accuracy": last["test_accuracy"]},
        "history": history,
        "finished": len(history) == settings.epochs,
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }


def save_progress(run, out_dir):
    """run.json and history.csv, after every epoch (run["finished"] says whether it is the last)."""
    record = {**run, "settings": run["settings"].as_dict()}
    write_text(os.path.join(out_dir, RUN_FILE), json.dumps(record, indent=2) + "\n")
    write_text(os.path.join(out_dir, HISTORY_FILE), csv_text(run["history"], HISTORY_FIELDS))


# ----------------------------------------------------------------------------
# The model's summary and diagram, the training curves
# ----------------------------------------------------------------------------


def model_summary_text(model):
    """model.summary() as text: model_summary.txt."""
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    return "\n".join(lines) + "\n"


def save_model_diagram(model, out_dir, warn=print):
    """SELeNet.png via plot_model; without Graphviz, SELeNet.dot and a warning. Returns the path."""
    import keras  # loaded already: there is a model

    options = dict(show_shapes=True, show_layer_names=True, show_layer_activations=True, dpi=96)
    png_path = os.path.join(out_dir, f"{model.name}.png")
    # With IPython importable, plot_model only prints its Graphviz message, so look for `dot` first.
    if shutil.which("dot"):
        write_via_memory(png_path, lambda path: keras.utils.plot_model(model, to_file=path, **options))
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


def checkpoint_epochs(out_dir):
    """The epochs of the run's checkpoints (checkpoints.py writes them), oldest first."""
    prefix = f"{CHECKPOINT_NAME}-"
    try:
        names = os.listdir(os.path.join(out_dir, CHECKPOINT_DIR))
    except OSError:
        return []
    return sorted(
        int(n[len(prefix) : -6])
        for n in names
        if n.startswith(prefix) and n.endswith(".index") and n[len(prefix) : -6].isdigit()
    )


# ----------------------------------------------------------------------------
# One writer per folder; never replacing a run silently
# ----------------------------------------------------------------------------


@contextlib.contextmanager
def folder_lock(path, prog):
    """Holds an exclusive lock on a run (or study) folder for the `with` block; UsageError naming
    the process that holds it. The kernel drops the lock with the process, even on SIGKILL."""
    import fcntl

    try:
        descriptor = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise UsageError(f"cannot write to output directory {path}: {e.strerror}") from e
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 200, 0).decode(errors="replace").strip() or "another process"
            raise UsageError(f"{path} is in use by {holder}; wait for it to end, or use another folder") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{prog} (pid {os.getpid()})".encode(), 0)
        yield
    finally:
        os.close(descriptor)


def remove_temporary_files(out_dir):
    """Removes what a killed process left half-written in out_dir (call it holding the lock)."""
    for directory in (out_dir, os.path.join(out_dir, "se_features"), os.path.join(out_dir, CHECKPOINT_DIR)):
        for name in os.listdir(directory) if os.path.isdir(directory) else ():
            path = os.path.join(directory, name)
            if is_temporary(name):
                shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def is_temporary(name):
    """.NAME.tmpPID.EXT (atomic_path), .write-test-PID (ensure_writable_dir), epoch-N_temp (TensorFlow)."""
    return (
        name.startswith(".") and (TEMPORARY_MARK in name or name.startswith(".write-test-")) or name.endswith("_temp")
    )


def run_in(out_dir):
    """What out_dir holds of a run: None, or a phrase for messages ("a finished run", ...)."""
    try:
        run = read_run(out_dir)
    except RunNotFound:
        run = None
    except UsageError:
        return f"a damaged {RUN_FILE}"
    epochs = checkpoint_epochs(out_dir)
    if run is not None and run["finished"]:
        return f"a finished run of {run['settings'].epochs} epochs"
    if run is not None or epochs:
        done = max([len(run["history"]) if run else 0, *epochs])
        return f"an unfinished run (epoch {done} saved)"
    return None


def missing_run_files(out_dir, settings):
    """The files a finished run writes that out_dir lacks."""
    name = "SELeNet" if settings.se else "LeNet5"
    wanted = [WEIGHTS_FILE, MODEL_FILE, HISTORY_FILE, "model_summary.txt", "training_curves.png"]
    missing = [n for n in wanted if not os.path.isfile(os.path.join(out_dir, n))]
    if not any(os.path.isfile(os.path.join(out_dir, f"{name}.{ext}")) for ext in ("png", "dot")):
        missing.append(f"{name}.png")
    return missing


def make_room_for_a_new_run(out_dir, overwrite):
    """Refuses (UsageError) to start a run where one is, unless overwrite: then removes its files first.

    Where no run is, it still removes the logs (and checkpoint folder) of a run stopped before its first
    checkpoint, so that TensorBoard shows the new run alone.
    """
    existing = run_in(out_dir)
    if existing is None:
        for name in (CHECKPOINT_DIR, LOGS_DIR):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
        return
    if not overwrite:
        resume = "continue it with --resume, " if "unfinished" in existing else ""
        raise UsageError(
            f"{out_dir} holds {existing}; {resume}replace it with --overwrite, or choose another --out-dir"
        )
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out_dir, name))
    for name in RUN_DIRS:
        shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)
    for name in os.listdir(out_dir):
        if name.startswith("compare_") and name.endswith(".png"):
            os.remove(os.path.join(out_dir, name))


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


def interrupted_message(prog, interrupted, out_dir):
    """The one line that says where a stopped run can be resumed from."""
    saved = checkpoint_epochs(out_dir)
    if not saved:
        return f"{prog}: stopped by {interrupted} before the first epoch ended; nothing to resume"
    epoch = saved[-1]
    return (
        f"{prog}: stopped by {interrupted}; epoch {epoch} is the last one saved. "
        f"Resume with: python {prog} --out-dir {shlex.quote(str(out_dir))} --resume"
    )
