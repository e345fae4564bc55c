"""What differs off Linux, tested here: paths a manifest may hold, text files, consoles that are not UTF-8,
files held open by another program, resume hints per shell; and the scripts in a child process with what
Windows lacks taken away (fcntl, os.pread/pwrite, sched_getaffinity, /dev/shm, a UTF-8 console)."""

import errno
import importlib.util
import io
import os
import signal
import subprocess
import sys
import time

import pytest

from helpers import ROOT, TRAINED_SYNTHETIC, assert_one_line_error, default_sigint, run_script
from selenet import cli, files, locks, machine, manifest, runs
from selenet.determinism import use_threads
from selenet.errors import UsageError, WriteError


@pytest.mark.parametrize(
    "name",
    [
        "..\\..\\Documents\\thesis.docx",
        "C:\\Windows\\win.ini",
        "C:/Windows/win.ini",
        "/etc/passwd",
        "a/../../b",
        "a\\b",
    ],
)
def test_a_manifest_refuses_paths_that_leave_the_folder_on_any_os(name):
    assert not manifest.valid(name)


@pytest.mark.parametrize("name", ["selenet.weights.h5", "se_features/0_se_feature.png", "logs/train/"])
def test_a_manifest_takes_the_projects_own_names(name):
    assert manifest.valid(name)


def test_text_files_are_utf8_with_newlines(tmp_path):
    files.write_text(tmp_path / "a.md", "| se − no se |\nline 2\n")
    assert (tmp_path / "a.md").read_bytes() == "| se − no se |\nline 2\n".encode()


@pytest.mark.parametrize("encoding", ["cp1252", "gbk"])
def test_printing_never_fails_on_a_console_that_is_not_utf8(encoding, monkeypatch):
    console = io.TextIOWrapper(io.BytesIO(), encoding=encoding)
    monkeypatch.setattr(sys, "stdout", console)
    cli.printing_never_fails()
    print("−0.35 [−0.46, −0.25] ┏━━┓")  # the study's minus signs, the summary's box lines
    console.flush()
    assert console.buffer.getvalue().decode(encoding).startswith("?0.35 [?0.46, ?0.25]")


def test_a_replace_waits_for_a_file_held_open_by_another_program(tmp_path, monkeypatch):
    attempts = []
    real_replace = os.replace

    def held_twice(source, target):
        attempts.append(target)
        if len(attempts) <= 2:
            raise PermissionError(errno.EACCES, "Access is denied", str(target))
        return real_replace(source, target)

    monkeypatch.setattr(files, "REPLACE_RETRIES", (0, 0, 0))
    monkeypatch.setattr(os, "replace", held_twice)
    files.write_text(str(tmp_path / "history.csv"), "epoch\n1\n")
    assert len(attempts) == 3 and (tmp_path / "history.csv").read_text() == "epoch\n1\n"


def test_a_file_held_open_for_good_is_one_error_naming_it(tmp_path, monkeypatch):
    def always_held(source, target):
        raise PermissionError(errno.EACCES, "Access is denied", str(target))

    monkeypatch.setattr(files, "REPLACE_RETRIES", (0, 0))
    monkeypatch.setattr(os, "replace", always_held)
    with pytest.raises(WriteError, match=r"cannot write .*history\.csv: Access is denied"):
        files.write_text(str(tmp_path / "history.csv"), "epoch\n")
    assert os.listdir(tmp_path) == []  # nothing half-written left


def test_resume_hints_are_quoted_for_the_platforms_shell():
    assert runs.resume_command("senet_lenet.py", "my runs/a", windows=False) == (
        "python senet_lenet.py --out-dir 'my runs/a' --resume"
    )
    assert runs.resume_command("senet_lenet.py", "C:\\my runs\\a", windows=True) == (
        'python senet_lenet.py --out-dir "C:\\my runs\\a" --resume'
    )


def test_a_filesystem_without_locks_is_one_line(tmp_path, monkeypatch):
    import fcntl

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(UsageError, match="its filesystem does not support file locks"):
        with locks.folder_lock(str(tmp_path), "senet_lenet.py"):
            pass


def test_macos_records_its_chip(monkeypatch):
    class Done:
        returncode, stdout = 0, "Apple M2\n"

    monkeypatch.setattr(machine, "open", lambda *a, **k: (_ for _ in ()).throw(OSError()), raising=False)
    monkeypatch.setattr(machine.sys, "platform", "darwin")
    monkeypatch.setattr(machine.subprocess, "run", lambda *a, **k: Done())
    assert machine.cpu_model() == "Apple M2"


# ---- The scripts without what Windows lacks --------------------------------------------------------------------

WITHOUT_LINUX = """
import os, sys
sys.modules["fcntl"] = None  # import fcntl: ModuleNotFoundError, as on Windows
for name in ("pread", "pwrite", "sched_getaffinity"):
    if hasattr(os, name):
        delattr(os, name)
sys.path.insert(0, {root!r})
from selenet import files
files.MEMORY_DIR = os.path.join({root!r}, "no-such-memory-folder")  # no /dev/shm
"""


@pytest.fixture(params=["cp1252", "gbk"])  # Windows' consoles in Western Europe and the Americas, and in China
def without_linux(request, tmp_path):
    """Environment for a child process with Linux's extras taken away and a console that is not UTF-8."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(WITHOUT_LINUX.format(root=ROOT))
    return {"PYTHONPATH": str(site), "PYTHONIOENCODING": request.param, "PYTHONUTF8": "0"}


def run_without_linux(script, *args, env):
    return run_script(script, *args, env=env, encoding=env["PYTHONIOENCODING"])


NO_LOCKS = """
import errno, fcntl
def flock(*args):
    raise OSError(errno.ENOLCK, "No locks available")  # a network mount without a lock daemon
fcntl.flock = flock
"""


SMALL = {  # should the lock be taken after all: seconds, not a whole run or study
    "senet_lenet.py": ["--epochs", "1", "--train-samples", "200", "--test-samples", "100"],
    "ablation.py": "--seeds 1 --epochs 1 --train-samples 200 --test-samples 100 --optimizers adam".split(),
}


@pytest.mark.skipif(importlib.util.find_spec("fcntl") is None, reason="takes flock away: needs POSIX's fcntl")
@pytest.mark.parametrize("script", ["senet_lenet.py", "ablation.py"])
def test_a_folder_that_cannot_be_locked_is_one_line_in_every_script(script, tmp_path, synthetic_mnist_dir):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_LOCKS)
    args = [*SMALL[script], "--data-dir", synthetic_mnist_dir, "--out-dir", tmp_path / "out"]
    done = run_script(script, *args, env={"PYTHONPATH": str(site)})
    assert done.returncode == 2
    assert_one_line_error(done.stderr, script, "its filesystem does not support file locks")


@pytest.mark.runs
def test_train_and_visualize_without_linux_give_the_same_bits(
    without_linux, trained_synthetic_run, synthetic_mnist_dir, tmp_path
):
    out = tmp_path / "run"
    data = ["--data-dir", synthetic_mnist_dir]
    trained = run_without_linux("senet_lenet.py", *TRAINED_SYNTHETIC, *data, "--out-dir", out, env=without_linux)
    assert trained.returncode == 0 and "Traceback" not in trained.stderr, trained.stderr[-3000:]
    weights = [runs.read_run(run)["sha256"][runs.WEIGHTS_FILE] for run in (out, trained_synthetic_run)]
    assert weights[0] == weights[1]  # selenet.keras differs anyway: it records when it was saved
    drawn = run_without_linux("visualize.py", "--run-dir", out, *data, "--max-batches", "2", env=without_linux)
    assert drawn.returncode == 0 and "Traceback" not in drawn.stderr, drawn.stderr[-3000:]
    assert (out / "se_features" / "1_se_feature.png").exists()


@pytest.mark.runs
def test_a_study_with_two_workers_without_linux(without_linux, synthetic_mnist_dir, tmp_path):
    args = "--seeds 1 --epochs 1 --train-samples 300 --test-samples 200 --optimizers adam --reductions 4".split()
    args += "--squeezes avg --gates sigmoid --positions conv2 --excitations dense --se-biases off".split()
    args += ["--workers", "2", "--data-dir", synthetic_mnist_dir, "--out-dir", tmp_path / "s"]
    done = run_without_linux("ablation.py", *args, env=without_linux)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "2 runs: 0 finished already, 2 to do in 2 process(es)" in done.stdout
    assert "| se-r4_adam ? no-se_adam | effect | 1 |" in done.stdout  # cp1252 and GBK have no −: printed as ?


def test_stopping_on_signals_from_another_thread_than_main():
    """main() run from a thread (a notebook's, a GUI's): no 'signal only works in main thread'."""
    import threading

    from selenet import signals

    errors = []

    def enter():
        try:
            with signals.StopOnSignal() as stop:
                stop.check()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    thread = threading.Thread(target=enter)
    thread.start()
    thread.join()
    assert errors == []


KEEPS_THE_BACKEND = """
import sys
import matplotlib
matplotlib.use("svg")  # a notebook's inline backend stands here
sys.argv = ["x"]
import ablation, senet_lenet, visualize
from selenet import figures, heatmaps
print(matplotlib.get_backend())
"""


@pytest.mark.runs
def test_importing_the_scripts_keeps_the_callers_matplotlib_backend():
    done = subprocess.run([sys.executable, "-c", KEEPS_THE_BACKEND], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "svg"


def test_a_kernel_that_runs_tensorflow_already_gets_one_line_that_agrees_with_itself(capsys):
    """This process runs TensorFlow with 1 thread (conftest): --threads 0 cannot be set, and the line says why
    and what to do, without contradicting itself ("threads = 0; threads = 0 needs a new process")."""
    import senet_lenet
    from selenet.errors import UsageError

    senet_lenet.tf.constant(1.0) + 1  # an op: from now on TensorFlow keeps its threads
    with pytest.raises(UsageError) as error:
        use_threads(0)
    message = str(error.value)
    assert "with 1 intra-op and 1 inter-op threads" in message and "need 0 and 1" in message
    assert "new process" in message and "\n" not in message


@pytest.mark.runs
def test_ctrl_c_and_resume_without_linux_give_the_same_bits(without_linux, synthetic_mnist_dir, tmp_path):
    """Ctrl-C after epoch 2's checkpoint: one line, exit 130; --resume ends with the weights of the run
    never stopped (both without Linux's extras)."""
    flags = ["--epochs", "6", "--train-samples", "6000", "--test-samples", "200", "--data-dir", synthetic_mnist_dir]
    whole = run_without_linux("senet_lenet.py", *flags, "--out-dir", tmp_path / "whole", env=without_linux)
    assert whole.returncode == 0, whole.stderr[-3000:]
    stopped = tmp_path / "stopped"
    process = subprocess.Popen(
        [sys.executable, "senet_lenet.py", *flags, "--out-dir", str(stopped)],
        cwd=ROOT,
        env={**os.environ, **without_linux},
        preexec_fn=default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        encoding=without_linux["PYTHONIOENCODING"],
    )
    deadline = time.monotonic() + 300
    while 2 not in runs.checkpoint_epochs(stopped):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr[-3000:]
    assert "stopped by SIGINT" in stderr and "--resume" in stderr
    resume = ["--out-dir", stopped, "--resume", *flags[-2:]]
    resumed = run_without_linux("senet_lenet.py", *resume, env=without_linux)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    sha = [runs.read_run(run)["sha256"][runs.WEIGHTS_FILE] for run in (tmp_path / "whole", stopped)]
    assert sha[0] == sha[1]
