"""Does the excitation matter at inference? (SENet paper, section 7.2, "role of excitation")

The test accuracy of a trained run with each SE block's excitation
    learned      as the model computes it,
    train_mean   replaced by each channel's mean over the training set (a fixed gain per channel),
    ones         replaced by 1 (no recalibration at all),
    shuffled     shuffled between test images (each image gets another's; seeded).
If train_mean is as good as learned, the block acts as a fixed gain on this data. Beside them, range_BLOCK: how far
the SE block's excitation moves between test images (its widest channel); 0 is a dead block.
"""

import csv
import io
import os

import keras
import numpy as np

import senet_lenet

VARIANTS = ("learned", "train_mean", "ones", "shuffled")
ROLE_FILE = "excitation_role.csv"


def with_given_excitations(model):
    """The trained network, sharing its layers, but scaling each block's channels by an excitation it is given:
    inputs [image, one (N, C) per SE block], output the predictions."""
    image = keras.Input((28, 28), dtype="uint8", name="image")
    given, x = [], image
    for layer in model.layers[1:]:
        if isinstance(layer, keras.layers.Multiply):  # the block's scale: by the given excitation instead
            given.append(keras.Input((x.shape[-1],), name=f"{layer.name}_given"))
            x = senet_lenet.scale_channels(x, given[-1], layer.name.removesuffix("_scale"))
        elif not layer.name.startswith("se"):  # the rest of the block computes the excitation: left out
            x = layer(x)
    return keras.Model([image, *given], x)


def accuracy(predictions, labels):
    """Top-1 accuracy in percent, to 4 decimals (4 decimals hold one test image: 0.01)."""
    return round(100 * float(np.mean(np.argmax(predictions, axis=1) == labels)), 4)


def excitation_role(model, seed, train_data, test_data, blocks=("conv2",)):
    """{variant: test accuracy %} for the four VARIANTS, and range_BLOCK of each SE block (after conv1, conv2)."""
    _, train_excitations = senet_lenet.predict(model, train_data[0])
    _, learned = senet_lenet.predict(model, test_data[0])
    order = np.random.default_rng(seed).permutation(len(test_data[1]))
    variants = {
        "learned": learned,
        "train_mean": [
            np.broadcast_to(t.mean(axis=0), e.shape) for t, e in zip(train_excitations, learned, strict=True)
        ],
        "ones": [np.ones_like(e) for e in learned],
        "shuffled": [e[order] for e in learned],
    }
    given = with_given_excitations(model)
    images, labels = test_data
    role = {name: accuracy(senet_lenet.predict(given, [images, *variants[name]])[0], labels) for name in VARIANTS}
    for block, excitation in zip(blocks, learned, strict=True):
        role[f"range_{block}"] = round(float(np.ptp(excitation, axis=0).max()), 6)
    return role


def dead_blocks(role, variant):
    """The SE blocks whose excitation is the same for every test image (a constant gain: nothing learned); none for
    the fixed gain, which is the same for every image by design."""
    if variant["excitation"] == "fixed":
        return []
    return [name.removeprefix("range_") for name, value in role.items() if name.startswith("range_") and value == 0]


def save_role(run_dir, role):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["measure", "value"])  # the variants' test accuracy (%), then range_BLOCK
    writer.writerows(role.items())
    senet_lenet.write_text(os.path.join(run_dir, ROLE_FILE), buffer.getvalue())


def read_role(run_dir):
    """The saved {variant: accuracy} of run_dir, or None. The run's files are rewritten together when it trains
    again (senet_lenet.remove_own removes this one), so one found belongs to the run's weights."""
    try:
        with open(os.path.join(run_dir, ROLE_FILE), newline="", encoding="utf-8") as f:
            role = {row["measure"]: float(row["value"]) for row in csv.DictReader(f)}
    except (OSError, KeyError, ValueError):
        return None
    return role if set(VARIANTS) <= set(role) else None
