"""Does the SE block help LeNet-5 on MNIST, and what does it do? The SENet paper's ablations over seeds.

    python ablation.py                      # 20 seeds, 10 epochs, every configuration into outputs/ablation
    python ablation.py --seeds 3 --epochs 5 --configs se-r4_adam no-se_adam --data-dir path/to/mnist
    python ablation.py --run se-r4-max_adam_seed3      # one run of the study (a row of ablation.csv)

It trains, in worker processes (study/workers.py) with senet_lenet's own training code, over seeds 0..N-1:
  the grid       {SE (reduction 4), no SE} x {Adam lr 0.001, SGD lr 0.01, SGD lr 0.01 with momentum 0.9}
  the sweeps     SE with Adam: reductions 1, 2, 4, 8, 16; squeeze max; gate tanh, relu; position after conv1
                 or both; the excitation Conv1D (ECA-Net) or a trained fixed gain; biases in the Dense layers
  the lr grid    SE and no SE, SGD with momentum 0.9, at lr 0.003, 0.03, 0.1
  the controls   with SGD and with momentum: the fixed gain, the gate times 2, the gate started near 0.95
  the sizes      SE and no SE, Adam and SGD with momentum, on 600, 3,000 and 12,000 class-balanced images
and measures each SE run's excitation at inference (visualize.py's excitation role). Each run is a normal run
folder; a finished one is not trained again, so an interrupted study continues where it stopped. Then it
writes ablation.csv, ablation_comparisons.csv, ablation.md and three figures: means ± sample std, and paired
differences with 95 % intervals and Holm-corrected p-values, each in its declared family (study/stats.py).
"""

import csv
import os
import signal
import statistics
import sys
import time
from fractions import Fraction

import numpy as np
from matplotlib.figure import Figure  # no pyplot: importing this leaves a notebook's backend alone

import senet_lenet  # first: it sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads
from senet_lenet import LEARNING_RATES, UsageError
from study import variants, workers
from study.stats import Comparison, fixed, holm

# The study's optimizers: name -> (optimizer, momentum). SGD with momentum 0.9 is the SENet paper's.
STUDY_OPTIMIZERS = {"adam": ("adam", 0.0), "sgd": ("sgd", 0.0), "sgd-momentum": ("sgd", 0.9)}
DEFAULTS = vars(senet_lenet.parser().parse_args([]))  # the assignment's settings
TRAIN_RECORDS = senet_lenet.MNIST_FILES["train"][2]
GRID_REDUCTION = DEFAULTS["reduction"]  # the SE model of the grid: the assignment's
SWEEP_OPTIMIZER = "adam"  # every sweep trains with Adam at GRID_REDUCTION, but for the reduction sweep
BASE = {key: variants.VARIANT[key] for key in ("se_position", "squeeze", "gate", "excitation", "se_bias")}
# Each axis as declared in docs/study.md before its runs trained.
REDUCTIONS = (1, 2, 4, 8, 16)
SWEEPS = {"squeeze": ("max",), "gate": ("tanh", "relu"), "se_position": ("conv1", "both")}
SWEEPS |= {"excitation": ("conv1d", "fixed"), "se_bias": (True,)}
LR_OPTIMIZER, SGD_LRS = "sgd-momentum", (0.003, 0.01, 0.03, 0.1)  # the learning-rate grid: SE and no SE
GRID_LR = LEARNING_RATES[STUDY_OPTIMIZERS[LR_OPTIMIZER][0]]  # the grid's own lr for LR_OPTIMIZER (0.01)
CONTROL_OPTIMIZERS = ("sgd", "sgd-momentum")  # the gate's scale and start controls (SE's gap is SGD's)
CONTROL_SCALE = 2.0  # se-r4-x2: 2 x sigmoid, starting near 1 with a ceiling of 2
CONTROL_START = 0.95  # se-r4-start0.95: a sigmoid starting near 0.95 with a ceiling of 1
SIZE_OPTIMIZERS, TRAIN_SIZES = ("adam", "sgd-momentum"), (600, 3000, 12000)  # class-balanced, SE and no SE
ROLE_FIELDS = [f"role_{variant}" for variant in ("learned", "train_mean", "ones", "shuffled")]  # visualize.py's
CSV_FIELDS = [
    *("run", "config", "model", "optimizer", "lr", "momentum", "reduction", "conv1_reduction"),
    *("se_position", "squeeze", "gate", "excitation", "se_bias", "seed"),
    *("parameters", "final_test_accuracy", "best_test_accuracy", "final_train_accuracy", "seconds_per_epoch"),
    *ROLE_FIELDS,
    "dead_blocks",  # the SE blocks whose excitation is the same for every test image
    *("gate_scale", "gate_start", "train_images", "steps"),  # the gate's scale and start; training set and steps
    "test_accuracy_per_epoch",  # space-separated, epoch 1 first: the per-epoch gaps recomputed from this file
]
# Beside the block's settings, what a configuration may change: the learning rate (None: the optimizer's
# default), the gate's scale and start, and the training-set size (None: every image).
PLAIN = {"lr": None, "gate_scale": 1.0, "gate_start": None, "train_size": None}


def grid(optimizers):
    """The grid's configurations: {SE, no SE} x optimizers (names of STUDY_OPTIMIZERS), each once."""
    se = {"model": "se", "reduction": GRID_REDUCTION, **BASE, **PLAIN}
    no_se = {"model": "no-se", "reduction": None, **BASE, **PLAIN}
    return [{**se, "optimizer": optimizer} for optimizer in optimizers] + [
        {**no_se, "optimizer": optimizer} for optimizer in optimizers
    ]


def configurations():
    """Every configuration of the study as a dict (model, optimizer, reduction, BASE's and PLAIN's keys), in its
    tables' order: the grid, the Adam sweeps (reduction, squeeze, gate, position, excitation, biases), the
    learning-rate grid, the gate's scale and start controls, the training-set sizes."""
    se = {"model": "se", "optimizer": SWEEP_OPTIMIZER, "reduction": GRID_REDUCTION, **BASE, **PLAIN}
    configs = grid(STUDY_OPTIMIZERS) + [{**se, "reduction": r} for r in REDUCTIONS]
    for key, values in SWEEPS.items():
        configs += [{**se, key: value, **({"reduction": None} if key == "excitation" else {})} for value in values]
    configs += [{**c, "lr": lr} for lr in SGD_LRS if lr != GRID_LR for c in grid([LR_OPTIMIZER])]
    for optimizer in CONTROL_OPTIMIZERS:
        control = {**se, "optimizer": optimizer}
        configs += [{**control, "excitation": "fixed", "reduction": None}, {**control, "gate_scale": CONTROL_SCALE}]
        configs.append({**control, "gate_start": CONTROL_START})
    for optimizer in SIZE_OPTIMIZERS:
        configs += [{**c, "train_size": size} for size in TRAIN_SIZES for c in grid([optimizer])]
    return list({config_name(c): c for c in configs}.values())  # each once, in its first place


def config_name(config):
    """se-r4_adam for the assignment's block; variants add what differs (se-r4-max_adam, se-r4-conv1_adam,
    se-r4-bias_adam, se-r4-x2_sgd, se-r4-start0.95_sgd); the excitations without a bottleneck are se-eca_adam and
    se-fixed_adam; a learning rate other than the optimizer's default follows it (se-r4_sgd-momentum-lr0.03),
    and a training-set size the model (se-r4-n600_adam, no-se-n600_adam)."""
    size = f"-n{config['train_size']}" if config["train_size"] else ""
    optimizer = config["optimizer"] + (f"-lr{config['lr']:g}" if config["lr"] else "")
    if config["model"] == "no-se":
        return f"no-se{size}_{optimizer}"
    variant = "".join(f"-{config[key]}" for key in ("squeeze", "gate", "se_position") if config[key] != BASE[key])
    variant += "-bias" if config["se_bias"] else ""
    variant += f"-x{config['gate_scale']:g}" if config["gate_scale"] != 1 else ""
    variant += f"-start{config['gate_start']:g}" if config["gate_start"] else ""
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
    variant = {**variants.VARIANT, **{key: config[key] for key in BASE}}
    variant |= {"gate_scale": config["gate_scale"], "gate_start": config["gate_start"]}
    variant |= {"train_size": size, "epoch_steps": full_steps if size else None}
    return {name: settings[name] for name in senet_lenet.SETTINGS}, variant


def earlier_run(run_dir, settings, variant):
    """(run.json, resumable) of what run_dir holds: run.json if a run with these settings finished there;
    resumable if one stopped there. UsageError if the folder holds a run with other settings."""
    run = senet_lenet.read_run(run_dir)
    if run is None:
        return None, False
    recorded, ours = {**run["settings"], **run.get("study", {})}, {**settings, **variant}
    differences = [
        f"{k} = {recorded.get(k)!r} (this study: {ours.get(k)!r})"
        for k in {**recorded, **ours}
        if recorded.get(k) != ours.get(k)
    ]
    if differences:
        raise UsageError(
            f"{run_dir} holds a run with {', '.join(differences)}; a study with other settings needs another --out-dir"
        )
    return (run, False) if run["finished"] else (None, True)


def csv_row(name, config, model, run, role):
    settings, variant, history = run["settings"], run["study"], run["history"]
    dense = variant["excitation"] == "dense"
    blocks = variants.POSITIONS[variant["se_position"]] if model == "se" else ()
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
        "seconds_per_epoch": fixed(statistics.median(steady), 3),
        **{field: role[field[5:]] if role else "" for field in ROLE_FIELDS},
        "dead_blocks": " ".join(dead_blocks(role, variant)) if role else "",
        "gate_scale": variant["gate_scale"] if model == "se" else "",
        "gate_start": variant["gate_start"] or "" if model == "se" else "",
        "train_images": run["training"]["images"],
        "steps": run["training"]["steps"],
        "test_accuracy_per_epoch": " ".join(str(r["test_accuracy"]) for r in history),
    }


def read_role(run_dir):
    """The excitation role saved in run_dir, or None. The run's files are rewritten together when it trains again
    (senet_lenet.remove_own removes this one), so one found belongs to the run's weights."""
    try:
        with open(os.path.join(run_dir, "excitation_role.csv"), newline="", encoding="utf-8") as f:
            role = {row["measure"]: float(row["value"]) for row in csv.DictReader(f)}
    except (OSError, KeyError, ValueError):
        return None
    return role if {field[5:] for field in ROLE_FIELDS} <= set(role) else None


def dead_blocks(role, variant):
    """The SE blocks whose excitation is the same for every test image (a constant gain: nothing learned); none for
    the fixed gain, which is the same for every image by design."""
    if variant["excitation"] == "fixed":
        return []
    return [name.removeprefix("range_") for name, value in role.items() if name.startswith("range_") and value == 0]


def mean_std(values):
    """'mean ± std' over seeds (the mean exact, then rounded); the std is '–' for a single value."""
    mean = statistics.mean(Fraction(str(v)) for v in values)
    return f"{fixed(mean)} ± {fixed(statistics.stdev(values)) if len(values) > 1 else '–'}"


def by_seed(rows, name, field="final_test_accuracy", epoch=None):
    """{seed: value} of a configuration's runs; epoch: the test accuracy after that epoch (from 1)."""
    if epoch is not None:
        return {r["seed"]: float(r["test_accuracy_per_epoch"].split()[epoch - 1]) for r in rows if r["config"] == name}
    return {r["seed"]: r[field] for r in rows if r["config"] == name}


def difference(a, b):
    """{seed: a - b} of two {seed: value} (the seeds both have)."""
    return {s: a[s] - b[s] for s in sorted(a.keys() & b.keys())}


def paired(rows, name, other, field="final_test_accuracy", other_field=None):
    """The per-seed differences name - other (seeds both have)."""
    return list(difference(by_seed(rows, name, field), by_seed(rows, other, other_field or field)).values())


def comparisons(rows, configs, epochs):
    """Every paired comparison of the study, each in the one family it is declared in (docs/study.md), Holm
    within its family: effect (SE − no SE per optimizer; each Adam sweep variant − the assignment's block), role
    (the excitation replaced at inference), lr, scale, size, size-trend (a size's gap − the gap on every image),
    size-role, and epochs-OPTIMIZER (SE − no SE after each epoch but the last, whose gap is effect's)."""
    ran, families = {config_name(c) for c in configs}, {}

    def add(family, name, differences):
        families.setdefault(family, []).append(Comparison(name, family, differences))

    def compare(family, a, b):
        if a in ran and b in ran:
            add(family, f"{a} − {b}", paired(rows, a, b))

    def role(family, name):
        for variant in ("train_mean", "shuffled"):
            add(family, f"{name}: {variant} − learned", paired(rows, name, name, f"role_{variant}", "role_learned"))

    for config in (c for c in configs if c["model"] == "se" and axis(c) == "main"):
        name, base, plain = config_name(config), f"se-r{GRID_REDUCTION}_{config['optimizer']}", no_se(config)
        compare("effect", name, plain if name == base else base)
        if config["excitation"] != "fixed":  # the same excitation for every image by design
            role("role", name)
    pairs = lr_pairs(configs)
    for lr, (se, plain) in pairs.items():
        if lr != GRID_LR:  # at the default lr: the grid's pair, in effect
            compare("lr", se, plain)
    if pairs:
        best = {who: best_lr(rows, {lr: pair[i] for lr, pair in pairs.items()}) for i, who in enumerate(("se", "no"))}
        if best["se"] != best["no"]:  # else the same comparison as at that lr
            add("lr", f"{pairs[best['se']][0]} − {pairs[best['no']][1]} (each at its best lr)",
                paired(rows, pairs[best["se"]][0], pairs[best["no"]][1]))  # fmt: skip
    for optimizer in CONTROL_OPTIMIZERS:
        se, plain = f"se-r{GRID_REDUCTION}_{optimizer}", f"no-se_{optimizer}"
        fixed_gain, doubled = f"se-fixed_{optimizer}", f"se-r{GRID_REDUCTION}-x{CONTROL_SCALE:g}_{optimizer}"
        started = f"se-r{GRID_REDUCTION}-start{CONTROL_START:g}_{optimizer}"
        for a, b in ((fixed_gain, se), (doubled, se), (started, se), (doubled, started)):
            compare("scale", a, b)
        for a in (fixed_gain, doubled, started):
            compare("scale", a, plain)
    for optimizer, _, se, plain in size_pairs(configs):
        compare("size", se, plain)
        full = f"se-r{GRID_REDUCTION}_{optimizer}", f"no-se_{optimizer}"
        if set(full) <= ran:
            gaps = difference(by_seed(rows, se), by_seed(rows, plain))
            full_gaps = difference(by_seed(rows, full[0]), by_seed(rows, full[1]))
            add("size-trend", f"({se} − {plain}) − ({full[0]} − {full[1]})", list(difference(gaps, full_gaps).values()))
        role("size-role", se)
    for optimizer in dict.fromkeys(c["optimizer"] for c in configs if axis(c) == "main"):
        se, plain = f"se-r{GRID_REDUCTION}_{optimizer}", f"no-se_{optimizer}"
        if se in ran and plain in ran:
            for epoch in range(1, epochs):
                gaps = difference(by_seed(rows, se, epoch=epoch), by_seed(rows, plain, epoch=epoch))
                add(f"epochs-{optimizer}", f"{se} − {plain} after epoch {epoch}", list(gaps.values()))
    return [c for family in families.values() for c in holm(family)]


def no_se(config):
    return config_name({**config, "model": "no-se", "reduction": None})


def axis(config):
    """Which question a configuration answers: "lr" (the learning-rate grid), "scale" (the gate's scale and start
    controls), "size" (the training-set sizes), or "main" (the grid and the Adam sweeps)."""
    if config["train_size"]:
        return "size"
    if config["lr"]:
        return "lr"
    control = (
        config["model"] == "se" and config["optimizer"] != SWEEP_OPTIMIZER and config != grid([config["optimizer"]])[0]
    )
    return "scale" if control else "main"


def lr_pairs(configs):
    """{lr: (SE's name, no SE's name)} of the learning-rate grid, with the grid's own pair at the default lr."""
    ran, pairs = {config_name(c) for c in configs}, {}
    if any(axis(c) == "lr" for c in configs):
        for lr in sorted({GRID_LR, *SGD_LRS}):
            se, plain = (config_name({**c, "lr": None if lr == GRID_LR else lr}) for c in grid([LR_OPTIMIZER]))
            if se in ran and plain in ran:
                pairs[lr] = se, plain
    return pairs


def best_lr(rows, names):
    """The learning rate whose runs have the highest mean final test accuracy, of {lr: configuration name}."""
    return max(names, key=lambda lr: statistics.fmean(by_seed(rows, names[lr]).values()))


def size_pairs(configs):
    """[(optimizer, training images, SE's name, no SE's name)] of the size axis, by optimizer, smallest first."""
    ran = {config_name(c) for c in configs}
    pairs = [(c["optimizer"], c["train_size"], config_name(c), no_se(c)) for c in configs if axis(c) == "size"]
    return sorted(p for p in pairs if p[2].startswith("se") and p[3] in ran)


def blocks_text(row):
    """Each SE block with its reduction and hidden units ("conv1 r2 (3), conv2 r4 (4)"), or its excitation."""
    if row["excitation"] in ("conv1d", "fixed"):  # no bottleneck (no SE: an empty excitation)
        return {"conv1d": f"conv2 ECA k{variants.eca_kernel_size(16)}", "fixed": "conv2 fixed gain"}[row["excitation"]]
    blocks = [(b, int(row[f])) for b, f in (("conv1", "conv1_reduction"), ("conv2", "reduction")) if row[f] != ""]
    text = ", ".join(f"{block} r{r} ({variants.CHANNELS[block] // r})" for block, r in blocks)
    return text + (", biases" if row["se_bias"] is True else "") or "–"


def interval_text(c):
    """ "mean [low, high]" of a comparison (95 % interval, not corrected), or why it cannot be tested."""
    if not c.testable:
        why = "no seed" if not c.seeds else "one seed" if c.seeds < 2 else "every seed the same: no spread"
        return f"{fixed(c.exact_mean, sign='+') if c.seeds else '–'} ({why})"
    low, high = (fixed(c.mean + side * c.half_width, sign="+") for side in (-1, 1))
    return f"{fixed(c.exact_mean, sign='+')} [{low}, {high}]"


def holm_text(c):
    return f"{c.holm_p:.2g}" if c.testable else "–"


def summary_markdown(rows, configs, compared, machines):
    by_name = {c.name: c for c in compared}

    def accuracy(name):
        return mean_std(list(by_seed(rows, name).values()))

    lines = [f"Trained on: {'; '.join(machines)}.", ""]
    lines += ["| configuration | optimizer | SE blocks: reduction (hidden units) | squeeze | gate | seeds "
              "| test accuracy (%) | parameters | seeds with a dead block | seconds per epoch |"]  # fmt: skip
    lines += ["| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for config in configs:
        name = config_name(config)
        group = [r for r in rows if r["config"] == name]
        se = config["model"] == "se"
        squeeze, gate = (config[key] if se else "–" for key in ("squeeze", "gate"))
        dead = sum(1 for r in group if r["dead_blocks"]) if se else "–"
        seconds = statistics.mean(Fraction(r["seconds_per_epoch"]) for r in group)
        lines.append(
            f"| {name} | {config['optimizer']} | {blocks_text(group[0])} | {squeeze} | {gate} | {len(group)} "
            f"| {mean_std([r['final_test_accuracy'] for r in group])} | {group[0]['parameters']:,} | {dead} "
            f"| {fixed(seconds)} |"
        )
    lines += ["", "Paired differences in test accuracy points (the same seed on both sides): the mean and its 95 %"]
    lines += ["interval (Student's t, not corrected for the many comparisons), the seeds that would make the interval"]
    lines += ["±0.1, the two-sided p-value, and the p-value Holm-adjusted within the one family each comparison is"]
    lines += ["declared in (docs/study.md); **yes** where the difference survives the correction (Holm p < 0.05):"]
    lines += ["", "| comparison | family | seeds | mean [95 % CI] | seeds for ±0.1 | p | Holm p | survives |"]
    lines += ["| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in compared:
        numbers = f"{c.seeds_for_target} | {c.p:.2g} | {c.holm_p:.2g}" if c.testable else "– | – | –"
        survives = ("**yes**" if c.survives else "no") if c.testable else "cannot test"
        lines.append(f"| {c.name} | {c.family} | {c.seeds} | {interval_text(c)} | {numbers} | {survives} |")
    gaps = {o: [c for c in compared if c.family == f"epochs-{o}"] for o in STUDY_OPTIMIZERS}
    finals = {o: by_name.get(f"se-r{GRID_REDUCTION}_{o} − no-se_{o}") for o in gaps}
    gaps = {o: [*g, finals[o]] for o, g in gaps.items() if g and finals[o]}
    if gaps:
        lines += ["", "SE − no SE after each epoch, paired by seed (test accuracy points, mean [95 % interval, not"]
        lines += ["corrected]; **bold** where it survives Holm in its family: epochs-OPTIMIZER for every epoch but the"]
        lines += ["last, effect for the last):", "", "| epoch | " + " | ".join(gaps) + " |"]
        lines += ["| --- |" + " --- |" * len(gaps)]
        for e in range(max(map(len, gaps.values()))):
            cells = [g[e] if e < len(g) else None for g in gaps.values()]
            cells = ["–" if c is None else f"**{interval_text(c)}**" if c.survives else interval_text(c) for c in cells]
            lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    pairs = lr_pairs(configs)
    if pairs:
        lines += ["", f"The learning-rate grid, {LR_OPTIMIZER} (final test accuracy %, mean ± std over seeds; SE − no"]
        lines += [
            f"SE paired by seed, with its Holm p: family lr, but at lr {GRID_LR:g}, the grid's pair, in effect):",
            "",
        ]
        lines += ["| lr | SE | no SE | SE − no SE [95 % CI] | Holm p |", "| --- | --- | --- | --- | --- |"]
        for lr, (se, plain) in pairs.items():
            c = by_name[f"{se} − {plain}"]
            lines.append(f"| {lr:g} | {accuracy(se)} | {accuracy(plain)} | {interval_text(c)} | {holm_text(c)} |")
        best = [best_lr(rows, {lr: pair[i] for lr, pair in pairs.items()}) for i in (0, 1)]
        edge = [
            f"{who} at lr {lr:g}"
            for who, lr in zip(("SE", "no SE"), best, strict=True)
            if lr in (min(pairs), max(pairs))
        ]
        lines += ["", f"Best learning rate: SE {best[0]:g}, no SE {best[1]:g}"]
        lines[-1] += f"; at the grid's edge: {', '.join(edge)}." if edge else ", both inside the grid."
    sizes = size_pairs(configs)
    if sizes:
        lines += ["", "Training-set sizes, class-balanced, each run with the steps of a run on every image (so a small"]
        lines += ["set is passed over many times): final train and test accuracy %, mean ± std over seeds; SE − no SE"]
        lines += ["paired by seed (family size); that gap − the gap on every image (family size-trend); the"]
        lines += ["excitation replaced by its training-set mean − learned (family size-role):", ""]
        lines += ["| optimizer | images | passes | SE train | SE test | no SE test | SE − no SE | Holm p "]
        lines[-1] += "| gap − gap on every image | Holm p | training-set mean − learned | Holm p |"
        lines += ["|" + " --- |" * 12]
        for optimizer, images, se, plain in sizes:
            c, role = by_name[f"{se} − {plain}"], by_name[f"{se}: train_mean − learned"]
            full = f"se-r{GRID_REDUCTION}_{optimizer}", f"no-se_{optimizer}"
            trend = by_name.get(f"({se} − {plain}) − ({full[0]} − {full[1]})")
            group = [r for r in rows if r["config"] == se]
            passes = group[0]["steps"] * DEFAULTS["batch_size"] // images
            train = mean_std([r["final_train_accuracy"] for r in group])
            cells = " | ".join(f"{interval_text(x)} | {holm_text(x)}" if x else "– | –" for x in (c, trend, role))
            lines.append(
                f"| {optimizer} | {images:,} | {passes:,} | {train} | {accuracy(se)} | {accuracy(plain)} | {cells} |"
            )
    lines += ["", "The excitation at inference: test accuracy (%) with it learned, replaced by each channel's"]
    lines += ["training-set mean, by 1, or shuffled between test images (mean ± std over seeds):", ""]
    lines += ["| configuration | learned | training-set mean | ones | shuffled |", "| --- | --- | --- | --- | --- |"]
    for config in configs:
        group = [r for r in rows if r["config"] == config_name(config) and r["role_learned"] != ""]
        if config["model"] == "se" and group:
            cells = [mean_std([r[field] for r in group]) for field in ROLE_FIELDS]
            lines.append(f"| {config_name(config)} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


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
        mean = [float(c.mean) for _, c in points]
        error = [c.half_width if c.testable else 0 for _, c in points]
        axes.errorbar(x, mean, yerr=error, fmt="o-", capsize=4, label=optimizer)
    axes.axhline(0, color="k", lw=1)
    axes.set_xscale("log")
    axes.set_xlabel("training images (class-balanced; the same 6,000 steps at every size)")
    axes.set_ylabel("SE − no SE, final test accuracy (points)")
    axes.set_title(
        "SE against no SE by training-set size: mean and 95 % interval over seeds\n"
        "(each interval on its own, not corrected for the comparisons)",
        fontsize=10,
    )
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
            "mean": fixed(c.exact_mean, 4),
            "low": fixed(c.mean - c.half_width, 4),
            "high": fixed(c.mean + c.half_width, 4),
            "half_width": fixed(c.half_width, 4),
            "seeds_for_0.1": c.seeds_for_target,
            "p": f"{c.p:.4g}",
            "holm_p": f"{c.holm_p:.4g}",
            "survives": c.survives if c.testable else "cannot test",
        }
        for c in compared
    ]


def curves_figure(rows, grid_configs):
    """One panel per optimizer of the grid: SE and no SE, test accuracy per epoch (each on its own scale, so
    the gap between them shows)."""
    optimizers = list(dict.fromkeys(c["optimizer"] for c in grid_configs))
    columns = max(len(optimizers), 1)
    figure = Figure(figsize=(4.2 * columns, 4.5), layout="constrained")
    panels = figure.subplots(1, columns, squeeze=False)[0]
    for axes, optimizer in zip(panels, optimizers, strict=False):
        for name in (config_name(c) for c in grid_configs if c["optimizer"] == optimizer):
            runs = np.array(
                [[float(a) for a in r["test_accuracy_per_epoch"].split()] for r in rows if r["config"] == name]
            )
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
    axes.set_xlabel("test accuracy difference (points): mean and 95 % interval, each on its own, not corrected")
    figure.suptitle("Paired by seed. Filled: survives Holm's correction (p < 0.05 in its family)")
    axes.grid(alpha=0.3, axis="x")
    return figure


def study_configs(args):
    """(configurations, seeds) to train: every configuration (or those of --configs) over seeds 0..N-1, or the
    one run of --run."""
    every = configurations()
    if args.run:
        name, _, seed = args.run.rpartition("_seed")
        chosen = [c for c in every if config_name(c) == name]
        if not chosen or not seed.isdigit():
            raise UsageError(f"--run {args.run}: not a run of the study (CONFIGURATION_seedN, as in ablation.csv)")
        return chosen, [int(seed)]
    return [c for c in every if not args.configs or config_name(c) in args.configs], range(args.seeds)


def machines(results):
    """Each CPU and instruction set the runs trained on, with its count of runs."""
    found = [(run["machine"]["cpu"], run["machine"].get("isa", {}).get("onednn", "unknown")) for run, _ in results]
    return [f"{cpu}, oneDNN {isa}: {found.count((cpu, isa))} runs" for cpu, isa in dict.fromkeys(found)]


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
        role = read_role(run_dir) if run else None
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
    write = lambda name, text: senet_lenet.write_text(os.path.join(args.out_dir, name), text)  # noqa: E731
    write("ablation.csv", senet_lenet.csv_text(rows, CSV_FIELDS))
    compared = comparisons(rows, configs, args.epochs)
    write("ablation_comparisons.csv", senet_lenet.csv_text(comparison_rows(compared), COMPARISON_FIELDS))
    markdown = summary_markdown(rows, configs, compared, machines(results.values()))
    write("ablation.md", markdown)
    grid_configs = [c for c in grid(STUDY_OPTIMIZERS) if c in configs]
    figures = {
        "ablation_curves.png": curves_figure(rows, grid_configs),
        "ablation_variants.png": variants_figure(compared),
        "training_size.png": size_figure(rows, configs, compared),
    }
    figures = {name: figure for name, figure in figures.items() if figure is not None}
    for name, figure in figures.items():
        path = os.path.join(args.out_dir, name)
        senet_lenet.write_whole(path, lambda temporary, figure=figure: figure.savefig(temporary, format="png", dpi=100))
    print(markdown, end="")
    print(f"Wrote ablation.csv, ablation_comparisons.csv, ablation.md and {', '.join(figures)} to {args.out_dir}/")


def parser():
    p = senet_lenet.ArgumentParser("ablation.py", __doc__.split("\n")[0])
    p.add_argument("--seeds", type=senet_lenet.number(), default=20, help="seeds 0..N-1 per configuration")
    p.add_argument("--epochs", type=senet_lenet.number(), default=DEFAULTS["epochs"], help="epochs per run")
    p.add_argument("--data-dir", help="folder with the four MNIST IDX files (default: $MNIST_DIR, else download)")
    p.add_argument("--out-dir", default=os.path.join(senet_lenet.OUT_DIR, "ablation"), help="where the study goes")
    names = [config_name(c) for c in configurations()]
    p.add_argument(
        "--configs", nargs="+", choices=names, metavar="NAME", help="these configurations only (default: all)"
    )
    p.add_argument("--run", help="train only this run of the study (a row of ablation.csv: se-r4-max_adam_seed3)")
    p.add_argument("--train-samples", type=senet_lenet.number(), help="first N training images only (default: all)")
    p.add_argument("--test-samples", type=senet_lenet.number(), help="first N test images only (default: all)")
    p.add_argument("--threads", type=senet_lenet.number(0, 1024), default=DEFAULTS["threads"], help="per run")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    p.add_argument("--workers", type=senet_lenet.number(), default=cores, help="runs at once (default: the cores)")
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
