"""A folder owns only what the project wrote there (manifest.json): the user's files are never deleted,
moved or mixed; damaged or foreign files are named in one line; derived files follow their weights."""

import json
import os
import shutil
import signal
import subprocess

import pytest

import ablation
import senet_lenet
import visualize
from helpers import SYNTHETIC_STUDY, assert_one_line_error, write_synthetic_run
from selenet import cli, errors, files, locks, runs
from selenet.manifest import MANIFEST_FILE, Manifest
from selenet.settings import Settings

SMALL = ["--epochs", "2", "--train-samples", "300", "--test-samples", "100"]


def train(out_dir, data_dir, *extra):
    return senet_lenet.main([*SMALL, "--data-dir", data_dir, "--out-dir", str(out_dir), *extra])


def tree(folder):
    """Every path below folder with its bytes (None for a folder)."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.name != locks.LOCK_FILE
    }


@pytest.fixture
def finished_run(trained_synthetic_run, tmp_path):
    return shutil.copytree(trained_synthetic_run, tmp_path / "finished")


# ---- The manifest itself ---------------------------------------------------------------------------------------


def test_a_claim_refuses_what_the_record_does_not_list(tmp_path):
    (tmp_path / "mine.txt").write_text("the user's")
    manifest = Manifest(tmp_path, "run")
    manifest.claim("ours.txt", "sub/ours.txt")
    with pytest.raises(errors.UsageError, match="mine.txt was not written by this project"):
        manifest.claim("mine.txt")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "ours.txt").write_text("ours")
    (tmp_path / "sub" / "users.txt").write_text("the user's, in our folder")
    assert Manifest(tmp_path).owned("sub/") == ["ours.txt"]
    assert sorted(Manifest(tmp_path).release_all()) == ["ours.txt", "sub/ours.txt"]  # "sub/" stays: it holds the user's
    assert tree(tmp_path) == {
        MANIFEST_FILE: (tmp_path / MANIFEST_FILE).read_bytes(),
        "mine.txt": b"the user's",
        "sub": None,
        "sub/users.txt": b"the user's, in our folder",
    }


@pytest.mark.parametrize(
    "text",
    [b"\xff\xfe not text", b"[]", json.dumps({"written_by": "SE-LeNet", "paths": {"../../etc/passwd": {}}}).encode()],
    ids=["binary", "not ours", "outside the folder"],
)
def test_a_damaged_or_foreign_manifest_is_one_line(tmp_path, synthetic_mnist_dir, text, capsys):
    (tmp_path / MANIFEST_FILE).write_bytes(text)
    assert train(tmp_path, synthetic_mnist_dir) == 2
    assert_one_line_error(capsys.readouterr().err, "manifest.json is not a record of this project's files")
    assert (tmp_path / MANIFEST_FILE).read_bytes() == text


def test_a_study_folder_is_not_a_run_folder(tmp_path, synthetic_mnist_dir, capsys):
    Manifest(tmp_path, "study").claim("ablation.csv")
    assert train(tmp_path, synthetic_mnist_dir) == 2
    assert_one_line_error(capsys.readouterr().err, "holds a study of this project, not a run")


# ---- 1, 2: nothing of the user's is deleted, by name or by folder ------------------------------------------------


@pytest.mark.parametrize("data_dir", ["good", "missing"])
def test_the_users_logs_and_checkpoints_are_refused_untouched(tmp_path, synthetic_mnist_dir, data_dir, capsys):
    out_dir = tmp_path / "out"
    for name in ("logs/train/events.out.tfevents.mine", "checkpoints/checkpoint", "my_temp/a", ".x.tmp1.json"):
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (out_dir / name).write_text("the user's")
    before = tree(out_dir)
    data = synthetic_mnist_dir if data_dir == "good" else str(tmp_path / "nowhere")
    assert train(out_dir, data) == 2
    assert_one_line_error(capsys.readouterr().err, "was not written by this project", "choose another output folder")
    assert tree(out_dir) == before
    assert senet_lenet.main(["--out-dir", str(out_dir), "--resume"]) == 2  # nothing to resume: refused, untouched
    assert tree(out_dir) == before


@pytest.mark.parametrize("name", ["run.json", "history.csv", "selenet.weights.h5", "SELeNet.png"])
def test_a_users_file_under_a_run_files_name_is_refused(tmp_path, synthetic_mnist_dir, name, capsys):
    (tmp_path / name).write_text("the user's")
    assert train(tmp_path, synthetic_mnist_dir, "--overwrite") == 2
    assert_one_line_error(capsys.readouterr().err, f"{tmp_path / name} was not written by this project")
    assert (tmp_path / name).read_text() == "the user's"


def test_visualize_refuses_a_users_file_under_its_names(finished_run, synthetic_mnist_dir, capsys):
    (finished_run / "se_features").mkdir()
    (finished_run / "se_features" / "0_se_feature.png").write_bytes(b"the user's")
    before = tree(finished_run)
    assert visualize.main(["--run-dir", str(finished_run), "--data-dir", synthetic_mnist_dir]) == 2
    assert_one_line_error(capsys.readouterr().err, "se_features was not written by this project")
    assert tree(finished_run) == before


# ---- 3: derived files follow their weights -------------------------------------------------------------------


def test_extending_a_run_removes_what_was_drawn_from_its_old_weights(finished_run, synthetic_mnist_dir, capsys):
    data = ["--data-dir", synthetic_mnist_dir]
    assert visualize.main(["--run-dir", str(finished_run), *data]) == 0
    (finished_run / "se_features" / "notes.txt").write_text("the user's")
    assert senet_lenet.main(["--out-dir", str(finished_run), "--resume", "--epochs", "3", *data]) == 0
    assert "drawn from the run's earlier weights; run visualize.py again" in capsys.readouterr().err
    assert not (finished_run / "se_class_mean.png").exists() and not (finished_run / runs.ROLE_FILE).exists()
    assert os.listdir(finished_run / "se_features") == ["notes.txt"]
    assert visualize.main(["--run-dir", str(finished_run), *data]) == 0
    weights = runs.read_run(finished_run)["sha256"][runs.WEIGHTS_FILE]
    assert Manifest(finished_run).entries["se_class_mean.png"] == {"weights": weights}


# ---- 4: a finished run that lost run.json --------------------------------------------------------------------


def test_a_finished_run_without_run_json_is_rebuilt_by_resume(finished_run, synthetic_mnist_dir, capsys):
    run = runs.read_run(finished_run)
    os.remove(finished_run / runs.RUN_FILE)
    assert senet_lenet.main(["--out-dir", str(finished_run), "--resume", "--data-dir", synthetic_mnist_dir]) == 0
    assert "lacks whole copies of run.json" in capsys.readouterr().out
    rebuilt = runs.read_run(finished_run)
    assert rebuilt["history"] == run["history"] and rebuilt["settings"] == run["settings"]
    assert rebuilt["sha256"][runs.WEIGHTS_FILE] == run["sha256"][runs.WEIGHTS_FILE]  # the same weights
    assert visualize.main(["--run-dir", str(finished_run), "--data-dir", synthetic_mnist_dir]) == 0


# ---- 5, 6: checkpoints are the run's own ---------------------------------------------------------------------


def test_an_index_file_is_never_read_or_followed(unfinished_synthetic_run, tmp_path, synthetic_mnist_dir):
    outside = tmp_path / "precious.data"
    outside.write_text("the user's")
    index = unfinished_synthetic_run / "checkpoints" / "checkpoint"
    index.write_bytes(f'model_checkpoint_path: "{outside}"\nall_model_checkpoint_paths: "{outside}"\n\xff'.encode())
    before = index.read_bytes()
    args = ["--out-dir", str(unfinished_synthetic_run), "--resume", "--epochs", "4", "--data-dir", synthetic_mnist_dir]
    assert senet_lenet.main(args) == 0
    assert outside.read_text() == "the user's" and index.read_bytes() == before
    assert runs.checkpoint_epochs(unfinished_synthetic_run) == [3, 4]


def test_a_checkpoint_of_another_run_is_skipped(unfinished_synthetic_run, tmp_path, synthetic_mnist_dir, capsys):
    other = write_synthetic_run(
        tmp_path / "other", synthetic_mnist_dir, Settings(epochs=2, train_samples=300, test_samples=300, seed=3), 1
    )
    assert other["settings"]["seed"] == 3
    for path in (tmp_path / "other" / "checkpoints").glob("epoch-1.*"):
        shutil.copyfile(path, unfinished_synthetic_run / "checkpoints" / path.name)
    history = runs.read_run(unfinished_synthetic_run)["history"]
    args = ["--out-dir", str(unfinished_synthetic_run), "--resume", "--data-dir", synthetic_mnist_dir]
    assert senet_lenet.main(args) == 2
    err = capsys.readouterr().err
    assert "skipped checkpoint" in err and "it belongs to another run, with seed = 3 (this run: 0)" in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith("no usable checkpoint in " + str(unfinished_synthetic_run / "checkpoints") + " to resume from")
    )
    assert runs.read_run(unfinished_synthetic_run)["history"] == history  # nothing mixed


# ---- 7: the memory folder full or missing ----------------------------------------------------------------------


@pytest.fixture
def tiny_memory(tmp_path, monkeypatch):
    """A 1 MB tmpfs as the memory folder (mounting needs root, which CI has)."""
    mount_point = tmp_path / "shm"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    monkeypatch.setattr(files, "MEMORY_DIR", str(mount_point))
    yield mount_point
    subprocess.run(["umount", "--lazy", str(mount_point)], check=True)


def test_a_small_memory_folder_writes_beside_the_target(tiny_memory, tmp_path, synthetic_mnist_dir):
    assert train(tmp_path / "run", synthetic_mnist_dir) == 0
    run = runs.read_run(tmp_path / "run")
    assert runs.damaged_files(str(tmp_path / "run"), run) == []
    assert not [n for n in os.listdir(tmp_path / "run") if files.is_temporary(n)]


def test_a_missing_memory_folder_writes_beside_the_target(tmp_path, synthetic_mnist_dir, monkeypatch):
    monkeypatch.setattr(files, "MEMORY_DIR", str(tmp_path / "no such folder"))
    assert train(tmp_path / "run", synthetic_mnist_dir) == 0
    assert runs.damaged_files(str(tmp_path / "run"), runs.read_run(tmp_path / "run")) == []


def test_no_room_anywhere_is_one_line(tiny_memory, tmp_path, synthetic_mnist_dir, monkeypatch, capsys):
    monkeypatch.setattr(files, "SCRATCH_BYTES", 2**50)  # more than any disk here has free
    assert train(tmp_path / "run", synthetic_mnist_dir) == 1
    assert_one_line_error(capsys.readouterr().err, "cannot write", "selenet.weights.h5", "no space left on device")
    assert runs.checkpoint_epochs(tmp_path / "run") == [1, 2]  # resumable once there is room


# ---- 8: the study -------------------------------------------------------------------------------------------


@pytest.mark.xdist_group("synthetic_study")
def test_a_study_without_the_assignments_block_gives_its_tables(synthetic_study, tmp_path, synthetic_mnist_dir, capsys):
    shutil.copytree(synthetic_study, tmp_path / "study")
    args = [*SYNTHETIC_STUDY, "--optimizers", "sgd", "--data-dir", synthetic_mnist_dir]
    args += ["--out-dir", str(tmp_path / "study")]
    assert ablation.main(args) == 0
    out = capsys.readouterr().out
    assert "9 runs: 9 finished already, 0 to do" in out  # the study's runs but the grid's with Adam
    markdown = (tmp_path / "study" / "ablation.md").read_text()
    assert "Not run in this study, so the comparisons with them are left out: se-r4_adam, no-se_adam." in markdown
    assert "| se-r4_sgd − no-se_sgd | effect |" in markdown  # against no SE with SGD: there
    assert "se-r8_adam − " not in markdown  # against the assignment's block with Adam: not run
    for name in ablation.STUDY_FILES:
        assert (tmp_path / "study" / name).stat().st_size > 0


class Signalled:
    """A signals.StopOnSignal that has received SIGINT."""

    def check(self):
        raise errors.Interrupted(signal.SIGINT)


@pytest.mark.xdist_group("synthetic_study")
def test_a_signal_while_the_study_writes_its_tables_is_reported(synthetic_study, tmp_path, synthetic_mnist_dir):
    shutil.copytree(synthetic_study, tmp_path / "study")
    os.remove(tmp_path / "study" / "ablation.csv")
    args = [*SYNTHETIC_STUDY, "--data-dir", synthetic_mnist_dir, "--out-dir", str(tmp_path / "study")]
    with pytest.raises(errors.Interrupted):  # every run finished: the signal came while the tables were written
        ablation.study(cli.study_parser().parse_args(args), Signalled())
    assert (tmp_path / "study" / "ablation.csv").stat().st_size > 0


# ---- 9: the truth after a signal; another run's or a damaged file ------------------------------------------------


def test_a_signal_after_the_run_finished_says_so(finished_run):
    line = runs.interrupted_message("senet_lenet.py", errors.Interrupted(signal.SIGTERM), str(finished_run))
    assert "after the run finished" in line and "Resume" not in line


@pytest.mark.parametrize("name", [runs.WEIGHTS_FILE, runs.MODEL_FILE])
def test_another_runs_or_a_truncated_file_is_refused(finished_run, tmp_path, synthetic_mnist_dir, name, capsys):
    other = tmp_path / "other"
    assert train(other, synthetic_mnist_dir, "--seed", "1") == 0
    shutil.copyfile(other / name, finished_run / name)
    data = ["--data-dir", synthetic_mnist_dir]
    for args in (["--run-dir", str(finished_run)], ["--compare", str(other), str(finished_run)]):
        assert visualize.main([*args, *data]) == 2
        assert_one_line_error(capsys.readouterr().err, f"{name} is not the file this run wrote", "--resume")
    (finished_run / name).write_bytes((other / name).read_bytes()[:1000])
    assert visualize.main(["--run-dir", str(finished_run), *data]) == 2
    assert_one_line_error(capsys.readouterr().err, f"{name} is not the file this run wrote")

    resume = ["--out-dir", str(finished_run), "--resume", *data]
    assert senet_lenet.main(resume) == 0  # rewritten from the checkpoint
    assert f"lacks whole copies of {name}" in capsys.readouterr().out
    assert runs.damaged_files(str(finished_run), runs.read_run(finished_run)) == []
