"""Draw what the SE block of a trained SE-LeNet run does on the MNIST test set.

    python visualize.py                         # the run in outputs/
    python visualize.py --run-dir RUN --data-dir ../shared/mnist
    python visualize.py --compare RUN_A RUN_B --batch 0

It rebuilds the model from RUN/run.json, loads its weights, re-evaluates the
test set (and checks the accuracy against the one recorded), then writes to RUN:
  se_features/{i}_se_feature.png  excitations of test batch i, rows sorted by label
  se_features.npz                 every test image's excitation, label and prediction
  se_class_mean.png               mean excitation per digit

--compare draws one batch of two runs side by side with their difference and
prints the largest difference over the whole test set: 0 for two runs with the
same seed on the same machine (the assignment's extended experiment).
"""

import argparse
import contextlib
import os
import sys

import matplotlib
import numpy as np

import cli
import heatmaps
import runs
from heatmaps import COLOR_MAP, HEATMAP_DIR, first_of_each_label, label_sorted
from mnist import NUM_CLASSES, load_mnist, select
from settings import Settings

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the Agg backend

ACCURACY_TOLERANCE = 0.1  # percentage points between recorded and re-evaluated test accuracy


# ----------------------------------------------------------------------------
# A run: settings, model, excitations
# ----------------------------------------------------------------------------


def load_run(run_dir):
    """run.json of run_dir as a dict; UsageError if it is missing or unreadable."""
    if not os.path.isdir(run_dir):
        raise runs.UsageError(f"run directory {run_dir} does not exist; train first: python senet_lenet.py")
    try:
        run = runs.read_run(run_dir)
    except runs.RunNotFound as e:
        raise runs.UsageError(f"{e}: is {run_dir} a finished run of senet_lenet.py?") from None
    if not run["finished"]:
        raise runs.UsageError(
            f"{run_dir} is unfinished ({len(run['history'])} of {run['settings'].epochs} epochs); "
            f"finish it with: python senet_lenet.py --out-dir {run_dir} --resume"
        )
    if not run["settings"].se:
        raise runs.UsageError(f"{run_dir} is a run without the SE block (--no-se): it has no excitations to draw")
    return run


def restore_model(run_dir, run):
    """The model run.json describes, with the run's weights loaded."""
    import senet_lenet  # here, not on top: the heatmap worker imports this file and must not load TensorFlow

    path = os.path.join(run_dir, run.get("weights", runs.WEIGHTS_FILE))
    if not os.path.isfile(path):
        raise runs.UsageError(f"weights file {path} is missing")
    model = senet_lenet.build_model(run["settings"].reduction, se=run["settings"].se)
    try:
        model.load_weights(path)
    except Exception as e:  # h5py and Keras raise several types for a wrong or damaged file
        raise runs.UsageError(
            f"weights {path} do not fit the model {run_dir}/run.json describes "
            f"(reduction {run['settings'].reduction}): {cli.first_line(e)}"
        ) from e
    return model


def load_test_data(run, data_dir):
    """The test images and labels the run was evaluated on."""
    _, test_data = load_mnist(data_dir, train=False)
    return select(test_data, run["settings"].test_samples)


# ----------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------


def class_means(features, labels):
    """Mean excitation per digit 0-9: (10, channels); NaN for a digit absent from labels."""
    means = np.full((NUM_CLASSES, features.shape[1]), np.nan, dtype=np.float64)
    for digit in range(NUM_CLASSES):
        if np.any(labels == digit):
            means[digit] = features[labels == digit].mean(axis=0)
    return means


def class_mean_summary(means, features):
    """One line: how much the excitation varies between digits, against between channels."""
    digits = np.flatnonzero(~np.isnan(means).any(axis=1))  # the digits the test set holds
    present = means[digits]
    between_digits = present.std(axis=0)  # per channel
    between_channels = features.mean(axis=0).std()
    line = (
        f"SE class means: std between digits {between_digits.mean():.3f} per channel on average "
        f"(max {between_digits.max():.3f}, channel {int(between_digits.argmax())}); "
        f"std between channels {between_channels:.3f}; "
    )
    if len(digits) < 2:
        return line + "most distinct digit: needs two digits in the test set"
    others = [np.delete(present, i, axis=0).mean(axis=0) for i in range(len(digits))]
    i = int(np.argmax([np.abs(present[i] - others[i]).mean() for i in range(len(digits))]))
    channels = np.argsort(-np.abs(present[i] - others[i]))[:3]
    return line + f"most distinct digit {digits[i]} (channels {', '.join(str(c) for c in channels)})"


def class_mean_figure(means):
    figure, axes = plt.subplots(figsize=(7, 4.5), layout="constrained")
    image = axes.imshow(means, cmap=COLOR_MAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    figure.colorbar(image, ax=axes, label="mean excitation")
    axes.set_xticks(range(means.shape[1]))
    axes.set_yticks(range(means.shape[0]))
    axes.set_xlabel("SE channel")
    axes.set_ylabel("digit")
    axes.set_title("Mean SE excitation per digit (test set)")
    return figure


def save_features(path, features, labels, predictions):
    with runs.atomic_path(path) as temporary:
        with open(temporary, "wb") as f:
            np.savez(f, excitation=features, label=labels, prediction=predictions.argmax(axis=1))


def comparison_figure(features_a, features_b, labels, names, batch_index):
    """Batch heatmaps of two runs and their absolute difference, all on the 0..1 scale."""
    sorted_a, sorted_labels = label_sorted(features_a, labels)
    sorted_b, _ = label_sorted(features_b, labels)
    difference = np.abs(sorted_a - sorted_b)
    figure, axes = plt.subplots(1, 3, figsize=(12, 7), layout="constrained", sharey=True)
    starts, digits = first_of_each_label(sorted_labels)
    panels = (
        (sorted_a, names[0]),
        (sorted_b, names[1]),
        (difference, f"|difference|, max {difference.max():.3g}"),
    )
    for ax, (data, title) in zip(axes, panels):
        image = ax.imshow(data, cmap=COLOR_MAP, vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks(range(0, data.shape[1], 3))
        ax.set_xlabel("SE channel")
        ax.set_yticks(starts, [str(d) for d in digits])
    axes[0].set_ylabel("test sample, sorted by label")
    figure.colorbar(image, ax=axes, label="excitation")
    figure.suptitle(f"SE excitations, test batch {batch_index}")
    return figure


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        prog="visualize.py",
        description="Draw SE excitations of a trained SE-LeNet run, or compare two runs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--run-dir", default=runs.OUT_DIR, help="the run to visualize (senet_lenet.py --out-dir)")
    cli.add_data_dir_flag(parser)
    parser.add_argument(
        "--batch-size", type=cli.positive_int, default=Settings.batch_size, help="test images per heatmap"
    )
    parser.add_argument(
        "--max-batches", type=cli.positive_int, default=None, help="draw only the first N batches (default: all)"
    )
    parser.add_argument(
        "--compare", nargs=2, metavar=("RUN_A", "RUN_B"), default=None, help="compare the excitations of two runs"
    )
    parser.add_argument(
        "--batch", type=int, default=0, help="with --compare: the test batch to draw (its figure goes to RUN_B)"
    )
    return parser.parse_args(argv)


def checked_excitations(run_dir, run, test_data):
    """Re-evaluates a run; UsageError if the accuracy is not the one recorded."""
    model = restore_model(run_dir, run)
    import senet_lenet

    predictions, features, accuracy = senet_lenet.predict_test_set(model, *test_data)
    if not (np.isfinite(predictions).all() and np.isfinite(features).all()):
        raise runs.UsageError(
            f"{run_dir}: the model's outputs are not finite (NaN or inf): the run diverged; "
            "train it again with a lower --lr"
        )
    recorded = run["final"]["test_accuracy"]
    print(f"{run_dir}: test accuracy {accuracy:.2f} % (recorded in run.json: {recorded:.2f} %)")
    if abs(accuracy - recorded) > ACCURACY_TOLERANCE:
        raise runs.UsageError(
            f"{run_dir}: re-evaluated test accuracy {accuracy:.2f} % differs from the recorded "
            f"{recorded:.2f} % by more than {ACCURACY_TOLERANCE} point: wrong weights or wrong data?"
        )
    return predictions, features


@contextlib.contextmanager
def using(*run_dirs):
    """Holds the run folders' locks (each folder once): UsageError if one is missing or in use."""
    with contextlib.ExitStack() as stack:
        for run_dir in {os.path.realpath(d): d for d in run_dirs}.values():
            if not os.path.isdir(run_dir):
                raise runs.UsageError(f"run directory {run_dir} does not exist; train first: python senet_lenet.py")
            runs.ensure_writable_dir(run_dir)
            stack.enter_context(runs.folder_lock(run_dir, "visualize.py"))
        yield


def visualize(args):
    run = load_run(args.run_dir)
    with heatmaps.worker() as pool:  # starting while the test set is evaluated
        test_data = load_test_data(run, args.data_dir)
        predictions, features = checked_excitations(args.run_dir, run, test_data)
        labels = test_data[1]
        count = heatmaps.save_heatmaps(features, labels, args.run_dir, args.batch_size, args.max_batches, pool)
    save_features(os.path.join(args.run_dir, "se_features.npz"), features, labels, predictions)
    means = class_means(features, labels)
    runs.save_figure(class_mean_figure(means), os.path.join(args.run_dir, "se_class_mean.png"))
    print(class_mean_summary(means, features))
    print(
        f"Wrote {count} heatmaps to {os.path.join(args.run_dir, HEATMAP_DIR)}/, "
        f"se_features.npz and se_class_mean.png to {args.run_dir}/"
    )


def compare(args):
    dir_a, dir_b = args.compare
    run_a, run_b = load_run(dir_a), load_run(dir_b)
    if run_a["settings"].test_samples != run_b["settings"].test_samples:
        raise runs.UsageError(f"{dir_a} and {dir_b} were tested on different test sets")
    test_data = load_test_data(run_a, args.data_dir)
    batches = -(-len(test_data[1]) // args.batch_size)
    if not 0 <= args.batch < batches:
        raise runs.UsageError(f"--batch {args.batch} is out of range: batches are 0 to {batches - 1}")
    _, features_a = checked_excitations(dir_a, run_a, test_data)
    _, features_b = checked_excitations(dir_b, run_b, test_data)
    largest = float(np.abs(features_a - features_b).max())
    batch = slice(args.batch * args.batch_size, (args.batch + 1) * args.batch_size)
    names = [f"{d} (seed {r['settings'].seed})" for d, r in ((dir_a, run_a), (dir_b, run_b))]
    figure = comparison_figure(features_a[batch], features_b[batch], test_data[1][batch], names, args.batch)
    path = os.path.join(dir_b, f"compare_{args.batch}.png")
    runs.save_figure(figure, path)
    print(f"Wrote {path}")
    print(f"Max |excitation difference| over {len(features_a)} test images: {largest:.6g}")


def main(argv=None):
    args = parse_args(argv)
    try:
        with using(*(args.compare or [args.run_dir])):
            if args.compare:
                compare(args)
            else:
                visualize(args)
    except cli.USER_ERRORS as e:
        return cli.report_error("visualize.py", e)
    except runs.WriteError as e:
        return cli.report_error("visualize.py", e, 1)
    except KeyboardInterrupt:
        return cli.stopped_by_ctrl_c("visualize.py")
    return 0


if __name__ == "__main__":
    cli.quiet_ctrl_c("visualize.py")
    sys.exit(main())
