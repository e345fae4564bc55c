"""Checkpoints: the newest two kept, restored exactly; a damaged one skipped; resume to the same bits."""

import os

import numpy as np
import pytest

import senet_lenet
from helpers import StopAfterEpoch, synthetic_digits, without_seconds
from selenet import errors, runs
from selenet.checkpoints import Checkpoints
from selenet.manifest import Manifest
from selenet.settings import Settings


def model_and_optimizer(seed=1):
    settings = Settings(seed=seed)
    model = senet_lenet.seeded_model(settings)
    return model, senet_lenet.make_optimizer(settings, model), settings


def history_of(epochs):
    return [{"epoch": e, "loss": 1.0 / e} for e in range(1, epochs + 1)]


@pytest.fixture
def three_epochs(tmp_path):
    """A folder with checkpoints saved after epochs 1-3 (so 2 and 3 are kept); returns (model, optimizer)."""
    model, optimizer, settings = model_and_optimizer()
    checkpoints = Checkpoints(str(tmp_path), model, optimizer, settings, Manifest(tmp_path, "run"))
    for epoch in (1, 2, 3):
        for variable in optimizer.variables:
            variable.assign(variable + epoch)  # a different state per epoch
        model.get_layer("se_reduce").kernel.assign(model.get_layer("se_reduce").kernel + 1)
        checkpoints.save(history_of(epoch))
    return model, optimizer


def restore(out_dir, warnings):
    model, optimizer, _ = model_and_optimizer(seed=2)  # other weights, restored into the run of seed 1
    checkpoints = Checkpoints(str(out_dir), model, optimizer, Settings(seed=1), Manifest(out_dir, "run"))
    history = checkpoints.restore_newest(warnings.append)
    return history, model, optimizer


def test_the_newest_two_are_kept_and_restore_exactly(tmp_path, three_epochs):
    model, optimizer = three_epochs
    assert runs.checkpoint_epochs(str(tmp_path)) == [2, 3]
    warnings = []
    history, restored, restored_optimizer = restore(tmp_path, warnings)
    assert history == history_of(3) and warnings == []
    for a, b in zip(model.get_weights(), restored.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(optimizer.variables, restored_optimizer.variables, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (flip_a_byte, "DataLossError"),
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "IndexError: Read less bytes than requested"),
        (os.remove, "No such file"),
    ],
    ids=["bit flip", "truncated", "missing"],
)
def test_a_damaged_newest_checkpoint_is_skipped(tmp_path, three_epochs, damage, reason):
    damage(tmp_path / "checkpoints" / "epoch-3.data-00000-of-00001")
    warnings = []
    history, restored, _ = restore(tmp_path, warnings)
    assert history == history_of(2)
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert (
        warnings[0].startswith(f"skipped checkpoint {tmp_path / 'checkpoints' / 'epoch-3'}: ") and reason in warnings[0]
    )


def test_no_usable_checkpoint_is_one_clear_error(tmp_path, three_epochs):
    for epoch in (2, 3):
        flip_a_byte(tmp_path / "checkpoints" / f"epoch-{epoch}.data-00000-of-00001")
    warnings = []
    with pytest.raises(errors.UsageError, match="no usable checkpoint in"):
        restore(tmp_path, warnings)
    assert len(warnings) == 2


def test_resume_after_damage_ends_with_the_same_bits(tmp_path):
    """Stopped after epoch 2 of 3, the newest checkpoint damaged: resume from epoch 1, same bits."""
    settings = Settings(epochs=3, train_samples=500, test_samples=100)
    data = synthetic_digits(500), synthetic_digits(100, seed=1)
    quiet = dict(log=lambda line: None, warn=lambda line: None, verbose=False)
    reference = senet_lenet.train_run(settings, *data, str(tmp_path / "reference"), **quiet)

    out_dir = tmp_path / "stopped"
    with pytest.raises(errors.Interrupted):
        senet_lenet.train_run(settings, *data, str(out_dir), stop=StopAfterEpoch(str(out_dir), 2), **quiet)
    assert runs.checkpoint_epochs(str(out_dir)) == [1, 2]
    flip_a_byte(out_dir / "checkpoints" / "epoch-2.data-00000-of-00001")
    warnings = []
    resumed = senet_lenet.train_run(settings, *data, str(out_dir), resume=True, **{**quiet, "warn": warnings.append})
    assert len(warnings) == 1 and "epoch-2" in warnings[0]
    assert without_seconds(resumed["history"]) == without_seconds(reference["history"])
    weights = [senet_lenet.build_model() for _ in range(2)]
    for model, run_dir in zip(weights, ("reference", "stopped"), strict=True):
        model.load_weights(str(tmp_path / run_dir / runs.WEIGHTS_FILE))
    for a, b in zip(weights[0].get_weights(), weights[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert runs.checkpoint_epochs(str(out_dir)) == [2, 3]
