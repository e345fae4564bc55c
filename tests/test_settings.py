"""Settings: the assignment's defaults, and one clear line for anything a run cannot have."""

import dataclasses

import pytest

from settings import Settings, SettingsError, se_hidden_units


def test_defaults_are_the_assignments():
    assert Settings().as_dict() == {
        "epochs": 10,
        "batch_size": 100,
        "optimizer": "adam",
        "lr": 0.001,
        "reduction": 4,
        "se": True,
        "seed": 0,
        "train_samples": None,
        "test_samples": None,
        "se_position": "conv2",
        "squeeze": "avg",
        "gate": "sigmoid",
        "conv1_reduction": 2,
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
    ],
)
def test_bad_values_are_one_clear_error(changes, message):
    values = {**Settings().as_dict(), **changes}
    with pytest.raises(SettingsError) as error:
        Settings.from_dict(values)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_run_json_from_before_the_later_settings_reads_with_their_defaults():
    values = {k: v for k, v in Settings().as_dict().items() if k not in ("se_position", "squeeze", "gate")}
    assert Settings.from_dict(values) == Settings()


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
