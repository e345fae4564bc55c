"""Per-epoch checkpoints: tf.train.Checkpoint (model, optimizer, epoch, history) saved by a
CheckpointManager into OUT/checkpoints/ as epoch-N, the newest two kept.

The data order of an epoch depends only on the seed and the epoch, so the checkpoint is all a run
needs to continue bit for bit. TensorFlow checksums the checkpoint's data, so a damaged file is
an error, never silently different weights: resume then falls back to the older checkpoint.
"""

import json
import os
import shutil

import tensorflow as tf

import cli
import runs
from settings import Settings


class Checkpoints:
    """The checkpoints of one run folder for one model and optimizer."""

    def __init__(self, out_dir, model, optimizer, settings):
        self.directory = os.path.join(out_dir, runs.CHECKPOINT_DIR)
        self.history = tf.Variable("[]", dtype=tf.string)  # JSON of the history up to the checkpoint's epoch
        # The settings too, so that a run whose run.json is lost can still be resumed.
        self.settings = tf.Variable(json.dumps(settings.as_dict()), dtype=tf.string)
        self.checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, history=self.history, settings=self.settings
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.directory, max_to_keep=runs.KEEP_CHECKPOINTS, checkpoint_name=runs.CHECKPOINT_NAME
        )

    def save(self, history):
        """The state after history[-1]'s epoch, as epoch-N; runs.WriteError if it cannot be written."""
        self.history.assign(json.dumps(history))
        try:
            self.manager.save(checkpoint_number=history[-1]["epoch"])
        except tf.errors.OpError as e:  # a full disk: ResourceExhaustedError
            for name in os.listdir(self.directory):
                if runs.is_temporary(name):
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
            raise runs.write_failure(
                os.path.join(self.directory, f"{runs.CHECKPOINT_NAME}-{history[-1]['epoch']}"), e
            ) from e

    def restore_newest(self, warn):
        """Loads the newest checkpoint that is whole; returns the history up to it.

        One skipped (damaged) checkpoint is one line through warn; UsageError if none is usable.
        """
        epochs = runs.checkpoint_epochs(os.path.dirname(self.directory))
        for epoch in reversed(epochs):
            prefix = os.path.join(self.directory, f"{runs.CHECKPOINT_NAME}-{epoch}")
            try:
                self.checkpoint.restore(prefix).assert_consumed()
                history = json.loads(self.history.numpy().decode())
                if len(history) != epoch:
                    raise ValueError(f"its history has {len(history)} epochs")
                return history
            except Exception as e:  # DataLossError, NotFoundError, IndexError, ...: TensorFlow's many ways
                warn(f"skipped checkpoint {prefix}: {cli.first_line(e, type_name=True)}")
        if not epochs:
            raise runs.UsageError(f"no checkpoint in {self.directory} to resume from")
        raise runs.UsageError(f"no usable checkpoint in {self.directory} to resume from")


def saved_settings(out_dir):
    """The settings stored in the newest readable checkpoint of out_dir (UsageError if none is)."""
    directory = os.path.join(out_dir, runs.CHECKPOINT_DIR)
    for epoch in reversed(runs.checkpoint_epochs(out_dir)):
        try:
            reader = tf.train.load_checkpoint(os.path.join(directory, f"{runs.CHECKPOINT_NAME}-{epoch}"))
            return Settings.from_dict(json.loads(reader.get_tensor("settings/.ATTRIBUTES/VARIABLE_VALUE")))
        except Exception:  # damaged, or from before settings were stored: try the older one
            continue
    raise runs.UsageError(f"no checkpoint in {directory} says which settings its run had")
