"""Interrupt and resume: the same bits as an uninterrupted run; checkpoints; --resume's rules."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import ablation
import senet_lenet as selenet
from conftest import ROOT, assert_one_line_error

# Long enough that a signal sent after epoch 2's checkpoint lands before the last epoch.
RESUMABLE = ["--epochs", "6", "--train-samples", "6000", "--test-samples", "500"]


def without_seconds(history):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def weights_of(run_dir):
    model = selenet.build_model()
    model.load_weights(os.path.join(run_dir, selenet.WEIGHTS_FILE))
    return model.get_weights()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, mnist_dir):
    """The uninterrupted run the resumed ones must match."""
    out_dir = tmp_path_factory.mktemp("reference")
    assert selenet.main([*RESUMABLE, "--data-dir", mnist_dir, "--out-dir", str(out_dir)]) == 0
    return out_dir


def interrupt(out_dir, mnist_dir, signum):
    """Starts a run, sends `signum` once epoch 2's checkpoint exists; returns the finished process."""
    process = subprocess.Popen(
        [sys.executable, "senet_lenet.py", *RESUMABLE, "--data-dir", mnist_dir, "--out-dir", str(out_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (out_dir / "checkpoints" / "epoch_0002").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 300 s"
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_then_resume_gives_the_same_bits(tmp_path, mnist_dir, reference_run, signum, code):
    out_dir = tmp_path / "run"
    returncode, _, stderr = interrupt(out_dir, mnist_dir, signum)
    assert returncode == code, stderr
    assert_one_line_error(stderr, f"stopped by {signal.Signals(signum).name}", f"--out-dir {out_dir} --resume")

    checkpoints = sorted(os.listdir(out_dir / "checkpoints"))
    last = int(checkpoints[-1][6:])
    assert 2 <= last < 6 and len(checkpoints) <= 2
    run = json.loads((out_dir / "run.json").read_text())
    assert run["finished"] is False and len(run["history"]) == last
    assert len((out_dir / "history.csv").read_text().splitlines()) == 1 + last
    assert not (out_dir / selenet.WEIGHTS_FILE).exists()
    assert not [n for n in os.listdir(out_dir) if ".tmp" in n]

    assert selenet.main(["--out-dir", str(out_dir), "--resume", "--data-dir", mnist_dir]) == 0
    resumed = json.loads((out_dir / "run.json").read_text())
    reference = json.loads((reference_run / "run.json").read_text())
    assert resumed["finished"] is True
    assert without_seconds(resumed["history"]) == without_seconds(reference["history"])
    for a, b in zip(weights_of(out_dir), weights_of(reference_run)):
        np.testing.assert_array_equal(a, b)


def test_checkpoints_keep_the_newest_two(reference_run):
    assert sorted(os.listdir(reference_run / "checkpoints")) == ["epoch_0005", "epoch_0006"]
    assert sorted(os.listdir(reference_run / "checkpoints" / "epoch_0006")) == [
        "history.json", "model.weights.h5", "optimizer.npz",
    ]  # fmt: skip


@pytest.fixture
def unfinished_run(reference_run, tmp_path):
    """The reference run as it stood after epoch 4 (its checkpoints hold epochs 5 and 6)."""
    out_dir = shutil.copytree(reference_run, tmp_path / "unfinished")
    shutil.rmtree(out_dir / "checkpoints" / "epoch_0006")
    run = json.loads((out_dir / "run.json").read_text())
    run["finished"], run["history"] = False, run["history"][:5]
    (out_dir / "run.json").write_text(json.dumps(run))
    os.remove(out_dir / selenet.WEIGHTS_FILE)
    return out_dir


def test_resume_from_an_earlier_checkpoint(unfinished_run, reference_run, mnist_dir):
    assert selenet.main(["--out-dir", str(unfinished_run), "--resume", "--data-dir", mnist_dir]) == 0
    for a, b in zip(weights_of(unfinished_run), weights_of(reference_run)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("flag", [["--epochs", "9"], ["--seed", "1"], ["--optimizer", "sgd"], ["--no-se"], ["--epochs", "10"]])
def test_resume_with_a_conflicting_flag(unfinished_run, flag, capsys):
    assert selenet.main(["--out-dir", str(unfinished_run), "--resume", *flag]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{flag[0]} conflicts with the run being resumed")


def test_resume_with_agreeing_flags(unfinished_run, mnist_dir):
    args = ["--out-dir", str(unfinished_run), "--resume", "--epochs", "6", "--seed", "0", "--data-dir", mnist_dir]
    assert selenet.main(args) == 0


def test_resume_a_finished_run(reference_run, capsys):
    stamp = os.stat(reference_run / selenet.WEIGHTS_FILE).st_mtime_ns
    assert selenet.main(["--out-dir", str(reference_run), "--resume"]) == 0
    assert "already finished all 6 epochs: nothing to resume" in capsys.readouterr().out
    assert os.stat(reference_run / selenet.WEIGHTS_FILE).st_mtime_ns == stamp


def test_resume_without_checkpoint(unfinished_run, tmp_path, capsys):
    shutil.rmtree(unfinished_run / "checkpoints")
    assert selenet.main(["--out-dir", str(unfinished_run), "--resume"]) == 2
    assert_one_line_error(capsys.readouterr().err, "no checkpoint in")
    assert selenet.main(["--out-dir", str(tmp_path / "empty"), "--resume"]) == 2
    assert_one_line_error(capsys.readouterr().err, "nothing to resume in")


def test_visualize_refuses_an_unfinished_run(unfinished_run, capsys):
    import visualize

    assert visualize.main(["--run-dir", str(unfinished_run)]) == 2
    assert_one_line_error(capsys.readouterr().err, "is unfinished (5 of 6 epochs)", "--resume")


class StopAfterEpoch:
    """Acts as a signal arriving once the given epoch's checkpoint exists."""

    def __init__(self, out_dir, epoch):
        self.marker = os.path.join(out_dir, "checkpoints", f"epoch_{epoch:04d}")

    def check(self):
        if os.path.isdir(self.marker):
            raise selenet.Interrupted(signal.SIGINT)


def test_ablation_resumes_a_half_finished_run(tmp_path, mnist_dir, capsys):
    args = [
        "--seeds", "1", "--epochs", "3", "--train-samples", "2000", "--test-samples", "300",
        "--optimizers", "adam", "--reductions", "4", "--data-dir", mnist_dir,
    ]  # fmt: skip
    reference = tmp_path / "reference"
    assert ablation.main([*args, "--out-dir", str(reference)]) == 0
    study = tmp_path / "study"
    parsed = ablation.parse_args([*args, "--out-dir", str(study)])
    with pytest.raises(selenet.Interrupted):
        ablation.study(parsed, StopAfterEpoch(study / "se-r4_adam_seed0", 1))
    capsys.readouterr()
    assert ablation.main([*args, "--out-dir", str(study)]) == 0
    out = capsys.readouterr().out
    assert "resuming se-r4_adam_seed0" in out and "training no-se_adam_seed0" in out
    for name in ("se-r4_adam_seed0", "no-se_adam_seed0"):
        a, b = (json.loads((d / name / "run.json").read_text()) for d in (study, reference))
        assert without_seconds(a["history"]) == without_seconds(b["history"])
