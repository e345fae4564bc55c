"""An excitation (N images, C channels) in numbers: its mean per digit, how far it moves between images,
the colour scale its gate gives it. No TensorFlow and no pyplot: training's TensorBoard logs use it too."""

import matplotlib
import numpy as np

from selenet.settings import NUM_CLASSES

COLOR_MAP = "hot"  # the assignment's


def class_means(features, labels):
    """Mean excitation per digit 0-9: (10, channels); NaN for a digit absent from labels."""
    means = np.full((NUM_CLASSES, features.shape[1]), np.nan, dtype=np.float64)
    for digit in range(NUM_CLASSES):
        if np.any(labels == digit):
            means[digit] = features[labels == digit].mean(axis=0)
    return means


def excitation_range(excitation):
    """How far an SE block's excitation (N, C) moves between images: its widest channel's range, to 6
    decimals. 0 is a dead block: the same excitation for every image."""
    return round(float(np.ptp(excitation, axis=0).max()), 6)


def color_limits(gate, features, scale=1.0):
    """The colour scale: the gate's range times its scale (a ReLU gate's is open above: the largest
    excitation drawn)."""
    low, high = {"sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}.get(gate, (0.0, max(1.0, float(np.max(features)))))
    return (low * scale, high * scale) if gate in ("sigmoid", "tanh") else (low, high)


def class_mean_pixels(means, limits, cell=16):
    """The class means as an RGB image for TensorBoard, coloured as se_class_mean.png: (1, 10 * cell,
    channels * cell, 3) uint8, one cell-sized square per digit (row) and channel (column); black where NaN."""
    low, high = limits
    colors = matplotlib.colormaps[COLOR_MAP](np.clip((np.nan_to_num(means, nan=low) - low) / (high - low), 0, 1))
    pixels = np.repeat(np.repeat(colors[..., :3], cell, axis=0), cell, axis=1)
    return np.round(pixels * 255).astype(np.uint8)[np.newaxis]
