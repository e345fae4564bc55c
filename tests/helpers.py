"""Helpers shared by the tests: running the scripts, one-line errors, synthetic MNIST and run folders."""

import json
import os
import signal
import struct
import subprocess
import sys

import numpy as np

from selenet.predict import accuracy_percent, predictor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A quick run: a slice of real MNIST, enough to learn something in seconds.
QUICK = ["--epochs", "2", "--train-samples", "3000", "--test-samples", "500"]

# The run of the trained_synthetic_run fixture (conftest.py), trained once per test process: a test that trains
# with these flags on the synthetic digits may take that run as its reference.
TRAINED_SYNTHETIC = ["--epochs", "2", "--train-samples", "500", "--test-samples", "200", "--seed", "3"]

# A study of every axis once, in this process: the grid with both optimizers and each sweep's other value.
SYNTHETIC_STUDY = [
    *"--seeds 1 --epochs 1 --train-samples 300 --test-samples 200 --optimizers adam sgd --reductions 8".split(),
    *"--squeezes max --gates relu --positions both --excitations conv1d fixed --se-biases on --workers 1".split(),
]


def default_sigint():
    """preexec_fn for a child that must answer Ctrl-C even where this process ignores it (a background job)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_script(script, *args, env=None, timeout=900, encoding=None):
    """Runs one of the project's scripts in a fresh interpreter; returns the CompletedProcess (its output read
    in `encoding`, else the locale's)."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *map(str, args)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        encoding=encoding,
        timeout=timeout,
    )


def assert_one_line_error(stderr, *fragments):
    """stderr is one error line (TensorFlow's start-up notices aside) holding every fragment."""
    lines = [
        line
        for line in stderr.splitlines()
        if line.strip() and "absl::InitializeLog" not in line and not line.startswith("I0000")
    ]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class StopAfterEpoch:
    """Acts as a signal arriving once the given epoch's checkpoint exists (a signals.StopOnSignal stand-in)."""

    def __init__(self, out_dir, epoch):
        self.out_dir, self.epoch = out_dir, epoch

    def check(self):
        from selenet import errors, runs

        if self.epoch in runs.checkpoint_epochs(self.out_dir):
            raise errors.Interrupted(signal.SIGINT)


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def idx_bytes(array, magic=None):
    """An IDX file's bytes for a uint8 array (the header from its shape)."""
    if magic is None:
        magic = 0x800 + array.ndim
    return struct.pack(f">{1 + array.ndim}I", magic, *array.shape) + array.tobytes()


def synthetic_digits(count, seed=0):
    """(images uint8 (count, 28, 28), labels) that a model can learn: digit d is a bright
    square at a place of its own, on noise."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(count) % 10).astype(np.uint8)
    images = rng.integers(0, 60, size=(count, 28, 28), dtype=np.uint8)
    for digit in range(10):
        row, column = 2 + 8 * (digit // 4), 2 + 6 * (digit % 4)
        images[labels == digit, row : row + 6, column : column + 6] = 255
    return images, labels


def write_synthetic_mnist(directory):
    """The four MNIST IDX files, full-sized, of synthetic digits; returns the directory."""
    os.makedirs(directory, exist_ok=True)
    from selenet.mnist import IDX_FILES, TEST_RECORDS, TRAIN_RECORDS

    for split, count in (("train", TRAIN_RECORDS), ("test", TEST_RECORDS)):
        images, labels = synthetic_digits(count, seed=split == "test")
        for kind, array in (("images", images), ("labels", labels)):
            with open(os.path.join(directory, IDX_FILES[f"{split}_{kind}"]), "wb") as f:
                f.write(idx_bytes(array))
    return str(directory)


def write_synthetic_run(run_dir, data_dir, settings=None, epochs_done=None):
    """A run folder as senet_lenet.py leaves it, without training: an untrained model's weights
    (seeded) and a run.json whose accuracies are that model's on the test data. Returns run.json."""
    import senet_lenet
    from selenet import runs
    from selenet.checkpoints import Checkpoints
    from selenet.manifest import Manifest
    from selenet.mnist import load_mnist, select
    from selenet.settings import Settings

    settings = settings or Settings(epochs=2, train_samples=300, test_samples=300)
    epochs_done = settings.epochs if epochs_done is None else epochs_done
    model = senet_lenet.seeded_model(settings)
    _, test_data = load_mnist(data_dir, train=False)
    images, labels = select(test_data, settings.test_samples)
    accuracy = accuracy_percent(predictor(model)(images)[0], labels)
    history = [
        {"epoch": e, "loss": 2.3, "accuracy": 10.0, "test_loss": 2.3, "test_accuracy": accuracy, "seconds": 0.1}
        for e in range(1, epochs_done + 1)
    ]
    os.makedirs(run_dir, exist_ok=True)
    manifest, checksums = Manifest(run_dir, "run"), {}
    if epochs_done == settings.epochs:
        for name, save in ((runs.WEIGHTS_FILE, model.save_weights), (runs.MODEL_FILE, model.save)):
            checksums[name] = manifest.write_file(name, save)
    else:
        Checkpoints(run_dir, model, senet_lenet.make_optimizer(settings, model), settings, manifest).save(history)
    run = runs.run_record(model, settings, history, checksums)
    runs.save_progress(run, manifest)
    return json.loads(open(os.path.join(run_dir, runs.RUN_FILE)).read())
