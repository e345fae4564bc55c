"""Does the SE block help LeNet-5 on MNIST, and what does it do? The SENet paper's ablations over seeds.

    python ablation.py                      # 20 seeds, 10 epochs, every axis: 360 runs into outputs/ablation
    python ablation.py --seeds 3 --epochs 5 --data-dir path/to/mnist

It trains, in worker processes (workers.py) with senet_lenet's own training code, over seeds 0..N-1:
  the grid    {SE (reduction 4), no SE} x {Adam lr 0.001, SGD lr 0.01, SGD lr 0.01 with momentum 0.9}
  the sweeps  SE with Adam: reductions 1, 2, 4, 8, 16; squeeze avg or max; gate sigmoid, tanh or relu;
              position after conv2, conv1 (its own reduction, --conv1-reduction) or both; the
              excitation Dense, Conv1D (ECA-Net) or a trained fixed gain; biases in the Dense layers
              (the assignment's block, r4 avg sigmoid conv2 Dense without biases, shared)
and measures each SE run's excitation at inference (study/excitation_role.py). Each run is a normal run
folder; a finished one is not trained again, so an interrupted study continues where it stopped.
Then it writes ablation.csv, ablation_comparisons.csv, ablation.md and three figures: means ± sample
std, and paired differences with 95 % intervals and Holm-corrected p-values (study/stats.py).
"""

import csv
import io
import os
import signal
import statistics
import sys
import time

import numpy as np
from matplotlib.figure import Figure  # no pyplot: importing this leaves a notebook's backend alone

import senet_lenet  # first: it sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads
from senet_lenet import LEARNING_RATES, UsageError
from study import excitation_role, variants, workers
from study.stats import Comparison, holm

# The study's optimizers: name -> (optimizer, momentum). SGD with momentum 0.9 is the SENet paper's.
STUDY_OPTIMIZERS = {"adam": ("adam", 0.0), "sgd": ("sgd", 0.0), "sgd-momentum": ("sgd", 0.9)}
DEFAULTS = vars(senet_lenet.parser().parse_args([]))  # the assignment's settings
TRAIN_RECORDS = senet_lenet.MNIST_FILES["train"][2]
DECLARED_SGD_LRS = [0.003, 0.01, 0.03, 0.1]  # the study's, declared in docs/study.md before they trained
DECLARED_CONTROLS = ["fixed", "x2"]
DECLARED_TRAIN_SIZES = [600, 3000, 12000]
GRID_REDUCTION = DEFAULTS["reduction"]  # the SE model of the grid: the assignment's
SWEEP_OPTIMIZER = "adam"  # every sweep trains with Adam at GRID_REDUCTION, but for the reduction sweep
BASE = {key: variants.VARIANT[key] for key in ("se_position", "squeeze", "gate", "excitation", "se_bias")}
ROLE_FIELDS = [f"role_{variant}" for variant in excitation_role.VARIANTS]
CSV_FIELDS = [
    *("run", "config", "model", "optimizer", "lr", "momentum", "reduction", "conv1_reduction"),
    *("se_position", "squeeze", "gate", "excitation", "se_bias", "seed"),
    *("parameters", "final_test_accuracy", "best_test_accuracy", "final_train_accuracy", "seconds_per_epoch"),
    *ROLE_FIELDS,
    "dead_blocks",  # the SE blocks whose excitation is the same for every test image
    *("gate_scale", "train_images", "steps"),  # the scale after the gate; the training set and steps taken
]


LR_OPTIMIZER = "sgd-momentum"  # the learning-rate grid's: the SENet paper's SGD with momentum 0.9
CONTROL_OPTIMIZERS = ("sgd", "sgd-momentum")  # the starting-scale controls' (SE's gap is SGD's)
SIZE_OPTIMIZERS = ("adam", "sgd-momentum")  # the data-size axis's
CONTROL_SCALE = 2.0  # --scale-controls x2: 2 x sigmoid starts near 1, as without a block
# Beside the block's settings, what a configuration may change: the learning rate (None: the optimizer's
# default), the gate's scale and the training-set size (None: every image).
PLAIN = {"lr": None, "gate_scale": 1.0, "train_size": None}


def grid(optimizers):
    """The grid's configurations: {SE, no SE} x optimizers (names of STUDY_OPTIMIZERS), each once."""
    se = {"model": "se", "reduction": GRID_REDUCTION, **BASE, **PLAIN}
    configs = [{**se, "optimizer": optimizer} for optimizer in optimizers]
    no_se = {"model": "no-se", "reduction": None, **BASE, **PLAIN}
    configs += [{**no_se, "optimizer": optimizer} for optimizer in optimizers]
    return unique(configs)


def configurations(
    optimizers,
    reductions,
    squeezes=(),
    gates=(),
    positions=(),
    excitations=(),
    biases=(),
    sgd_lrs=(),
    scale_controls=(),
    train_sizes=(),
):
    """Every configuration as a dict (model, optimizer, reduction, the block's settings of BASE and PLAIN's),
    in order: the grid, the sweeps of reduction, squeeze, gate, position, excitation and biases (Adam), the
    learning-rate grid (SE and no SE, SGD with momentum), the starting-scale controls (SGD) and the
    training-set sizes (SE and no SE, Adam and SGD with momentum)."""
    se = {"model": "se", "optimizer": SWEEP_OPTIMIZER, "reduction": GRID_REDUCTION, **BASE, **PLAIN}
    configs = grid(optimizers)
    configs += [{**se, "reduction": r} for r in reductions]
    for key, values in (("squeeze", squeezes), ("gate", gates), ("se_position", positions)):
        configs += [{**se, key: value} for value in values]
    configs += [{**se, "excitation": e, "reduction": GRID_REDUCTION if e == "dense" else None} for e in excitations]
    configs += [{**se, "se_bias": bias} for bias in biases]
    pair = grid([LR_OPTIMIZER])  # SE and no SE
    default_lr = LEARNING_RATES[STUDY_OPTIMIZERS[LR_OPTIMIZER][0]]
    configs += [{**c, "lr": None if lr == default_lr else lr} for lr in sgd_lrs for c in pair]
    for optimizer in CONTROL_OPTIMIZERS:
        if "fixed" in scale_controls:
            configs.append({**se, "optimizer": optimizer, "excitation": "fixed", "reduction": None})
        if "x2" in scale_controls:
            configs.append({**se, "optimizer": optimizer, "gate_scale": CONTROL_SCALE})
    for optimizer in SIZE_OPTIMIZERS:
        configs += [{**c, "train_size": size} for size in train_sizes for c in grid([optimizer])]
    return unique(configs)


def unique(configs):
    """configs without repeats, in their first order."""
    kept = []
    for config in configs:
        if config not in kept:
            kept.append(config)
    return kept


def config_name(config):
    """se-r4_adam for the assignment's block; variants add what differs (se-r4-max_adam, se-r4-conv1_adam,
    se-r4-bias_adam, se-r4-x2_sgd); the excitations without a bottleneck are se-eca_adam and se-fixed_adam;
    a learning rate other than the optimizer's default follows it (se-r4_sgd-momentum-lr0.03), and a
    training-set size the model (se-r4-n600_adam, no-se-n600_adam)."""
    size = f"-n{config['train_size']}" if config["train_size"] else ""
    optimizer = config["optimizer"] + (f"-lr{config['lr']:g}" if config["lr"] else "")
    if config["model"] == "no-se":
        return f"no-se{size}_{optimizer}"
    variant = "".join(f"-{config[key]}" for key in ("squeeze", "gate", "se_position") if config[key] != BASE[key])
    variant += "-bias" if config["se_bias"] else ""
    variant += f"-x{config['gate_scale']:g}" if config["gate_scale"] != 1 else ""
    kind = {"dense": f"se-r{config['reduction']}", "conv1d": "se-eca", "fixed": "se-fixed"}[config["excitation"]]
    return f"{kind}{variant}{size}_{optimizer}"


def run_settings(args, config, seed):
    """(senet_lenet's settings, the study's variant) of a configuration's run with `seed`."""
    se = config["model"] == "se"
    optimizer, momentum = STUDY_OPTIMIZERS[config["optimizer"]]
    size = config["train_size"]
    # A smaller training set takes the steps of a run on every image (of the study's): the same budget.
    full_steps = -(-(args.train_samples or TRAIN_RECORDS) // DEFAULTS["batch_size"])
    settings = {**DEFAULTS, "epochs": args.epochs, "optimizer": optimizer, "momentum": momentum, "se": se}
    settings |= {"lr": config["lr"] or LEARNING_RATES[optimizer], "seed": seed, "threads": args.threads}
    settings |= {"train_samples": None if size else args.train_samples, "test_samples": args.test_samples}
    settings["reduction"] = config["reduction"] if se and config["reduction"] else DEFAULTS["reduction"]
    variant = {**variants.VARIANT, **{key: config[key] for key in BASE}, "gate_scale": config["gate_scale"]}
    variant |= {"train_size": size, "epoch_steps": full_steps if size else None}
    variant["conv1_reduction"] = args.conv1_reduction
    return {name: settings[name] for name in senet_lenet.SETTINGS}, variant


def earlier_run(run_dir, settings, variant):
    """(run.json, resumable) of what run_dir holds: run.json if a run with these settings finished there;
    resumable if one stopped there. UsageError if the folder holds a run with other settings."""
    run = senet_lenet.read_run(run_dir)
    if run is None:
        return None, False
    recorded, ours = {**run["settings"], **run.get("study", {})}, {**settings, **variant}
    differences = [f"{k} = {v!r} (this study: {ours.get(k)!r})" for k, v in recorded.items() if v != ours.get(k)]
    if differences:
        raise UsageError(
            f"{run_dir} holds a run with {', '.join(differences)}; a study with other settings needs another --out-dir"
        )
    return (run, False) if run["finished"] else (None, True)


def csv_row(name, config, model, run, role):
    settings, variant, history = run["settings"], run["study"], run["history"]
    images = run["training"]["images"]
    dense, blocks = (
        variant["excitation"] == "dense",
        variants.POSITIONS[variant["se_position"]] if model == "se" else (),
    )
    steady = [r["seconds"] for r in history[1:]] or [history[0]["seconds"]]  # epoch 1 includes tracing
    return {
        "run": name,
        "config": config,
        "model": model,
        "optimizer": settings["optimizer"],
        "lr": settings["lr"],
        "momentum": settings["momentum"],
        "reduction": settings["reduction"] if "conv2" in blocks and dense else "",
        "conv1_reduction": variant["conv1_reduction"] if "conv1" in blocks and dense else "",
        **{key: variant[key] if model == "se" else "" for key in BASE},
        "seed": settings["seed"],
        "parameters": run["model"]["parameters"] - variants.frozen_weights(settings, variant),
        "final_test_accuracy": history[-1]["test_accuracy"],
        "best_test_accuracy": max(r["test_accuracy"] for r in history),
        "final_train_accuracy": history[-1]["accuracy"],
        "seconds_per_epoch": round(statistics.median(steady), 3),
        **{
            field: role[variant_name] if role else ""
            for field, variant_name in zip(ROLE_FIELDS, excitation_role.VARIANTS, strict=True)
        },
        "dead_blocks": " ".join(excitation_role.dead_blocks(role, variant)) if role else "",
        "gate_scale": variant["gate_scale"] if model == "se" else "",
        "train_images": images,
        "steps": run["training"]["steps"],
    }


def mean_std(values):
    """'mean ± std' (sample std over seeds); the std is '–' for a single value."""
    mean = statistics.fmean(values)
    spread = f"{statistics.stdev(values):.2f}" if len(values) > 1 else "–"
    return f"{mean:.2f} ± {spread}"


def by_seed(rows, name, field="final_test_accuracy"):
    return {r["seed"]: r[field] for r in rows if r["config"] == name}


def paired(rows, name, other, field="final_test_accuracy", other_field=None):
    """The per-seed differences name - other (seeds both have)."""
    a, b = by_seed(rows, name, field), by_seed(rows, other, other_field or field)
    return [a[s] - b[s] for s in sorted(a.keys() & b.keys())]


def axis(config):
    """Which question a configuration answers: "lr" (the learning-rate grid), "scale" (the starting-scale
    controls), "size" (the training-set sizes), or "main" (the grid and the Adam sweeps)."""
    if config["train_size"]:
        return "size"
    if config["lr"]:
        return "lr"
    sweep = config["model"] == "se" and config["optimizer"] != SWEEP_OPTIMIZER and config != grid_se(config)
    return "scale" if config["gate_scale"] != 1 or sweep else "main"


def grid_se(config):
    """The grid's SE configuration (the assignment's block) with this configuration's optimizer."""
    return grid([config["optimizer"]])[0]


def comparisons(rows, configs):
    """The study's paired comparisons, each family Holm-corrected on its own (docs/study.md declares them):
    "effect" (SE − no SE per optimizer, each Adam sweep variant − the assignment's block) and "role" (the
    excitation replaced at inference by the training-set mean, or shuffled between images, − learned, per SE
    configuration), both of the grid and sweeps; "lr", "scale", "size" and "size-role" of the new axes."""
    ran = {config_name(config) for config in configs}
    effect, role = [], []
    for config in (c for c in configs if axis(c) == "main"):
        name = config_name(config)
        if config["model"] != "se":
            continue
        base, plain = f"se-r{GRID_REDUCTION}_{config['optimizer']}", f"no-se_{config['optimizer']}"
        other = plain if name == base else base
        if other in ran:
            effect.append(Comparison(f"{name} − {other}", "effect", paired(rows, name, other)))
        if config["excitation"] == "fixed":
            continue  # the same excitation for every image by design: train_mean and shuffled are learned
        role += role_comparisons(rows, name, "role")
    new_axes = holm(lr_comparisons(rows, configs)) + holm(scale_comparisons(rows, ran)) + size_families(rows, configs)
    return holm(effect) + holm(role) + new_axes


def role_comparisons(rows, name, family):
    return [
        Comparison(f"{name}: {variant} − learned", family, paired(rows, name, name, f"role_{variant}", "role_learned"))
        for variant in ("train_mean", "shuffled")
    ]


def lr_pairs(configs):
    """{lr: (SE's name, no SE's name)} of the learning-rate grid, with the grid's own pair at the default lr."""
    default = LEARNING_RATES[STUDY_OPTIMIZERS[LR_OPTIMIZER][0]]
    grid_lrs = [c["lr"] or default for c in configs if axis(c) == "lr" and c["model"] == "se"]
    if not grid_lrs:
        return {}
    pairs = {}
    for lr in sorted({*grid_lrs, default}):
        se, no_se = ({**c, "lr": None if lr == default else lr} for c in grid([LR_OPTIMIZER]))
        pairs[lr] = config_name(se), config_name(no_se)
    ran = {config_name(c) for c in configs}
    return {lr: pair for lr, pair in pairs.items() if set(pair) <= ran}


def best_lr(rows, names):
    """The learning rate whose runs have the highest mean final test accuracy, of {lr: configuration name}."""
    return max(names, key=lambda lr: statistics.fmean(by_seed(rows, names[lr]).values()))


def lr_comparisons(rows, configs):
    pairs = lr_pairs(configs)
    if not pairs:
        return []
    compared = [Comparison(f"{se} − {no_se}", "lr", paired(rows, se, no_se)) for se, no_se in pairs.values()]
    se_best = best_lr(rows, {lr: pair[0] for lr, pair in pairs.items()})
    no_se_best = best_lr(rows, {lr: pair[1] for lr, pair in pairs.items()})
    best = f"{pairs[se_best][0]} − {pairs[no_se_best][1]} (each at its best lr)"
    return [*compared, Comparison(best, "lr", paired(rows, pairs[se_best][0], pairs[no_se_best][1]))]


def scale_comparisons(rows, ran):
    compared = []
    for optimizer in CONTROL_OPTIMIZERS:
        se, no_se = f"se-r{GRID_REDUCTION}_{optimizer}", f"no-se_{optimizer}"
        fixed, doubled = f"se-fixed_{optimizer}", f"se-r{GRID_REDUCTION}-x{CONTROL_SCALE:g}_{optimizer}"
        for a, b in ((fixed, se), (doubled, se), (doubled, no_se), (fixed, no_se)):
            if a in ran and b in ran:
                compared.append(Comparison(f"{a} − {b}", "scale", paired(rows, a, b)))
    return compared


def size_pairs(configs):
    """[(optimizer, training images, SE's name, no SE's name)] of the size axis, smallest first."""
    pairs = []
    for config in (c for c in configs if axis(c) == "size" and c["model"] == "se"):
        no_se = {**config, "model": "no-se", "reduction": None}
        pairs.append((config["optimizer"], config["train_size"], config_name(config), config_name(no_se)))
    ran = {config_name(c) for c in configs}
    return sorted((p for p in pairs if p[3] in ran), key=lambda p: (p[0], p[1]))


def size_families(rows, configs):
    pairs = size_pairs(configs)
    size = [Comparison(f"{se} − {no_se}", "size", paired(rows, se, no_se)) for _, _, se, no_se in pairs]
    role = [c for _, _, se, _ in pairs for c in role_comparisons(rows, se, "size-role")]
    return holm(size) + holm(role)


def blocks_text(row):
    """Each SE block of a run with its reduction and hidden units: "conv1 r2 (3), conv2 r4 (4)"; "conv2 ECA k3",
    "conv2 fixed gain" for the excitations without a bottleneck."""
    if row["excitation"] == "conv1d":
        return f"conv2 ECA k{variants.eca_kernel_size(16)}" if row["se_position"] == "conv2" else "ECA"
    if row["excitation"] == "fixed":
        return "conv2 fixed gain" if row["se_position"] == "conv2" else "fixed gain"
    parts = []
    for block, field in (("conv1", "conv1_reduction"), ("conv2", "reduction")):
        if row[field] != "":
            reduction = int(row[field])
            parts.append(f"{block} r{reduction} ({variants.CHANNELS[block] // reduction})")
    return ", ".join(parts) + (", biases" if row["se_bias"] is True else "") or "–"


def summary_markdown(rows, configs, compared, gaps=None):
    lines = [
        "| configuration | optimizer | SE blocks: reduction (hidden units) | squeeze | gate | seeds "
        "| test accuracy (%) | parameters | seeds with a dead block | seconds per epoch |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for config in configs:
        name = config_name(config)
        group = [r for r in rows if r["config"] == name]
        se = config["model"] == "se"
        squeeze, gate = (config[key] if se else "–" for key in ("squeeze", "gate"))
        dead = sum(1 for r in group if r["dead_blocks"]) if se else "–"
        lines.append(
            f"| {name} | {config['optimizer']} | {blocks_text(group[0])} | {squeeze} | {gate} | {len(group)} "
            f"| {mean_std([r['final_test_accuracy'] for r in group])} | {group[0]['parameters']:,} | {dead} "
            f"| {statistics.fmean(r['seconds_per_epoch'] for r in group):.2f} |"
        )
    lines += ["", "Paired differences in test accuracy points (same seed on both sides): mean and 95 % interval"]
    lines += ["(Student's t), the seeds that would make the interval ±0.1, and the two-sided p-value, raw and"]
    lines += ["Holm-adjusted within its family; **yes** where the difference survives the correction (Holm p < 0.05):"]
    lines += ["", "| comparison | family | seeds | mean [95 % CI] | ± | seeds for ±0.1 | p | Holm p | survives |"]
    lines += ["| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in compared:
        if not c.testable:
            why = "one seed" if c.seeds < 2 else "every seed the same: no spread"
            lines.append(f"| {c.name} | {c.family} | {c.seeds} | {c.mean:+.2f} ({why}) | – | – | – | – | cannot test |")
            continue
        interval = f"{c.mean:+.2f} [{c.mean - c.half_width:+.2f}, {c.mean + c.half_width:+.2f}]"
        lines.append(
            f"| {c.name} | {c.family} | {c.seeds} | {interval} | {c.half_width:.2f} | {c.seeds_for_target} "
            f"| {c.p:.2g} | {c.holm_p:.2g} | {'**yes**' if c.survives else 'no'} |"
        )
    ran = {config_name(config) for config in configs}
    left_out = sorted({f"se-r{GRID_REDUCTION}_{c['optimizer']}" for c in configs} - ran)
    left_out += sorted({f"no-se_{c['optimizer']}" for c in configs if c["model"] == "se"} - ran)
    if left_out:
        lines += ["", f"Not run in this study, so the comparisons with them are left out: {', '.join(left_out)}."]
    lines += epoch_gaps_markdown(gaps or {})
    lines += axes_markdown(rows, configs, compared)
    lines += ["", "The excitation at inference: test accuracy (%) with it learned, replaced by each channel's"]
    lines += ["training-set mean, by 1, or shuffled between test images (mean ± std over seeds):", ""]
    lines += ["| configuration | learned | training-set mean | ones | shuffled |", "| --- | --- | --- | --- | --- |"]
    for config in configs:
        name = config_name(config)
        group = [r for r in rows if r["config"] == name and r["role_learned"] != ""]
        if config["model"] == "se" and group:
            cells = [mean_std([r[field] for r in group]) for field in ROLE_FIELDS]
            lines.append(f"| {name} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def interval_text(c):
    """ "mean [low, high]" of a comparison, or why it cannot be tested."""
    if not c.testable:
        return f"{c.mean:+.2f} (cannot test)" if c.seeds else "–"
    return f"{c.mean:+.2f} [{c.mean - c.half_width:+.2f}, {c.mean + c.half_width:+.2f}]"


def axes_markdown(rows, configs, compared):
    """The learning-rate grid and the training-set sizes, each as a table (when the study has them)."""
    by_name, lines = {c.name: c for c in compared}, []

    def accuracy(name):
        return mean_std(list(by_seed(rows, name).values()))

    pairs = lr_pairs(configs)
    if pairs:
        lines += ["", f"The learning-rate grid, {LR_OPTIMIZER} (final test accuracy %, mean ± std over seeds; SE − no"]
        lines += ["SE paired by seed, family lr, Holm over its comparisons):", ""]
        lines += ["| lr | SE | no SE | SE − no SE [95 % CI] | Holm p |", "| --- | --- | --- | --- | --- |"]
        for lr, (se, no_se) in pairs.items():
            c = by_name[f"{se} − {no_se}"]
            lines.append(f"| {lr:g} | {accuracy(se)} | {accuracy(no_se)} | {interval_text(c)} | {c.holm_p:.2g} |")
        se_best = best_lr(rows, {lr: pair[0] for lr, pair in pairs.items()})
        no_se_best = best_lr(rows, {lr: pair[1] for lr, pair in pairs.items()})
        edge = [
            f"{who} at lr {lr:g}"
            for who, lr in (("SE", se_best), ("no SE", no_se_best))
            if lr in (min(pairs), max(pairs))
        ]
        lines += ["", f"Best learning rate: SE {se_best:g}, no SE {no_se_best:g}"]
        lines[-1] += (
            f"; at the grid's edge: {', '.join(edge)} (the grid is not wide enough)."
            if edge
            else ", both inside the grid."
        )
    sizes = size_pairs(configs)
    if sizes:
        lines += ["", "Training-set sizes, each run with the steps of a run on every image (final test accuracy %,"]
        lines += ["mean ± std; SE − no SE paired by seed, family size; the excitation's role, family size-role):", ""]
        lines += ["| optimizer | images | SE | no SE | SE − no SE [95 % CI] | Holm p | training-set mean − learned |"]
        lines += ["| --- | --- | --- | --- | --- | --- | --- |"]
        for optimizer, images, se, no_se in sizes:
            c, role = by_name[f"{se} − {no_se}"], by_name[f"{se}: train_mean − learned"]
            lines.append(
                f"| {optimizer} | {images:,} | {accuracy(se)} | {accuracy(no_se)} | {interval_text(c)} "
                f"| {c.holm_p:.2g} | {interval_text(role)}{f' (Holm p {role.holm_p:.2g})' if role.testable else ''} |"
            )
    return lines


def size_figure(rows, configs, compared):
    """SE − no SE against the training images (log axis), per optimizer, with 95 % intervals; the sizes'
    family and, at every image, the effect family's gap. None without the size axis."""
    sizes = size_pairs(configs)
    if not sizes:
        return None
    by_name = {c.name: c for c in compared}
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for i, optimizer in enumerate(dict.fromkeys(p[0] for p in sizes)):
        points = [(images, by_name[f"{se} − {no_se}"]) for o, images, se, no_se in sizes if o == optimizer]
        full = by_name.get(f"se-r{GRID_REDUCTION}_{optimizer} − no-se_{optimizer}")
        points += [(TRAIN_RECORDS, full)] if full is not None else []
        x = np.array([images for images, _ in points], dtype=float) * (1 + 0.04 * (i - 0.5))  # side by side
        mean = [c.mean for _, c in points]
        error = [c.half_width if c.testable else 0 for _, c in points]
        axes.errorbar(x, mean, yerr=error, fmt="o-", capsize=4, label=optimizer)
    axes.axhline(0, color="k", lw=1)
    axes.set_xscale("log")
    axes.set_xlabel("training images (class-balanced; the same 6,000 steps at every size)")
    axes.set_ylabel("SE − no SE, final test accuracy (points)")
    axes.set_title("SE against no SE by training-set size: mean and 95 % CI over seeds")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


COMPARISON_FIELDS = ["comparison", "family", "seeds", "mean", "low", "high", "half_width", "seeds_for_0.1"]
COMPARISON_FIELDS += ["p", "holm_p", "survives"]


def comparison_rows(compared):
    return [
        {
            "comparison": c.name,
            "family": c.family,
            "seeds": c.seeds,
            "mean": round(c.mean, 4),
            "low": round(c.mean - c.half_width, 4),
            "high": round(c.mean + c.half_width, 4),
            "half_width": round(c.half_width, 4),
            "seeds_for_0.1": c.seeds_for_target,
            "p": f"{c.p:.4g}",
            "holm_p": f"{c.holm_p:.4g}",
            "survives": c.survives if c.testable else "cannot test",
        }
        for c in compared
    ]


def accuracy_curves(curves, name):
    """{seed: test accuracy per epoch} of a configuration's runs; curves: {(configuration, seed): per epoch}."""
    return {seed: curve for (config, seed), curve in curves.items() if config == name}


def epoch_gaps(curves, grid_configs):
    """Per optimizer of the grid, SE − no SE at each epoch, paired by seed (the seeds both have, as paired()
    does): how the gap of the final epoch came about. Holm over the epochs of each optimizer."""
    gaps, names = {}, {config_name(c) for c in grid_configs}
    for optimizer in dict.fromkeys(c["optimizer"] for c in grid_configs):
        se, plain = f"se-r{GRID_REDUCTION}_{optimizer}", f"no-se_{optimizer}"
        if se in names and plain in names:
            a, b = accuracy_curves(curves, se), accuracy_curves(curves, plain)
            seeds = sorted(a.keys() & b.keys())
            if seeds:
                epochs = min(len(curve[s]) for curve in (a, b) for s in seeds)
                family = f"epochs, {optimizer}"
                gaps[optimizer] = holm(
                    [Comparison(f"epoch {e + 1}", family, [a[s][e] - b[s][e] for s in seeds]) for e in range(epochs)]
                )
    return gaps


def epoch_gaps_markdown(gaps):
    if not gaps:
        return []
    lines = ["", "SE − no SE at each epoch, paired by seed (test accuracy points, mean [95 % CI], the intervals"]
    lines += ["not corrected; **bold** where the difference survives Holm over the epochs of its optimizer): how"]
    lines += ["the final epoch's difference came about.", ""]
    lines += ["| epoch | " + " | ".join(gaps) + " |", "| --- |" + " --- |" * len(gaps)]
    for e in range(max(len(g) for g in gaps.values())):
        cells = []
        for optimizer in gaps:
            c = gaps[optimizer][e] if e < len(gaps[optimizer]) else None
            if c is None or not c.testable:
                cells.append("–" if c is None else f"{c.mean:+.2f}")
            else:
                cell = f"{c.mean:+.2f} [{c.mean - c.half_width:+.2f}, {c.mean + c.half_width:+.2f}]"
                cells.append(f"**{cell}**" if c.survives else cell)
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    return lines


def curves_figure(curves, grid_configs):
    """One panel per optimizer of the grid: SE and no SE, test accuracy per epoch (each on its own scale, so
    the gap between them shows)."""
    optimizers = list(dict.fromkeys(c["optimizer"] for c in grid_configs))
    columns = max(len(optimizers), 1)
    figure = Figure(figsize=(4.2 * columns, 4.5), layout="constrained")
    panels = figure.subplots(1, columns, squeeze=False)[0]
    for axes, optimizer in zip(panels, optimizers, strict=False):
        for name in (config_name(c) for c in grid_configs if c["optimizer"] == optimizer):
            runs = np.array(list(accuracy_curves(curves, name).values()))
            if not len(runs):
                continue  # not run in this study
            epochs = np.arange(1, runs.shape[1] + 1)
            (line,) = axes.plot(epochs, runs.mean(axis=0), "o-", label=f"{name} (mean of {len(runs)})")
            axes.fill_between(epochs, runs.min(axis=0), runs.max(axis=0), color=line.get_color(), alpha=0.2)
        axes.set_title(optimizer)
        axes.set_xlabel("epoch")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
    panels[0].set_ylabel("test accuracy (%)")
    figure.suptitle("Test accuracy per epoch: mean over seeds, band from lowest to highest seed")
    return figure


def sweep_figure(rows, reductions):
    figure = Figure(figsize=(7, 4.5), layout="constrained")
    axes = figure.subplots()
    for reduction in reductions:
        group = [r for r in rows if r["config"] == f"se-r{reduction}_{SWEEP_OPTIMIZER}"]
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
        dead = sum(1 for r in group if r["dead_blocks"])
        axes.annotate(
            f"{group[0]['parameters']:,} params" + (f"\ndead in {dead}/{len(group)} seeds" if dead else ""),
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


def variants_figure(compared):
    """Each variant against the assignment's SE block, and SE against no SE: mean paired difference and
    95 % CI; filled where the difference survives Holm's correction."""
    effect = [c for c in compared if c.family == "effect"]
    figure = Figure(figsize=(9, 0.45 * len(effect) + 1.8), layout="constrained")
    axes = figure.subplots()
    for y, c in enumerate(effect):
        color = "C3" if "no-se" in c.name else "C0"
        face = color if c.survives else "white"
        axes.errorbar(c.mean, y, xerr=c.half_width, fmt="o", color=color, mfc=face, capsize=4)
    if not effect:
        axes.text(0.5, 0.5, "no comparison: the assignment's block was not run", ha="center", transform=axes.transAxes)
    axes.axvline(0, color="k", lw=1)
    axes.set_yticks(range(len(effect)), [c.name for c in effect])
    axes.invert_yaxis()
    axes.set_xlabel("test accuracy difference (points): mean and 95 % CI")
    figure.suptitle("Paired by seed. Filled: survives Holm's correction (p < 0.05 in its family)")
    axes.grid(alpha=0.3, axis="x")
    return figure


STUDY_FILES = (
    *("ablation.csv", "ablation_comparisons.csv", "ablation.md"),
    *("ablation_curves.png", "reduction_sweep.png", "ablation_variants.png"),
)
SIZE_FIGURE = "training_size.png"  # with the training-set sizes only


def csv_text(rows, fields):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def study_configs(args):
    sweeps = args.squeezes, args.gates, args.positions, args.excitations, [b == "on" for b in args.se_biases]
    declared = (args.sgd_lrs, DECLARED_SGD_LRS), (args.scale_controls, DECLARED_CONTROLS)
    declared += ((args.train_sizes, DECLARED_TRAIN_SIZES),)
    axes = [[] if given is None else list(given or values) for given, values in declared]
    if args.run:  # one run: of every configuration the study can train, the one named
        name, _, seed = args.run.rpartition("_seed")
        every = configurations(list(STUDY_OPTIMIZERS), [1, 2, 4, 8, 16], *(
            ("avg", "max"), variants.GATES, tuple(variants.POSITIONS), variants.EXCITATIONS, [False, True],
            DECLARED_SGD_LRS, DECLARED_CONTROLS, DECLARED_TRAIN_SIZES,
        ))  # fmt: skip
        chosen = [c for c in every if config_name(c) == name]
        if not chosen or not seed.isdigit():
            raise UsageError(f"--run {args.run}: not a run of the study (CONFIGURATION_seedN, as in ablation.csv)")
        return chosen, [int(seed)]
    return configurations(args.optimizers, sorted(set(args.reductions)), *sweeps, *axes), range(args.seeds)


def run_study(args, check):
    configs, seeds = study_configs(args)
    os.makedirs(args.out_dir, exist_ok=True)
    plan = []  # (name, configuration, model, settings, variant, finished run.json or None, resumable)
    for config in configs:
        for seed in seeds:
            name, (settings, variant) = f"{config_name(config)}_seed{seed}", run_settings(args, config, seed)
            earlier = earlier_run(os.path.join(args.out_dir, name), settings, variant)
            plan.append((name, config_name(config), config["model"], settings, variant, *earlier))
    results, tasks = {}, []  # name -> (run.json, role)
    for name, _, _, settings, variant, run, resumable in plan:
        run_dir = os.path.abspath(os.path.join(args.out_dir, name))
        role = excitation_role.read_role(run_dir) if run else None
        if run is not None and (role is not None or not settings["se"]):
            results[name] = run, role
        else:
            data_dir = os.path.abspath(args.data_dir) if args.data_dir else None
            tasks.append(workers.Task(name, settings, variant, run_dir, data_dir, train=run is None, resume=resumable))
    where = f"on Ray ({args.ray})" if args.ray else f"in {min(args.workers, max(len(tasks), 1))} process(es)"
    print(f"{len(plan)} runs: {len(results)} finished already, {len(tasks)} to do {where}", flush=True)
    started = time.perf_counter()

    def done(task, run, role):
        results[task.name] = run, role
        elapsed = time.strftime("%H:%M:%S", time.gmtime(time.perf_counter() - started))
        accuracy = run["history"][-1]["test_accuracy"]
        print(f"[{len(results)}/{len(plan)}] {task.name}: test accuracy {accuracy:.2f} %; {elapsed} so far", flush=True)

    workers.run_all(tasks, args.workers, check, done, args.ray)
    if args.run:
        return
    rows = [csv_row(name, config, model, *results[name]) for name, config, model, *_ in plan]
    curves = {  # (configuration, seed) -> test accuracy per epoch
        (config, settings["seed"]): [r["test_accuracy"] for r in results[name][0]["history"]]
        for name, config, _, settings, *_ in plan
    }
    write = lambda name, text: senet_lenet.write_text(os.path.join(args.out_dir, name), text)  # noqa: E731
    write("ablation.csv", csv_text(rows, CSV_FIELDS))
    compared = comparisons(rows, configs)
    write("ablation_comparisons.csv", csv_text(comparison_rows(compared), COMPARISON_FIELDS))
    grid_configs = grid(args.optimizers)
    markdown = summary_markdown(rows, configs, compared, epoch_gaps(curves, grid_configs))
    write("ablation.md", markdown)
    figures = {
        "ablation_curves.png": curves_figure(curves, grid_configs),
        "reduction_sweep.png": sweep_figure(rows, sorted(set(args.reductions))),
        "ablation_variants.png": variants_figure(compared),
        SIZE_FIGURE: size_figure(rows, configs, compared),
    }
    figures = {name: figure for name, figure in figures.items() if figure is not None}
    for name, figure in figures.items():
        path = os.path.join(args.out_dir, name)
        senet_lenet.write_whole(path, lambda temporary, figure=figure: figure.savefig(temporary, format="png", dpi=100))
    print(markdown, end="")
    print(f"Wrote ablation.csv, ablation_comparisons.csv, ablation.md and {', '.join(figures)} to {args.out_dir}/")


def choices(parser, flag, values, text):
    """A flag that takes one or more of `values` (in their order), all of them by default."""
    parser.add_argument(flag, nargs="+", choices=tuple(values), default=list(values), help=text)


def axis_flag(parser, flag, declared, text, **options):
    """A study axis that trains only when asked: the flag alone takes the declared values, or name others."""
    shown = " ".join(map(str, declared))
    parser.add_argument(flag, nargs="*", default=None, help=f"{text}; the flag alone: {shown}", **options)


def parser():
    p = senet_lenet.ArgumentParser("ablation.py", __doc__.split("\n")[0])
    p.add_argument("--seeds", type=senet_lenet.whole(), default=20, help="seeds 0..N-1 per configuration")
    p.add_argument("--epochs", type=senet_lenet.whole(), default=DEFAULTS["epochs"], help="epochs per run")
    p.add_argument("--data-dir", help="folder with the four MNIST IDX files (default: $MNIST_DIR, else download)")
    p.add_argument("--out-dir", default=os.path.join(senet_lenet.OUT_DIR, "ablation"), help="where the study goes")
    p.add_argument("--run", help="train only this run of the study (a row of ablation.csv: se-r4-max_adam_seed3)")
    choices(p, "--optimizers", STUDY_OPTIMIZERS, "the grid's optimizers (sgd-momentum: SGD, momentum 0.9)")
    p.add_argument("--reductions", nargs="+", type=senet_lenet.whole(1, 16), default=[1, 2, 4, 8, 16])
    choices(p, "--squeezes", variants.SQUEEZES, "squeezes of the sweep")
    choices(p, "--gates", variants.GATES, "excitation gates of the sweep")
    choices(p, "--positions", variants.POSITIONS, "SE positions of the sweep")
    choices(p, "--excitations", variants.EXCITATIONS, "dense (the assignment's), conv1d (ECA-Net), fixed (a gain)")
    choices(p, "--se-biases", ("off", "on"), "biases in the block's layers (off: the assignment's)")
    positive = senet_lenet.number(0, float("inf"))
    axis_flag(p, "--sgd-lrs", DECLARED_SGD_LRS, "SE and no SE, SGD with momentum 0.9, at these rates", type=positive)
    text = "with plain SGD and SGD with momentum: the trained fixed gain and SE with its gate times 2"
    axis_flag(p, "--scale-controls", DECLARED_CONTROLS, text, choices=DECLARED_CONTROLS)
    text = "SE and no SE, Adam and SGD with momentum, on class-balanced training sets of these sizes"
    axis_flag(p, "--train-sizes", DECLARED_TRAIN_SIZES, text, type=senet_lenet.whole(10))
    p.add_argument("--train-samples", type=senet_lenet.whole(), help="first N training images only (default: all)")
    p.add_argument("--test-samples", type=senet_lenet.whole(), help="first N test images only (default: all)")
    p.add_argument("--conv1-reduction", type=senet_lenet.whole(1, 6), default=variants.VARIANT["conv1_reduction"])
    p.add_argument("--threads", type=senet_lenet.whole(0, 1024), default=DEFAULTS["threads"], help="per run")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    p.add_argument("--workers", type=senet_lenet.whole(), default=cores, help="runs at once (default: the cores)")
    p.add_argument("--ray", metavar="ADDRESS", help="run on a Ray cluster at ADDRESS (local: one here)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    senet_lenet.tf.get_logger().setLevel("ERROR")  # every run traces its own tf.functions, by design
    try:
        with senet_lenet.signals_noted() as check:
            run_study(args, check)
            check()  # a signal while the tables were written: they are whole, and the stop is reported
    except UsageError as e:
        print(f"ablation.py: error: {e}", file=sys.stderr)
        return 2
    except (FloatingPointError, OSError, senet_lenet.tf.errors.OpError) as e:
        print(f"ablation.py: error: {e}", file=sys.stderr)
        return 1
    except (senet_lenet.Stopped, KeyboardInterrupt) as e:
        signum = e.args[0] if isinstance(e, senet_lenet.Stopped) else signal.SIGINT
        kept = "finished runs and the last epoch of each unfinished one are kept: run the same command to continue"
        print(f"ablation.py: stopped by {signal.Signals(signum).name}; {kept}", file=sys.stderr)
        return 128 + signum
    return 0


if __name__ == "__main__":
    sys.exit(main())
