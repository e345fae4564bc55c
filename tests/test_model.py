"""The SE block and SE-LeNet: numerics, shapes, names, parameter counts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import senet_lenet
from selenet import variants
from selenet.predict import EVAL_BATCH_SIZE, outputs, predictor
from selenet.settings import Settings, eca_kernel_size

GATES = {"sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z)), "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}


def se_numpy(x, w_reduce, w_expand, squeeze="avg", gate="sigmoid"):
    """The SE block written out in NumPy: squeeze, excite, rescale."""
    squeezed = x.mean(axis=(1, 2)) if squeeze == "avg" else x.max(axis=(1, 2))  # (N, C)
    hidden = np.maximum(squeezed @ w_reduce, 0.0)
    excitation = GATES[gate](hidden @ w_expand)  # (N, C)
    return x * excitation[:, None, None, :], excitation


def se_of(inputs, settings):
    """The SE block of `settings` on inputs: the assignment's from senet_lenet, a variant's through variants.py."""
    if not variants.is_variant(settings):
        return senet_lenet.se_block(inputs, settings.reduction)
    return senet_lenet.se_block(inputs, excitation=variants.excitation(inputs, settings))


@pytest.mark.parametrize(
    "reduction, squeeze, gate",
    [(1, "avg", "sigmoid"), (2, "avg", "sigmoid"), (4, "avg", "sigmoid"), (8, "avg", "sigmoid"), (16, "avg", "sigmoid")]
    + [(4, "max", "sigmoid"), (4, "avg", "tanh"), (4, "avg", "relu"), (2, "max", "relu")],
)
def test_se_block_matches_numpy(reduction, squeeze, gate):
    rng = np.random.default_rng(reduction)
    inputs = keras.Input((6, 5, 16))
    scaled, excitation = se_of(inputs, Settings(reduction=reduction, squeeze=squeeze, gate=gate))
    block = keras.Model(inputs, [scaled, excitation])
    w_reduce = rng.normal(size=(16, 16 // reduction)).astype(np.float32)
    w_expand = rng.normal(size=(16 // reduction, 16)).astype(np.float32)
    block.get_layer("se_reduce").set_weights([w_reduce])
    block.get_layer("se_expand").set_weights([w_expand])
    x = rng.normal(size=(3, 6, 5, 16)).astype(np.float32)

    got_scaled, got_excitation = (t.numpy() for t in block(x))
    want_scaled, want_excitation = se_numpy(x.astype(np.float64), w_reduce, w_expand, squeeze, gate)
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
        "rescale",
        "add_channel",
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
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)  # raw MNIST images
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
    images = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    conv2, scaled, excitation = (t.numpy() for t in probe(images))
    np.testing.assert_allclose(scaled, conv2 * excitation[:, None, None, :], rtol=1e-6)


def test_no_se_model_is_plain_lenet():
    plain, se = senet_lenet.build_model(Settings(se=False)), senet_lenet.build_model()
    assert plain.count_params() == se.count_params() - 128 == 44426
    assert not any(layer.name.startswith("se_") for layer in plain.layers)
    images = np.random.default_rng(2).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    predictions, excitations = outputs(plain, images)
    assert predictions.shape == (3, 10) and excitations == []


@pytest.mark.parametrize(
    "position, excitation_shapes, parameters",
    [("conv2", [(4, 16)], 44554), ("conv1", [(4, 6)], 44426 + 2 * 6 * 3), ("both", [(4, 6), (4, 16)], 44554 + 36)],
)
def test_se_positions(position, excitation_shapes, parameters):
    model = senet_lenet.build_model(Settings(se_position=position))
    assert model.count_params() == parameters
    images = np.random.default_rng(3).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    predictions, excitations = outputs(model, images)
    assert predictions.shape == (4, 10) and [tuple(e.shape) for e in excitations] == excitation_shapes
    names = {layer.name for layer in model.layers}
    assert ("se_conv1_expand" in names) == (position != "conv2") and ("se_expand" in names) == (position != "conv1")


def test_squeeze_and_gate_keep_the_parameters_and_names():
    for settings in (Settings(squeeze="max"), Settings(gate="tanh"), Settings(gate="relu")):
        model = senet_lenet.build_model(settings)
        assert model.count_params() == 44554
        assert [layer.name for layer in model.layers] == [layer.name for layer in senet_lenet.build_model().layers]
    assert type(senet_lenet.build_model(Settings(squeeze="max")).get_layer("se_squeeze")).__name__ == (
        "GlobalMaxPooling2D"
    )


def copy_weights(source, target):
    """Weights by layer name, for the layers both models have."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


@pytest.mark.parametrize("position", ["conv2", "conv1", "both"])
def test_given_excitations_replace_the_blocks_own(position):
    """Fed its own excitations the model is unchanged; fed ones it is LeNet-5 with the same weights."""
    settings = Settings(se_position=position)
    model = senet_lenet.seeded_model(settings)
    given = senet_lenet.build_model(settings, excitation_inputs=True)
    copy_weights(model, given)
    images = np.random.default_rng(4).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    predictions, excitations = outputs(model, images)
    excitations = [e.numpy() for e in excitations]
    np.testing.assert_allclose(given([images, *excitations]).numpy(), predictions.numpy(), rtol=0, atol=1e-6)

    plain = senet_lenet.build_model(Settings(se=False))
    copy_weights(model, plain)
    ones = [np.ones(e.shape, np.float32) for e in excitations]
    np.testing.assert_allclose(given([images, *ones]).numpy(), plain(images).numpy(), rtol=0, atol=1e-6)


def test_the_block_after_conv1_has_its_own_reduction():
    model = senet_lenet.build_model(Settings(se_position="both"))
    assert model.get_layer("se_conv1_reduce").units == 6 // Settings.conv1_reduction == 3  # can learn
    assert model.get_layer("se_reduce").units == 16 // Settings.reduction
    old = Settings.from_dict({k: v for k, v in Settings(reduction=4).as_dict().items() if k != "conv1_reduction"})
    assert old.conv1_reduction == 4  # a run.json from before the setting: conv1's block had the shared one


@pytest.mark.parametrize("settings", [Settings(), Settings(se_position="both", gate="relu"), Settings(se=False)])
def test_predict_gives_the_bits_of_keras_predict(settings):
    """senet_lenet.predict against model.predict, a last batch smaller than the others included, for the
    model and for the one given excitations (what visualize.py and the study's excitation role measure)."""
    model = senet_lenet.seeded_model(settings)
    images = np.random.default_rng(5).integers(0, 256, (EVAL_BATCH_SIZE + 7, 28, 28), dtype=np.uint8)
    predictions, excitations = predictor(model)(images)
    keras_outputs = model.predict(images, batch_size=EVAL_BATCH_SIZE, verbose=0)
    keras_outputs = keras_outputs if isinstance(keras_outputs, list) else [keras_outputs]
    assert len(excitations) == len(settings.se_blocks)
    for ours, theirs in zip([predictions, *excitations], keras_outputs, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    if settings.se:
        given = senet_lenet.build_model(settings, excitation_inputs=True)
        copy_weights(model, given)
        shuffled = [e[::-1] for e in excitations]
        ours = predictor(given)([images, *shuffled])[0]
        theirs = given.predict([images, *shuffled], batch_size=EVAL_BATCH_SIZE, verbose=0)
        np.testing.assert_array_equal(ours, theirs)


def eca_numpy(x, kernel, squeeze="avg", gate="sigmoid"):
    """ECA written out in NumPy: squeeze, one kernel slid across the channels (zero-padded), gate, rescale."""
    squeezed = x.mean(axis=(1, 2)) if squeeze == "avg" else x.max(axis=(1, 2))  # (N, C)
    half = len(kernel) // 2
    padded = np.pad(squeezed, ((0, 0), (half, half)))
    channels = squeezed.shape[1]
    excitation = GATES[gate](np.stack([padded[:, c : c + len(kernel)] @ kernel for c in range(channels)], axis=1))
    return x * excitation[:, None, None, :], excitation


@pytest.mark.parametrize("kernel_size, squeeze, gate", [(3, "avg", "sigmoid"), (5, "max", "tanh"), (1, "avg", "relu")])
def test_eca_block_matches_numpy(kernel_size, squeeze, gate):
    rng = np.random.default_rng(kernel_size)
    inputs = keras.Input((6, 5, 16))
    settings = Settings(squeeze=squeeze, gate=gate, excitation="conv1d", eca_kernel=kernel_size)
    scaled, excitation = se_of(inputs, settings)
    block = keras.Model(inputs, [scaled, excitation])
    kernel = rng.normal(size=kernel_size).astype(np.float32)
    block.get_layer("se_conv1d").set_weights([kernel.reshape(kernel_size, 1, 1)])
    x = rng.normal(size=(3, 6, 5, 16)).astype(np.float32)

    got_scaled, got_excitation = (t.numpy() for t in block(x))
    want_scaled, want_excitation = eca_numpy(x.astype(np.float64), kernel.astype(np.float64), squeeze, gate)
    np.testing.assert_allclose(got_excitation, want_excitation, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_scaled, want_scaled, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("channels, kernel", [(16, 3), (6, 1), (64, 3), (256, 5), (512, 5)])
def test_eca_kernel_rule(channels, kernel):
    """ECA-Net's k = |log2(C) / 2 + 1 / 2| made odd (its Table and code: 3 up to 64 channels, 5 at 256 and 512)."""
    assert eca_kernel_size(channels) == kernel


def test_eca_model_takes_the_rule_per_block_and_has_no_reduction():
    model = senet_lenet.build_model(Settings(excitation="conv1d", se_position="both"))
    assert model.get_layer("se_conv1d").kernel_size == (3,) and model.get_layer("se_conv1_conv1d").kernel_size == (1,)
    assert model.count_params() == 44426 + 3 + 1
    assert not any(layer.name.endswith(("_reduce", "_expand")) for layer in model.layers)


def test_fixed_gain_is_one_trained_number_per_channel_whatever_the_image():
    model = senet_lenet.seeded_model(Settings(excitation="fixed"))
    gain = model.get_layer("se_gain")
    assert [tuple(w.shape) for w in model.trainable_weights if "se_" in w.path] == [(1, 16)]
    assert not model.get_layer("se_one").trainable
    images = np.random.default_rng(6).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    _, (excitation,) = outputs(model, images)
    want = 1 / (1 + np.exp(-gain.get_weights()[0][0]))  # sigmoid of the one weight per channel
    np.testing.assert_allclose(excitation.numpy(), np.broadcast_to(want, (5, 16)), rtol=1e-6)


def test_fixed_gain_gets_its_gradient_and_the_image_none():
    """One training step moves the gains; the frozen 1 stays 1 for any image."""
    settings = Settings(excitation="fixed")
    model = senet_lenet.seeded_model(settings)
    images = np.random.default_rng(7).integers(0, 256, (8, 28, 28), dtype=np.uint8)
    labels = np.arange(8) % 10
    with tf.GradientTape() as tape:
        predictions, _ = outputs(model, images, training=True)
        loss = keras.losses.SparseCategoricalCrossentropy()(labels, predictions)
    gradient = tape.gradient(loss, model.get_layer("se_gain").kernel)
    assert np.all(np.isfinite(gradient.numpy())) and np.any(gradient.numpy() != 0)
    one = keras.Model(model.input, model.get_layer("se_one").output)
    np.testing.assert_array_equal(one(images).numpy(), np.ones((8, 1), np.float32))


@pytest.mark.parametrize("settings, parameters", [(Settings(se_bias=True), 44554 + 4 + 16)])
def test_biases_in_the_dense_layers(settings, parameters):
    model = senet_lenet.build_model(settings)
    assert model.count_params() == parameters
    assert model.get_layer("se_reduce").use_bias and model.get_layer("se_expand").use_bias
    assert not senet_lenet.build_model().get_layer("se_expand").use_bias  # the assignment's: none


def test_momentum_reaches_sgd():
    model = senet_lenet.build_model()
    assert senet_lenet.make_optimizer(Settings(optimizer="sgd", momentum=0.9), model).momentum == 0.9
    plain = senet_lenet.make_optimizer(Settings(optimizer="sgd"), senet_lenet.build_model())
    assert plain.momentum == 0 and not plain.momentums  # the assignment's SGD: no momentum variables


@pytest.mark.parametrize(
    "changes", [{}, {"se": False}, {"excitation": "fixed"}, {"excitation": "fixed", "se_position": "both"}]
)
def test_frozen_weights_are_the_models_untrained_ones(changes):
    settings = Settings(**changes)
    model = senet_lenet.build_model(settings)
    assert variants.frozen_weights(settings) == sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
