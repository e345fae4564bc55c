"""Draw what the SE block of a trained SE-LeNet run does on the MNIST test set.

    python visualize.py                         # the run in outputs/
    python visualize.py --run-dir RUN --data-dir path/to/mnist
    python visualize.py --compare RUN_A RUN_B --batch 0

It rebuilds the model from RUN/run.json, loads its weights (checking their SHA-256), re-evaluates the test set
(and checks the accuracy against the one recorded), then writes to RUN:
  se_features/{i}_se_feature.png  excitations of test batch i, rows sorted by label
  se_features.npz                 every test image's excitation, label and prediction
  se_class_mean.png               mean excitation per digit
  se_class_profile.png            per channel: each digit's mean, and the spread within digits
  excitation_role.csv             test accuracy with the excitation learned, a fixed gain, 1, shuffled
  se_anatomy.png                  one test image each of 0, 1 and 7: conv2's 16 maps before and after the block

--compare draws one batch of two runs side by side with their difference (RUN_B/compare_{batch}.png) and
prints the largest difference over the whole test set: 0 for two runs with the same seed on the same machine
(the assignment's extended experiment).
"""

import contextlib
import os
import sys

import senet_lenet  # isort: skip  (first: it quiets TensorFlow and caps oneDNN's instruction set before they load)
import keras
import matplotlib
import numpy as np
from matplotlib.figure import Figure  # no pyplot: a notebook's backend is left alone

from senet_lenet import UsageError, predict

COLOR_MAP = "hot"  # the assignment's
TOLERANCE = 0.1  # accuracy points between recorded and re-evaluated (or one test image, if more)


# ---- A run -----------------------------------------------------------------------
def percent_correct(predictions, labels):
    """Top-1 accuracy in percent, to 4 decimals (4 decimals hold one test image: 0.01)."""
    return round(100 * float(np.mean(predictions.argmax(axis=1) == labels)), 4)


def evaluate(run_dir, run, model, test_data):
    """(predictions, excitations) of the test set; UsageError if the accuracy is not the one recorded."""
    predictions, (excitations,) = predict(model, test_data[0])
    accuracy = percent_correct(predictions, test_data[1])
    recorded = run["history"][-1]["test_accuracy"]
    print(f"{run_dir}: test accuracy {accuracy:.2f} % (recorded in run.json: {recorded:.2f} %)")
    tolerance = max(TOLERANCE, 100 / len(test_data[1]))
    if not np.isfinite(excitations).all() or abs(accuracy - recorded) > tolerance + 1e-9:
        raise UsageError(
            f"{run_dir}: re-evaluated test accuracy {accuracy:.2f} % differs from the recorded {recorded:.2f} % by "
            f"more than {tolerance:g} point: other data than the run's?"
        )
    return predictions, excitations


def environment(run):
    """What the bits depend on besides the settings: threads, versions, CPU (this process's where run is None)."""
    record = run or senet_lenet.machine()
    isa = record["machine"].get("isa", {}).get("onednn")
    threads = run and run["settings"]["threads"]
    return {"threads": threads, **record["versions"], "cpu": record["machine"].get("cpu"), "instruction set": isa}


def environment_note(name_a, a, name_b, b):
    """One line naming how two environments differ (the same bits are promised only for equal ones)."""
    differences = [f"{k} ({a[k]} vs {b[k]})" for k in a if None not in (a[k], b.get(k)) and a[k] != b[k]]
    if differences:
        print(f"note: {name_a} and {name_b} differ in {', '.join(differences)}: the same bits are promised only "
              "for the same threads, versions, CPU and instruction set")  # fmt: skip


def class_means(features, labels):
    """Mean excitation per digit 0-9: (10, channels); NaN for a digit absent from labels."""
    means = np.full((10, features.shape[1]), np.nan)
    for digit in np.unique(labels):
        means[digit] = features[labels == digit].mean(axis=0)
    return means


def excitation_role(model, seed, train_images, test_data, blocks=("conv2",)):
    """{variant: test accuracy %} with each SE block's excitation learned, replaced by each channel's training-set
    mean, by 1, or shuffled between test images (SENet paper, section 7.2, "role of excitation"); range_BLOCK: how
    far the excitation of the block after BLOCK moves between test images (its widest channel), 0 if dead."""
    images, labels = test_data
    learned = predict(model, images)[1]
    train_means = [e.mean(axis=0) for e in predict(model, train_images)[1]]
    order = np.random.default_rng(seed).permutation(len(labels))
    replaced = {
        "learned": learned,
        "train_mean": [np.broadcast_to(m, e.shape) for m, e in zip(train_means, learned, strict=True)],
    }
    replaced |= {"ones": [np.ones_like(e) for e in learned], "shuffled": [e[order] for e in learned]}
    given = senet_lenet.with_excitation(model)
    role = {name: percent_correct(predict(given, [images, *e])[0], labels) for name, e in replaced.items()}
    return role | {f"range_{b}": round(float(np.ptp(e, axis=0).max()), 6) for b, e in zip(blocks, learned, strict=True)}


def save_role(run_dir, role):
    text = "measure,value\n" + "".join(f"{name},{value}\n" for name, value in role.items())
    senet_lenet.write_text(os.path.join(run_dir, "excitation_role.csv"), text)


# ---- Figures ---------------------------------------------------------------------
def label_sorted(features, labels):
    order = np.argsort(labels, kind="stable")
    return features[order], labels[order]


def digit_ticks(axes, sorted_labels):
    digits, starts = np.unique(sorted_labels, return_index=True)
    axes.set_yticks(starts, [str(d) for d in digits])


def heatmap_figure(features, labels, title):
    """The excitations of a batch, one row per image, rows sorted by label (the assignment's figure)."""
    features, labels = label_sorted(features, labels)
    figure = Figure(figsize=(6, 7))
    axes = figure.add_axes((0.12, 0.07, 0.68, 0.88))  # fixed margins: a layout engine took 1.7 x the time
    image = axes.imshow(features, cmap=COLOR_MAP, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    figure.colorbar(image, cax=figure.add_axes((0.84, 0.07, 0.035, 0.88)), label="excitation")
    axes.set(title=title, xticks=range(features.shape[1]), xlabel="SE channel")
    axes.set_ylabel("test sample, sorted by label (tick: first of each digit)")
    digit_ticks(axes, labels)
    return figure


def class_mean_figure(means):
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(means, cmap=COLOR_MAP, vmin=0, vmax=1, aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=axes, label="mean excitation")
    axes.set(xticks=range(means.shape[1]), yticks=range(10), xlabel="SE channel", ylabel="digit")
    axes.set_title("Mean SE excitation per digit (test set)")
    return figure


def class_profile_figure(features, labels):
    """The SENet paper's Fig. 6 and 7 at LeNet scale: per channel, each digit's mean excitation and all images';
    below, each digit's mean with its within-digit standard deviation."""
    means, channels = class_means(features, labels), np.arange(features.shape[1])
    figure = Figure(figsize=(9, 7), layout="constrained")
    lines, spread = figure.subplots(2, 1, sharex=True)
    colors = matplotlib.colormaps["tab10"]
    for digit in np.unique(labels):
        lines.plot(channels, means[digit], "-", color=colors(digit), lw=1, label=str(digit))
        std = features[labels == digit].std(axis=0)
        spread.errorbar(channels + (digit - 4.5) * 0.07, means[digit], yerr=std, fmt=".", ms=3, color=colors(digit))
    lines.plot(channels, features.mean(axis=0), "k-", lw=3, label="all")
    lines.set_ylabel("mean excitation")
    lines.legend(ncol=11, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, 1.18))
    spread.set(ylabel="mean ± std within digit", xlabel="SE channel", xticks=channels)
    for axes in (lines, spread):
        axes.grid(alpha=0.3)
    figure.suptitle("Excitation per digit, SE block after conv2 (test set)")
    return figure


def class_mean_summary(means, features):
    """One line: how much the excitation varies between digits, against between channels."""
    present = means[~np.isnan(means).any(axis=1)]
    digits = np.flatnonzero(~np.isnan(means).any(axis=1))
    between_digits = present.std(axis=0)  # per channel
    line = (
        f"SE class means: std between digits {between_digits.mean():.3f} per channel on average "
        f"(max {between_digits.max():.3f}, channel {int(between_digits.argmax())}); "
        f"std between channels {features.mean(axis=0).std():.3f}; "
    )
    if np.ptp(features, axis=0).max() == 0:
        return line + "the block is dead: its excitation is the same for every test image"
    if len(digits) < 2:
        return line + "most distinct digit: needs two digits in the test set"
    others = [np.delete(present, i, axis=0).mean(axis=0) for i in range(len(digits))]
    i = int(np.argmax([np.abs(present[i] - others[i]).mean() for i in range(len(digits))]))
    channels = np.argsort(-np.abs(present[i] - others[i]))[:3]
    return line + f"most distinct digit {digits[i]} (channels {', '.join(str(c) for c in channels)})"


def comparison_figure(features_a, features_b, labels, names, batch):
    """Batch heatmaps of two runs, and their absolute difference on its own scale."""
    (sorted_a, sorted_labels), (sorted_b, _) = label_sorted(features_a, labels), label_sorted(features_b, labels)
    difference = np.abs(sorted_a - sorted_b)
    largest = float(difference.max())
    figure = Figure(figsize=(13, 7), layout="constrained")
    axes = figure.subplots(1, 3, sharey=True)
    panels = [(sorted_a, names[0], 1.0), (sorted_b, names[1], 1.0)]
    panels.append((difference, f"|A − B| (max in this batch {largest:.3g})", largest or 1.0))
    images = []
    for ax, (data, title, high) in zip(axes, panels, strict=True):
        images.append(ax.imshow(data, cmap=COLOR_MAP, vmin=0, vmax=high, aspect="auto", interpolation="nearest"))
        ax.set(title=title, xticks=range(0, data.shape[1], 3), xlabel="SE channel")
        digit_ticks(ax, sorted_labels)
    figure.colorbar(images[1], ax=axes[:2], label="excitation")
    figure.colorbar(images[2], ax=axes[2], label="|excitation difference|")
    axes[0].set_ylabel("test sample, sorted by label")
    figure.suptitle(f"SE excitations, test batch {batch}")
    return figure


def anatomy(model, images):
    """(conv2's maps (N, 8, 8, 16), the excitation (N, 16), the maps the block scaled (N, 8, 8, 16)): the model's
    own layers, in one pass."""
    outputs = [model.get_layer(name).output for name in ("conv2", "se_expand", "se_scale")]
    return tuple(np.asarray(x) for x in keras.Model(model.input, outputs)(images))


def anatomy_images(test_data, digits=(0, 1, 7)):
    """The first test image of each of `digits` that the test set holds: (images, labels)."""
    indices = [int(np.argmax(test_data[1] == d)) for d in digits if (test_data[1] == d).any()]
    return test_data[0][indices], test_data[1][indices]


def anatomy_figure(images, names, maps, excitation, scaled, references=None):
    """Per image, two rows: the image and conv2's 16 maps; the 16 excitations as bars and the 16 maps after the
    block scaled them. Every map on one colour scale, so that a channel the block dims looks dimmed. references:
    per image, (name, 16 values) outlined on its bars (explore.py: the predicted digit's mean excitation)."""
    high = float(maps.max()) or 1.0
    figure = Figure(figsize=(15, 2.2 * len(images) + 0.6), layout="constrained")
    grid = figure.add_gridspec(2 * len(images), 17, width_ratios=[4] + [1] * 16)
    for i, (image, name) in enumerate(zip(images, names, strict=True)):
        axes = figure.add_subplot(grid[2 * i, 0])
        axes.imshow(image, cmap="gray")
        axes.set(xticks=[], yticks=[], ylabel=name)
        bars = figure.add_subplot(grid[2 * i + 1, 0])
        bars.bar(range(16), excitation[i], color="C1", label="this image")
        if references:
            bars.bar(range(16), references[i][1], fill=False, edgecolor="C0", label=references[i][0])
            bars.legend(fontsize=7, loc="lower left", bbox_to_anchor=(0, 1), ncols=2, frameon=False)
        bars.set(ylim=(0, 1), xticks=range(0, 16, 5), ylabel="excitation")
        for channel in range(16):
            for row, data in ((2 * i, maps), (2 * i + 1, scaled)):
                axes = figure.add_subplot(grid[row, channel + 1])
                image_artist = axes.imshow(data[i, :, :, channel], cmap=COLOR_MAP, vmin=0, vmax=high)
                axes.set(xticks=[], yticks=[])
                axes.set_title(f"{channel}" if row == 2 * i else f"×{excitation[i, channel]:.2f}", fontsize=7)
    figure.colorbar(image_artist, ax=figure.axes, shrink=0.6, label="activation (one scale for every map)")
    figure.suptitle("What the SE block does to one image: conv2's 16 maps (upper row), each multiplied by its "
                    "excitation (lower row)")  # fmt: skip
    return figure


def save_figure(path, figure):
    senet_lenet.write_whole(path, lambda temporary: figure.savefig(temporary, format="png", dpi=100))


# ---- Command line ----------------------------------------------------------------
def visualize(args):
    run, model = senet_lenet.load_run(args.run_dir)
    settings, out = run["settings"], args.run_dir
    environment_note(out, environment(run), "this machine", environment(None))
    train_data, test_data = senet_lenet.load_mnist(args.data_dir)
    test_data = senet_lenet.first(test_data, settings["test_samples"])
    predictions, features = evaluate(out, run, model, test_data)
    labels, batches = test_data[1], -(-len(test_data[1]) // args.batch_size)
    drawn = min(batches, args.max_batches or batches)
    if args.max_batches is None:  # every batch drawn now: those of another batching go
        senet_lenet.remove_own(out, ("se_features/[0-9]*_se_feature.png",))
    os.makedirs(os.path.join(out, "se_features"), exist_ok=True)
    for i in range(drawn):
        batch = slice(i * args.batch_size, (i + 1) * args.batch_size)
        figure = heatmap_figure(features[batch], labels[batch], f"SE excitations, test batch {i}")
        save_figure(os.path.join(out, "se_features", f"{i}_se_feature.png"), figure)

    def save_npz(path):
        with open(path, "wb") as f:
            np.savez(f, excitation=features, label=labels, prediction=predictions.argmax(axis=1))

    senet_lenet.write_whole(os.path.join(out, "se_features.npz"), save_npz)
    means = class_means(features, labels)
    save_figure(os.path.join(out, "se_class_mean.png"), class_mean_figure(means))
    save_figure(os.path.join(out, "se_class_profile.png"), class_profile_figure(features, labels))
    print(class_mean_summary(means, features))
    train_images = senet_lenet.first(train_data, settings["train_samples"])[0]
    role = excitation_role(model, settings["seed"], train_images, test_data)
    save_role(out, role)
    print(
        f"Excitation at inference, test accuracy: learned {role['learned']:.2f} %, each channel's training-set "
        f"mean {role['train_mean']:.2f} %, all ones {role['ones']:.2f} %, shuffled between images "
        f"{role['shuffled']:.2f} %"
    )
    images, labels = anatomy_images(test_data)
    names = [f"digit {label}" for label in labels]
    save_figure(os.path.join(out, "se_anatomy.png"), anatomy_figure(images, names, *anatomy(model, images)))
    print(f"Wrote to {out}/: {senet_lenet.plural(drawn, 'heatmap')} in se_features/; se_features.npz, "
          "excitation_role.csv, se_class_mean.png, se_class_profile.png, se_anatomy.png")  # fmt: skip


def compare(args):
    (dir_a, dir_b), batch_size = args.compare, args.batch_size
    run_a, model_a = senet_lenet.load_run(dir_a)
    run_b, model_b = senet_lenet.load_run(dir_b, threads=run_a["settings"]["threads"])
    if os.path.samefile(dir_a, dir_b):
        print(f"note: {dir_a} and {dir_b} are the same run folder: its excitations are compared with themselves")
    if run_a["settings"]["test_samples"] != run_b["settings"]["test_samples"]:
        raise UsageError(f"{dir_a} and {dir_b} were tested on different test sets")
    environment_note(dir_a, environment(run_a), dir_b, environment(run_b))
    _, test_data = senet_lenet.load_mnist(args.data_dir)
    test_data = senet_lenet.first(test_data, run_a["settings"]["test_samples"])
    batches = -(-len(test_data[1]) // batch_size)
    if not 0 <= args.batch < batches:
        raise UsageError(f"--batch {args.batch} is out of range: batches are 0 to {batches - 1}")
    features_a = evaluate(dir_a, run_a, model_a, test_data)[1]
    features_b = evaluate(dir_b, run_b, model_b, test_data)[1]
    batch = slice(args.batch * batch_size, (args.batch + 1) * batch_size)
    names = [f"{d} (seed {r['settings']['seed']})" for d, r in ((dir_a, run_a), (dir_b, run_b))]
    figure = comparison_figure(features_a[batch], features_b[batch], test_data[1][batch], names, args.batch)
    path = os.path.join(dir_b, f"compare_{args.batch}.png")
    save_figure(path, figure)
    print(f"Wrote {path}")
    print(
        f"Max |excitation difference| over {len(features_a)} test images: {np.abs(features_a - features_b).max():.6g}"
    )


def parser():
    number = senet_lenet.number
    p = senet_lenet.ArgumentParser("visualize.py", __doc__.split("\n")[0])
    p.add_argument("--run-dir", default=senet_lenet.OUT_DIR, help="the run to draw (senet_lenet.py --out-dir)")
    p.add_argument("--data-dir", help="folder with the four MNIST IDX files (default: $MNIST_DIR, else download)")
    p.add_argument("--batch-size", type=number(), default=100, help="test images per heatmap (default: 100)")
    p.add_argument("--max-batches", type=number(), help="draw only the first N batches (default: all)")
    p.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"), help="compare the excitations of two runs")
    p.add_argument("--batch", type=number(0), default=0, help="with --compare: the test batch to draw")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        compare(args) if args.compare else visualize(args)
    except UsageError as e:
        print(f"visualize.py: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"visualize.py: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("visualize.py: stopped by SIGINT; every file written is whole", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    with contextlib.suppress(AttributeError):
        sys.stdout.reconfigure(errors="replace", line_buffering=True)
    sys.exit(main())
