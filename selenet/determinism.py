"""The same bits every time: TensorFlow's threads, the seeds and deterministic ops, set in one call."""

import keras
import tensorflow as tf

from selenet.errors import UsageError


def use_threads(threads):
    """Runs TensorFlow's ops on `threads` intra-op threads and one inter-op thread (0: TensorFlow's choice).

    TensorFlow takes this only before it runs its first op, so one process trains with one count:
    UsageError if this process already runs with another."""
    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()) == (threads, 1):
        return
    try:
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        running = threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()
        raise UsageError(
            f"TensorFlow already runs ops in this process with {running[0]} intra-op and {running[1]} inter-op "
            f"threads (0: its choice), and takes threads only before its first op; the run's bits need "
            f"{threads} and 1: run the script in a new process (in a notebook: !python senet_lenet.py ...), "
            "or call main() first in a fresh kernel"
        ) from None


def make_deterministic(settings):
    """The run's threads; Python, NumPy and TensorFlow seeded with its seed; deterministic ops (on a GPU,
    an op without a deterministic kernel then stops the run)."""
    use_threads(settings.threads)
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
