"""A run folder: what it holds (run.json, checkpoints), its one writer, stopping on a signal.

OUT/manifest.json     every path the project wrote in OUT (manifest.py): only those are ever replaced
OUT/run.json          settings, per-epoch history, final accuracies, the SHA-256 of the weights and model
OUT/history.csv       the history as CSV (after every epoch)
OUT/checkpoints/      the state after each of the last two epochs, for --resume (checkpoints.py)
"""

import contextlib
import dataclasses
import json
import os
import platform
import re
import shlex
import shutil
import signal

import files
from errors import Interrupted, RunNotFound, UsageError
from manifest import Manifest
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
SUMMARY_FILE = "model_summary.txt"
CURVES_FILE = "training_curves.png"
ROLE_FILE = "excitation_role.csv"  # visualize.py's and the study's measure of the excitation (excitation_role.py)
CHECKSUMMED = (WEIGHTS_FILE, MODEL_FILE)  # run.json records their SHA-256
LOCK_FILE = ".selenet.lock"  # held (flock) by the one process that writes the folder


def run_file_names(settings):
    """The paths a run of `settings` writes in its folder (folders end in "/")."""
    return (
        *(WEIGHTS_FILE, MODEL_FILE, RUN_FILE, HISTORY_FILE, SUMMARY_FILE, CURVES_FILE),
        diagram_name(settings.model_name),
        *(f"{CHECKPOINT_DIR}/", f"{LOGS_DIR}/"),
    )


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


def run_record(model, settings, history, checksums=None):
    """What run.json holds: enough to rebuild the model and to resume or judge the run.

    checksums: {file: SHA-256} of a finished run's weights and model files."""
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
        "sha256": dict(checksums or {}),
        "versions": {
            "python": platform.python_version(),
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
        },
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "cpus": os.cpu_count()},
    }


def cpu_model():
    """The processor's model name (Linux), else what platform says."""
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def environment(run=None):
    """What the bits of a run depend on besides its settings: threads, TensorFlow, Keras, CPU model.
    Of a run.json (a key it lacks: "unrecorded"), or of this process (run None: threads not set)."""
    if run is None:
        import keras
        import tensorflow as tf

        return {"tensorflow": tf.__version__, "keras": keras.__version__, "cpu": cpu_model()}
    return {
        "threads": run["settings"].threads,
        "tensorflow": run.get("versions", {}).get("tensorflow", "unrecorded"),
        "keras": run.get("versions", {}).get("keras", "unrecorded"),
        "cpu": run.get("machine", {}).get("cpu", "unrecorded"),
    }


def environment_note(name_a, a, name_b, b):
    """One line naming how two environments differ (bits are promised only for equal ones), or None."""
    differences = [f"{key} ({a[key]} vs {b[key]})" for key in a if key in b and a[key] != b[key]]
    if not differences:
        return None
    return (
        f"note: {name_a} and {name_b} differ in {', '.join(differences)}: "
        "the same bits are promised only for the same threads, versions and CPU"
    )


def save_progress(run, out_dir, manifest):
    """run.json and history.csv, after every epoch (run["finished"] says whether it is the last)."""
    manifest.claim(RUN_FILE, HISTORY_FILE)
    record = {**run, "settings": run["settings"].as_dict()}
    files.write_text(os.path.join(out_dir, RUN_FILE), json.dumps(record, indent=2) + "\n")
    files.write_text(os.path.join(out_dir, HISTORY_FILE), files.csv_text(run["history"], HISTORY_FIELDS))


def damaged_files(run_dir, run):
    """The checksummed files of a finished run that are missing or are not the ones run.json records."""
    recorded = run.get("sha256") or {}
    return [name for name in CHECKSUMMED if files.sha256_of(os.path.join(run_dir, name)) != recorded.get(name)]


def check_files(run_dir, run):
    """UsageError unless a finished run's weights and model files are the ones its run.json records."""
    if not run.get("sha256"):
        raise UsageError(
            f"{os.path.join(run_dir, RUN_FILE)} records no checksums of its files (an older version wrote it); "
            "train the run again"
        )
    for name in damaged_files(run_dir, run):
        path = os.path.join(run_dir, name)
        state = "is missing" if not os.path.exists(path) else "is not the file this run wrote (its SHA-256 differs)"
        raise UsageError(
            f"{path} {state}; write it again from the run's checkpoint with: python senet_lenet.py "
            f"--out-dir {shlex.quote(str(run_dir))} --resume"
        )


# ----------------------------------------------------------------------------
# The model's summary and diagram, the training curves
# ----------------------------------------------------------------------------


def model_summary_text(model):
    """model.summary() as text: model_summary.txt."""
    lines = []
    model.summary(print_fn=lambda line, **kwargs: lines.append(line))
    return "\n".join(lines) + "\n"


def diagram_name(model_name):
    """SELeNet.png, or SELeNet.dot where Graphviz's `dot` is missing."""
    return f"{model_name}.png" if shutil.which("dot") else f"{model_name}.dot"


def save_model_diagram(model, out_dir, warn=print):
    """SELeNet.png via plot_model; without Graphviz, SELeNet.dot and a warning. Returns the path."""
    import keras  # loaded already: there is a model

    options = dict(show_shapes=True, show_layer_names=True, show_layer_activations=True, dpi=96)
    path = os.path.join(out_dir, diagram_name(model.name))
    # With IPython importable, plot_model only prints its Graphviz message, so look for `dot` first.
    if path.endswith(".png"):
        files.write_via_scratch(path, lambda scratch: keras.utils.plot_model(model, to_file=scratch, **options))
        return path
    files.write_text(path, keras.utils.model_to_dot(model, **options).to_string())
    png_path = path[: -len(".dot")] + ".png"
    warn(
        f"warning: Graphviz's `dot` program was not found, so {png_path} was not drawn; "
        f"wrote the graph as {path}. Install Graphviz (Debian/Ubuntu: apt-get install "
        f"graphviz; macOS: brew install graphviz; Windows: winget install graphviz) and rerun, "
        f"or render it with: dot -Tpng {path} -o {png_path}"
    )
    return path


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
    """The epochs of the checkpoints the run wrote in out_dir (its record says which), oldest first."""
    try:
        owned = Manifest(out_dir).owned(f"{CHECKPOINT_DIR}/")
    except UsageError:
        return []
    pattern = re.compile(rf"{CHECKPOINT_NAME}-(\d+)\.index")
    present = [name for name in owned if os.path.isfile(os.path.join(out_dir, CHECKPOINT_DIR, name))]
    return sorted(int(match[1]) for name in present if (match := pattern.fullmatch(name)))


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


@dataclasses.dataclass(frozen=True)
class FolderRun:
    """What a folder holds of a run, read once, for a new run's refusal, --resume, the study and the stop line."""

    run: dict | None  # run.json's contents (settings as Settings); None where there is none, or it is damaged
    damaged: UsageError | None  # why run.json cannot be read, if it cannot
    checkpoints: tuple  # the epochs of the run's recorded checkpoints, oldest first

    @property
    def empty(self):
        return self.run is None and self.damaged is None and not self.checkpoints

    @property
    def finished(self):
        return self.run is not None and self.run["finished"]

    @property
    def epochs_done(self):
        return max([len(self.run["history"]) if self.run else 0, *self.checkpoints])

    def describe(self):
        """A phrase for messages: "a finished run of 10 epochs", "an unfinished run (epoch 3 saved)", ..."""
        if self.damaged is not None:
            return f"a damaged {RUN_FILE}"
        if self.finished:
            return f"a finished run of {self.run['settings'].epochs} epochs"
        return f"an unfinished run (epoch {self.epochs_done} saved)"


def folder_run(out_dir):
    """The FolderRun of out_dir (an empty one where the folder does not exist)."""
    run, damaged = None, None
    try:
        run = read_run(out_dir)
    except RunNotFound:
        pass
    except UsageError as e:
        damaged = e
    return FolderRun(run, damaged, tuple(checkpoint_epochs(out_dir)))


def missing_run_files(out_dir, settings, run=None):
    """The files a finished run writes that out_dir lacks, or holds damaged (run: its run.json, if any)."""
    names = [name for name in run_file_names(settings) if not name.endswith("/")]
    missing = [name for name in names if not os.path.isfile(os.path.join(out_dir, name))]
    damaged = damaged_files(out_dir, run) if run is not None else []
    return missing + [name for name in damaged if name not in missing]


def make_room_for_a_new_run(out_dir, overwrite, settings, check_only=False):
    """Refuses (UsageError) to start a run where one is, unless overwrite: then removes what that run
    wrote (its manifest), and nothing else. Where no run is, it still removes what a run stopped before
    its first checkpoint wrote (its logs), so that TensorBoard shows the new run alone. Either way it
    first refuses if a path the new run needs holds something the project did not write (check_only: only that)."""
    manifest = Manifest(out_dir)
    existing = folder_run(out_dir)
    if not existing.empty and not overwrite:
        resume = "continue it with --resume, " if existing.damaged is None and not existing.finished else ""
        raise UsageError(
            f"{out_dir} holds {existing.describe()}; {resume}replace it with --overwrite, or choose another --out-dir"
        )
    manifest.check_free(*run_file_names(settings))
    if not check_only:
        manifest.release_all()


# ----------------------------------------------------------------------------
# Stopping on a signal
# ----------------------------------------------------------------------------


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
    """The one line that says what a stopped run left: finished, resumable from an epoch, or nothing."""
    state = folder_run(out_dir)
    if state.finished:
        return f"{prog}: stopped by {interrupted} after the run finished; every file of it is saved in {out_dir}"
    if not state.checkpoints:
        return f"{prog}: stopped by {interrupted} before the first epoch ended; nothing to resume"
    return (
        f"{prog}: stopped by {interrupted}; epoch {state.checkpoints[-1]} is the last one saved. "
        f"Resume with: python {prog} --out-dir {shlex.quote(str(out_dir))} --resume"
    )
