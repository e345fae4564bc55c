"""The run folder: atomic writes, run.json, checkpoints, the signal guard, the resume rules."""

import os
import signal

import numpy as np
import pytest

import runs
import senet_lenet
from settings import Settings


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("good\n")
    with pytest.raises(RuntimeError):
        with runs.atomic_path(str(path)) as temporary:
            assert temporary.endswith(".csv") and os.path.dirname(temporary) == str(tmp_path)
            with open(temporary, "w") as f:
                f.write("half")
            raise RuntimeError("disk gone")
    assert path.read_text() == "good\n"
    assert os.listdir(tmp_path) == ["history.csv"]
    runs.write_text(str(path), "new\n")
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["history.csv"]


def test_run_json_round_trips_with_settings(tmp_path):
    settings = Settings(epochs=3, seed=5, train_samples=10)
    history = [{"epoch": 1, "loss": 1.0, "accuracy": 50.0, "test_loss": 1.1, "test_accuracy": 40.0, "seconds": 1.0}]
    run = {"settings": settings, "history": history, "final": {}, "finished": False}
    runs.save_progress(run, str(tmp_path))
    again = runs.read_run(str(tmp_path))
    assert again["settings"] == settings and again["history"] == history and again["finished"] is False
    assert (tmp_path / "history.csv").read_text().splitlines() == [
        "epoch,loss,accuracy,test_loss,test_accuracy,seconds",
        "1,1.0,50.0,1.1,40.0,1.0",
    ]


@pytest.mark.parametrize("text, fragment", [("[]", "an object expected"), ('{"settings": {}}', "no history")])
def test_read_run_rejects_what_it_did_not_write(tmp_path, text, fragment):
    (tmp_path / "run.json").write_text(text)
    with pytest.raises(runs.UsageError, match=fragment):
        runs.read_run(str(tmp_path))
    with pytest.raises(runs.RunNotFound):
        runs.read_run(str(tmp_path / "nowhere"))


def test_checkpoints_keep_the_newest_two_and_restore_exactly(tmp_path):
    settings = Settings(seed=1)
    model = senet_lenet.seeded_model(settings)
    optimizer = senet_lenet.make_optimizer(settings, model)
    for epoch in (1, 2, 3):
        for variable in optimizer.variables:
            variable.assign(variable + epoch)  # a different state per epoch
        runs.save_checkpoint(str(tmp_path), model, optimizer, [{"epoch": e} for e in range(1, epoch + 1)])
    saved = runs.checkpoint_dirs(str(tmp_path))
    assert [os.path.basename(p) for p in saved] == ["epoch_0002", "epoch_0003"]
    assert not [n for n in os.listdir(tmp_path / "checkpoints") if n.startswith(".")]

    fresh = senet_lenet.seeded_model(Settings(seed=2))
    fresh_optimizer = senet_lenet.make_optimizer(settings, fresh)
    assert runs.restore_checkpoint(saved[-1], fresh, fresh_optimizer) == [{"epoch": e} for e in (1, 2, 3)]
    for a, b in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(optimizer.variables, fresh_optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_damaged_checkpoint_is_one_clear_error(tmp_path):
    settings = Settings()
    model = senet_lenet.seeded_model(settings)
    optimizer = senet_lenet.make_optimizer(settings, model)
    runs.save_checkpoint(str(tmp_path), model, optimizer, [{"epoch": 1}])
    (path,) = runs.checkpoint_dirs(str(tmp_path))
    with open(os.path.join(path, "optimizer.npz"), "wb") as f:
        f.write(b"PK\x03\x04 not a zip")
    with pytest.raises(runs.UsageError, match=f"checkpoint {path} cannot be loaded") as error:
        runs.restore_checkpoint(path, model, optimizer)
    assert error.value.__cause__ is not None  # the real cause stays visible to a maintainer


def test_stop_on_signal_defers_the_signal_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGINT)
    with runs.StopOnSignal() as stop:
        stop.check()  # nothing yet
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signum == signal.SIGTERM
        with pytest.raises(runs.Interrupted, match="SIGTERM") as interrupted:
            stop.check()
        assert interrupted.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGINT) is before


def test_interrupted_message_names_the_last_epoch_saved(tmp_path):
    interrupted = runs.Interrupted(signal.SIGINT)
    line = runs.interrupted_message("senet_lenet.py", interrupted, str(tmp_path))
    assert line == "senet_lenet.py: stopped by SIGINT before the first epoch ended; nothing to resume"
    os.makedirs(tmp_path / "checkpoints" / "epoch_0004")
    line = runs.interrupted_message("senet_lenet.py", interrupted, str(tmp_path))
    assert "epoch 4 is the last one saved" in line and f"--out-dir {tmp_path} --resume" in line
