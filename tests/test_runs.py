"""The run folder: atomic writes, run.json, checkpoints, the signal guard, the resume rules."""

import os
import signal

import pytest

from selenet import errors, files, runs, signals
from selenet.manifest import Manifest
from selenet.settings import Settings


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("good\n")
    with pytest.raises(RuntimeError):
        with files.atomic_path(str(path)) as temporary:
            assert temporary.endswith(".csv") and os.path.dirname(temporary) == str(tmp_path)
            with open(temporary, "w") as f:
                f.write("half")
            raise RuntimeError("disk gone")
    assert path.read_text() == "good\n"
    assert os.listdir(tmp_path) == ["history.csv"]
    files.write_text(str(path), "new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["history.csv"]


def test_run_json_round_trips_with_settings(tmp_path):
    settings = Settings(epochs=3, seed=5, train_samples=10)
    history = [{"epoch": 1, "loss": 1.0, "accuracy": 50.0, "test_loss": 1.1, "test_accuracy": 40.0, "seconds": 1.0}]
    run = {"settings": settings, "history": history, "final": {}, "finished": False}
    runs.save_progress(run, Manifest(tmp_path, "run"))
    again = runs.read_run(str(tmp_path))
    assert again["settings"] == settings and again["history"] == history and again["finished"] is False
    assert (tmp_path / "history.csv").read_text().splitlines() == [
        "epoch,loss,accuracy,test_loss,test_accuracy,seconds",
        "1,1.0,50.0,1.1,40.0,1.0",
    ]


@pytest.mark.parametrize("text, fragment", [("[]", "an object expected"), ('{"settings": {}}', "no history")])
def test_read_run_rejects_what_it_did_not_write(tmp_path, text, fragment):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(errors.UsageError, match=fragment):
        runs.read_run(str(tmp_path))
    with pytest.raises(errors.RunNotFound):
        runs.read_run(str(tmp_path / "nowhere"))


def test_stop_on_signal_defers_the_signal_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGINT)
    with signals.StopOnSignal() as stop:
        stop.check()  # nothing yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(errors.Interrupted, match="SIGTERM") as interrupted:
            stop.check()
        assert interrupted.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGINT) is before


def test_interrupted_message_names_the_last_epoch_saved(tmp_path):
    interrupted = errors.Interrupted(signal.SIGINT)
    line = runs.interrupted_message("senet_lenet.py", interrupted, str(tmp_path))
    assert line == "senet_lenet.py: stopped by SIGINT before the first epoch ended; nothing to resume"
    Manifest(tmp_path, "run").claim("checkpoints/epoch-4.index")
    os.makedirs(tmp_path / "checkpoints")
    (tmp_path / "checkpoints" / "epoch-4.index").write_bytes(b"")
    line = runs.interrupted_message("senet_lenet.py", interrupted, str(tmp_path))
    assert "epoch 4 is the last one saved" in line and f"--out-dir {tmp_path} --resume" in line


def test_every_write_through_a_folder_records_what_it_writes(tmp_path):
    from matplotlib.figure import Figure

    from selenet.errors import UsageError

    folder = Manifest(tmp_path, "run")
    folder.write_text("a.txt", "text\n", weights="w1")
    digest = folder.write_file("b.bin", lambda path: open(path, "wb").write(b"bytes"))
    folder.save_figure("c.png", Figure())
    source = tmp_path / "elsewhere"
    source.write_text("moved")
    folder.make_folder("sub/")  # a folder the user made would be refused as theirs
    folder.move_in(str(source), "sub/d.txt")
    path = folder.make_folder("logs/train/")
    assert os.path.isdir(path) and (tmp_path / "sub" / "d.txt").read_text() == "moved"
    again = Manifest(tmp_path)
    assert {"a.txt", "b.bin", "c.png", "sub/d.txt", "logs/train/", "logs/"} <= set(again.entries)
    assert again.entries["a.txt"] == {"weights": "w1"} and digest == files.sha256_of(str(tmp_path / "b.bin"))
    (tmp_path / "mine.txt").write_text("the user's")
    with pytest.raises(UsageError, match="not written by this project"):
        folder.write_text("mine.txt", "ours")
    assert (tmp_path / "mine.txt").read_text() == "the user's"
