"""Draw what the SE block of a trained SE-LeNet run does on the MNIST test set.

    python visualize.py                         # the run in outputs/
    python visualize.py --run-dir RUN --data-dir path/to/mnist
    python visualize.py --compare RUN_A RUN_B --batch 0

It rebuilds the model from RUN/run.json, loads its weights, re-evaluates the
test set (and checks the accuracy against the one recorded), then writes to RUN:
  se_features/{i}_se_feature.png  excitations of test batch i, rows sorted by label
  se_features.npz                 every test image's excitation, label and prediction
  se_class_mean.png               mean excitation per digit
  se_class_profile.png            per channel: each digit's mean, and the spread within digits
  excitation_role.csv             test accuracy with the excitation learned, a fixed gain, 1, shuffled
(an SE block after conv1 gets the same figures with _conv1 in their names).

--compare draws one batch of two runs side by side with their difference and
prints the largest difference over the whole test set: 0 for two runs with the
same seed on the same machine (the assignment's extended experiment).
"""

import contextlib
import os
import sys

from selenet import cli

if __name__ == "__main__":  # before Matplotlib and TensorFlow load: Ctrl-C, --help and a bad flag answered at once
    cli.start("visualize.py", cli.visualize_parser, tensorflow=False)  # a wrong folder is answered at once

import numpy as np

from selenet import errors, excitation_stats, files, heatmaps, locks, machine, runs
from selenet.excitation_figures import class_mean_figure, class_mean_summary, class_profile_figure, comparison_figure
from selenet.excitation_stats import class_means
from selenet.heatmaps import HEATMAP_DIR
from selenet.manifest import Manifest
from selenet.mnist import load_mnist, run_data
from selenet.settings import block_suffix, block_where, ceil_div

# Percentage points between recorded and re-evaluated test accuracy: 0.1, or one test image if that is more
# (0.2 with 500), so that one image another machine classifies otherwise is not called wrong data.
ACCURACY_TOLERANCE = 0.1


# ----------------------------------------------------------------------------
# A run: settings, model, excitations
# ----------------------------------------------------------------------------


def load_run(run_dir):
    """run.json of run_dir (an existing folder, see using) as a dict; UsageError if it is missing or unreadable."""
    try:
        run = runs.read_run(run_dir)
    except errors.RunNotFound as e:
        raise errors.UsageError(f"{e}: is {run_dir} a finished run of senet_lenet.py?") from None
    if not run["finished"]:
        raise errors.UsageError(
            f"{run_dir} is unfinished ({len(run['history'])} of {run['settings'].epochs} epochs); "
            f"finish it with: {runs.resume_command('senet_lenet.py', run_dir)}"
        )
    if not run["settings"].se:
        raise errors.UsageError(f"{run_dir} is a run without the SE block (--no-se): it has no excitations to draw")
    runs.check_files(run_dir, run)
    return run


def output_names(settings, batches):
    """What visualize writes in a run folder of `settings` whose test set has `batches` heatmaps."""
    names = ["se_features.npz", runs.ROLE_FILE]
    for block in settings.se_blocks:
        suffix = block_suffix(block)
        names += [f"se_class_mean{suffix}.png", f"se_class_profile{suffix}.png"]
        names += [f"{HEATMAP_DIR}{suffix}/{heatmaps.heatmap_name(i)}" for i in range(batches)]
    return names


def restore_model(run_dir, run):
    """The model run.json describes, with the run's weights loaded."""
    import senet_lenet  # here, not on top: the heatmap worker imports this file and must not load TensorFlow

    path = os.path.join(run_dir, run.get("weights", runs.WEIGHTS_FILE))
    if not os.path.isfile(path):
        raise errors.UsageError(f"weights file {path} is missing")
    model = senet_lenet.build_model(run["settings"])
    try:
        model.load_weights(path)
    except Exception as e:  # h5py and Keras raise several types for a wrong or damaged file
        raise errors.UsageError(
            f"weights {path} do not fit the model {run_dir}/run.json describes "
            f"(reduction {run['settings'].reduction}): {errors.first_line(e)}"
        ) from e
    return model


def load_data(run, data_dir, train=True):
    """The training (None unless train) and test data the run used: ((images, labels), (images, labels))."""
    train_data, test_data = load_mnist(data_dir, train=train)
    settings = run["settings"]
    return run_data(train_data if train else None, test_data, settings)


def save_features(path, excitations, labels, predictions):
    """excitations: {block: (N, C)}; saved as excitation (the block after conv2) and excitation_conv1."""
    arrays = {f"excitation{block_suffix(block)}": features for block, features in excitations.items()}
    with open(path, "wb") as f:
        np.savez(f, **arrays, label=labels, prediction=predictions.argmax(axis=1))


# ----------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------


def checked_excitations(run_dir, run, test_data, model=None):
    """Re-evaluates a run: (predictions, {SE block: excitations}); UsageError if the outputs are not
    finite or the accuracy is not the one recorded."""

    model = model or restore_model(run_dir, run)
    from selenet.predict import accuracy_percent, predictor  # TensorFlow: not on top (see restore_model)

    predictions, excitations = predictor(model)(test_data[0])
    accuracy = accuracy_percent(predictions, test_data[1])
    if not (np.isfinite(predictions).all() and all(np.isfinite(e).all() for e in excitations)):
        raise errors.UsageError(
            f"{run_dir}: the model's outputs are not finite (NaN or inf): the run diverged; "
            "train it again with a lower --lr"
        )
    recorded = run["final"]["test_accuracy"]
    print(f"{run_dir}: test accuracy {accuracy:.2f} % (recorded in run.json: {recorded:.2f} %)")
    check_accuracy(run_dir, accuracy, recorded, len(test_data[1]))
    return predictions, dict(zip(run["settings"].se_blocks, excitations, strict=True))


def check_accuracy(run_dir, accuracy, recorded, test_images):
    """UsageError if a re-evaluated test accuracy is further from run.json's than ACCURACY_TOLERANCE, or than
    one of the test_images, whichever is more."""
    tolerance = max(ACCURACY_TOLERANCE, 100 / test_images)
    if abs(accuracy - recorded) > tolerance + 1e-9:  # accuracies have 4 decimals; their difference, float noise
        raise errors.UsageError(
            f"{run_dir}: re-evaluated test accuracy {accuracy:.2f} % differs from the recorded "
            f"{recorded:.2f} % by more than {tolerance:g} point: wrong weights or wrong data?"
        )


@contextlib.contextmanager
def using(*run_dirs):
    """Holds the run folders' locks (each folder once): UsageError if one is missing or in use."""
    with contextlib.ExitStack() as stack:
        for run_dir in {os.path.realpath(d): d for d in run_dirs}.values():
            if not os.path.isdir(run_dir):
                raise errors.UsageError(f"run directory {run_dir} does not exist; train first: python senet_lenet.py")
            files.ensure_writable_dir(run_dir)
            stack.enter_context(locks.folder_lock(run_dir, "visualize.py"))
        yield


def use_the_runs_threads(run_dir, run):
    """Evaluates with the run's threads; says in one line if this machine's versions or CPU are not the run's."""

    from selenet import quiet_start

    quiet_start.import_tensorflow()  # TensorFlow only now (see restore_model), without its start-up notices
    from selenet.determinism import use_threads

    use_threads(run["settings"].threads)
    note = machine.environment_note(run_dir, machine.environment(run), "this machine", machine.environment())
    if note:
        print(note)


def visualize(args):
    from study import excitation_role  # TensorFlow: not on top (see restore_model)

    run = load_run(args.run_dir)
    settings, out = run["settings"], args.run_dir
    use_the_runs_threads(out, run)
    manifest = Manifest(out, "run")
    train_data, test_data = load_data(run, args.data_dir)
    batches = ceil_div(len(test_data[1]), args.batch_size)
    drawn = min(batches, args.max_batches or batches)
    names = output_names(settings, drawn)
    manifest.check_free(*names)  # refused before anything is written if a name holds the user's
    blocks = len(settings.se_blocks)
    with heatmaps.worker(drawn * blocks) as pool:  # starting while the test set is evaluated
        model = restore_model(out, run)
        predictions, excitations = checked_excitations(out, run, test_data, model)
        weights = run["sha256"][runs.WEIGHTS_FILE]
        batching = {name: manifest.entries.get(name, {}).get("batch_size") for name in manifest.entries}
        # The heatmaps are written by the worker process: recorded here, before it writes them, with the weights
        # drawn and their batch size, which their names do not show.
        manifest.claim(*(name for name in names if "/" in name), weights=weights, batch_size=args.batch_size)
        for folder in {os.path.dirname(name) + "/" for name in names if "/" in name}:
            # Earlier heatmaps that are not of this batching, or (every batch drawn now) of a longer test set.
            earlier = [folder + n for n in manifest.owned(folder) if folder + n not in names]
            other = [n for n in earlier if args.max_batches is None or batching.get(n) != args.batch_size]
            manifest.release(*other)
        labels = test_data[1]
        limits = {
            block: excitation_stats.color_limits(settings.gate, features, settings.gate_scale)
            for block, features in excitations.items()
        }
        for block, features in excitations.items():
            count = heatmaps.save_heatmaps(
                features, labels, out, args.batch_size, args.max_batches, pool, block, limits[block]
            )
    manifest.write_file(
        "se_features.npz", lambda path: save_features(path, excitations, labels, predictions), weights=weights
    )
    for block, features in excitations.items():
        suffix, means = block_suffix(block), class_means(features, labels)
        figure = class_mean_figure(means, block, limits[block])
        manifest.save_figure(f"se_class_mean{suffix}.png", figure, weights=weights)
        profile = class_profile_figure(features, labels, block)
        manifest.save_figure(f"se_class_profile{suffix}.png", profile, weights=weights)
        summary = class_mean_summary(means, features, settings.excitation == "fixed")
        print(summary.replace("SE class means:", f"SE class means{block_where(block)}:"))
    role = excitation_role.excitation_role(model, settings, train_data, test_data)
    excitation_role.save_role(out, role, run["sha256"][runs.WEIGHTS_FILE])
    print(excitation_role.role_line(role))
    folders = sorted({name.split("/")[0] + "/" for name in names if "/" in name})
    others = [name for name in names if "/" not in name]
    print(f"Wrote to {out}/: {count} heatmaps in {' and in '.join(folders)}; {', '.join(others)}")


def compare(args):
    dir_a, dir_b = args.compare
    run_a, run_b = load_run(dir_a), load_run(dir_b)
    if os.path.samefile(dir_a, dir_b):
        print(f"note: {dir_a} and {dir_b} are the same run folder: its excitations are compared with themselves")
    if run_a["settings"].test_samples != run_b["settings"].test_samples:
        raise errors.UsageError(f"{dir_a} and {dir_b} were tested on different test sets")
    if run_a["settings"].se_blocks != run_b["settings"].se_blocks:
        raise errors.UsageError(f"{dir_a} and {dir_b} have their SE blocks in different places (--se-position)")
    if run_a["settings"].gate != run_b["settings"].gate:
        raise errors.UsageError(
            f"{dir_a} and {dir_b} have different gates ({run_a['settings'].gate} and {run_b['settings'].gate}): "
            "their excitations are on different scales"
        )
    use_the_runs_threads(dir_a, run_a)
    note = machine.environment_note(dir_a, machine.environment(run_a), dir_b, machine.environment(run_b))
    if note:
        print(note)
    _, test_data = load_data(run_a, args.data_dir, train=False)
    batches = ceil_div(len(test_data[1]), args.batch_size)
    if not 0 <= args.batch < batches:
        raise errors.UsageError(f"--batch {args.batch} is out of range: batches are 0 to {batches - 1}")
    _, excitations_a = checked_excitations(dir_a, run_a, test_data)
    _, excitations_b = checked_excitations(dir_b, run_b, test_data)
    largest = max(float(np.abs(excitations_a[b] - excitations_b[b]).max()) for b in excitations_a)
    block = "conv2" if "conv2" in excitations_a else next(iter(excitations_a))  # the one drawn
    features_a, features_b = excitations_a[block], excitations_b[block]
    batch = slice(args.batch * args.batch_size, (args.batch + 1) * args.batch_size)
    names = [f"{d} (seed {r['settings'].seed})" for d, r in ((dir_a, run_a), (dir_b, run_b))]
    both = np.concatenate([features_a, features_b])
    limits = excitation_stats.color_limits(run_a["settings"].gate, both, run_a["settings"].gate_scale)
    figure = comparison_figure(features_a[batch], features_b[batch], test_data[1][batch], names, args.batch, limits)
    folder_b = Manifest(dir_b, "run")
    path = folder_b.join(f"compare_{args.batch}.png")
    folder_b.save_figure(os.path.basename(path), figure, weights=run_b["sha256"][runs.WEIGHTS_FILE])
    print(f"Wrote {path}")
    print(f"Max |excitation difference| over {len(features_a)} test images: {largest:.6g}")


def main(argv=None):
    cli.printing_never_fails()  # main() called from a notebook or another script skips cli.start
    args = cli.visualize_parser().parse_args(argv)
    try:
        with using(*(args.compare or [args.run_dir])):
            if args.compare:
                compare(args)
            else:
                visualize(args)
    except (Exception, KeyboardInterrupt) as e:
        return cli.exit_code("visualize.py", e)
    return 0


if __name__ == "__main__":
    sys.exit(main())
