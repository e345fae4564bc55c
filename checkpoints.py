"""Per-epoch checkpoints: tf.train.Checkpoint (model, optimizer, epoch, history) saved by a
CheckpointManager into OUT/checkpoints/ as epoch-N, the newest two kept.

The data order of an epoch depends only on the seed and the epoch, so the checkpoint is all a run
needs to continue bit for bit. TensorFlow checksums the checkpoint's data, so a damaged file is
an error, never silently different weights: resume then falls back to the older checkpoint.
"""

import json
import os

import tensorflow as tf

import cli
import runs


class Checkpoints:
    """The checkpoints of one run folder for one model and optimizer."""

    def __init__(self, out_dir, model, optimizer):
        self.directory = os.path.join(out_dir, runs.CHECKPOINT_DIR)
        self.history = tf.Variable("[]", dtype=tf.string)  # JSON of the history up to the checkpoint's epoch
        self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, history=self.history)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.directory, max_to_keep=runs.KEEP_CHECKPOINTS, checkpoint_name=runs.CHECKPOINT_NAME
        )

    def save(self, history):
        """The state after history[-1]'s epoch, as epoch-N."""
        self.history.assign(json.dumps(history))
        self.manager.save(checkpoint_number=history[-1]["epoch"])

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
