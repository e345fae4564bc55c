"""Settings: the assignment's defaults, and one clear line for anything a run cannot have."""

import dataclasses

import pytest

from selenet.settings import Settings, SettingsError, se_hidden_units


def test_defaults_are_the_assignments():
    assert Settings().as_dict() == {
        "epochs": 10,
        "batch_size": 100,
        "optimizer": "adam",
        "lr": 0.001,
        "momentum": 0.0,
        "reduction": 4,
        "se": True,
        "seed": 0,
        "train_samples": None,
        "test_samples": None,
        "se_position": "conv2",
        "squeeze": "avg",
        "gate": "sigmoid",
        "conv1_reduction": 2,
        "excitation": "dense",
        "eca_kernel": None,
        "se_bias": False,
        "gate_scale": 1.0,
        "train_size": None,
        "epoch_steps": None,
        "threads": 1,
    }


def test_default_learning_rate_follows_the_optimizer():
    assert Settings(optimizer="sgd").lr == 0.01
    assert Settings(optimizer="sgd", lr=0.2).lr == 0.2


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().epochs = 3


def test_a_dict_round_trips():
    settings = Settings(epochs=3, optimizer="sgd", reduction=8, se=False, seed=7, train_samples=100)
    assert Settings.from_dict(settings.as_dict()) == settings


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"epochs": "10"}, "epochs must be a positive whole number, got '10'"),
        ({"epochs": 2.0}, "epochs must be a positive whole number, got 2.0"),
        ({"batch_size": 0}, "batch_size must be a positive whole number, got 0"),
        ({"test_samples": -3}, "test_samples must be a positive whole number, got -3"),
        ({"lr": "abc"}, "lr must be a positive number, got 'abc'"),
        ({"lr": -1}, "lr must be a positive number, got -1"),
        ({"lr": float("inf")}, "lr must be a positive number, got inf"),
        ({"lr": None}, "lr must be a positive number, got None"),
        ({"optimizer": "rmsprop"}, "unknown optimizer 'rmsprop'; choose adam or sgd"),
        ({"se": "yes"}, "se must be true or false, got 'yes'"),
        ({"seed": -1}, "seed must be a whole number from 0 to 2**32 - 1, got -1"),
        ({"seed": 2**32}, "seed must be a whole number from 0 to 2**32 - 1"),
        ({"reduction": 32}, "SE reduction 32 leaves no hidden unit for 16 channels"),
        ({"reduction": True}, "SE reduction must be a positive integer, got True"),
        ({"se_position": "fc1"}, "unknown se_position 'fc1'; choose conv2, conv1, both"),
        ({"squeeze": "median"}, "unknown squeeze 'median'; choose avg, max"),
        ({"gate": "softmax"}, "unknown gate 'softmax'; choose sigmoid, tanh, relu"),
        ({"se_position": "both", "conv1_reduction": 8}, "SE reduction 8 leaves no hidden unit for 6 channels"),
        ({"threads": -1}, "threads must be a whole number from 0 to 1024, got -1"),
        ({"optimizer": "sgd", "momentum": 1.0}, "momentum must be a number from 0 to below 1, got 1.0"),
        ({"optimizer": "sgd", "momentum": -0.1}, "momentum must be a number from 0 to below 1, got -0.1"),
        ({"momentum": 0.9}, "momentum is SGD's; adam has its own (momentum must be 0)"),
        ({"excitation": "attention"}, "unknown excitation 'attention'; choose dense, conv1d, fixed"),
        ({"excitation": "conv1d", "eca_kernel": 4}, "eca_kernel must be an odd positive whole number, got 4"),
        ({"eca_kernel": 3}, "eca_kernel is the Conv1D excitation's kernel: it needs excitation conv1d"),
        ({"excitation": "fixed", "se_bias": True}, "se_bias: the fixed gain has no layer that takes the image"),
        ({"se_bias": 1}, "se_bias must be true or false, got 1"),
    ],
)
def test_bad_values_are_one_clear_error(changes, message):
    values = {**Settings().as_dict(), **changes}
    with pytest.raises(SettingsError) as error:
        Settings.from_dict(values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_run_json_from_before_the_later_settings_reads_with_their_defaults():
    later = ("se_position", "squeeze", "gate", "momentum", "excitation", "eca_kernel", "se_bias")
    values = {k: v for k, v in Settings().as_dict().items() if k not in later}
    assert Settings.from_dict(values) == Settings()


def test_the_excitations_without_a_bottleneck_take_any_reduction():
    """ECA and the fixed gain have no hidden layer, so the reduction (kept in run.json) is not checked."""
    assert Settings(excitation="conv1d", reduction=4).excitation == "conv1d"
    assert Settings(optimizer="sgd", momentum=0).momentum == 0.0


def test_unknown_and_missing_keys_are_named():
    values = Settings().as_dict()
    del values["seed"]
    values["colour"] = "red"
    with pytest.raises(SettingsError, match="settings: unknown colour; missing seed"):
        Settings.from_dict(values)
    with pytest.raises(SettingsError, match="settings must be an object, got list"):
        Settings.from_dict([1, 2])


@pytest.mark.parametrize("reduction, hidden", [(1, 16), (2, 8), (4, 4), (16, 1), (5, 3)])
def test_hidden_units(reduction, hidden):
    assert se_hidden_units(reduction) == hidden


@pytest.mark.parametrize(
    "changes, fragment",
    [
        ({"train_size": 600, "train_samples": 1000}, "exclude each other"),
        ({"train_size": 605}, "multiple of 10"),
        ({"train_size": 0}, "train_size must be a positive whole number"),
        ({"epoch_steps": 0}, "epoch_steps must be a positive whole number"),
        ({"gate_scale": 0}, "gate_scale must be a positive number"),
        ({"gate_scale": True}, "gate_scale must be a positive number"),
    ],
)
def test_the_study_axes_settings_are_checked(changes, fragment):
    with pytest.raises(SettingsError, match=fragment):
        Settings(**changes)


def test_steps_per_epoch_is_one_pass_unless_set():
    assert Settings().steps_per_epoch(60000) == 600
    assert Settings(batch_size=128).steps_per_epoch(1000) == 8  # the last batch short
    assert Settings(train_size=600, epoch_steps=600).steps_per_epoch(600) == 600


def test_a_run_json_from_before_the_study_axes_reads_with_their_defaults():
    old = Settings().as_dict()
    for name in ("gate_scale", "train_size", "epoch_steps"):
        del old[name]
    assert Settings.from_dict(old) == Settings()
