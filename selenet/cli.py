"""The command line: each script's parser (read before TensorFlow loads), flags and their types, one-line
errors and exit codes, the resume rules."""

import argparse
import dataclasses
import math
import os
import sys

from selenet import errors, machine, runs
from selenet.errors import MNISTDataError

# Hides TensorFlow's C++ info lines (CPU features) in every script: set here, in the module each script
# imports before TensorFlow. Warnings and errors still show; the oneDNN notice, logged before this setting
# is read, is dropped by quiet_start.import_tensorflow.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from selenet.settings import (
    EXCITATIONS,
    GATES,
    LEARNING_RATES,
    SE_POSITIONS,
    SQUEEZES,
    STUDY_OPTIMIZERS,
    Settings,
    SettingsError,
)

USER_ERRORS = (errors.UsageError, MNISTDataError, SettingsError)  # each reported as one line, exit code 2


def quiet_ctrl_c(prog):
    """Ctrl-C outside the training loop (while TensorFlow loads, data is read, figures are drawn):
    one line and exit code 130, not a traceback. Files are written atomically, so none is half-written."""

    def hook(kind, value, traceback):
        if not issubclass(kind, KeyboardInterrupt):
            return sys.__excepthook__(kind, value, traceback)
        os._exit(stopped_by_ctrl_c(prog))  # at start-up: nothing to clean up

    sys.excepthook = hook


def stopped_by_ctrl_c(prog):
    """Reports a KeyboardInterrupt in one line; returns the exit code 130."""
    sys.stdout.flush()
    print(f"{prog}: stopped by SIGINT; every file written so far is whole", file=sys.stderr, flush=True)
    return 130


def warn(message):
    """A warning line, on stderr."""
    print(message, file=sys.stderr)


def report_error(prog, error, code=2):
    """Prints an error as one line on stderr; returns the exit code."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    return code


def exit_code(prog, error, stopped=None):
    """Reports an error a script ends with as one line on stderr and returns its exit code; an error that
    is not one of these (a bug) is raised again, with its traceback. The one place that maps
    errors to exit codes: bad input 2; a failed run (divergence, a write error, no deterministic kernel)
    1; a signal 128 + its number. stopped(interrupted): the line for a stop by a signal."""
    tensorflow = sys.modules.get("tensorflow")
    if isinstance(error, USER_ERRORS):
        return report_error(prog, error)
    if isinstance(error, (errors.Diverged, errors.WriteError)):
        print(flush=True)  # ends a progress bar's line
        return report_error(prog, error, 1)
    if tensorflow is not None and isinstance(error, tensorflow.errors.UnimplementedError):
        return report_error(prog, no_deterministic_kernel(error), 1)
    if isinstance(error, errors.Interrupted):
        print(flush=True)
        print(stopped(error) if stopped else f"{prog}: stopped by {error}", file=sys.stderr, flush=True)
        return 128 + error.signum
    if isinstance(error, KeyboardInterrupt):
        return stopped_by_ctrl_c(prog)
    raise error


def no_deterministic_kernel(error):
    """The one line for an op that enable_op_determinism() refuses to run (on a GPU, TensorFlow #51466)."""
    reason = "an op without a deterministic kernel here; bit-identical runs are verified on CPU"
    return f"{errors.first_line(error, limit=300)} ({reason})"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)", but where there is none to give (None, False) or the help gives it already."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as one line, exit code 2, and gives every flag's default."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, formatter_class=HelpFormatter, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def whole_number(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def positive_int(text):
    value = whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def seed_arg(text):
    value = whole_number(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 2**32 - 1, got {value}")
    return value


# setting -> (flag, argparse options, help); the defaults are Settings'
SETTING_FLAGS = {
    "epochs": ("--epochs", {"type": positive_int}, "passes over the training set"),
    "batch_size": ("--batch-size", {"type": positive_int}, "images per training step"),
    "optimizer": ("--optimizer", {"choices": sorted(LEARNING_RATES)}, "the optimizer"),
    "lr": ("--lr", {"type": positive_float}, "learning rate"),
    "momentum": ("--momentum", {"type": float}, "SGD's momentum (0: the assignment's plain SGD; the paper's: 0.9)"),
    "reduction": ("--reduction", {"type": whole_number}, "SE reduction ratio r: 16 // r hidden units"),
    "conv1_reduction": (
        "--conv1-reduction",
        {"type": whole_number},
        "the reduction of the block after conv1 (--se-position conv1 or both): 6 // r hidden units",
    ),
    "se": ("--no-se", {"action": "store_false"}, "plain LeNet-5 without the SE block (for comparison)"),
    "seed": ("--seed", {"type": seed_arg}, "seeds weights and data order; same seed and threads => same bits"),
    "train_samples": ("--train-samples", {"type": positive_int}, "train on the first N training images only"),
    "test_samples": ("--test-samples", {"type": positive_int}, "test on the first N test images only"),
    "se_position": ("--se-position", {"choices": tuple(SE_POSITIONS)}, "SE block after conv2, conv1 or both"),
    "squeeze": ("--squeeze", {"choices": SQUEEZES}, "the squeeze: global average or max pooling"),
    "gate": ("--gate", {"choices": GATES}, "the excitation's nonlinearity"),
    "excitation": (
        "--excitation",
        {"choices": EXCITATIONS},
        "squeezed -> excitation: dense (the assignment's bottleneck), conv1d (ECA-Net), fixed (one gain per channel)",
    ),
    "eca_kernel": ("--eca-kernel", {"type": whole_number}, "with --excitation conv1d: its kernel size, odd"),
    "se_bias": ("--se-bias", {"action": "store_true"}, "biases in the SE block's Dense (or Conv1D) layers"),
    "gate_scale": (
        "--gate-scale",
        {"type": positive_float},
        "a constant factor after the gate: 2 starts the sigmoid's excitation near 1, as without SE",
    ),
    "train_size": (
        "--train-size",
        {"type": positive_int},
        "train on a class-balanced sample of N training images drawn with --seed (a multiple of 10)",
    ),
    "epoch_steps": (
        "--epoch-steps",
        {"type": positive_int},
        "optimizer steps per epoch, between two evaluations of the test set",
    ),
    "threads": (
        "--threads",
        {"type": whole_number},
        "TensorFlow's threads per run; the bits depend on it, not on the cores (0: one per core)",
    ),
}


ASSIGNMENT_FLAGS = ("epochs", "batch_size", "optimizer", "lr", "reduction", "se", "seed")
VARIANT_FLAGS = ("momentum", "se_position", "squeeze", "gate", "gate_scale", "excitation", "eca_kernel", "se_bias")
VARIANT_FLAGS += ("conv1_reduction",)
RUN_FLAGS = ("train_samples", "test_samples", "train_size", "epoch_steps", "threads")


def add_setting_flags(parser, names=tuple(SETTING_FLAGS)):
    """A flag per setting, in the namespace only when given, so that --resume can tell them from defaults."""
    defaults = Settings().as_dict()
    defaults["lr"] = ", ".join(f"{lr} for {name}" for name, lr in LEARNING_RATES.items())
    defaults["eca_kernel"] = "ECA's rule, 3 for 16 channels and 1 for 6"
    defaults["epoch_steps"] = "one pass over the training images"
    for name in names:
        flag, options, text = SETTING_FLAGS[name]
        default = "all" if defaults[name] is None else defaults[name]
        if name not in ("se", "se_bias"):
            text = f"{text} (default: {default})"
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS, help=text, **options)


def given_settings(args):
    """The settings typed as flags: {name: value}."""
    return {name: value for name, value in vars(args).items() if name in SETTING_FLAGS}


def add_data_dir_flag(parser):
    parser.add_argument(
        "--data-dir",
        default=None,
        help="folder with the four MNIST IDX files (.gz or plain) or mnist.npz "
        "(default: $MNIST_DIR, else download with keras.datasets.mnist)",
    )


def run_to_resume(out_dir, given, log=print):
    """(settings, anything to do) for --resume in out_dir: UsageError if there is no run to resume or
    a given flag contradicts it. --epochs may change (not below the epochs done); a finished run with
    a file missing or damaged (run.json included) is something to do (it is saved again from the newest
    checkpoint), a whole one is not.
    """
    state = runs.folder_run(out_dir)
    run, saved, done = state.run, state.checkpoints, state.epochs_done
    if state.damaged is not None:
        raise state.damaged
    if state.empty:
        raise errors.UsageError(
            f"nothing to resume in {out_dir}: no {runs.RUN_FILE} and no checkpoint, so no epoch was completed "
            "there; start the run without --resume"
        )
    if run is not None:
        settings, source = run["settings"], os.path.join(out_dir, runs.RUN_FILE)
    else:
        from selenet.checkpoints import saved_settings  # TensorFlow reads them

        settings, source = saved_settings(out_dir), f"the newest checkpoint in {out_dir}"
    recorded = settings.as_dict()
    for name, value in sorted(given.items()):
        if value != recorded[name] and name != "epochs":
            raise errors.UsageError(
                f"{SETTING_FLAGS[name][0]} conflicts with the run being resumed, which has {name} = "
                f"{recorded[name]!r} in {source}; --resume continues a run with its recorded settings"
            )
    epochs = given.get("epochs", settings.epochs)
    if epochs != settings.epochs:
        if epochs < done:
            raise errors.UsageError(f"--epochs {epochs} is fewer than the {done} epochs done in {out_dir}")
        log(f"The run in {out_dir} now has {epochs} epochs instead of {settings.epochs}")
        settings = dataclasses.replace(settings, epochs=epochs)
    missing = runs.missing_run_files(out_dir, settings, run) if done == settings.epochs else ["epochs"]
    if missing and not saved:
        raise errors.UsageError(f"no checkpoint in {os.path.join(out_dir, runs.CHECKPOINT_DIR)} to resume from")
    if missing and done == settings.epochs:
        log(
            f"{out_dir} finished all {settings.epochs} epochs but lacks whole copies of {', '.join(missing)}: "
            "writing them again from its newest checkpoint"
        )
    return settings, bool(missing)


def settings_for_the_folder(args):
    """senet_lenet.py's settings for args.out_dir (locked): the flags', after refusing a folder that holds a run
    (unless --overwrite) or a file of the user's where the run writes; with --resume, the recorded run's, or
    None if it has nothing left to do. Removes the temporary files of a killed writer."""
    from selenet.manifest import Manifest

    given = given_settings(args)
    settings = Settings(**given)
    Manifest(args.out_dir, "run").remove_temporary_files()
    if not args.resume:
        runs.check_room_for_a_new_run(args.out_dir, args.overwrite, settings)
        return settings
    settings, missing = run_to_resume(args.out_dir, given, log=print)
    if not missing:
        print(f"{args.out_dir} already finished all {settings.epochs} epochs: nothing to resume")
        return None
    return settings


# ----------------------------------------------------------------------------
# The scripts' command lines: here, so that they are read before TensorFlow loads
# ----------------------------------------------------------------------------


def printing_never_fails():
    """A console or log file in another encoding than UTF-8 (Windows: cp1252, GBK) prints what it cannot
    encode (the tables' −, the summary's box lines) as "?" instead of stopping the script."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") != "utf8":
            stream.reconfigure(errors="replace")


def start(prog, parser, check=None, tensorflow=True):
    """What a script does before it imports TensorFlow (seconds): one-line Ctrl-C, --help, and one line,
    exit code 2, for a bad flag (check(args): what else can be judged from the flags alone). Then imports
    TensorFlow without its start-up notices (tensorflow False: the script does it when it needs it)."""
    printing_never_fails()
    quiet_ctrl_c(prog)
    args = parser().parse_args(sys.argv[1:])
    if check is not None:
        try:
            check(args)
        except USER_ERRORS as e:
            sys.exit(report_error(prog, e))
    if tensorflow:
        from selenet import quiet_start

        # Without its two start-up notices (each printed twice); Ctrl-C meanwhile: at once, in one line (nothing
        # is written yet).
        quiet_start.import_tensorflow(on_ctrl_c=lambda: os._exit(stopped_by_ctrl_c(prog)))


def check_settings(args):
    Settings(**given_settings(args))


def train_parser():
    parser = ArgumentParser(
        prog="senet_lenet.py", description="Train SE-LeNet (LeNet-5 with a Squeeze-and-Excitation block) on MNIST."
    )
    assignment = parser.add_argument_group("the assignment's training")
    add_setting_flags(assignment, ASSIGNMENT_FLAGS)
    add_data_dir_flag(assignment)
    assignment.add_argument("--out-dir", default=runs.OUT_DIR, help="where the run's files go")
    assignment.add_argument(
        "--resume", action="store_true", help="continue the run in --out-dir from its last epoch (--epochs may change)"
    )
    assignment.add_argument("--overwrite", action="store_true", help="replace a run that --out-dir holds")
    variants = parser.add_argument_group(
        "the study's variants (ablation.py trains them; the defaults are the assignment's block)"
    )
    add_setting_flags(variants, VARIANT_FLAGS)
    add_setting_flags(parser.add_argument_group("data, steps and threads (quick runs, the study's axes)"), RUN_FLAGS)
    return parser


def visualize_parser():
    parser = ArgumentParser(
        prog="visualize.py",
        description="Draw SE excitations of a trained SE-LeNet run, or compare two runs.",
    )
    parser.add_argument("--run-dir", default=runs.OUT_DIR, help="the run to visualize (senet_lenet.py --out-dir)")
    add_data_dir_flag(parser)
    parser.add_argument("--batch-size", type=positive_int, default=Settings.batch_size, help="test images per heatmap")
    parser.add_argument(
        "--max-batches", type=positive_int, default=None, help="draw only the first N batches (default: all)"
    )
    parser.add_argument(
        "--compare", nargs=2, metavar=("RUN_A", "RUN_B"), default=None, help="compare the excitations of two runs"
    )
    parser.add_argument(
        "--batch", type=int, default=0, help="with --compare: the test batch to draw (its figure goes to RUN_B)"
    )
    return parser


DECLARED_SGD_LRS = [0.003, 0.01, 0.03, 0.1]  # the study's, declared in docs/study.md before they trained
DECLARED_CONTROLS = ["fixed", "x2"]
DECLARED_TRAIN_SIZES = [600, 3000, 12000]


def add_axis(parser, flag, declared, text, **options):
    """A study axis that trains only when asked: the flag alone takes the declared values, or name others."""
    shown = " ".join(map(str, declared))
    text = f"{text}; the flag alone: {shown} (default: not trained)"
    parser.add_argument(flag, nargs="*", default=None, help=text.replace("%", "%%"), **options)


def study_axis(values, declared):
    """The values an add_axis flag asks for: [] if not given, the declared ones if given alone."""
    return [] if values is None else list(values or declared)


def add_choices(parser, flag, choices, text):
    """A flag that takes one or more of `choices` (in their order), all of them by default."""
    parser.add_argument(flag, nargs="+", choices=tuple(choices), default=list(choices), help=text)


def study_parser():
    parser = ArgumentParser(
        prog="ablation.py",
        description="Train SE-LeNet over seeds: with and without SE, Adam and SGD, and sweeps of the SE block.",
    )
    parser.add_argument("--seeds", type=positive_int, default=20, help="seeds 0..N-1 per configuration")
    parser.add_argument("--epochs", type=positive_int, default=Settings.epochs, help="epochs per run")
    add_data_dir_flag(parser)
    parser.add_argument("--out-dir", default=os.path.join(runs.OUT_DIR, "ablation"), help="where the study goes")
    add_choices(
        parser,
        "--optimizers",
        STUDY_OPTIMIZERS,
        "optimizers of the grid (sgd-momentum: SGD with momentum 0.9, the SENet paper's)",
    )
    parser.add_argument(
        "--reductions",
        nargs="+",
        type=whole_number,
        default=[1, 2, 4, 8, 16],
        help="reduction ratios of the sweep",
    )
    add_choices(parser, "--squeezes", SQUEEZES, "squeezes of the sweep")
    add_choices(parser, "--gates", GATES, "excitation gates of the sweep")
    add_choices(parser, "--positions", SE_POSITIONS, "SE positions of the sweep")
    text = "excitations of the sweep: dense (the assignment's), conv1d (ECA-Net), fixed (a trained gain per channel)"
    add_choices(parser, "--excitations", EXCITATIONS, text)
    add_choices(
        parser, "--se-biases", ("off", "on"), "the sweep of biases in the block's Dense layers (off: the assignment's)"
    )
    add_axis(
        parser,
        "--sgd-lrs",
        DECLARED_SGD_LRS,
        "the learning-rate grid: SE and no SE with SGD and momentum 0.9 at these learning rates",
        type=positive_float,
    )
    add_axis(
        parser,
        "--scale-controls",
        DECLARED_CONTROLS,
        "with plain SGD and SGD with momentum: the trained fixed gain and SE with --gate-scale 2",
        choices=DECLARED_CONTROLS,
    )
    add_axis(
        parser,
        "--train-sizes",
        DECLARED_TRAIN_SIZES,
        "SE and no SE with Adam and SGD with momentum on class-balanced training sets of these sizes, each with "
        "the steps of a run on every image",
        type=positive_int,
    )
    parser.add_argument(
        "--train-samples", type=positive_int, default=None, help="first N training images only (default: all)"
    )
    parser.add_argument(
        "--test-samples", type=positive_int, default=None, help="first N test images only (default: all)"
    )
    parser.add_argument(
        "--conv1-reduction",
        type=whole_number,
        default=Settings.conv1_reduction,
        help="the reduction of the block after conv1 in the position sweep (6 // r hidden units)",
    )
    parser.add_argument(
        "--threads", type=whole_number, default=Settings.threads, help="TensorFlow's threads per run (a setting)"
    )
    cores = machine.available_cores()
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=cores,
        help=f"runs trained at once, each in a worker process (default: {cores}, the cores this process may use)",
    )
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        default=None,
        help="run on a Ray cluster at ADDRESS (local: start one here), one CPU per run; needs requirements-ray.txt",
    )
    return parser
