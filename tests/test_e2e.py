"""End to end on the real MNIST: the scripts as a user runs them."""

import os
import signal
import subprocess
import sys

import pytest

from helpers import QUICK, ROOT, assert_one_line_error, our_lines, run_script, weights_sha

pytestmark = pytest.mark.e2e


def test_train_visualize_and_the_same_seed_twice(mnist_dir, tmp_path):
    """The quick run (2 epochs on 3,000 images), its figures, and the extended experiment: two runs with the same
    seed give identical excitations."""
    for name in ("a", "b"):
        result = run_script("senet_lenet.py", *QUICK, "--data-dir", mnist_dir, "--out-dir", tmp_path / name)
        assert result.returncode == 0, result.stderr[-2000:]
        assert our_lines(result.stderr) == []
        assert "Epoch 2, Loss:" in result.stdout and "Total params: 44,554" in result.stdout
    assert weights_sha(tmp_path / "a") == weights_sha(tmp_path / "b")
    result = run_script("visualize.py", "--run-dir", tmp_path / "a", "--data-dir", mnist_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "5 heatmaps in se_features/" in result.stdout and "SE class means:" in result.stdout
    assert len(os.listdir(tmp_path / "a" / "se_features")) == 5
    compare = run_script("visualize.py", "--compare", tmp_path / "a", tmp_path / "b", "--data-dir", mnist_dir)
    assert compare.returncode == 0 and "Max |excitation difference| over 500 test images: 0\n" in compare.stdout


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_run_resumes_to_the_same_bits(mnist_dir, tmp_path, stop):
    quick = [*QUICK, "--epochs", "3", "--data-dir", mnist_dir]
    whole = run_script("senet_lenet.py", *quick, "--out-dir", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-2000:]
    command = [sys.executable, os.path.join(ROOT, "senet_lenet.py"), *quick, "--out-dir", str(tmp_path / "stopped")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in process.stdout:
        if line.startswith("Epoch 1,"):
            process.send_signal(stop)
            break
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + stop
    assert_one_line_error(stderr, f"stopped by {signal.Signals(stop).name}", "--resume")
    resumed = run_script("senet_lenet.py", "--data-dir", mnist_dir, "--out-dir", tmp_path / "stopped", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert weights_sha(tmp_path / "stopped") == weights_sha(tmp_path / "whole")
