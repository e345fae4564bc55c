"""The SE blocks the study trains beside the assignment's, and the model that is given its excitations.

senet_lenet.build_model comes here when the settings ask for anything but the assignment's block
(`is_variant`), or for a model that scales by excitations it is given (the role analysis): the squeeze
(average or max), the gate (sigmoid, tanh, ReLU) and its scale, ECA-Net's Conv1D or a trained fixed
gain instead of the Dense bottleneck, biases, and the position (after conv1, conv2 or both). Each block
keeps the assignment's layer names (se_squeeze, se_reduce, se_expand, se_excite, se_scale; se_conv1_*
for the block after conv1), so a variant of the assignment's settings has the assignment's weights.
"""

import keras

from selenet.settings import BLOCK_CHANNELS, Settings, eca_kernel_size, se_hidden_units

SE_NAMES = {"conv1": "se_conv1", "conv2": "se"}  # each SE block's layer-name prefix (conv2's: the assignment's)
SQUEEZE_LAYERS = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}
ASSIGNMENT = {**Settings.the_assignments_block(), "gate_scale": Settings.gate_scale}


def is_variant(settings):
    """Whether an SE model of `settings` has a block other than the assignment's."""
    return settings.se and any(getattr(settings, name) != value for name, value in ASSIGNMENT.items())


def excitation(x, settings, block="conv2"):
    """The excitation (N, C) of the SE block after `block` for x (N, H, W, C), as `settings` say."""
    channels, name = x.shape[-1], SE_NAMES[block]
    squeezed = SQUEEZE_LAYERS[settings.squeeze](name=f"{name}_squeeze")(x)  # (N, C)
    gate, bias = settings.gate, settings.se_bias
    if settings.excitation == "dense":
        hidden = se_hidden_units(settings.block_reduction(block), channels)
        reduced = keras.layers.Dense(hidden, activation="relu", use_bias=bias, name=f"{name}_reduce")(squeezed)
        gated = keras.layers.Dense(channels, activation=gate, use_bias=bias, name=f"{name}_expand")(reduced)
    elif settings.excitation == "conv1d":  # each channel from its kernel's neighbours, one kernel for all
        sequence = keras.layers.Reshape((channels, 1), name=f"{name}_reshape")(squeezed)  # (N, C, 1)
        kernel = settings.eca_kernel or eca_kernel_size(channels)
        conv = keras.layers.Conv1D(1, kernel, padding="same", activation=gate, use_bias=bias, name=f"{name}_conv1d")
        gated = keras.layers.Reshape((channels,), name=f"{name}_flatten")(conv(sequence))  # (N, C)
    else:
        # fixed: 0 * squeezed + 1, frozen, is a 1 for every image, so that the next layer's C weights are the
        # gains (built-in layers only; the gains get no gradient from the image).
        one = keras.layers.Dense(
            1, kernel_initializer="zeros", bias_initializer="ones", trainable=False, name=f"{name}_one"
        )
        gated = keras.layers.Dense(channels, activation=gate, use_bias=False, name=f"{name}_gain")(one(squeezed))
    if settings.gate_scale != 1:  # (N, C), each in (0, gate_scale) with the sigmoid
        gated = keras.layers.Rescaling(settings.gate_scale, name=f"{name}_gate_scale")(gated)
    return gated


def frozen_weights(settings):
    """The weights of `settings`' model that training leaves alone: the fixed gain's constant layer, C + 1 a block
    (tests/test_model.py checks this against the model)."""
    if not settings.se or settings.excitation != "fixed":
        return 0
    return sum(BLOCK_CHANNELS[block] + 1 for block in settings.se_blocks)


class Blocks:
    """The SE blocks of a variant model: after(conv, x) adds the block that follows `conv`, if any.
    given: the model takes each block's excitation as an input (`inputs`) and scales by it instead."""

    def __init__(self, settings, se_block, given=False):
        self.settings, self.se_block = settings, se_block  # senet_lenet's: it rescales x by a given excitation
        blocks = settings.se_blocks
        self.inputs = {b: keras.Input((BLOCK_CHANNELS[b],), name=f"{SE_NAMES[b]}_given") for b in blocks if given}

    def after(self, conv, x):
        """(x scaled by the block after `conv`, [its excitation]); (x, []) where no block follows it."""
        if conv not in self.settings.se_blocks:
            return x, []
        given = self.inputs.get(conv)
        e = given if given is not None else excitation(x, self.settings, conv)
        return self.se_block(x, name=SE_NAMES[conv], excitation=e)[0], [e]

    def model(self, image, predictions, excitations):
        name = self.settings.model_name
        if self.inputs:
            return keras.Model([image, *self.inputs.values()], predictions, name=f"{name}_given_excitations")
        return keras.Model(image, [predictions, *excitations], name=name)
