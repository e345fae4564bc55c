"""Bad input: one clear line on stderr, exit code 2, nothing half-written."""

import json
import os
import re
import subprocess
import sys

import pytest
import tensorflow as tf

import senet_lenet
import visualize
from helpers import ROOT, assert_one_line_error
from selenet import runs


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
        (["--reduction", "0"], "SE reduction must be a positive integer, got 0"),
        (["--reduction", "32"], "SE reduction 32 leaves no hidden unit for 16 channels"),
        (["--seed", "-1"], "--seed: must be a whole number from 0 to 2**32 - 1, got -1"),
        (["--seed", str(2**32)], "--seed: must be a whole number from 0 to 2**32 - 1, got 4294967296"),
        (["--se-position", "fc1"], "argument --se-position: invalid choice: 'fc1'"),
        (["--squeeze", "median"], "argument --squeeze: invalid choice: 'median'"),
        (["--gate", "softmax"], "argument --gate: invalid choice: 'softmax'"),
        (["--se-position", "both", "--conv1-reduction", "8"], "reduction 8 leaves no hidden unit for 6 channels"),
        (["--unknown"], "unrecognized arguments: --unknown"),
    ],
)
def test_bad_training_flags(args, fragment, capsys, tmp_path):
    try:
        code = senet_lenet.main([*args, "--out-dir", str(tmp_path / "out")])
    except SystemExit as exit_info:  # argparse's own check
        code = exit_info.code
    assert code == 2
    assert_one_line_error(capsys.readouterr().err, "senet_lenet.py: error:", fragment)
    assert not (tmp_path / "out").exists()


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert senet_lenet.main(["--out-dir", str(blocker / "out")]) == 2
    assert_one_line_error(capsys.readouterr().err, "cannot write to output directory")


# What a script does before TensorFlow loads, seen from outside: its help, a bad flag, a bad setting.
# A fresh interpreter is the point here; `-X importtime` lists every module the process imported.
BEFORE_TENSORFLOW = [
    ("senet_lenet.py", ["--help"], 0, "--conv1-reduction"),
    ("ablation.py", ["--help"], 0, "--workers"),
    ("visualize.py", ["--help"], 0, "--compare"),
    ("benchmarks/bench_train.py", ["--help"], 0, "--epochs"),
    ("senet_lenet.py", ["--batch-size", "0", "--out-dir", "OUT"], 2, "--batch-size: must be positive"),
    ("senet_lenet.py", ["--reduction", "32", "--out-dir", "OUT"], 2, "leaves no hidden unit"),
    ("ablation.py", ["--seeds", "many"], 2, "'many' is not a whole number"),
    ("visualize.py", ["--bogus"], 2, "unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize(("script", "args", "code", "fragment"), BEFORE_TENSORFLOW)
def test_help_and_bad_flags_are_answered_before_tensorflow_loads(script, args, code, fragment, tmp_path):
    args = [arg.replace("OUT", str(tmp_path)) for arg in args]
    result = subprocess.run(
        [sys.executable, "-X", "importtime", os.path.join(ROOT, script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}
    messages = "\n".join(line for line in result.stderr.splitlines() if not line.startswith("import time:"))
    assert result.returncode == code, messages
    assert "tensorflow" not in imported and "keras" not in imported and "matplotlib" not in imported
    if code == 0:
        assert fragment in result.stdout and messages == ""
        text = " ".join(result.stdout.split())  # argparse wraps lines
        assert "(default: None)" not in text and not re.search(r"\(default:[^()]*\) \(default:", text)
    else:
        assert_one_line_error(messages, fragment)
        assert os.listdir(tmp_path) == []  # nothing written


def visualize_error(capsys, *args):
    assert visualize.main(list(map(str, args))) == 2
    return capsys.readouterr().err


def test_visualize_missing_run_dir(tmp_path, capsys):
    err = visualize_error(capsys, "--run-dir", tmp_path / "nowhere")
    assert_one_line_error(err, "visualize.py: error:", "nowhere does not exist")


def test_visualize_missing_run_json(synthetic_run, capsys, synthetic_mnist_dir):
    os.remove(synthetic_run / "run.json")
    err = visualize_error(capsys, "--run-dir", synthetic_run, "--data-dir", synthetic_mnist_dir)
    assert_one_line_error(err, "run.json is missing")


def test_visualize_damaged_run_json(synthetic_run, capsys, synthetic_mnist_dir):
    (synthetic_run / "run.json").write_text('{"settings": {"epochs": 2')
    err = visualize_error(capsys, "--run-dir", synthetic_run, "--data-dir", synthetic_mnist_dir)
    assert_one_line_error(err, "is not a run.json written by senet_lenet.py")


def test_visualize_missing_weights(synthetic_run, capsys, synthetic_mnist_dir):
    os.remove(synthetic_run / runs.WEIGHTS_FILE)
    err = visualize_error(capsys, "--run-dir", synthetic_run, "--data-dir", synthetic_mnist_dir)
    assert_one_line_error(err, "selenet.weights.h5 is missing", "--resume")


def test_visualize_weights_that_do_not_fit(synthetic_run, capsys, synthetic_mnist_dir):
    run = json.loads((synthetic_run / "run.json").read_text())
    run["settings"]["reduction"] = 2  # 8 hidden units, the weights have 4
    (synthetic_run / "run.json").write_text(json.dumps(run))
    err = visualize_error(capsys, "--run-dir", synthetic_run, "--data-dir", synthetic_mnist_dir)
    assert_one_line_error(err, "do not fit the model", "reduction 2")


def test_visualize_damaged_weights(synthetic_run, capsys, synthetic_mnist_dir):
    (synthetic_run / runs.WEIGHTS_FILE).write_bytes(b"\x89HDF\r\n\x1a\n broken")
    err = visualize_error(capsys, "--run-dir", synthetic_run, "--data-dir", synthetic_mnist_dir)
    assert_one_line_error(err, "selenet.weights.h5 is not the file this run wrote", "--resume")


def test_visualize_wrong_recorded_accuracy(synthetic_run, capsys, synthetic_mnist_dir):
    run = json.loads((synthetic_run / "run.json").read_text())
    run["final"]["test_accuracy"] -= 0.5
    (synthetic_run / "run.json").write_text(json.dumps(run))
    err = visualize_error(capsys, "--run-dir", synthetic_run, "--data-dir", synthetic_mnist_dir)
    assert_one_line_error(err, "differs from the recorded", "wrong weights or wrong data")
    assert not (synthetic_run / "se_features").exists()


def test_visualize_bad_flags(capsys):
    with pytest.raises(SystemExit) as exit_info:
        visualize.main(["--batch-size", "0"])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "--batch-size: must be positive")


def test_compare_batch_out_of_range(synthetic_run, capsys, synthetic_mnist_dir):
    args = ["--compare", synthetic_run, synthetic_run, "--batch", 3, "--data-dir", synthetic_mnist_dir]
    assert_one_line_error(visualize_error(capsys, *args), "--batch 3 is out of range: batches are 0 to 2")


def test_an_op_without_a_deterministic_kernel_is_one_line(tmp_path, synthetic_mnist_dir, monkeypatch, capsys):
    """What a GPU user meets (TensorFlow #51466): one line naming the op, exit 1, no traceback."""
    message = "Deterministic GPU implementation of unsorted segment reduction op not available."

    def train_run(*args, **kwargs):
        raise tf.errors.UnimplementedError(None, None, message + "\n[[{{node UnsortedSegmentSum}}]]")

    monkeypatch.setattr(senet_lenet, "train_run", train_run)
    args = ["--epochs", "1", "--train-samples", "100", "--data-dir", synthetic_mnist_dir, "--out-dir", str(tmp_path)]
    assert senet_lenet.main(args) == 1
    assert_one_line_error(capsys.readouterr().err, "senet_lenet.py: error: " + message, "verified on CPU")


def test_a_bug_is_not_reported_as_bad_input_but_raised(tmp_path, synthetic_mnist_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(senet_lenet, "train_run", broken)
    args = ["--train-samples", "100", "--test-samples", "100", "--data-dir", synthetic_mnist_dir]
    with pytest.raises(ZeroDivisionError, match="a bug"):
        senet_lenet.main([*args, "--out-dir", str(tmp_path)])


def test_tensorflows_known_start_up_notices_are_dropped_and_nothing_else():
    """TensorFlow's import prints absl's warning and the oneDNN notice twice on x86: exactly those go."""
    code = (
        "import os, sys, types\n"
        "fake = types.ModuleType('tensorflow')\n"
        "class Finder:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name != 'tensorflow': return None\n"
        "        import importlib.machinery\n"
        "        return importlib.machinery.ModuleSpec(name, self)\n"
        "    def create_module(self, spec): return None\n"
        "    def exec_module(self, module):\n"
        "        for line in [\n"
        "            'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR',\n"
        "            'I0000 00:00:1796240336.8   12326 port.cc:153] oneDNN custom operations are on. You may see',\n"
        "            'W0000 00:00:1796240336.9   12326 gpu.cc:1] a warning that stays',\n"
        "            'I0000 00:00:1796240337.1   12326 port.cc:153] oneDNN custom operations are on. Again.',\n"
        "        ]: os.write(2, (line + '\\n').encode())\n"
        "sys.meta_path.insert(0, Finder())\n"
        "from selenet import quiet_start\n"
        "quiet_start.import_tensorflow()\n"
        "os.write(2, b'after the import\\n')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "W0000 00:00:1796240336.9   12326 gpu.cc:1] a warning that stays\nafter the import\n"


@pytest.mark.parametrize("script", ["senet_lenet.py", "ablation.py"])
def test_a_script_starts_without_tensorflows_notices(script, tmp_path):
    """The real TensorFlow: a bad --out-dir is answered after it loads, and stderr holds that line alone."""
    blocker = tmp_path / "a-file"
    blocker.write_text("the user's")
    result = subprocess.run(
        [sys.executable, script, "--out-dir", str(blocker / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1 and "oneDNN" not in result.stderr and "absl" not in result.stderr
