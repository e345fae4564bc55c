"""Fixtures: the real MNIST (end-to-end layer), synthetic MNIST and run folders (fast layer)."""

import inspect
import os
import re
import shutil
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import senet_lenet  # noqa: E402
from helpers import QUICK, SYNTHETIC_STUDY, TRAINED_SYNTHETIC, write_synthetic_mnist, write_synthetic_run  # noqa: E402
from selenet.determinism import use_threads
from selenet.mnist import IDX_FILES, find_idx_files, load_mnist  # noqa: E402
from selenet.settings import Settings  # noqa: E402

# TensorFlow takes its thread count once per process, before its first op: the runs' default, as the scripts do.
use_threads(Settings.threads)


@pytest.fixture(scope="session")
def mnist_dir():
    """The real MNIST from $MNIST_DIR. Fails in CI when it is not there; skips elsewhere."""
    path = os.environ.get("MNIST_DIR")
    if not path:
        if os.environ.get("CI"):
            pytest.fail("MNIST_DIR is not set; CI needs the real MNIST (../shared/mnist)")
        pytest.skip("set MNIST_DIR to a folder with the MNIST IDX files to run this test")
    if len(find_idx_files(path)) != len(IDX_FILES):
        pytest.fail(f"MNIST_DIR={path} does not hold the four MNIST IDX files")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    return load_mnist(mnist_dir)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory, mnist_dir):
    """A finished quick run (seed 0) on the real MNIST, in its own folder."""
    out_dir = tmp_path_factory.mktemp("quick_run")
    assert senet_lenet.main([*QUICK, "--data-dir", mnist_dir, "--out-dir", str(out_dir)]) == 0
    return out_dir


@pytest.fixture(scope="session")
def synthetic_mnist_dir(tmp_path_factory):
    """Full-sized MNIST IDX files of synthetic digits: the data of the fast layer."""
    return write_synthetic_mnist(tmp_path_factory.mktemp("synthetic_mnist"))


@pytest.fixture(scope="session")
def synthetic_run_template(tmp_path_factory, synthetic_mnist_dir):
    run_dir = tmp_path_factory.mktemp("template") / "run"
    write_synthetic_run(run_dir, synthetic_mnist_dir)
    return run_dir


@pytest.fixture
def synthetic_run(tmp_path, synthetic_run_template):
    """A finished run folder with an untrained model (no training), that a test may change: a copy."""
    return shutil.copytree(synthetic_run_template, tmp_path / "run")


@pytest.fixture(scope="session")
def unfinished_synthetic_run_template(tmp_path_factory, synthetic_mnist_dir):
    run_dir = tmp_path_factory.mktemp("unfinished_template") / "unfinished"
    write_synthetic_run(run_dir, synthetic_mnist_dir, epochs_done=1)
    return run_dir


@pytest.fixture
def unfinished_synthetic_run(tmp_path, unfinished_synthetic_run_template):
    """A run folder stopped after epoch 1 of 2, with its checkpoint: a copy."""
    return shutil.copytree(unfinished_synthetic_run_template, tmp_path / "unfinished")


@pytest.fixture(scope="session")
def trained_synthetic_run(tmp_path_factory, synthetic_mnist_dir):
    """A run of two epochs on 500 synthetic digits, trained by senet_lenet.py's main: every file a run writes."""
    out_dir = tmp_path_factory.mktemp("trained_synthetic_run")
    assert senet_lenet.main([*TRAINED_SYNTHETIC, "--data-dir", synthetic_mnist_dir, "--out-dir", str(out_dir)]) == 0
    return out_dir


@pytest.fixture(scope="session")
def synthetic_study(tmp_path_factory, synthetic_mnist_dir):
    """A finished study (SYNTHETIC_STUDY, eight runs) on synthetic digits; tests change a copy. Its tests share
    one xdist group, so that one test process trains it."""
    import ablation

    out_dir = tmp_path_factory.mktemp("synthetic_study")
    assert ablation.main([*SYNTHETIC_STUDY, "--data-dir", synthetic_mnist_dir, "--out-dir", str(out_dir)]) == 0
    return out_dir


# ---- The three layers, named for what they cost ------------------------------------------------------------------
# unit: no training and no child process (python -m pytest -m "not runs and not e2e"); runs: trains small models,
# runs a script's main or starts interpreters (-m runs); e2e: the real MNIST (-m e2e, marked by hand).
# A test is `runs` if a fixture it uses trains (or copies a trained run), or its code trains, calls a script's
# main or starts a process.
TRAINING_FIXTURES = {"trained_synthetic_run", "synthetic_study", "three_epochs", "new_setting_runs"}
RUN_LEVEL_CODE = re.compile(
    r"\b(main|train_run|train_synthetic|train|run_script|excitation_role|study_run|run_all)\(|subprocess|Popen|spawn"
)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("e2e") or item.get_closest_marker("runs"):
            continue
        source = inspect.getsource(item.function) if hasattr(item, "function") else ""
        if TRAINING_FIXTURES & set(item.fixturenames) or RUN_LEVEL_CODE.search(source):
            item.add_marker(pytest.mark.runs)
