"""Benchmark: the ways to draw visualize.py's 100 heatmaps (10,000 test images, batches of 100).

    python benchmarks/bench_heatmaps.py [--rounds N] [--json PATH]

In one invocation, alternating, on made-up excitations (no TensorFlow, no MNIST):
  1. a new figure per batch, savefig, close (the simplest loop);
  2. one figure reused: set_data, ticks and title, savefig (a plain loop);
  3. one figure reused, blitting (heatmaps.HeatmapFigure: only what changes is redrawn);
  4. blitting, every other batch in a second process (heatmaps.worker; its start-up is timed apart,
     because visualize.py starts it while the test set is evaluated).
Prints the median seconds per variant over the rounds and each one's ratio to the plain loop.
"""

import json
import os
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from selenet import cli, heatmaps, machine  # noqa: E402
from selenet.settings import ceil_div  # noqa: E402

BATCH, TEST_IMAGES, CHANNELS = 100, 10_000, 16


def new_figure_per_batch(features, labels, out_dir):
    for i in range(TEST_IMAGES // BATCH):
        batch = slice(i * BATCH, (i + 1) * BATCH)
        rows, sorted_labels = heatmaps.label_sorted(features[batch], labels[batch])
        figure = Figure(figsize=(6, 7), layout="constrained")  # pyplot's figure, without its registry
        axes = figure.subplots()
        image = axes.imshow(rows, cmap=heatmaps.COLOR_MAP, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
        figure.colorbar(image, ax=axes, label="excitation")
        starts, digits = heatmaps.first_of_each_label(sorted_labels)
        axes.set_yticks(starts, [str(d) for d in digits])
        axes.set_title(f"SE excitations, test batch {i}")
        figure.savefig(os.path.join(out_dir, heatmaps.heatmap_name(i)))


def reused_figure_savefig(features, labels, out_dir):
    heatmap = heatmaps.HeatmapFigure(BATCH, CHANNELS)
    for artist in heatmap.changing:
        artist.set_animated(False)  # a plain savefig draws everything
    for i in range(TEST_IMAGES // BATCH):
        batch = slice(i * BATCH, (i + 1) * BATCH)
        heatmap.draw(features[batch], labels[batch], f"SE excitations, test batch {i}")
        # PNG compression level 3, as HeatmapFigure.save writes: the comparison is of the drawing alone
        heatmap.figure.savefig(os.path.join(out_dir, heatmaps.heatmap_name(i)), pil_kwargs={"compress_level": 3})


def reused_figure_blitting(features, labels, out_dir):
    heatmaps.save_heatmaps(features, labels, out_dir, BATCH)


def main(argv=None):
    parser = cli.ArgumentParser(prog="bench_heatmaps.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=cli.positive_int, default=3, help="alternating rounds; the median is reported")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)

    random = np.random.default_rng(0)
    features = random.random((TEST_IMAGES, CHANNELS)).astype(np.float32)
    labels = random.integers(0, 10, TEST_IMAGES)
    started = time.perf_counter()
    with heatmaps.worker(ceil_div(TEST_IMAGES, BATCH)) as pool:
        if pool is not None:
            pool.apply(int)  # waits until the worker has started
        worker_start = time.perf_counter() - started
        variants = {
            "new figure per batch": new_figure_per_batch,
            "one figure, set_data + savefig": reused_figure_savefig,
            "one figure, blitting": reused_figure_blitting,
        }
        if pool is not None:
            variants["blitting, two processes"] = lambda *data: heatmaps.save_heatmaps(*data, BATCH, pool=pool)
        seconds = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, draw in variants.items():
                with tempfile.TemporaryDirectory() as out_dir:
                    began = time.perf_counter()
                    draw(features, labels, out_dir)
                    seconds[name].append(time.perf_counter() - began)
    plain = statistics.median(seconds["one figure, set_data + savefig"])
    result = {
        **machine.record(),
        "rounds": args.rounds,
        "worker_start_seconds": worker_start if pool is not None else None,
        "variants": {
            name: {"seconds": times, "median": statistics.median(times), "vs_plain": statistics.median(times) / plain}
            for name, times in seconds.items()
        },
    }
    print(f"{result['machine']['cpu']}, {result['machine']['cpus']} cores; 100 heatmaps, median of {args.rounds}")
    print("| variant | seconds | ÷ plain loop |\n|---|---|---|")
    for name, row in result["variants"].items():
        print(f"| {name} | {row['median']:.2f} | {row['vs_plain']:.2f} |")
    if pool is not None:
        print(f"(the second process took {worker_start:.2f} s to start)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
