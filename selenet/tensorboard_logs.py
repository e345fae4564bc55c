"""TensorBoard logs of a run, one step per epoch, as Keras's TensorBoard callback names them, so that a
model.fit run overlays ours: `tensorboard --logdir outputs` shows every run below outputs/.

OUT/logs/train       epoch_loss, epoch_accuracy (a fraction, as Keras logs it) over the epoch's training batches
OUT/logs/validation  the same over the test set; a histogram of each SE channel's excitation over the test set,
                     and an image of the mean excitation per digit (IMAGES tab: the block learning, epoch by epoch)
"""

import contextlib
import os

import tensorflow as tf

from selenet import excitation_stats, files, runs
from selenet.settings import block_suffix

RUNS = ("train", "validation")  # Keras's names for the two


class EpochLogs:
    """The run's event files, each recorded in its manifest once TensorFlow has named it."""

    def __init__(self, manifest, test_labels, gate, gate_scale=1.0):
        self.directory = manifest.join(runs.LOGS_DIR)
        self.test_labels, self.gate, self.gate_scale = test_labels, gate, gate_scale  # the class means' colours
        self.train, self.validation = (self._writer(manifest, f"{runs.LOGS_DIR}/{run}/") for run in RUNS)

    @staticmethod
    def _writer(manifest, folder):
        try:
            path = manifest.make_folder(folder)
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
            tf.summary.scalar("epoch_loss", record["loss"])
            tf.summary.scalar("epoch_accuracy", record["accuracy"] / 100)
        with self.validation.as_default(step=record["epoch"]):
            tf.summary.scalar("epoch_loss", record["test_loss"])
            tf.summary.scalar("epoch_accuracy", record["test_accuracy"] / 100)
            for block, excitation in (excitations or {}).items():
                suffix = block_suffix(block)
                for channel in range(excitation.shape[1]):
                    tf.summary.histogram(f"excitation{suffix}/channel_{channel:02d}", excitation[:, channel])
                limits = excitation_stats.color_limits(self.gate, excitation, self.gate_scale)
                pixels = excitation_stats.class_mean_pixels(
                    excitation_stats.class_means(excitation, self.test_labels), limits
                )
                scale = f"rows: digits 0-9; columns: SE channels; colour map hot, {limits[0]:g} to {limits[1]:g}"
                tf.summary.image(f"class_mean_excitation{suffix}", pixels, description=scale)
        self.train.flush()
        self.validation.flush()

    def close(self):
        with contextlib.suppress(tf.errors.OpError):  # a failed write was reported already
            self.train.close()
            self.validation.close()
