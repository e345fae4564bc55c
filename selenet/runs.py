"""A run folder: what it holds (run.json, checkpoints), refusing to replace a run, what a stop left.

OUT/manifest.json     every path the project wrote in OUT (manifest.py): only those are ever replaced
OUT/run.json          settings, per-epoch history, final accuracies, the SHA-256 of the weights and model
OUT/history.csv       the history as CSV (after every epoch)
OUT/checkpoints/      the state after each of the last two epochs, for --resume (checkpoints.py)
"""

import dataclasses
import json
import os
import re
import shlex
import subprocess

from selenet import files, machine
from selenet.errors import RunNotFound, UsageError
from selenet.manifest import Manifest
from selenet.settings import Settings

OUT_DIR = "outputs"  # where a run's files go unless --out-dir says otherwise
WEIGHTS_FILE = "selenet.weights.h5"
RUN_FILE = "run.json"
HISTORY_FILE = "history.csv"
HISTORY_FIELDS = ["epoch", "loss", "accuracy", "test_loss", "test_accuracy", "seconds"]
CHECKPOINT_DIR = "checkpoints"  # OUT/checkpoints/epoch-N.*: see checkpoints.py
CHECKPOINT_NAME = "epoch"
KEEP_CHECKPOINTS = 2
LOGS_DIR = "logs"  # OUT/logs/train and OUT/logs/validation: TensorBoard's event files (tensorboard_logs.py)
MODEL_FILE = "selenet.keras"  # the whole model, for keras.models.load_model without this project
SUMMARY_FILE = "model_summary.txt"
CURVES_FILE = "training_curves.png"
ROLE_FILE = "excitation_role.csv"  # visualize.py's and the study's measure of the excitation (excitation_role.py)
CHECKSUMMED = (WEIGHTS_FILE, MODEL_FILE)  # run.json records their SHA-256


def diagram_names(settings):
    """The model diagram's two names: SELeNet.png (plot_model), or SELeNet.dot where Graphviz was missing."""
    return f"{settings.model_name}.png", f"{settings.model_name}.dot"


def run_file_names(settings, diagram=None):
    """The paths a run of `settings` writes in its folder (folders end in "/"): with diagram, the one it drew
    (run.json's "diagram"); without, both names it may draw."""
    return (
        *(WEIGHTS_FILE, MODEL_FILE, RUN_FILE, HISTORY_FILE, SUMMARY_FILE, CURVES_FILE),
        *([diagram] if diagram else diagram_names(settings)),
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


def run_record(model, settings, history, checksums=None, diagram=None, train_images=None):
    """What run.json holds: enough to rebuild the model and to resume or judge the run.

    checksums: {file: SHA-256} of a finished run's weights and model files. diagram: the name of the model
    diagram it drew (SELeNet.png or SELeNet.dot), so that whether it is whole does not depend on the reader's PATH.
    train_images: how many images it trains on (with the optimizer steps taken so far, in "training")."""
    last = history[-1]
    training = {}
    if train_images is not None:
        steps = settings.steps_per_epoch(train_images) * len(history)
        training = {"training": {"images": train_images, "steps": steps}}
    return {
        "settings": settings,
        "model": {"name": model.name, "parameters": model.count_params()},
        **training,
        "weights": WEIGHTS_FILE,
        "final": {"train_accuracy": last["accuracy"], "test_accuracy": last["test_accuracy"]},
        "history": history,
        "finished": len(history) == settings.epochs,
        "sha256": dict(checksums or {}),
        **({"diagram": diagram} if diagram else {}),
        **machine.record(),
    }


def epoch_record(epoch, train_metrics, test_metrics, seconds):
    """One line of history.csv; accuracies in percent, whose 4 decimals hold one test image (0.01)."""
    (loss, accuracy), (test_loss, test_accuracy) = train_metrics, test_metrics
    return {
        "epoch": epoch,
        "loss": round(float(loss.result()), 6),
        "accuracy": round(100 * float(accuracy.result()), 4),
        "test_loss": round(float(test_loss.result()), 6),
        "test_accuracy": round(100 * float(test_accuracy.result()), 4),
        "seconds": round(seconds, 3),
    }


def remove_what_other_weights_drew(folder, weights, warn):
    """Removes the files recorded as drawn from other weights than `weights` (visualize.py's), saying so."""
    stale = folder.release_all(keep=lambda name, facts: facts.get("weights", weights) == weights)
    if stale:
        again = "run visualize.py again"
        warn(f"removed {len(stale)} files in {folder.folder} drawn from the run's earlier weights; {again}")


def epoch_line(record):
    """The line a run prints after each epoch (the assignment's)."""
    return (
        f"Epoch {record['epoch']}, Loss: {record['loss']:.4f}, Accuracy: {record['accuracy']:.2f}, "
        f"Test Loss: {record['test_loss']:.4f}, Test Accuracy: {record['test_accuracy']:.2f}"
    )


def describe_training(settings, train_data, test_data):
    """The line a run prints before its first epoch."""
    images = len(train_data[1])
    return (
        f"Training on {images} images, testing on {len(test_data[1])}: {settings.optimizer} lr {settings.lr}, "
        f"batch {settings.batch_size}, {settings.epochs} epochs of {settings.steps_per_epoch(images)} steps, "
        f"seed {settings.seed}"
    )


def save_progress(run, folder):
    """run.json and history.csv into a run folder (a Manifest), after every epoch (run["finished"] says whether
    it is the last)."""
    folder.check_free(RUN_FILE, HISTORY_FILE)
    record = {**run, "settings": run["settings"].as_dict()}
    folder.write_text(RUN_FILE, json.dumps(record, indent=2) + "\n")
    folder.write_text(HISTORY_FILE, files.csv_text(run["history"], HISTORY_FIELDS))


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
# Never replacing a run silently
# ----------------------------------------------------------------------------


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
    """The files a finished run writes that out_dir lacks, or holds damaged (run: its run.json, if any).
    The diagram is the one run.json records; a run.json from before that record: either of its names."""
    diagram = run.get("diagram") if run is not None else None
    names = [name for name in run_file_names(settings, diagram) if not name.endswith("/")]
    missing = [name for name in names if not os.path.isfile(os.path.join(out_dir, name))]
    drawn = [name for name in diagram_names(settings) if name not in missing]
    if diagram is None and drawn:  # one of the two is there: the diagram is whole
        missing = [name for name in missing if name not in diagram_names(settings)]
    damaged = damaged_files(out_dir, run) if run is not None else []
    return missing + [name for name in damaged if name not in missing]


def check_room_for_a_new_run(out_dir, overwrite, settings):
    """Refuses (UsageError) to start a run where one is, unless overwrite, or where a path the new run needs
    holds something the project did not write; returns out_dir's Manifest."""
    manifest = Manifest(out_dir)
    existing = folder_run(out_dir)
    if not existing.empty and not overwrite:
        resume = "continue it with --resume, " if existing.damaged is None and not existing.finished else ""
        raise UsageError(
            f"{out_dir} holds {existing.describe()}; {resume}replace it with --overwrite, or choose another --out-dir"
        )
    manifest.check_free(*run_file_names(settings))
    return manifest


def make_room_for_a_new_run(out_dir, overwrite, settings):
    """check_room_for_a_new_run, then removes what an earlier run wrote (its manifest), and nothing else. Where
    no run is, it still removes what a run stopped before its first checkpoint wrote (its logs), so that
    TensorBoard shows the new run alone."""
    check_room_for_a_new_run(out_dir, overwrite, settings).release_all()


# ----------------------------------------------------------------------------
# After a stop
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
        f"Resume with: {resume_command(prog, out_dir)}"
    )


def resume_command(prog, out_dir, windows=os.name == "nt"):
    """The command that continues the run in out_dir, the folder quoted for this platform's shell (POSIX shells;
    on Windows, cmd.exe and PowerShell: double quotes)."""
    quoted = subprocess.list2cmdline([str(out_dir)]) if windows else shlex.quote(str(out_dir))
    return f"python {prog} --out-dir {quoted} --resume"
