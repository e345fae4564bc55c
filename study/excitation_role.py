"""Does the excitation matter at inference? (SENet paper, section 7.2, "role of excitation")

The test accuracy of a trained run with each SE block's excitation
    learned      as the model computes it,
    train_mean   replaced by each channel's mean over the training set (a fixed gain per channel),
    ones         replaced by 1 (no recalibration at all),
    shuffled     shuffled between test images (each image gets another's; seeded).
If train_mean is as good as learned, the block acts as a fixed gain on this data. Beside them, range_BLOCK:
how far the block's excitation moves between test images (its widest channel); 0 is a dead block.
"""

import csv
import io
import os

import numpy as np

import senet_lenet
from selenet import excitation_stats, runs
from selenet.manifest import Manifest
from selenet.predict import accuracy_percent, predictor

VARIANTS = ("learned", "train_mean", "ones", "shuffled")


def with_given_excitations(model, settings):
    """The same network, but scaling by excitations it is given: inputs [image, one per SE block]."""
    given = senet_lenet.build_model(settings, excitation_inputs=True)
    for layer in given.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return given


def excitation_role(model, settings, train_data, test_data):
    """{variant: test accuracy %} for the four VARIANTS."""
    given = with_given_excitations(model, settings)
    predict = predictor(model)  # one trace where both sets fill whole batches of 1,000
    _, train_excitations = predict(train_data[0])
    _, learned = predict(test_data[0])
    order = np.random.default_rng(settings.seed).permutation(len(test_data[1]))
    variants = {
        "learned": learned,
        "train_mean": [
            np.broadcast_to(t.mean(axis=0), e.shape) for t, e in zip(train_excitations, learned, strict=True)
        ],
        "ones": [np.ones_like(e) for e in learned],
        "shuffled": [e[order] for e in learned],
    }
    images, labels = test_data
    predict_given = predictor(given)  # one trace for the four variants
    role = {name: accuracy_percent(predict_given([images, *variants[name]])[0], labels) for name in VARIANTS}
    # How far each block's excitation moves between test images: its largest channel's range (0: dead).
    for block, excitation in zip(settings.se_blocks, learned, strict=True):
        role[f"range_{block}"] = excitation_stats.excitation_range(excitation)
    return role


def dead_blocks(role, settings):
    """The SE blocks whose excitation is the same for every test image (a constant gain: nothing learned);
    none for the fixed gain, which is the same for every image by design."""
    if settings.excitation == "fixed":
        return []
    return [name.removeprefix("range_") for name, value in role.items() if name.startswith("range_") and value == 0]


def save_role(run_dir, role, weights):
    """excitation_role.csv, recorded as drawn from the weights whose SHA-256 is `weights`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["measure", "value"])  # the variants' test accuracy (%), then range_BLOCK
    writer.writerows(role.items())
    Manifest(run_dir, "run").write_text(runs.ROLE_FILE, buffer.getvalue(), weights=weights)


def read_role(run_dir, weights):
    """The saved {variant: accuracy} of run_dir, or None if there is none measured on these weights."""
    if Manifest(run_dir).entries.get(runs.ROLE_FILE, {}).get("weights") != weights:
        return None
    try:
        with open(os.path.join(run_dir, runs.ROLE_FILE), newline="", encoding="utf-8") as f:
            role = {row["measure"]: float(row["value"]) for row in csv.DictReader(f)}
    except (OSError, KeyError, ValueError):
        return None
    return role if set(VARIANTS) <= set(role) else None


def role_line(role):
    return (
        f"Excitation at inference, test accuracy: learned {role['learned']:.2f} %, each channel's training-set "
        f"mean {role['train_mean']:.2f} %, all ones {role['ones']:.2f} %, shuffled between images "
        f"{role['shuffled']:.2f} %"
    )
