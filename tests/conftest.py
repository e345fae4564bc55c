"""Fixtures: the real MNIST (e2e layer), synthetic MNIST and a trained synthetic run (runs layer).

The layers are said where a test is written: `pytestmark = pytest.mark.runs` (trains, or starts a process) or
`pytest.mark.e2e` (the real MNIST, minutes); a test with neither is a unit test: no training, no process."""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from helpers import TRAINED, write_synthetic_mnist  # noqa: E402  (first: it reads the user's ONEDNN_MAX_CPU_ISA)

import senet_lenet  # noqa: E402  # isort: skip

senet_lenet.use_threads(1)  # TensorFlow takes its threads once, before its first op: the runs' default


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST from $MNIST_DIR. Fails in CI when it is not there; skips elsewhere."""
    path = os.environ.get("MNIST_DIR")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("MNIST_DIR is not set; CI needs the real MNIST (../shared/mnist)")
        pytest.skip("set MNIST_DIR to a folder with the MNIST IDX files to run this test")
    return path


@pytest.fixture(scope="session")
def synthetic_mnist_dir(tmp_path_factory):
    """Full-sized MNIST IDX files of synthetic digits."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("synthetic_mnist"))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, synthetic_mnist_dir):
    """A finished run of two epochs on 500 synthetic digits, trained by senet_lenet.py's main."""
    out_dir = tmp_path_factory.mktemp("trained") / "run"
    assert senet_lenet.main([*TRAINED, "--data-dir", synthetic_mnist_dir, "--out-dir", str(out_dir)]) == 0
    return out_dir
