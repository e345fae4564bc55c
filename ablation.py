"""Does the SE block help LeNet-5 on MNIST, and what does it do? The SENet paper's ablations over seeds.

    python ablation.py                      # 5 seeds, 10 epochs, into outputs/ablation
    python ablation.py --seeds 3 --epochs 5 --data-dir ../shared/mnist

It trains, in this process and with senet_lenet's own training code, over seeds 0..N-1:
  the grid    {SE (reduction 4), no SE} x {Adam lr 0.001, SGD lr 0.01}
  the sweeps  SE with Adam: reductions 1, 2, 4, 8, 16; squeeze avg or max; gate sigmoid, tanh or relu;
              position after conv2, conv1 or both (the assignment's block, r4 avg sigmoid conv2, shared)
and measures each SE run's excitation at inference (excitation_role.py). Each run is a normal run
folder; a finished one is not trained again, so an interrupted study continues where it stopped.
Then it writes ablation.csv, ablation.md, ablation_curves.png, reduction_sweep.png and
ablation_variants.png: means ± sample std, and paired differences with 95 % confidence intervals.
"""

import argparse
import os
import statistics
import sys
import time

import cli  # first: it quiets TensorFlow's C++ info lines before TensorFlow loads

if __name__ == "__main__":  # before TensorFlow loads, which takes seconds
    cli.quiet_ctrl_c("ablation.py")

import matplotlib
import numpy as np

import checkpoints
import errors
import excitation_role
import files
import runs
import senet_lenet
import study_runs
from manifest import Manifest
from settings import GATES, LEARNING_RATES, SE_POSITIONS, SQUEEZES, Settings

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the Agg backend

GRID_REDUCTION = 4  # the SE model of the grid
SWEEP_OPTIMIZER = "adam"  # every sweep trains with Adam at GRID_REDUCTION, but for the reduction sweep
BASE = {"se_position": "conv2", "squeeze": "avg", "gate": "sigmoid"}  # the assignment's block
ROLE_FIELDS = [f"role_{variant}" for variant in excitation_role.VARIANTS]
CSV_FIELDS = [
    *("run", "model", "optimizer", "lr", "reduction", "conv1_reduction", "se_position", "squeeze", "gate", "seed"),
    *("parameters", "final_test_accuracy", "best_test_accuracy", "final_train_accuracy", "seconds_per_epoch"),
    *ROLE_FIELDS,
    "dead_blocks",  # the SE blocks whose excitation is the same for every test image
]
# Two-sided 95 % quantiles of Student's t with df = n - 1 degrees of freedom (n seeds), df 1 to 30.
T_975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131]
T_975 += [2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def configurations(optimizers, reductions, squeezes=(), gates=(), positions=()):
    """Every configuration as a dict (model, optimizer, reduction, se_position, squeeze, gate), in order:
    the grid {SE, no SE} x optimizers, then the sweeps of reduction, squeeze, gate and position."""
    se = {"model": "se", "optimizer": SWEEP_OPTIMIZER, "reduction": GRID_REDUCTION, **BASE}
    configs = [{**se, "optimizer": optimizer} for optimizer in optimizers]
    configs += [{"model": "no-se", "optimizer": optimizer, "reduction": None, **BASE} for optimizer in optimizers]
    configs += [{**se, "reduction": r} for r in reductions]
    configs += [{**se, "squeeze": q} for q in squeezes]
    configs += [{**se, "gate": g} for g in gates]
    configs += [{**se, "se_position": p} for p in positions]
    unique = []
    for config in configs:
        if config not in unique:
            unique.append(config)
    return unique


def config_name(config):
    """se-r4_adam for the assignment's block; variants add what differs (se-r4-max_adam, se-r4-conv1_adam)."""
    if config["model"] == "no-se":
        return f"no-se_{config['optimizer']}"
    variant = "".join(f"-{config[key]}" for key in ("squeeze", "gate", "se_position") if config[key] != BASE[key])
    return f"se-r{config['reduction']}{variant}_{config['optimizer']}"


def run_settings(args, config, seed):
    se = config["model"] == "se"
    return Settings(
        epochs=args.epochs,
        optimizer=config["optimizer"],
        reduction=config["reduction"] if se else Settings.reduction,
        se=se,
        seed=seed,
        train_samples=args.train_samples,
        test_samples=args.test_samples,
        threads=args.threads,
        conv1_reduction=args.conv1_reduction,
        **{key: config[key] for key in BASE},
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
    except errors.RunNotFound:  # checkpoints only
        run, recorded = None, checkpoints.saved_settings(run_dir)
    except errors.UsageError as e:
        raise errors.UsageError(f"{run_dir} holds {holds}, not this study's run ({e})") from e
    if recorded != settings:
        ours = settings.as_dict()
        differences = [f"{k} = {v!r} (this study: {ours[k]!r})" for k, v in recorded.as_dict().items() if v != ours[k]]
        raise errors.UsageError(
            f"{run_dir} holds a run with {', '.join(differences)}; a study with other settings needs another --out-dir"
        )
    if run is not None and run["finished"]:
        return run, False
    return None, True


def csv_row(name, model, run, role):
    settings, history = run["settings"], run["history"]
    steady = [r["seconds"] for r in history[1:]] or [history[0]["seconds"]]  # epoch 1 includes tracing
    return {
        "run": name,
        "model": model,
        "optimizer": settings.optimizer,
        "lr": settings.lr,
        "reduction": settings.reduction if "conv2" in settings.se_blocks else "",
        "conv1_reduction": settings.conv1_reduction if "conv1" in settings.se_blocks else "",
        **{key: getattr(settings, key) if model == "se" else "" for key in BASE},
        "seed": settings.seed,
        "parameters": run["model"]["parameters"],
        "final_test_accuracy": history[-1]["test_accuracy"],
        "best_test_accuracy": max(r["test_accuracy"] for r in history),
        "final_train_accuracy": history[-1]["accuracy"],
        "seconds_per_epoch": round(statistics.median(steady), 3),
        **{field: role[variant] if role else "" for field, variant in zip(ROLE_FIELDS, excitation_role.VARIANTS)},
        "dead_blocks": " ".join(excitation_role.dead_blocks(role)) if role else "",
    }


def mean_std(values):
    """'mean ± std' (sample std over seeds); the std is '–' for a single value."""
    mean = statistics.fmean(values)
    spread = f"{statistics.stdev(values):.2f}" if len(values) > 1 else "–"
    return f"{mean:.2f} ± {spread}"


def mean_ci(values):
    """'mean [low, high]': the 95 % confidence interval of the mean (Student t over seeds); no CI for one value."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:+.2f} [–]"
    half = T_975[min(len(values) - 2, len(T_975) - 1)] * statistics.stdev(values) / len(values) ** 0.5
    return f"{mean:+.2f} [{mean - half:+.2f}, {mean + half:+.2f}]"


def by_seed(rows, name, field="final_test_accuracy"):
    return {r["seed"]: r[field] for r in rows if r["run"].startswith(name + "_seed")}


def paired(rows, name, other, field="final_test_accuracy", other_field=None):
    """The per-seed differences name - other (seeds both have)."""
    a, b = by_seed(rows, name, field), by_seed(rows, other, other_field or field)
    return [a[s] - b[s] for s in sorted(a.keys() & b.keys())]


def summary_markdown(rows, configs):
    lines = [
        "| configuration | model | optimizer | reduction | position | squeeze | gate | seeds | test accuracy (%) "
        "| test error (%) | parameters | seconds per epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config in configs:
        name = config_name(config)
        group = [r for r in rows if r["run"].startswith(name + "_seed")]
        accuracy = [r["final_test_accuracy"] for r in group]
        se = config["model"] == "se"
        position, squeeze, gate = (config[key] if se else "–" for key in BASE)
        lines.append(
            f"| {name} | {config['model']} | {config['optimizer']} | {config['reduction'] or '–'} | {position} "
            f"| {squeeze} | {gate} | {len(group)} | {mean_std(accuracy)} | {mean_std([100 - a for a in accuracy])} "
            f"| {group[0]['parameters']:,} | {statistics.fmean(r['seconds_per_epoch'] for r in group):.2f} |"
        )
    ran = {config_name(config) for config in configs}
    lines += ["", "Paired differences in test accuracy points, per seed: mean [95 % confidence interval]:", ""]
    lines += ["| configuration | − se-r4 (same optimizer) | − no SE (same optimizer) |", "| --- | --- | --- |"]
    for config in configs:
        name = config_name(config)
        base = f"se-r{GRID_REDUCTION}_{config['optimizer']}"
        plain = f"no-se_{config['optimizer']}"
        se = config["model"] == "se"
        versus_base = mean_ci(paired(rows, name, base)) if name != base and se and base in ran else "–"
        versus_plain = mean_ci(paired(rows, name, plain)) if se and plain in ran else "–"
        lines.append(f"| {name} | {versus_base} | {versus_plain} |")
    left_out = sorted({f"se-r{GRID_REDUCTION}_{c['optimizer']}" for c in configs} - ran)
    left_out += sorted({f"no-se_{c['optimizer']}" for c in configs if c["model"] == "se"} - ran)
    if left_out:
        lines += ["", f"Not run in this study, so the comparisons with them are left out: {', '.join(left_out)}."]
    lines += ["", "The excitation at inference: test accuracy (%) with it learned, replaced by each channel's"]
    lines += ["training-set mean, by 1, shuffled between test images; and fixed gain − learned per seed:", ""]
    lines += ["| configuration | learned | training-set mean | ones | shuffled | mean − learned |"]
    lines += ["| --- | --- | --- | --- | --- | --- |"]
    for config in configs:
        name = config_name(config)
        group = [r for r in rows if r["run"].startswith(name + "_seed") and r["role_learned"] != ""]
        if config["model"] != "se" or not group:
            continue
        cells = [mean_std([r[field] for r in group]) for field in ROLE_FIELDS]
        gain = mean_ci(paired(rows, name, name, "role_train_mean", "role_learned"))
        lines.append(f"| {name} | {' | '.join(cells)} | {gain} |")
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


def variants_figure(rows, configs):
    """Each Adam variant against the assignment's SE block (se-r4_adam): mean paired difference and 95 % CI."""
    base = f"se-r{GRID_REDUCTION}_{SWEEP_OPTIMIZER}"
    names = [config_name(c) for c in configs if c["optimizer"] == SWEEP_OPTIMIZER and config_name(c) != base]
    names = [name for name in names if paired(rows, name, base)]  # none where the base was not run
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5), layout="constrained")
    for y, name in enumerate(names):
        differences = paired(rows, name, base)
        mean = statistics.fmean(differences)
        half = 0.0
        if len(differences) > 1:
            t = T_975[min(len(differences) - 2, len(T_975) - 1)]
            half = t * statistics.stdev(differences) / len(differences) ** 0.5
        axes.errorbar(mean, y, xerr=half, fmt="o", color="C3" if name.startswith("no-se") else "C0", capsize=4)
    if not names:
        axes.text(0.5, 0.5, f"{base} was not run: nothing to compare with", ha="center", transform=axes.transAxes)
    axes.axvline(0, color="k", lw=1)
    axes.set_yticks(range(len(names)), names)
    axes.invert_yaxis()
    axes.set_xlabel(f"test accuracy − {base}, paired by seed (points): mean and 95 % CI")
    axes.set_title("SE variants against the assignment's block")
    axes.grid(alpha=0.3, axis="x")
    return figure


def parse_args(argv=None):
    parser = cli.ArgumentParser(
        prog="ablation.py",
        description="Train SE-LeNet with and without SE, Adam and SGD, and a reduction sweep, over seeds.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=cli.positive_int, default=20, help="seeds 0..N-1 per configuration")
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
        type=cli.whole_number,
        default=[1, 2, 4, 8, 16],
        help="reduction ratios of the sweep",
    )
    parser.add_argument("--squeezes", nargs="+", choices=SQUEEZES, default=list(SQUEEZES), help="squeezes of the sweep")
    parser.add_argument("--gates", nargs="+", choices=GATES, default=list(GATES), help="excitation gates of the sweep")
    parser.add_argument(
        "--positions",
        nargs="+",
        choices=tuple(SE_POSITIONS),
        default=list(SE_POSITIONS),
        help="SE positions of the sweep",
    )
    parser.add_argument("--train-samples", type=cli.positive_int, default=None, help="first N training images only")
    parser.add_argument("--test-samples", type=cli.positive_int, default=None, help="first N test images only")
    parser.add_argument(
        "--conv1-reduction",
        type=cli.whole_number,
        default=Settings.conv1_reduction,
        help="the reduction of the block after conv1 in the position sweep (6 // r hidden units)",
    )
    parser.add_argument(
        "--threads", type=cli.whole_number, default=Settings.threads, help="TensorFlow's threads per run (a setting)"
    )
    parser.add_argument(
        "--workers",
        type=cli.positive_int,
        default=study_runs.available_cores(),
        help="runs trained at once, each in a worker process (default: the cores this process may use)",
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="run on a Ray cluster at ADDRESS (local: start one here), one CPU per run; needs requirements-ray.txt",
    )
    return parser.parse_args(argv)


def study(args, stop):
    # Every run builds a new model and new tf.functions by design; TensorFlow's
    # "retracing" warning about that would be noise here.
    senet_lenet.tf.get_logger().setLevel("ERROR")
    files.ensure_writable_dir(args.out_dir)
    with runs.folder_lock(args.out_dir, "ablation.py"):
        run_study(args, stop)


STUDY_FILES = ("ablation.csv", "ablation.md", "ablation_curves.png", "reduction_sweep.png", "ablation_variants.png")


def run_study(args, stop):
    configs = configurations(args.optimizers, sorted(set(args.reductions)), args.squeezes, args.gates, args.positions)
    plan = []  # (name, model, settings, finished run.json or None, resumable), every folder checked first
    for config in configs:
        for seed in range(args.seeds):
            name = f"{config_name(config)}_seed{seed}"
            settings = run_settings(args, config, seed)
            plan.append((name, config["model"], settings, *earlier_run(os.path.join(args.out_dir, name), settings)))
    # Recorded before anything is written; refused if a name holds something of the user's.
    Manifest(args.out_dir, "study").claim(*STUDY_FILES, *(f"{name}/" for name, *_ in plan))
    results, tasks = {}, []  # name -> (run.json, role)
    for name, _, settings, run, resumable in plan:
        run_dir = os.path.abspath(os.path.join(args.out_dir, name))
        role = excitation_role.read_role(run_dir, run["sha256"].get(runs.WEIGHTS_FILE)) if run else None
        if run is not None and (role is not None or not settings.se):
            results[name] = run, role
        else:
            data_dir = os.path.abspath(args.data_dir) if args.data_dir else None
            tasks.append(study_runs.Task(name, settings, run_dir, data_dir, train=run is None, resume=resumable))
    where = f"on Ray ({args.ray})" if args.ray else f"in {min(args.workers, max(len(tasks), 1))} process(es)"
    print(f"{len(plan)} runs: {len(results)} finished already, {len(tasks)} to do {where}", flush=True)
    started = time.perf_counter()

    def done(task, run, role):
        results[task.name] = run, role
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.perf_counter() - started))
        accuracy = run["final"]["test_accuracy"]
        print(f"[{len(results)}/{len(plan)}] {task.name}: test accuracy {accuracy:.2f} %; {elapsed} so far", flush=True)

    study_runs.run_all(tasks, args.workers, stop, done, args.ray)
    rows = [csv_row(name, model, *results[name]) for name, model, *_ in plan]
    finished = {name: results[name][0] for name, *_ in plan}
    files.write_text(os.path.join(args.out_dir, "ablation.csv"), files.csv_text(rows, CSV_FIELDS))
    markdown = summary_markdown(rows, configs)
    files.write_text(os.path.join(args.out_dir, "ablation.md"), markdown)
    grid_names = [config_name(c) for c in configs[: 2 * len(args.optimizers)]]
    figures = {
        "ablation_curves.png": curves_figure(finished, grid_names),
        "reduction_sweep.png": sweep_figure(rows, sorted(set(args.reductions))),
        "ablation_variants.png": variants_figure(rows, configs),
    }
    for name, figure in figures.items():
        files.save_figure(figure, os.path.join(args.out_dir, name))
    print(markdown, end="")
    print(f"Wrote ablation.csv, ablation.md and {', '.join(figures)} to {args.out_dir}/")
    stop.check()  # a signal while the tables were written: they are whole, and the stop is reported


def main(argv=None):
    args = parse_args(argv)
    try:
        with runs.StopOnSignal() as stop:
            study(args, stop)
    except cli.USER_ERRORS as e:
        return cli.report_error("ablation.py", e)
    except (errors.Diverged, errors.WriteError) as e:
        return cli.report_error("ablation.py", e, 1)
    except senet_lenet.tf.errors.UnimplementedError as e:
        return cli.report_error("ablation.py", cli.no_deterministic_kernel(e), 1)
    except errors.Interrupted as e:
        print(
            f"ablation.py: stopped by {e}; finished runs and the last completed epoch of the current one "
            "are kept. Run the same command again to continue.",
            file=sys.stderr,
        )
        return 128 + e.signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
