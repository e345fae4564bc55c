"""Per-epoch checkpoints: tf.train.Checkpoint (model, optimizer, history, settings) written into
OUT/checkpoints/ as epoch-N.*, the newest two kept.

The data order of an epoch depends only on the seed and the epoch, so the checkpoint is all a run
needs to continue bit for bit. TensorFlow checksums the checkpoint's data, so a damaged file is
an error, never silently different weights: resume then falls back to the older checkpoint.
The checkpoints are listed from the folder's record (manifest.py), never from TensorFlow's index
file, so nothing outside OUT/checkpoints/ is ever pruned; each is written under a temporary name first.
"""

import json
import os
import shutil

import tensorflow as tf

from selenet import files, runs
from selenet.errors import UsageError, first_line
from selenet.settings import Settings

SETTINGS_KEY = "settings/.ATTRIBUTES/VARIABLE_VALUE"  # where tf.train.Checkpoint keeps the settings variable


class Checkpoints:
    """The checkpoints of one run folder for one model and optimizer."""

    def __init__(self, out_dir, model, optimizer, settings, manifest):
        self.out_dir, self.manifest, self.run_settings = str(out_dir), manifest, settings
        self.directory = os.path.join(self.out_dir, runs.CHECKPOINT_DIR)
        self.history = tf.Variable("[]", dtype=tf.string)  # JSON of the history up to the checkpoint's epoch
        # The settings too, so that a run whose run.json is lost can still be resumed.
        self.settings = tf.Variable(json.dumps(settings.as_dict()), dtype=tf.string)
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, history=self.history, settings=self.settings
        )
        # Created now, so that write() stores it: restore() creates it, and assert_consumed() wants it bound.
        self.checkpoint.save_counter  # noqa: B018

    def prefix(self, epoch):
        return checkpoint_prefix(self.out_dir, epoch)

    def save(self, history):
        """The state after history[-1]'s epoch, as epoch-N; errors.WriteError if it cannot be written.
        Keeps the newest KEEP_CHECKPOINTS before it and drops any later one (another history's)."""
        epoch = history[-1]["epoch"]
        name = os.path.basename(self.prefix(epoch))
        self.history.assign(json.dumps(history))
        scratch = os.path.join(self.directory, files.temporary_name())
        try:
            self.manifest.make_folder(f"{runs.CHECKPOINT_DIR}/")
            os.makedirs(scratch)
            self.checkpoint.write(os.path.join(scratch, name))
            written = sorted(n for n in os.listdir(scratch) if n.startswith(f"{name}."))
            self.manifest.check_free(*(f"{runs.CHECKPOINT_DIR}/{n}" for n in written))  # all, before any moves
            for n in written:
                self.manifest.move_in(os.path.join(scratch, n), f"{runs.CHECKPOINT_DIR}/{n}")
        except (tf.errors.OpError, OSError) as e:  # a full disk: ResourceExhaustedError
            raise files.write_failure(self.prefix(epoch), e) from e
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        epochs = runs.checkpoint_epochs(self.out_dir)
        older, later = [e for e in epochs if e < epoch], [e for e in epochs if e > epoch]
        drop = older[: len(older) - (runs.KEEP_CHECKPOINTS - 1)] + later
        owned = self.manifest.owned(f"{runs.CHECKPOINT_DIR}/")
        stale = [n for e in drop for n in owned if n.startswith(f"{runs.CHECKPOINT_NAME}-{e}.")]
        self.manifest.release(*(f"{runs.CHECKPOINT_DIR}/{n}" for n in stale))

    def restore_newest(self, warn):
        """Loads the newest checkpoint that is whole and of this run; returns the history up to it.

        One skipped (damaged, or another run's) checkpoint is one line through warn; UsageError if none is usable.
        """
        epochs = runs.checkpoint_epochs(self.out_dir)
        for epoch in reversed(epochs):
            prefix = self.prefix(epoch)
            try:
                check_settings(stored_settings(prefix), self.run_settings)
                self.checkpoint.restore(prefix).assert_consumed()
                history = json.loads(self.history.numpy().decode())
                if len(history) != epoch:
                    raise ValueError(f"its history has {len(history)} epochs")
                self.settings.assign(json.dumps(self.run_settings.as_dict()))
                return history
            except Exception as e:  # DataLossError, NotFoundError, IndexError, ...: TensorFlow's many ways
                warn(f"skipped checkpoint {prefix}: {first_line(e, type_name=True)}")
        if not epochs:
            raise UsageError(f"no checkpoint in {self.directory} to resume from")
        raise UsageError(f"no usable checkpoint in {self.directory} to resume from")


class OtherRun(ValueError):
    """A checkpoint whose stored settings are not the run's."""


def check_settings(stored, settings):
    """OtherRun unless `stored` are `settings` (but for epochs, which --resume may change)."""
    ours, theirs = settings.as_dict(), stored.as_dict()
    differing = [k for k in ours if k != "epochs" and theirs[k] != ours[k]]
    differences = [f"{k} = {theirs[k]!r} (this run: {ours[k]!r})" for k in differing]
    if differences:
        raise OtherRun(f"it belongs to another run, with {', '.join(differences)}")


def stored_settings(prefix):
    """The settings a checkpoint holds."""
    value = tf.train.load_checkpoint(prefix).get_tensor(SETTINGS_KEY)
    return Settings.from_dict(json.loads(value.decode() if isinstance(value, bytes) else value))


def checkpoint_prefix(out_dir, epoch):
    """OUT/checkpoints/epoch-N: the path TensorFlow's checkpoint files of an epoch start with."""
    return os.path.join(out_dir, runs.CHECKPOINT_DIR, f"{runs.CHECKPOINT_NAME}-{epoch}")


def saved_settings(out_dir):
    """The settings stored in the newest readable checkpoint of out_dir (UsageError if none is)."""
    directory = os.path.join(out_dir, runs.CHECKPOINT_DIR)
    for epoch in reversed(runs.checkpoint_epochs(out_dir)):
        try:
            return stored_settings(checkpoint_prefix(out_dir, epoch))
        except Exception:  # damaged: try the older one
            continue
    raise UsageError(f"no checkpoint in {directory} says which settings its run had")
