"""Shared fixtures: the real MNIST, small trained runs, running the scripts."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import senet_lenet as selenet  # noqa: E402

# A quick run: a slice of real MNIST, enough to learn something in seconds.
QUICK = ["--epochs", "2", "--train-samples", "3000", "--test-samples", "500"]


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST from $MNIST_DIR. Fails in CI when it is not there; skips elsewhere."""
    path = os.environ.get("MNIST_DIR")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("MNIST_DIR is not set; CI needs the real MNIST (../shared/mnist)")
        pytest.skip("set MNIST_DIR to a folder with the MNIST IDX files to run this test")
    if len(selenet.find_idx_files(path)) != len(selenet.IDX_FILES):
        pytest.fail(f"MNIST_DIR={path} does not hold the four MNIST IDX files")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    return selenet.load_mnist(mnist_dir)


def train_quick(out_dir, mnist_dir, *extra):
    """Trains a quick run in this process; returns its exit code."""
    return selenet.main([*QUICK, "--data-dir", mnist_dir, "--out-dir", str(out_dir), *extra])


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory, mnist_dir):
    """A finished quick run (seed 0) in its own folder."""
    out_dir = tmp_path_factory.mktemp("quick_run")
    assert train_quick(out_dir, mnist_dir) == 0
    return out_dir


def run_script(script, *args, env=None, timeout=900):
    """Runs one of the project's scripts in a fresh interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *map(str, args)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
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
