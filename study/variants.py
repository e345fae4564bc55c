"""The SE blocks the study trains beside the assignment's, as blocks for senet_lenet.build_model.

A variant (a dict of VARIANT's keys) changes the squeeze (average or max), the gate (sigmoid, tanh, ReLU), its
scale and its start (a bias that starts the sigmoid near a value), what turns the squeezed vector into the
excitation (the assignment's Dense bottleneck, ECA-Net's Conv1D, or a trained fixed gain that ignores the
image), biases, and the position (after conv1, conv2 or both, the block after conv1 with its own reduction).
Each block keeps the assignment's layer names (se_squeeze, se_reduce, se_expand, se_excite, se_scale;
se_conv1_* after conv1), and the assignment's variant builds the assignment's layers in the assignment's
order: the same weights, bit for bit.
"""

import math

import keras

import senet_lenet

# The assignment's block, and the study's other axes: the training-set size (a class-balanced sample drawn with
# the seed; None: every image) and the optimizer steps per epoch (None: one pass over the training images).
VARIANT = {"se_position": "conv2", "squeeze": "avg", "gate": "sigmoid", "excitation": "dense", "se_bias": False}
VARIANT |= {"gate_scale": 1.0, "gate_start": None, "conv1_reduction": 2, "train_size": None, "epoch_steps": None}
POSITIONS = {"conv2": ("conv2",), "conv1": ("conv1",), "both": ("conv1", "conv2")}  # SE blocks, in depth order
CHANNELS = {"conv1": 6, "conv2": 16}
SE_NAMES = {"conv1": "se_conv1", "conv2": "se"}
SQUEEZES = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def eca_kernel_size(channels, gamma=2, b=1):
    """ECA-Net's kernel size: |log2(C) / gamma + b / gamma| made odd (3 for 16 channels, 1 for 6)."""
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


def excitation(x, variant, reduction, block="conv2"):
    """The excitation (N, C) of the variant's SE block after `block` for x (N, H, W, C)."""
    channels, name = x.shape[-1], SE_NAMES[block]
    squeezed = SQUEEZES[variant["squeeze"]](name=f"{name}_squeeze")(x)  # (N, C)
    gate, bias = variant["gate"], variant["se_bias"]
    if variant["excitation"] == "dense":
        units = channels // (variant["conv1_reduction"] if block == "conv1" else reduction)  # conv1's: its own
        reduced = keras.layers.Dense(units, activation="relu", use_bias=bias, name=f"{name}_reduce")(squeezed)
        # gate_start: a sigmoid gate whose bias starts it near that value (its ceiling stays 1), a trained bias
        start = variant["gate_start"]
        init = keras.initializers.Constant(math.log(start / (1 - start))) if start else "zeros"
        expand = keras.layers.Dense(
            channels, gate, use_bias=bias or bool(start), bias_initializer=init, name=f"{name}_expand"
        )
        gated = expand(reduced)
    elif variant["excitation"] == "conv1d":  # each channel from its kernel's neighbours, one kernel for all
        sequence = keras.layers.Reshape((channels, 1), name=f"{name}_reshape")(squeezed)  # (N, C, 1)
        kernel = eca_kernel_size(channels)
        conv = keras.layers.Conv1D(1, kernel, padding="same", activation=gate, use_bias=bias, name=f"{name}_conv1d")
        gated = keras.layers.Reshape((channels,), name=f"{name}_flatten")(conv(sequence))  # (N, C)
    else:
        # fixed: 0 * squeezed + 1, frozen, is a 1 for every image, so that the next layer's C weights are the
        # gains (built-in layers only; the gains get no gradient from the image).
        one = keras.layers.Dense(
            1, kernel_initializer="zeros", bias_initializer="ones", trainable=False, name=f"{name}_one"
        )
        gated = keras.layers.Dense(channels, activation=gate, use_bias=False, name=f"{name}_gain")(one(squeezed))
    if variant["gate_scale"] != 1:  # (N, C), each in (0, gate_scale) with the sigmoid
        gated = keras.layers.Rescaling(variant["gate_scale"], name=f"{name}_gate_scale")(gated)
    return gated


def build(settings, variant):
    """The variant's model for senet_lenet's `settings` (reduction, se)."""
    if not settings["se"]:
        return senet_lenet.build_model(se=False)

    def block(conv):
        def scaled(x):
            e = excitation(x, variant, settings["reduction"], conv)
            return senet_lenet.scale_channels(x, e, SE_NAMES[conv]), e

        return scaled

    return senet_lenet.build_model(blocks={conv: block(conv) for conv in POSITIONS[variant["se_position"]]})


def frozen_weights(settings, variant):
    """The weights that training leaves alone: the fixed gain's constant layer, C + 1 a block."""
    if not settings["se"] or variant["excitation"] != "fixed":
        return 0
    return sum(CHANNELS[block] + 1 for block in POSITIONS[variant["se_position"]])
