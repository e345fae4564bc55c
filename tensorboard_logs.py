"""TensorBoard logs of a run, one step per epoch: `tensorboard --logdir OUT/logs`.

OUT/logs/train   loss, accuracy (the training batches of the epoch)
OUT/logs/test    loss, accuracy, and a histogram of each SE channel's excitation over the test set
"""

import contextlib
import os

import tensorflow as tf

import files
import runs
from settings import block_suffix


class EpochLogs:
    """The run's event files, each recorded in its manifest once TensorFlow has named it."""

    def __init__(self, out_dir, manifest):
        self.directory = os.path.join(out_dir, runs.LOGS_DIR)
        self.train, self.test = (self._writer(manifest, f"{runs.LOGS_DIR}/{run}/") for run in ("train", "test"))

    @staticmethod
    def _writer(manifest, folder):
        manifest.claim(folder)
        path = os.path.join(manifest.folder, folder)
        try:
            os.makedirs(path, exist_ok=True)
            before = set(os.listdir(path))
            writer = tf.summary.create_file_writer(path)
        except (tf.errors.OpError, OSError) as e:
            raise files.write_failure(path, e) from e
        manifest.record(*(folder + name for name in sorted(set(os.listdir(path)) - before)))
        return writer

    def write(self, record, excitations=None):
        """One epoch's record (as in history.csv) and the test set's excitations {SE block: (N, C)}.

        errors.WriteError if the event files cannot be written."""
        try:
            self._write(record, excitations)
        except tf.errors.OpError as e:  # a full disk: ResourceExhaustedError
            raise files.write_failure(self.directory, e) from e

    def _write(self, record, excitations):
        with self.train.as_default(step=record["epoch"]):
            tf.summary.scalar("loss", record["loss"])
            tf.summary.scalar("accuracy", record["accuracy"])
        with self.test.as_default(step=record["epoch"]):
            tf.summary.scalar("loss", record["test_loss"])
            tf.summary.scalar("accuracy", record["test_accuracy"])
            for block, excitation in (excitations or {}).items():
                group = f"excitation{block_suffix(block)}"
                for channel in range(excitation.shape[1]):
                    tf.summary.histogram(f"{group}/channel_{channel:02d}", excitation[:, channel])
        self.train.flush()
        self.test.flush()

    def close(self):
        with contextlib.suppress(tf.errors.OpError):  # a failed write was reported already
            self.train.close()
            self.test.close()
