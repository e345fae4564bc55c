"""The figures visualize.py draws of an excitation beyond the per-batch heatmaps: the mean per digit, the
per-digit profile (the SENet paper's Fig. 6 and 7), two runs' batch side by side; and the class means in one
line. No TensorFlow and no pyplot."""

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # no pyplot: importing this leaves a notebook's backend alone

from selenet import excitation_stats
from selenet.excitation_stats import COLOR_MAP, class_means
from selenet.heatmaps import first_of_each_label, label_sorted
from selenet.settings import block_where


def class_mean_summary(means, features, fixed_gain=False):
    """One line: how much the excitation varies between digits, against between channels.
    fixed_gain: the block is Settings.excitation "fixed", the same for every image by design."""
    digits = np.flatnonzero(~np.isnan(means).any(axis=1))  # the digits the test set holds
    present = means[digits]
    between_digits = present.std(axis=0)  # per channel
    between_channels = features.mean(axis=0).std()
    line = (
        f"SE class means: std between digits {between_digits.mean():.3f} per channel on average "
        f"(max {between_digits.max():.3f}, channel {int(between_digits.argmax())}); "
        f"std between channels {between_channels:.3f}; "
    )
    if fixed_gain:
        return line + "a trained fixed gain: the same excitation for every image by design"
    if excitation_stats.excitation_range(features) == 0:
        return line + "the block is dead: its excitation is the same for every test image"
    if len(digits) < 2:
        return line + "most distinct digit: needs two digits in the test set"
    others = [np.delete(present, i, axis=0).mean(axis=0) for i in range(len(digits))]
    i = int(np.argmax([np.abs(present[i] - others[i]).mean() for i in range(len(digits))]))
    channels = np.argsort(-np.abs(present[i] - others[i]))[:3]
    return line + f"most distinct digit {digits[i]} (channels {', '.join(str(c) for c in channels)})"


def class_mean_figure(means, block="conv2", limits=(0.0, 1.0)):
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(means, cmap=COLOR_MAP, vmin=limits[0], vmax=limits[1], aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=axes, label="mean excitation")
    axes.set_xticks(range(means.shape[1]))
    axes.set_yticks(range(means.shape[0]))
    axes.set_xlabel(f"SE channel{block_where(block)}")
    axes.set_ylabel("digit")
    axes.set_title("Mean SE excitation per digit (test set)")
    return figure


def class_profile_figure(features, labels, block="conv2"):
    """The SENet paper's Fig. 6 and 7 at LeNet scale: per channel, the mean excitation of each digit
    (ten lines) and of all images; below, each digit's mean with its within-digit standard deviation."""
    means = class_means(features, labels)
    digits = np.flatnonzero(~np.isnan(means).any(axis=1))
    channels = np.arange(features.shape[1])
    figure = Figure(figsize=(9, 7), layout="constrained")
    lines, spread = figure.subplots(2, 1, sharex=True)
    colors = matplotlib.colormaps["tab10"]
    for digit in digits:
        lines.plot(channels, means[digit], "-", color=colors(digit), lw=1, label=str(digit))
        std = features[labels == digit].std(axis=0)
        spread.errorbar(channels + (digit - 4.5) * 0.07, means[digit], yerr=std, fmt=".", ms=3, color=colors(digit))
    lines.plot(channels, features.mean(axis=0), "k-", lw=3, label="all")
    lines.set_ylabel("mean excitation")
    lines.legend(ncol=11, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.18))
    spread.set_ylabel("mean ± std within digit")
    spread.set_xlabel(f"SE channel{block_where(block)}")
    spread.set_xticks(channels)
    for axes in (lines, spread):
        axes.grid(alpha=0.3)
    figure.suptitle(f"Excitation per digit, SE block after {block} (test set)")
    return figure


def comparison_figure(features_a, features_b, labels, names, batch_index, limits):
    """Batch heatmaps of two runs on their gate's scale (limits), and their absolute difference on its own."""
    sorted_a, sorted_labels = label_sorted(features_a, labels)
    sorted_b, _ = label_sorted(features_b, labels)
    difference = np.abs(sorted_a - sorted_b)
    figure = Figure(figsize=(13, 7), layout="constrained")
    axes = figure.subplots(1, 3, sharey=True)
    starts, digits = first_of_each_label(sorted_labels)
    largest = float(difference.max())
    panels = (
        (sorted_a, names[0], limits),
        (sorted_b, names[1], limits),
        (difference, f"|A − B| (max in this batch {largest:.3g})", (0.0, largest or 1.0)),
    )
    images = []
    for ax, (data, title, (low, high)) in zip(axes, panels, strict=True):
        images.append(ax.imshow(data, cmap=COLOR_MAP, vmin=low, vmax=high, aspect="auto", interpolation="nearest"))
        ax.set_title(title)
        ax.set_xticks(range(0, data.shape[1], 3))
        ax.set_xlabel("SE channel")
        ax.set_yticks(starts, [str(d) for d in digits])
    figure.colorbar(images[1], ax=axes[:2], label="excitation")
    figure.colorbar(images[2], ax=axes[2], label="|excitation difference|")
    axes[0].set_ylabel("test sample, sorted by label")
    figure.suptitle(f"SE excitations, test batch {batch_index}")
    return figure
