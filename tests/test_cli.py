"""Bad input: one clear line on stderr, exit code 2, nothing half-written."""

import json
import os
import shutil

import pytest

import senet_lenet as selenet
import visualize
from conftest import assert_one_line_error, run_script


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--epochs", "0"], "--epochs: must be positive, got 0"),
        (["--epochs", "two"], "--epochs: 'two' is not a whole number"),
        (["--batch-size", "-5"], "--batch-size: must be positive, got -5"),
        (["--lr", "0"], "--lr: must be a positive number, got 0"),
        (["--lr", "-0.1"], "--lr: must be a positive number"),
        (["--lr", "nan"], "--lr: must be a positive number"),
        (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
        (["--reduction", "0"], "--reduction: must be positive, got 0"),
        (["--reduction", "32"], "--reduction: SE reduction 32 leaves no hidden unit for 16 channels"),
        (["--unknown"], "unrecognized arguments: --unknown"),
    ],
)
def test_bad_training_flags(args, fragment, capsys):
    with pytest.raises(SystemExit) as exit_info:
        selenet.main(args)
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "senet_lenet.py: error:", fragment)


def test_default_learning_rate_follows_the_optimizer():
    assert selenet.parse_args([]).lr == 0.001
    assert selenet.parse_args(["--optimizer", "sgd"]).lr == 0.01
    assert selenet.parse_args(["--optimizer", "sgd", "--lr", "0.2"]).lr == 0.2


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        selenet.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--epochs", "--batch-size", "--optimizer", "--lr", "--reduction", "--seed", "--data-dir", "--out-dir"):
        assert flag in text


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert selenet.main(["--out-dir", str(blocker / "out")]) == 2
    assert_one_line_error(capsys.readouterr().err, "cannot write to output directory")


def test_bad_training_flag_in_a_fresh_interpreter(tmp_path):
    result = run_script("senet_lenet.py", "--batch-size", "0", "--out-dir", tmp_path)
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "--batch-size: must be positive")
    assert os.listdir(tmp_path) == []


@pytest.fixture
def run_copy(quick_run, tmp_path):
    """A copy of the quick run that a test may damage."""
    return shutil.copytree(quick_run, tmp_path / "run")


def visualize_error(capsys, *args):
    assert visualize.main(list(map(str, args))) == 2
    return capsys.readouterr().err


def test_visualize_missing_run_dir(tmp_path, capsys):
    err = visualize_error(capsys, "--run-dir", tmp_path / "nowhere")
    assert_one_line_error(err, "visualize.py: error:", "nowhere does not exist")


def test_visualize_missing_run_json(run_copy, capsys, mnist_dir):
    os.remove(run_copy / "run.json")
    err = visualize_error(capsys, "--run-dir", run_copy, "--data-dir", mnist_dir)
    assert_one_line_error(err, "run.json is missing")


def test_visualize_damaged_run_json(run_copy, capsys, mnist_dir):
    (run_copy / "run.json").write_text('{"settings": {"epochs": 2')
    err = visualize_error(capsys, "--run-dir", run_copy, "--data-dir", mnist_dir)
    assert_one_line_error(err, "is not a run.json written by senet_lenet.py")


def test_visualize_missing_weights(run_copy, capsys, mnist_dir):
    os.remove(run_copy / selenet.WEIGHTS_FILE)
    err = visualize_error(capsys, "--run-dir", run_copy, "--data-dir", mnist_dir)
    assert_one_line_error(err, "weights file", "is missing")


def test_visualize_weights_that_do_not_fit(run_copy, capsys, mnist_dir):
    run = json.loads((run_copy / "run.json").read_text())
    run["settings"]["reduction"] = 2  # 8 hidden units, the weights have 4
    (run_copy / "run.json").write_text(json.dumps(run))
    err = visualize_error(capsys, "--run-dir", run_copy, "--data-dir", mnist_dir)
    assert_one_line_error(err, "do not fit the model", "reduction 2")


def test_visualize_damaged_weights(run_copy, capsys, mnist_dir):
    (run_copy / selenet.WEIGHTS_FILE).write_bytes(b"\x89HDF\r\n\x1a\n broken")
    err = visualize_error(capsys, "--run-dir", run_copy, "--data-dir", mnist_dir)
    assert_one_line_error(err, "do not fit the model")


def test_visualize_wrong_recorded_accuracy(run_copy, capsys, mnist_dir):
    run = json.loads((run_copy / "run.json").read_text())
    run["final"]["test_accuracy"] -= 0.5
    (run_copy / "run.json").write_text(json.dumps(run))
    err = visualize_error(capsys, "--run-dir", run_copy, "--data-dir", mnist_dir)
    assert_one_line_error(err, "differs from the recorded", "wrong weights or wrong data")
    assert not (run_copy / "se_features").exists()


def test_visualize_bad_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        visualize.main(["--batch-size", "0"])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "--batch-size: must be positive")


def test_compare_batch_out_of_range(quick_run, capsys, mnist_dir):
    err = visualize_error(capsys, "--compare", quick_run, quick_run, "--batch", 5, "--data-dir", mnist_dir)
    assert_one_line_error(err, "--batch 5 is out of range: batches are 0 to 4")
