"""The SE block and SE-LeNet: numerics, shapes, names, parameter counts."""

import keras
import numpy as np
import pytest

import senet_lenet
from settings import Settings


def se_numpy(x, w_reduce, w_expand):
    """The SE block written out in NumPy: squeeze, excite, rescale."""
    squeezed = x.mean(axis=(1, 2))  # (N, C)
    hidden = np.maximum(squeezed @ w_reduce, 0.0)
    excitation = 1.0 / (1.0 + np.exp(-(hidden @ w_expand)))  # (N, C)
    return x * excitation[:, None, None, :], excitation


@pytest.mark.parametrize("reduction", [1, 2, 4, 8, 16])
def test_se_block_matches_numpy(reduction):
    rng = np.random.default_rng(reduction)
    inputs = keras.Input((6, 5, 16))
    scaled, excitation = senet_lenet.se_block(inputs, reduction, name="se")
    block = keras.Model(inputs, [scaled, excitation])
    w_reduce = rng.normal(size=(16, 16 // reduction)).astype(np.float32)
    w_expand = rng.normal(size=(16 // reduction, 16)).astype(np.float32)
    block.get_layer("se_reduce").set_weights([w_reduce])
    block.get_layer("se_expand").set_weights([w_expand])
    x = rng.normal(size=(3, 6, 5, 16)).astype(np.float32)

    got_scaled, got_excitation = (t.numpy() for t in block(x))
    want_scaled, want_excitation = se_numpy(x.astype(np.float64), w_reduce, w_expand)
    np.testing.assert_allclose(got_excitation, want_excitation, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_scaled, want_scaled, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("reduction", [0, -1, 17, 100])
def test_reduction_without_hidden_units_is_rejected(reduction):
    inputs = keras.Input((8, 8, 16))
    with pytest.raises(ValueError, match=str(reduction)):
        senet_lenet.se_block(inputs, reduction)


@pytest.mark.parametrize("reduction", [2.5, "4", True, None])
def test_reduction_must_be_an_integer(reduction):
    with pytest.raises(ValueError, match="positive integer"):
        senet_lenet.se_block(keras.Input((8, 8, 16)), reduction)


def test_reduction_error_names_the_channels():
    with pytest.raises(ValueError, match=r"17 leaves no hidden unit for 16 channels"):
        senet_lenet.se_block(keras.Input((8, 8, 16)), 17)


def test_model_shapes_names_and_parameters():
    model = senet_lenet.build_model()
    assert model.name == "SELeNet"
    assert model.count_params() == 44554
    names = [layer.name for layer in model.layers]
    expected = [
        "conv1",
        "pool1",
        "conv2",
        "se_squeeze",
        "se_reduce",
        "se_expand",
        "se_excite",
        "se_scale",
        "pool2",
        "flatten",
        "fc1",
        "fc2",
        "predictions",
    ]
    assert names[1:] == expected
    images = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    predictions, excitation = (t.numpy() for t in model(images))
    assert predictions.shape == (5, 10)
    assert excitation.shape == (5, 16)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all((excitation > 0) & (excitation < 1))


@pytest.mark.parametrize("reduction", [1, 2, 4, 8, 16])
def test_se_parameters_follow_the_reduction(reduction):
    model = senet_lenet.build_model(Settings(reduction=reduction))
    se_parameters = sum(model.get_layer(n).count_params() for n in ("se_reduce", "se_expand"))
    assert se_parameters == 2 * 16 * (16 // reduction)
    assert model.count_params() == 44554 - 128 + se_parameters


def test_excitation_is_the_scale_applied_to_conv2():
    model = senet_lenet.build_model()
    probe = keras.Model(
        model.input,
        [model.get_layer("conv2").output, model.get_layer("se_scale").output, model.outputs[1]],
    )
    images = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    conv2, scaled, excitation = (t.numpy() for t in probe(images))
    np.testing.assert_allclose(scaled, conv2 * excitation[:, None, None, :], rtol=1e-6)


def test_no_se_model_is_plain_lenet():
    plain, se = senet_lenet.build_model(Settings(se=False)), senet_lenet.build_model()
    assert plain.count_params() == se.count_params() - 128 == 44426
    assert not any(layer.name.startswith("se_") for layer in plain.layers)
    images = np.random.default_rng(2).random((3, 28, 28, 1), dtype=np.float32)
    predictions, excitations = senet_lenet.forward(plain, images)
    assert predictions.shape == (3, 10) and excitations == []
