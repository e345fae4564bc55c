"""Does the SE block help LeNet-5 on MNIST? An ablation over several seeds.

    python ablation.py                      # 3 seeds, 10 epochs, into outputs/ablation
    python ablation.py --seeds 5 --epochs 5 --data-dir ../shared/mnist

It trains, in this process and with senet_lenet's own training code:
  the grid    {SE (reduction 4), no SE} x {Adam lr 0.001, SGD lr 0.01} x seeds
  the sweep   SE with Adam at reductions 1, 2, 4, 8, 16 x seeds (reduction 4 shared with the grid)
Each run is a normal run folder; a finished one is not trained again, so an
interrupted study continues where it stopped. Then it writes ablation.csv,
ablation.md, ablation_curves.png and reduction_sweep.png.
"""

import argparse
import os
import statistics
import sys
import time

import cli

if __name__ == "__main__":  # before TensorFlow loads, which takes seconds
    cli.quiet_ctrl_c("ablation.py")

import matplotlib
import numpy as np

import checkpoints
import runs
import senet_lenet
from mnist import load_mnist, select
from settings import LEARNING_RATES, Settings

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the Agg backend

GRID_REDUCTION = 4  # the SE model of the grid
SWEEP_OPTIMIZER = "adam"
CSV_FIELDS = [
    "run",
    "model",
    "optimizer",
    "lr",
    "reduction",
    "seed",
    "parameters",
    "final_test_accuracy",
    "best_test_accuracy",
    "final_train_accuracy",
    "seconds_per_epoch",
]


def configurations(optimizers, reductions):
    """(model, optimizer, reduction) of every configuration; reduction None means no SE."""
    grid = [(model, opt) for model in ("se", "no-se") for opt in optimizers]
    configs = [(m, opt, GRID_REDUCTION if m == "se" else None) for m, opt in grid]
    configs += [("se", SWEEP_OPTIMIZER, r) for r in reductions if ("se", SWEEP_OPTIMIZER, r) not in configs]
    return configs


def config_name(model, optimizer, reduction):
    return f"se-r{reduction}_{optimizer}" if model == "se" else f"no-se_{optimizer}"


def run_settings(args, model, optimizer, reduction, seed):
    return Settings(
        epochs=args.epochs,
        optimizer=optimizer,
        reduction=reduction if model == "se" else Settings.reduction,
        se=model == "se",
        seed=seed,
        train_samples=args.train_samples,
        test_samples=args.test_samples,
    )


def earlier_run(run_dir, settings):
    """(run.json, resumable) of what run_dir holds: run.json if a run with these settings finished there;
    resumable if one stopped there. UsageError if the folder holds a run with other settings."""
    holds = runs.run_in(run_dir) if os.path.isdir(run_dir) else None
    if holds is None:
        return None, False
    try:
        run = runs.read_run(run_dir)
        recorded = run["settings"]
    except runs.RunNotFound:  # checkpoints only
        run, recorded = None, checkpoints.saved_settings(run_dir)
    except runs.UsageError as e:
        raise runs.UsageError(f"{run_dir} holds {holds}, not this study's run ({e})") from e
    if recorded != settings:
        ours = settings.as_dict()
        differences = [f"{k} = {v!r} (this study: {ours[k]!r})" for k, v in recorded.as_dict().items() if v != ours[k]]
        raise runs.UsageError(
            f"{run_dir} holds a run with {', '.join(differences)}; a study with other settings needs another --out-dir"
        )
    if run is not None and run["finished"]:
        return run, False
    return None, True


def csv_row(name, model, run):
    settings, history = run["settings"], run["history"]
    steady = [r["seconds"] for r in history[1:]] or [history[0]["seconds"]]  # epoch 1 includes tracing
    return {
        "run": name,
        "model": model,
        "optimizer": settings.optimizer,
        "lr": settings.lr,
        "reduction": settings.reduction if model == "se" else "",
        "seed": settings.seed,
        "parameters": run["model"]["parameters"],
        "final_test_accuracy": history[-1]["test_accuracy"],
        "best_test_accuracy": max(r["test_accuracy"] for r in history),
        "final_train_accuracy": history[-1]["accuracy"],
        "seconds_per_epoch": round(statistics.median(steady), 3),
    }


def mean_std(values):
    """'mean ± std' (sample std over seeds); the std is '–' for a single value."""
    mean = statistics.fmean(values)
    spread = f"{statistics.stdev(values):.2f}" if len(values) > 1 else "–"
    return f"{mean:.2f} ± {spread}"


def summary_markdown(rows, configs):
    lines = [
        "| configuration | model | optimizer | reduction | seeds | test accuracy (%) | test error (%) "
        "| parameters | seconds per epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for model, optimizer, reduction in configs:
        name = config_name(model, optimizer, reduction)
        group = [r for r in rows if r["run"].startswith(name + "_seed")]
        accuracy = [r["final_test_accuracy"] for r in group]
        lines.append(
            f"| {name} | {model} | {optimizer} | {reduction or '–'} | {len(group)} | {mean_std(accuracy)} "
            f"| {mean_std([100 - a for a in accuracy])} | {group[0]['parameters']:,} "
            f"| {statistics.fmean(r['seconds_per_epoch'] for r in group):.2f} |"
        )
    lines += ["", "Paired difference SE (reduction 4) − no SE, per seed, in test accuracy points:", ""]
    lines += ["| optimizer | seeds | SE − no SE (mean ± std) |", "| --- | --- | --- |"]
    for optimizer in dict.fromkeys(r["optimizer"] for r in rows if r["model"] == "no-se"):
        se = {
            r["seed"]: r["final_test_accuracy"]
            for r in rows
            if r["run"].startswith(f"se-r{GRID_REDUCTION}_{optimizer}_")
        }
        plain = {r["seed"]: r["final_test_accuracy"] for r in rows if r["run"].startswith(f"no-se_{optimizer}_")}
        seeds = sorted(se.keys() & plain.keys())
        lines.append(f"| {optimizer} | {len(seeds)} | {mean_std([se[s] - plain[s] for s in seeds])} |")
    return "\n".join(lines) + "\n"


def curves_figure(runs, grid_names):
    figure, axes = plt.subplots(figsize=(8, 5), layout="constrained")
    for name in grid_names:
        curves = np.array(
            [[r["test_accuracy"] for r in run["history"]] for n, run in runs.items() if n.startswith(name + "_seed")]
        )
        epochs = np.arange(1, curves.shape[1] + 1)
        (line,) = axes.plot(epochs, curves.mean(axis=0), "o-", label=f"{name} (mean of {len(curves)})")
        axes.fill_between(epochs, curves.min(axis=0), curves.max(axis=0), color=line.get_color(), alpha=0.2)
    axes.set_xlabel("epoch")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title("Test accuracy per epoch: mean over seeds, band from lowest to highest seed")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def sweep_figure(rows, reductions):
    figure, axes = plt.subplots(figsize=(7, 4.5), layout="constrained")
    for reduction in reductions:
        group = [r for r in rows if r["run"].startswith(f"se-r{reduction}_{SWEEP_OPTIMIZER}_seed")]
        accuracy = np.array([r["final_test_accuracy"] for r in group])
        mean = accuracy.mean()
        axes.errorbar(
            reduction,
            mean,
            yerr=[[mean - accuracy.min()], [accuracy.max() - mean]],
            fmt="o",
            color="C0",
            capsize=4,
        )
        axes.annotate(
            f"{group[0]['parameters']:,} params",
            (reduction, mean),
            textcoords="offset points",
            xytext=(6, 6),
            fontsize=8,
        )
    axes.set_xscale("log", base=2)
    axes.set_xlim(min(reductions) / 1.5, max(reductions) * 2)  # room for the labels
    axes.set_xticks(reductions, [str(r) for r in reductions])
    axes.set_xlabel("SE reduction ratio r (16 // r hidden units)")
    axes.set_ylabel("final test accuracy (%)")
    axes.set_title(f"Reduction sweep, SE with {SWEEP_OPTIMIZER}: mean and range over seeds")
    axes.grid(alpha=0.3)
    return figure


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        prog="ablation.py",
        description="Train SE-LeNet with and without SE, Adam and SGD, and a reduction sweep, over seeds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=cli.positive_int, default=3, help="seeds 0..N-1 per configuration")
    parser.add_argument("--epochs", type=cli.positive_int, default=Settings.epochs, help="epochs per run")
    cli.add_data_dir_flag(parser)
    parser.add_argument("--out-dir", default=os.path.join(runs.OUT_DIR, "ablation"), help="where the study goes")
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=sorted(LEARNING_RATES),
        default=["adam", "sgd"],
        help="optimizers of the grid",
    )
    parser.add_argument(
        "--reductions",
        nargs="+",
        type=cli.reduction_arg,
        default=[1, 2, 4, 8, 16],
        help="reduction ratios of the sweep",
    )
    parser.add_argument("--train-samples", type=cli.positive_int, default=None, help="first N training images only")
    parser.add_argument("--test-samples", type=cli.positive_int, default=None, help="first N test images only")
    return parser.parse_args(argv)


def study(args, stop=None):
    # Every run builds a new model and new tf.functions by design; TensorFlow's
    # "retracing" warning about that would be noise here.
    senet_lenet.tf.get_logger().setLevel("ERROR")
    runs.ensure_writable_dir(args.out_dir)
    with runs.folder_lock(args.out_dir, "ablation.py"):
        run_study(args, stop)


def run_study(args, stop):
    configs = configurations(args.optimizers, sorted(set(args.reductions)))
    plan = []  # (name, model, settings, finished run.json or None, resumable), every folder checked first
    for model, optimizer, reduction in configs:
        for seed in range(args.seeds):
            name = f"{config_name(model, optimizer, reduction)}_seed{seed}"
            settings = run_settings(args, model, optimizer, reduction, seed)
            plan.append((name, model, settings, *earlier_run(os.path.join(args.out_dir, name), settings)))
    data = None
    started = time.perf_counter()
    finished, rows = {}, []
    for index, (name, model, settings, run, resumable) in enumerate(plan, 1):
        run_dir = os.path.join(args.out_dir, name)
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.perf_counter() - started))
        if run is None:
            action = "resuming" if resumable else "training"
            print(
                f"[{index}/{len(plan)}] {action} {name}; {len(plan) - index} to go after it; {elapsed} so far",
                flush=True,
            )
            if data is None:
                train_data, test_data = load_mnist(args.data_dir)
                data = select(train_data, args.train_samples), select(test_data, args.test_samples)
            runs.ensure_writable_dir(run_dir)
            with runs.folder_lock(run_dir, "ablation.py"):
                runs.remove_temporary_files(run_dir)
                run = senet_lenet.train_run(settings, *data, run_dir, resume=resumable, stop=stop, verbose=False)
        else:
            print(f"[{index}/{len(plan)}] {name} already finished; {len(plan) - index} to go; {elapsed} so far")
        finished[name] = run
        rows.append(csv_row(name, model, run))

    runs.write_text(os.path.join(args.out_dir, "ablation.csv"), runs.csv_text(rows, CSV_FIELDS))
    markdown = summary_markdown(rows, configs)
    runs.write_text(os.path.join(args.out_dir, "ablation.md"), markdown)
    grid_names = [config_name(*c) for c in configs[: 2 * len(args.optimizers)]]
    for figure, name in (
        (curves_figure(finished, grid_names), "ablation_curves.png"),
        (sweep_figure(rows, sorted(set(args.reductions))), "reduction_sweep.png"),
    ):
        runs.save_figure(figure, os.path.join(args.out_dir, name))
    print(markdown, end="")
    print(f"Wrote ablation.csv, ablation.md, ablation_curves.png and reduction_sweep.png to {args.out_dir}/")


def main(argv=None):
    args = parse_args(argv)
    try:
        with runs.StopOnSignal() as stop:
            study(args, stop)
    except cli.USER_ERRORS as e:
        return cli.report_error("ablation.py", e)
    except (runs.Diverged, runs.WriteError) as e:
        return cli.report_error("ablation.py", e, 1)
    except senet_lenet.tf.errors.UnimplementedError as e:
        return cli.report_error("ablation.py", cli.no_deterministic_kernel(e), 1)
    except runs.Interrupted as e:
        print(
            f"ablation.py: stopped by {e}; finished runs and the last completed epoch of the current one "
            "are kept. Run the same command again to continue.",
            file=sys.stderr,
        )
        return 128 + e.signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
