"""Heatmaps of SE excitations, one PNG per test batch, rows sorted by label.

This module imports no TensorFlow: visualize.py draws half of the batches in a worker
process started with the spawn method, which imports only drawing code.
"""

import contextlib
import multiprocessing
import os
import signal

import numpy as np
import PIL.Image
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from selenet import files, machine
from selenet.excitation_stats import COLOR_MAP
from selenet.settings import block_suffix, block_where, ceil_div

HEATMAP_DIR = "se_features"  # RUN/se_features/{i}_se_feature.png; another block's: se_features_conv1/...
# The second process takes 0.40 s to start and saves 0.014 s a heatmap (docs/speed.md): fewer are drawn sooner here.
WORKER_MIN_HEATMAPS = 30


def label_sorted(features, labels):
    """The batch's rows stably sorted by label: (features, labels)."""
    order = np.argsort(labels, kind="stable")
    return features[order], labels[order]


def first_of_each_label(sorted_labels):
    """Row positions and digits where each label's block starts in sorted labels."""
    digits, starts = np.unique(sorted_labels, return_index=True)
    return starts, digits


class HeatmapFigure:
    """One figure reused for every batch. Only the heatmap, the y axis and the title
    change, so the rest is drawn once and copied back as pixels for each batch
    (blitting): a full redraw costs most of the time of 100 figures."""

    def __init__(self, rows, channels, limits=(0.0, 1.0)):
        # Fixed margins: a layout engine would re-run at each of the 100 saves.
        self.figure = Figure(figsize=(6, 7))
        FigureCanvasAgg(self.figure)  # pixels to copy back: no pyplot, so the caller's backend is left alone
        self.axes = self.figure.add_axes((0.12, 0.07, 0.68, 0.88))
        colorbar_axes = self.figure.add_axes((0.84, 0.07, 0.035, 0.88))
        self.image = self.axes.imshow(
            np.zeros((rows, channels)),
            cmap=COLOR_MAP,
            vmin=limits[0],
            vmax=limits[1],
            aspect="auto",
            interpolation="nearest",
        )
        self.figure.colorbar(self.image, cax=colorbar_axes, label="excitation")
        self.axes.set_xticks(range(channels))
        self.axes.set_xlabel("SE channel")
        self.axes.set_ylabel("test sample, sorted by label (tick: first of each digit)")
        # The spines change only in that the image is drawn over them unless they are redrawn after it.
        changing = (self.image, self.axes.yaxis, self.axes.title, *self.axes.spines.values())
        self.changing = sorted(changing, key=lambda artist: artist.get_zorder())  # a full draw's order
        for artist in self.changing:
            artist.set_animated(True)  # left out of the background drawn below
        self.figure.canvas.draw()
        self.background = self.figure.canvas.copy_from_bbox(self.figure.bbox)

    def draw(self, features, labels, title):
        """Sets up a batch, rows sorted by label; returns the figure."""
        features, labels = label_sorted(features, labels)
        rows, channels = features.shape
        self.image.set_data(features)
        self.image.set_extent((-0.5, channels - 0.5, rows - 0.5, -0.5))
        self.axes.set_ylim(rows - 0.5, -0.5)
        starts, digits = first_of_each_label(labels)
        self.axes.set_yticks(starts, [str(d) for d in digits])
        self.axes.set_title(title)
        return self.figure

    def save(self, path):
        """Writes the batch set up by draw() as a PNG: the background plus what changed."""
        canvas = self.figure.canvas
        canvas.restore_region(self.background)
        for artist in self.changing:
            self.figure.draw_artist(artist)
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]
        with files.atomic_path(path) as temporary:
            PIL.Image.fromarray(rgb).save(temporary, format="png", compress_level=3)


def heatmap_name(batch_index):
    return f"{batch_index}_se_feature.png"


def draw_heatmaps(features, labels, heatmap_dir, batch_size, indices, block="conv2", limits=(0.0, 1.0)):
    """Writes the heatmaps of the given batch indices."""
    heatmap = HeatmapFigure(min(batch_size, len(labels)), features.shape[1], limits)
    where = block_where(block)
    for i in indices:
        batch = slice(i * batch_size, (i + 1) * batch_size)
        heatmap.draw(features[batch], labels[batch], f"SE excitations{where}, test batch {i}")
        heatmap.save(os.path.join(heatmap_dir, heatmap_name(i)))


@contextlib.contextmanager
def worker(heatmaps):
    """A process that draws half of the given number of heatmaps beside this one, started now so that
    its start-up overlaps the caller's work; None on one core, or for fewer than WORKER_MIN_HEATMAPS.
    It is spawned, not forked: a fork of a process whose TensorFlow threads hold a lock would inherit
    that lock, held forever."""
    if machine.available_cores() < 2 or heatmaps < WORKER_MIN_HEATMAPS:  # the cores it may use, not the machine's
        yield None
        return
    # Ctrl-C reaches the whole process group: this process reports it, the worker is just ended.
    with multiprocessing.get_context("spawn").Pool(1, signal.signal, (signal.SIGINT, signal.SIG_IGN)) as pool:
        yield pool


def save_heatmaps(features, labels, out_dir, batch_size, max_batches=None, pool=None, block="conv2", limits=(0, 1)):
    """se_features/{i}_se_feature.png for each test batch i (recorded by the caller); returns how many were written.

    pool: a worker() to draw every other batch.
    """
    heatmap_dir = os.path.join(out_dir, HEATMAP_DIR + block_suffix(block))
    os.makedirs(heatmap_dir, exist_ok=True)
    batches = ceil_div(len(labels), batch_size)
    if max_batches is not None:
        batches = min(batches, max_batches)
    work = (features, labels, heatmap_dir, batch_size)
    if pool is not None and batches > 1:
        child = pool.apply_async(draw_heatmaps, (*work, range(1, batches, 2), block, limits))
        draw_heatmaps(*work, range(0, batches, 2), block, limits)
        child.get()
    else:
        draw_heatmaps(*work, range(batches), block, limits)
    return batches
