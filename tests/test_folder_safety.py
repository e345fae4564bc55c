"""A run is never lost without a word: no silent overwrite, one writer per folder, divergence is a
failure, a full disk is one line, Ctrl-C anywhere is one line."""

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
from helpers import (
    ROOT,
    TRAINED_SYNTHETIC,
    assert_one_line_error,
    default_sigint,
    synthetic_digits,
    without_seconds,
    write_synthetic_run,
)
from selenet import errors, files, locks, runs
from selenet.settings import Settings

SMALL = ["--epochs", "2", "--train-samples", "300", "--test-samples", "100"]


def train(out_dir, data_dir, *extra):
    return senet_lenet.main([*SMALL, "--data-dir", data_dir, "--out-dir", str(out_dir), *extra])


@pytest.fixture
def finished_run(trained_synthetic_run, tmp_path):
    return shutil.copytree(trained_synthetic_run, tmp_path / "finished")


# ---- 1. A folder that holds a run is never replaced silently -------------------------------------------------------


def test_a_new_run_refuses_a_folder_with_an_unfinished_run(unfinished_synthetic_run, synthetic_mnist_dir, capsys):
    before = sorted(os.listdir(unfinished_synthetic_run / "checkpoints"))
    assert train(unfinished_synthetic_run, synthetic_mnist_dir) == 2
    assert_one_line_error(
        capsys.readouterr().err, "holds an unfinished run (epoch 1 saved)", "--resume", "--overwrite", "--out-dir"
    )
    assert sorted(os.listdir(unfinished_synthetic_run / "checkpoints")) == before


def test_a_new_run_refuses_a_folder_with_a_finished_run(finished_run, synthetic_mnist_dir, capsys):
    names = [name for name in os.listdir(finished_run) if name != locks.LOCK_FILE]
    stamps = {name: os.stat(finished_run / name).st_mtime_ns for name in names}
    assert train(finished_run, synthetic_mnist_dir, "--seed", "5") == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "holds a finished run of 2 epochs", "--overwrite")
    assert "--resume" not in err
    assert {name: os.stat(finished_run / name).st_mtime_ns for name in names} == stamps


def test_overwrite_removes_exactly_what_the_old_run_wrote(finished_run, synthetic_mnist_dir):
    assert visualize.main(["--run-dir", str(finished_run), "--data-dir", synthetic_mnist_dir]) == 0
    assert visualize.main(["--compare", str(finished_run), str(finished_run), "--data-dir", synthetic_mnist_dir]) == 0
    (finished_run / "notes.txt").write_text("the user's own file")
    (finished_run / "se_features" / "my_heatmap.png").write_bytes(b"the user's file in our folder")
    before = sorted(p.name for p in finished_run.rglob("*"))
    assert "excitation_role.csv" in before and "compare_0.png" in before and "se_class_profile.png" in before
    assert train(finished_run, synthetic_mnist_dir, "--epochs", "1", "--seed", "5", "--overwrite") == 0
    run = runs.read_run(finished_run)
    assert run["settings"].seed == 5 and len(run["history"]) == 1
    left = sorted(p.name for p in finished_run.rglob("*"))
    for name in (
        "excitation_role.csv",
        "compare_0.png",
        "se_class_profile.png",
        "se_class_mean.png",
        "0_se_feature.png",
    ):
        assert name not in left
    assert os.listdir(finished_run / "se_features") == ["my_heatmap.png"]
    assert (finished_run / "notes.txt").read_text() == "the user's own file"


def test_checkpoints_without_run_json_can_be_resumed(unfinished_synthetic_run, synthetic_mnist_dir, capsys):
    os.remove(unfinished_synthetic_run / "run.json")
    assert train(unfinished_synthetic_run, synthetic_mnist_dir) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, "holds an unfinished run (epoch 1 saved)", "--resume")
    assert "delet" not in err
    args = ["--out-dir", str(unfinished_synthetic_run), "--resume", "--data-dir", synthetic_mnist_dir]
    assert senet_lenet.main(args) == 0
    run = runs.read_run(unfinished_synthetic_run)
    assert run["finished"] and run["settings"] == Settings(epochs=2, train_samples=300, test_samples=300)


def test_a_study_never_replaces_runs_with_other_settings(tmp_path, synthetic_mnist_dir, capsys):
    study = tmp_path / "study"
    earlier = Settings(epochs=3, train_samples=300, test_samples=300)
    write_synthetic_run(study / "se-r4_adam_seed0", synthetic_mnist_dir, earlier)
    (study / "ablation.csv").write_text("the earlier study's table\n")
    args = ["--seeds", "1", "--epochs", "1", "--train-samples", "300", "--test-samples", "300"]
    args += ["--optimizers", "adam", "--reductions", "4", "--data-dir", synthetic_mnist_dir, "--out-dir", str(study)]
    assert ablation.main(args) == 2
    assert_one_line_error(capsys.readouterr().err, "se-r4_adam_seed0 holds a run with epochs = 3 (this study: 1)")
    assert (study / "ablation.csv").read_text() == "the earlier study's table\n"
    assert runs.read_run(study / "se-r4_adam_seed0")["settings"] == earlier
    assert not (study / "no-se_adam_seed0").exists()  # refused before anything was trained


# ---- 2. One writer per folder ----------------------------------------------------------------------------------------


def test_a_second_writer_is_refused_naming_the_first(tmp_path, synthetic_mnist_dir, finished_run, capsys):
    with locks.folder_lock(str(tmp_path), "senet_lenet.py"):
        assert train(tmp_path, synthetic_mnist_dir) == 2
        assert_one_line_error(capsys.readouterr().err, f"is in use by senet_lenet.py (pid {os.getpid()})")
        study = ["--seeds", "1", "--epochs", "1", "--data-dir", synthetic_mnist_dir, "--out-dir", str(tmp_path)]
        assert ablation.main(study) == 2
        assert_one_line_error(capsys.readouterr().err, "is in use by senet_lenet.py")
    with locks.folder_lock(str(finished_run), "senet_lenet.py"):
        assert visualize.main(["--run-dir", str(finished_run), "--data-dir", synthetic_mnist_dir]) == 2
        assert_one_line_error(capsys.readouterr().err, "visualize.py: error:", "is in use by senet_lenet.py")
    assert not (tmp_path / "run.json").exists()


def test_the_lock_goes_away_with_a_killed_process(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from selenet import locks; import time\nwith locks.folder_lock({str(tmp_path)!r}, 'x'): time.sleep(60)",
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while not (tmp_path / locks.LOCK_FILE).exists() or not (tmp_path / locks.LOCK_FILE).read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(errors.UsageError, match=f"in use by x \\(pid {holder.pid}\\)"):
        with locks.folder_lock(str(tmp_path), "test"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with locks.folder_lock(str(tmp_path), "test"):
        pass


# ---- 3. Divergence is a failure ---------------------------------------------------------------------------------


def test_divergence_stops_the_run(tmp_path, synthetic_mnist_dir, capsys):
    assert train(tmp_path, synthetic_mnist_dir, "--lr", "1e30") == 1
    assert_one_line_error(capsys.readouterr().err, "training diverged in epoch 1 by step", "lower --lr")
    assert not (tmp_path / runs.WEIGHTS_FILE).exists()
    assert not (tmp_path / "run.json").exists() and runs.checkpoint_epochs(str(tmp_path)) == []


def nan_run(run_dir, data_dir):
    """A finished run whose weights are NaN, as a diverged run used to be saved (recorded as the run's)."""
    write_synthetic_run(run_dir, data_dir)
    model = senet_lenet.build_model()
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])
    os.remove(run_dir / runs.WEIGHTS_FILE)
    model.save_weights(str(run_dir / runs.WEIGHTS_FILE))
    run = json.loads((run_dir / runs.RUN_FILE).read_text())
    run["sha256"][runs.WEIGHTS_FILE] = files.sha256_of(run_dir / runs.WEIGHTS_FILE)
    (run_dir / runs.RUN_FILE).write_text(json.dumps(run))


def test_visualize_and_compare_refuse_non_finite_runs(tmp_path, synthetic_mnist_dir, synthetic_run, capsys):
    nan_run(tmp_path / "nan", synthetic_mnist_dir)
    assert visualize.main(["--run-dir", str(tmp_path / "nan"), "--data-dir", synthetic_mnist_dir]) == 2
    assert_one_line_error(capsys.readouterr().err, "outputs are not finite", "diverged")
    assert not (tmp_path / "nan" / "se_features").exists()
    args = ["--compare", str(synthetic_run), str(tmp_path / "nan"), "--data-dir", synthetic_mnist_dir]
    assert visualize.main(args) == 2
    assert_one_line_error(capsys.readouterr().err, "outputs are not finite")


# ---- 5. One line where the README promises it --------------------------------------------------------------------


@pytest.mark.parametrize("samples", [1, 3])
def test_tiny_test_sets_can_be_visualized(tmp_path, synthetic_mnist_dir, samples, recwarn, capsys):
    write_synthetic_run(
        tmp_path / "run", synthetic_mnist_dir, Settings(epochs=1, train_samples=300, test_samples=samples)
    )
    assert visualize.main(["--run-dir", str(tmp_path / "run"), "--data-dir", synthetic_mnist_dir]) == 0
    out = capsys.readouterr().out
    assert "SE class means:" in out and "nan" not in out
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert len(os.listdir(tmp_path / "run" / "se_features")) == 1


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"settings": {"epochs": 1}}, "the history has 2 epochs, more than epochs = 1"),
        ({"finished": False}, "finished = False with 2 of 2 epochs done"),
    ],
)
def test_a_hand_edited_history_is_one_line(finished_run, change, fragment, capsys):
    run = json.loads((finished_run / "run.json").read_text())
    for key, value in change.items():
        run[key] = {**run[key], **value} if isinstance(value, dict) else value
    (finished_run / "run.json").write_text(json.dumps(run))
    assert senet_lenet.main(["--out-dir", str(finished_run), "--resume"]) == 2
    assert_one_line_error(capsys.readouterr().err, fragment)


def start(script, *args):
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, script), *map(str, args)],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_sigint,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("delay", [0.6, 1.5])
def test_ctrl_c_during_start_up_is_one_line(tmp_path, synthetic_mnist_dir, delay):
    process = start("senet_lenet.py", *SMALL, "--data-dir", synthetic_mnist_dir, "--out-dir", tmp_path / "out")
    time.sleep(delay)  # TensorFlow is loading
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert_one_line_error(stderr, "senet_lenet.py: stopped by SIGINT")


def test_ctrl_c_during_visualize_is_one_line(tmp_path, synthetic_mnist_dir):
    run_dir = tmp_path / "run"
    write_synthetic_run(run_dir, synthetic_mnist_dir, Settings(epochs=1, train_samples=300))  # 100 heatmaps
    process = start("visualize.py", "--run-dir", run_dir, "--data-dir", synthetic_mnist_dir)
    assert "test accuracy" in process.stdout.readline()  # evaluated; now drawing
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert_one_line_error(stderr, "visualize.py: stopped by SIGINT")
    heatmap_dir = run_dir / "se_features"
    drawn = os.listdir(heatmap_dir) if heatmap_dir.exists() else []
    assert len(drawn) < 100 and not [n for n in os.listdir(run_dir) + drawn if files.is_temporary(n)]


# ---- 6. Small things -------------------------------------------------------------------------------------------


def test_leftover_temporary_files_are_removed_and_only_they(unfinished_synthetic_run, synthetic_mnist_dir):
    (unfinished_synthetic_run / files.temporary_name("run.json")).write_text("{")
    (unfinished_synthetic_run / "checkpoints" / files.temporary_name()).mkdir()
    users = ["my_temp", ".notes.tmp.txt", ".tmp", "epoch-9_temp", ".selenet-tmp-notes"]  # names users choose
    for name in users:
        (unfinished_synthetic_run / name).mkdir() if name.endswith("_temp") else (
            unfinished_synthetic_run / name
        ).touch()
        (unfinished_synthetic_run / "checkpoints" / name).touch()
    args = ["--out-dir", str(unfinished_synthetic_run), "--resume", "--data-dir", synthetic_mnist_dir]
    assert senet_lenet.main(args) == 0
    for folder in ("", "checkpoints"):
        left = os.listdir(unfinished_synthetic_run / folder)
        assert not [n for n in left if files.is_temporary(n)] and set(users) <= set(left)


def test_the_resume_command_quotes_the_folder(unfinished_synthetic_run, tmp_path):
    folder = shutil.copytree(unfinished_synthetic_run, tmp_path / "my runs")
    line = runs.interrupted_message("senet_lenet.py", errors.Interrupted(signal.SIGINT), str(folder))
    assert line.endswith(f"Resume with: python senet_lenet.py --out-dir '{folder}' --resume")


def test_visualize_quotes_the_folder_of_an_unfinished_run(unfinished_synthetic_run, tmp_path, capsys):
    folder = shutil.copytree(unfinished_synthetic_run, tmp_path / "my runs")
    assert visualize.main(["--run-dir", str(folder)]) == 2
    assert_one_line_error(
        capsys.readouterr().err, f"finish it with: python senet_lenet.py --out-dir '{folder}' --resume"
    )


def test_max_batches_keeps_the_other_heatmaps(finished_run, synthetic_mnist_dir):
    data = ["--data-dir", synthetic_mnist_dir]
    assert visualize.main(["--run-dir", str(finished_run), *data]) == 0
    assert visualize.main(["--run-dir", str(finished_run), "--max-batches", "1", *data]) == 0
    assert sorted(os.listdir(finished_run / "se_features")) == ["0_se_feature.png", "1_se_feature.png"]


def test_max_batches_of_another_batching_removes_the_earlier_heatmaps(finished_run, synthetic_mnist_dir):
    """--batch-size 50 (4 heatmaps of 200 test images), then --max-batches 1 at 100: heatmap 0 of 100 images,
    and none of the batches of 50 left under the same names."""
    data = ["--data-dir", synthetic_mnist_dir]
    assert visualize.main(["--run-dir", str(finished_run), "--batch-size", "50", *data]) == 0
    assert len(os.listdir(finished_run / "se_features")) == 4
    assert visualize.main(["--run-dir", str(finished_run), "--max-batches", "1", *data]) == 0
    assert sorted(os.listdir(finished_run / "se_features")) == ["0_se_feature.png"]


# ---- 4. A full disk is one line, and the run resumes once there is room ----------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs (mounting needs root, which CI has)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def fill(disk, leave_kib):
    """Fills the disk but for about leave_kib KiB; returns the filler file."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    filler.write_bytes(b"\0" * max(0, free - leave_kib * 1024))
    return filler


def weights_of(run_dir):
    model = senet_lenet.build_model()
    model.load_weights(str(run_dir / runs.WEIGHTS_FILE))
    return model.get_weights()


@pytest.mark.parametrize("leave_kib", [800, 1250], ids=["at a checkpoint", "at the weights"])
def test_a_full_disk_is_one_line_and_the_run_resumes(
    small_disk, trained_synthetic_run, synthetic_mnist_dir, leave_kib, capsys
):
    run_dir = small_disk / "run"
    filler = fill(small_disk, leave_kib)
    args = [*TRAINED_SYNTHETIC, "--data-dir", synthetic_mnist_dir, "--out-dir", str(run_dir)]
    assert senet_lenet.main(args) == 1
    assert_one_line_error(capsys.readouterr().err, "senet_lenet.py: error: cannot write", "no space left on device")
    everything = [name for _, dirs, files in os.walk(run_dir) for name in dirs + files]
    assert not [name for name in everything if files.is_temporary(name)]

    filler.unlink()
    assert senet_lenet.main(["--out-dir", str(run_dir), "--resume", "--data-dir", synthetic_mnist_dir]) == 0
    resumed, reference = runs.read_run(run_dir), runs.read_run(trained_synthetic_run)
    assert without_seconds(resumed["history"]) == without_seconds(reference["history"])
    for a, b in zip(weights_of(run_dir), weights_of(trained_synthetic_run), strict=True):
        np.testing.assert_array_equal(a, b)


def test_visualize_on_a_full_disk_is_one_line(small_disk, trained_synthetic_run, synthetic_mnist_dir, capsys):
    run_dir = shutil.copytree(trained_synthetic_run, small_disk / "run")
    fill(small_disk, 40)
    assert visualize.main(["--run-dir", str(run_dir), "--data-dir", synthetic_mnist_dir]) == 1
    assert_one_line_error(capsys.readouterr().err, "visualize.py: error: cannot write", "no space left on device")
    everything = [name for _, dirs, files in os.walk(run_dir) for name in dirs + files]
    assert not [name for name in everything if files.is_temporary(name)]


class StopAtOnce:
    def check(self):
        raise errors.Interrupted(signal.SIGINT)


def test_logs_of_a_run_stopped_before_its_first_checkpoint_are_replaced(tmp_path, synthetic_mnist_dir):
    data = synthetic_digits(300), synthetic_digits(100, seed=1)
    quiet = dict(log=lambda line: None, verbose=False)
    with pytest.raises(errors.Interrupted):
        senet_lenet.train_run(Settings(epochs=1), *data, str(tmp_path), stop=StopAtOnce(), **quiet)
    (stale,) = os.listdir(tmp_path / "logs" / "train")
    assert train(tmp_path, synthetic_mnist_dir, "--epochs", "1") == 0
    assert stale not in os.listdir(tmp_path / "logs" / "train") and os.listdir(tmp_path / "logs" / "train")
