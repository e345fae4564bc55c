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
import senet_lenet
import visualize
from helpers import ROOT, StopAfterEpoch, assert_one_line_error, default_sigint, without_seconds
from selenet import cli, errors, files, runs

# Long enough that a signal sent after epoch 2's checkpoint lands before the last epoch.
RESUMABLE = ["--epochs", "6", "--train-samples", "6000", "--test-samples", "500"]


def weights_of(run_dir):
    model = senet_lenet.build_model()
    model.load_weights(os.path.join(run_dir, runs.WEIGHTS_FILE))
    return model.get_weights()


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, mnist_dir):
    """The uninterrupted run the resumed ones must match."""
    out_dir = tmp_path_factory.mktemp("reference")
    assert senet_lenet.main([*RESUMABLE, "--data-dir", mnist_dir, "--out-dir", str(out_dir)]) == 0
    return out_dir


def interrupt(out_dir, mnist_dir, signum):
    """Starts a run, sends `signum` once epoch 2's checkpoint exists; returns the finished process."""
    process = subprocess.Popen(
        [sys.executable, "senet_lenet.py", *RESUMABLE, "--data-dir", mnist_dir, "--out-dir", str(out_dir)],
        cwd=ROOT,
        preexec_fn=default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while 2 not in runs.checkpoint_epochs(out_dir):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 300 s"
        time.sleep(0.02)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=300)
    return process.returncode, stdout, stderr


@pytest.mark.e2e
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_then_resume_gives_the_same_bits(tmp_path, mnist_dir, reference_run, signum, code):
    out_dir = tmp_path / "run"
    returncode, _, stderr = interrupt(out_dir, mnist_dir, signum)
    assert returncode == code, stderr
    assert_one_line_error(stderr, f"stopped by {signal.Signals(signum).name}", f"--out-dir {out_dir} --resume")

    checkpoints = runs.checkpoint_epochs(out_dir)
    last = checkpoints[-1]
    assert 2 <= last < 6 and len(checkpoints) <= 2
    run = json.loads((out_dir / "run.json").read_text())
    assert run["finished"] is False and len(run["history"]) == last
    assert len((out_dir / "history.csv").read_text().splitlines()) == 1 + last
    assert not (out_dir / runs.WEIGHTS_FILE).exists()
    assert not [n for n in os.listdir(out_dir) if files.is_temporary(n)]

    assert senet_lenet.main(["--out-dir", str(out_dir), "--resume", "--data-dir", mnist_dir]) == 0
    resumed = json.loads((out_dir / "run.json").read_text())
    reference = json.loads((reference_run / "run.json").read_text())
    assert resumed["finished"] is True
    assert without_seconds(resumed["history"]) == without_seconds(reference["history"])
    for a, b in zip(weights_of(out_dir), weights_of(reference_run), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.e2e
def test_checkpoints_keep_the_newest_two(reference_run):
    assert sorted(os.listdir(reference_run / "checkpoints")) == [  # no index file: the manifest lists them
        *("epoch-5.data-00000-of-00001", "epoch-5.index", "epoch-6.data-00000-of-00001", "epoch-6.index"),
    ]


@pytest.fixture
def unfinished_run(reference_run, tmp_path):
    """The reference run as it stood after epoch 4 (its checkpoints hold epochs 5 and 6)."""
    out_dir = shutil.copytree(reference_run, tmp_path / "unfinished")
    for path in (out_dir / "checkpoints").glob("epoch-6.*"):
        path.unlink()
    run = json.loads((out_dir / "run.json").read_text())
    run["finished"], run["history"] = False, run["history"][:5]
    (out_dir / "run.json").write_text(json.dumps(run))
    os.remove(out_dir / runs.WEIGHTS_FILE)
    return out_dir


@pytest.mark.e2e
def test_resume_from_an_earlier_checkpoint(unfinished_run, reference_run, mnist_dir):
    assert senet_lenet.main(["--out-dir", str(unfinished_run), "--resume", "--data-dir", mnist_dir]) == 0
    for a, b in zip(weights_of(unfinished_run), weights_of(reference_run), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "flag",
    [["--seed", "1"], ["--optimizer", "sgd"], ["--no-se"], ["--lr", "0.5"], ["--gate", "tanh"], ["--squeeze", "max"]]
    + [["--se-position", "both"]],
)
def test_resume_with_a_conflicting_flag(unfinished_synthetic_run, flag, capsys):
    assert senet_lenet.main(["--out-dir", str(unfinished_synthetic_run), "--resume", *flag]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{flag[0]} conflicts with the run being resumed")


def test_resume_with_agreeing_flags(unfinished_synthetic_run, synthetic_mnist_dir):
    args = ["--out-dir", str(unfinished_synthetic_run), "--resume", "--epochs", "2", "--seed", "0"]
    assert senet_lenet.main([*args, "--data-dir", synthetic_mnist_dir]) == 0
    run = runs.read_run(unfinished_synthetic_run)
    assert run["finished"] and [r["epoch"] for r in run["history"]] == [1, 2]


@pytest.fixture
def finished_run(trained_synthetic_run, tmp_path):
    """A copy of a finished run that a test may change."""
    return shutil.copytree(trained_synthetic_run, tmp_path / "finished")


def test_resume_a_finished_run(finished_run, capsys):
    stamp = os.stat(finished_run / runs.WEIGHTS_FILE).st_mtime_ns
    assert senet_lenet.main(["--out-dir", str(finished_run), "--resume"]) == 0
    assert "already finished all 2 epochs: nothing to resume" in capsys.readouterr().out
    assert os.stat(finished_run / runs.WEIGHTS_FILE).st_mtime_ns == stamp


def test_a_finished_run_is_finished_where_graphviz_is_missing(finished_run, tmp_path, monkeypatch, capsys):
    """Drawn with Graphviz (SELeNet.png, recorded in run.json), read where `dot` is not on PATH: still whole."""
    assert runs.read_run(finished_run)["diagram"] == "SELeNet.png"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    stamp = os.stat(finished_run / runs.WEIGHTS_FILE).st_mtime_ns
    assert senet_lenet.main(["--out-dir", str(finished_run), "--resume"]) == 0
    assert "already finished all 2 epochs: nothing to resume" in capsys.readouterr().out
    assert (
        os.stat(finished_run / runs.WEIGHTS_FILE).st_mtime_ns == stamp and not (finished_run / "SELeNet.dot").exists()
    )


def test_a_diagram_drawn_again_replaces_the_other_kind(finished_run, synthetic_mnist_dir, tmp_path, monkeypatch):
    """Redrawn where Graphviz is missing: SELeNet.dot, recorded; the run's earlier SELeNet.png is removed."""
    os.remove(finished_run / runs.MODEL_FILE)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert senet_lenet.main(["--out-dir", str(finished_run), "--resume", "--data-dir", synthetic_mnist_dir]) == 0
    assert runs.read_run(finished_run)["diagram"] == "SELeNet.dot" and (finished_run / "SELeNet.dot").exists()
    assert not (finished_run / "SELeNet.png").exists()


def test_resume_redraws_what_a_finished_run_lacks(finished_run, synthetic_mnist_dir, capsys):
    """As if killed after run.json said finished but before the figures were drawn."""
    weights = weights_of(finished_run)
    for name in ("training_curves.png", "SELeNet.png", runs.MODEL_FILE):
        os.remove(finished_run / name)
    assert senet_lenet.main(["--out-dir", str(finished_run), "--resume", "--data-dir", synthetic_mnist_dir]) == 0
    line = "lacks whole copies of selenet.keras, training_curves.png, SELeNet.png: writing them again"
    assert line in capsys.readouterr().out
    for name in ("training_curves.png", "SELeNet.png", runs.MODEL_FILE):
        assert (finished_run / name).stat().st_size > 0
    for a, b in zip(weights_of(finished_run), weights, strict=True):  # the same model, not trained further
        np.testing.assert_array_equal(a, b)


def test_resume_can_shorten_or_lengthen_a_run(finished_run, unfinished_synthetic_run, synthetic_mnist_dir, capsys):
    assert senet_lenet.main(["--out-dir", str(finished_run), "--resume", "--epochs", "1"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--epochs 1 is fewer than the 2 epochs done in")

    data = ["--data-dir", synthetic_mnist_dir]
    assert senet_lenet.main(["--out-dir", str(finished_run), "--resume", "--epochs", "3", *data]) == 0
    assert "now has 3 epochs instead of 2" in capsys.readouterr().out
    run = runs.read_run(finished_run)
    assert run["finished"] and run["settings"].epochs == 3 and len(run["history"]) == 3

    # a long run stopped early can be ended where it stands, and then be drawn
    assert senet_lenet.main(["--out-dir", str(unfinished_synthetic_run), "--resume", "--epochs", "1", *data]) == 0
    run = runs.read_run(unfinished_synthetic_run)
    assert run["finished"] and run["settings"].epochs == 1 and len(run["history"]) == 1


def test_resume_without_checkpoint(unfinished_synthetic_run, tmp_path, capsys):
    shutil.rmtree(unfinished_synthetic_run / "checkpoints")
    assert senet_lenet.main(["--out-dir", str(unfinished_synthetic_run), "--resume"]) == 2
    assert_one_line_error(capsys.readouterr().err, "no checkpoint in")
    assert senet_lenet.main(["--out-dir", str(tmp_path / "empty"), "--resume"]) == 2
    assert_one_line_error(capsys.readouterr().err, "nothing to resume in")


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("epochs", "6", "epochs must be a positive whole number, got '6'"),
        ("lr", "abc", "lr must be a positive number, got 'abc'"),
        ("lr", -1, "lr must be a positive number, got -1"),
        ("batch_size", 0, "batch_size must be a positive whole number, got 0"),
        ("colour", "red", "unknown colour"),
    ],
)
def test_resume_a_hand_edited_run_json(unfinished_synthetic_run, key, value, fragment, capsys):
    path = unfinished_synthetic_run / runs.RUN_FILE
    run = json.loads(path.read_text())
    run["settings"][key] = value
    path.write_text(json.dumps(run))
    assert senet_lenet.main(["--out-dir", str(unfinished_synthetic_run), "--resume"]) == 2
    assert_one_line_error(capsys.readouterr().err, "is not a run.json written by senet_lenet.py", fragment)


def test_visualize_refuses_an_unfinished_run(unfinished_synthetic_run, capsys):
    assert visualize.main(["--run-dir", str(unfinished_synthetic_run)]) == 2
    assert_one_line_error(capsys.readouterr().err, "is unfinished (1 of 2 epochs)", "--resume")


@pytest.mark.e2e
def test_ablation_resumes_a_half_finished_run(tmp_path, mnist_dir, capsys):
    args = [
        *("--seeds", "1", "--epochs", "3", "--train-samples", "2000", "--test-samples", "300"),
        *("--optimizers", "adam", "--reductions", "4", "--data-dir", mnist_dir),
        *("--workers", "1"),  # in this process: the stop below is a stand-in for a signal here
    ]
    reference = tmp_path / "reference"
    assert ablation.main([*args, "--out-dir", str(reference)]) == 0
    study = tmp_path / "study"
    parsed = cli.study_parser().parse_args([*args, "--out-dir", str(study)])
    with pytest.raises(errors.Interrupted):
        ablation.study(parsed, StopAfterEpoch(study / "se-r4_adam_seed0", 1))
    capsys.readouterr()
    assert ablation.main([*args, "--out-dir", str(study)]) == 0
    out = capsys.readouterr().out
    assert "resuming se-r4_adam_seed0" in out and "training no-se_adam_seed0" in out
    for name in ("se-r4_adam_seed0", "no-se_adam_seed0"):
        a, b = (json.loads((d / name / "run.json").read_text()) for d in (study, reference))
        assert without_seconds(a["history"]) == without_seconds(b["history"])
