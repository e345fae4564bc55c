"""Helpers shared by the tests: running the scripts, one-line errors, synthetic MNIST."""

import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINED = ["--epochs", "2", "--train-samples", "500", "--test-samples", "200", "--seed", "3"]
QUICK = ["--epochs", "2", "--train-samples", "3000", "--test-samples", "500"]  # a slice of the real MNIST
# TensorFlow's start-up lines that TF_CPP_MIN_LOG_LEVEL does not reach on some CPUs (absl's, oneDNN's)
USER_ISA = os.environ.get("ONEDNN_MAX_CPU_ISA")  # the user's own, read before senet_lenet sets its default
TENSORFLOW_NOTICES = ("WARNING: All log messages before absl::InitializeLog", "oneDNN custom operations are on")


def run_script(script, *args, env=None, timeout=900):
    """One of the project's scripts in a fresh interpreter: the CompletedProcess."""
    command = [sys.executable, os.path.join(ROOT, script), *map(str, args)]
    environment = {**os.environ, **(env or {})}
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


def our_lines(stderr):
    return [line for line in stderr.splitlines() if line.strip() and not any(n in line for n in TENSORFLOW_NOTICES)]


def assert_one_line_error(stderr, *fragments):
    """stderr is one line of ours (TensorFlow's start-up notices aside) holding every fragment; no traceback."""
    lines = our_lines(stderr)
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def weights_sha(run_dir):
    with open(os.path.join(run_dir, "run.json"), encoding="utf-8") as f:
        return json.load(f)["sha256"]["selenet.weights.h5"]


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def idx_bytes(array, magic=None):
    """An IDX file's bytes for a uint8 array (the header from its shape)."""
    header = [0x800 + array.ndim if magic is None else magic, *array.shape]
    return b"".join(n.to_bytes(4, "big") for n in header) + array.tobytes()


def synthetic_digits(count, seed=0):
    """(images uint8 (count, 28, 28), labels) that a model can learn: digit d is a bright square at a place of
    its own, on noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)
    images = rng.integers(0, 60, size=(count, 28, 28), dtype=np.uint8)
    for digit in range(10):
        row, column = 2 + 8 * (digit // 4), 2 + 6 * (digit % 4)
        images[labels == digit, row : row + 6, column : column + 6] = 255
    return images, labels


def write_synthetic_mnist(directory):
    """The four MNIST IDX files, full-sized, of synthetic digits; returns the directory."""
    import senet_lenet

    os.makedirs(directory, exist_ok=True)
    for split, (images_name, labels_name, count) in senet_lenet.MNIST_FILES.items():
        images, labels = synthetic_digits(count, seed=split == "test")
        for name, array in ((images_name, images), (labels_name, labels)):
            with open(os.path.join(directory, name), "wb") as f:
                f.write(idx_bytes(array))
    return str(directory)
