"""A run's settings: one frozen dataclass whose defaults are the assignment's.

run.json stores them as a dict (`asdict`); `Settings.from_dict` reads one back
and says in one line what is wrong with it.
"""

import dataclasses
import math
import numbers

LEARNING_RATES = {"adam": 0.001, "sgd": 0.01}  # the assignment's learning rate per optimizer
# The study's optimizers: name -> (optimizer, momentum). SGD with momentum 0.9 is the SENet paper's.
STUDY_OPTIMIZERS = {"adam": ("adam", 0.0), "sgd": ("sgd", 0.0), "sgd-momentum": ("sgd", 0.9)}
NUM_CLASSES = 10  # the digits: the model's last layer has one unit per class
CONV1_FILTERS = 6
CONV2_FILTERS = 16  # channels the assignment's SE block recalibrates
SE_POSITIONS = {"conv2": ("conv2",), "conv1": ("conv1",), "both": ("conv1", "conv2")}  # -> SE blocks, in depth order
SQUEEZES = ("avg", "max")  # global average or global max pooling
GATES = ("sigmoid", "tanh", "relu")  # the excitation's nonlinearity
# What turns the squeezed vector into the excitation: the assignment's two Dense layers; ECA-Net's 1-D
# convolution across the channels ("Conv1D or Dense", the assignment says); or one trained number per
# channel that ignores the image, the null model for "SE is a fixed gain".
EXCITATIONS = ("dense", "conv1d", "fixed")


BLOCK_CHANNELS = {"conv1": CONV1_FILTERS, "conv2": CONV2_FILTERS}


def block_suffix(block):
    """How a block's files and tags are told apart: "" for the assignment's block after conv2 (its names are
    the assignment's: se_features/, excitation), "_conv1" for the one after conv1."""
    return "" if block == "conv2" else f"_{block}"


def block_where(block):
    """ " after conv1" for the block after conv1, "" for the assignment's: for titles and labels."""
    return "" if block == "conv2" else f" after {block}"


class SettingsError(ValueError):
    """Settings that no run can have: reported as one line, exit code 2."""


def eca_kernel_size(channels, gamma=2, b=1):
    """ECA-Net's kernel size for `channels`: |log2(C) / gamma + b / gamma| made odd (3 for 16 channels, 1 for 6)."""
    t = int(abs(math.log2(channels) / gamma + b / gamma))
    return t if t % 2 else t + 1


def se_hidden_units(reduction, channels=CONV2_FILTERS):
    """Units of the SE bottleneck; ValueError if `reduction` leaves none."""
    if isinstance(reduction, bool) or not isinstance(reduction, numbers.Integral) or reduction < 1:
        raise ValueError(f"SE reduction must be a positive integer, got {reduction!r}")
    if channels // reduction < 1:
        raise ValueError(
            f"SE reduction {reduction} leaves no hidden unit for {channels} channels "
            f"({channels} // {reduction} = 0); use a reduction from 1 to {channels}"
        )
    return channels // reduction


@dataclasses.dataclass(frozen=True)
class Settings:
    epochs: int = 10  # passes over the 60,000 training images
    batch_size: int = 100  # images per optimizer step
    optimizer: str = "adam"  # "adam" or "sgd"
    lr: float = None  # learning rate; None: LEARNING_RATES[optimizer]
    momentum: float = 0.0  # SGD's momentum: 0 is the assignment's plain SGD, 0.9 the SENet paper's
    reduction: int = 4  # SE bottleneck: 16 channels -> 16 // 4 hidden units
    se: bool = True  # False: plain LeNet-5, the ablation's baseline
    seed: int = 0  # seeds weights and data order; same seed => same bits
    train_samples: int = None  # train on the first N training images; None: all
    test_samples: int = None  # test on the first N test images; None: all
    se_position: str = "conv2"  # after which convolution(s) an SE block sits: conv2, conv1 or both
    squeeze: str = "avg"  # the squeeze: global "avg" (the paper's) or "max" pooling
    gate: str = "sigmoid"  # the excitation's nonlinearity: sigmoid (the paper's), tanh or relu
    # The block after conv1 (6 channels) has its own reduction: 6 // 2 = 3 hidden units. At the conv2
    # block's 4 it would have one hidden unit, which a ReLU can leave dead (a constant excitation).
    conv1_reduction: int = 2
    excitation: str = "dense"  # the block's excitation: "dense" (the assignment's), "conv1d" (ECA) or "fixed"
    eca_kernel: int = None  # with excitation "conv1d": the 1-D kernel's size (odd); None: ECA's rule per block
    se_bias: bool = False  # biases in the block's Dense layers (or its Conv1D): the assignment has none
    # A constant factor after the gate. The sigmoid starts near 0.5 for every channel, so the block halves
    # conv2's output (and the gradient below it) at the start; 2 starts it near 1, as without a block.
    gate_scale: float = 1.0
    # The study's data-size axis: train on a class-balanced sample of N training images drawn with the seed
    # (so the seed varies the sample too); None: every image (or the first --train-samples).
    train_size: int = None
    # Optimizer steps per epoch, between two evaluations of the test set; None: one pass over the training
    # images. With train_size, the same steps at every size: 600 = one pass over 60,000 at batch 100.
    epoch_steps: int = None
    # TensorFlow's intra-op threads (one inter-op thread). The bits depend on it, so it is a setting and not
    # the machine's core count: 1 gives the same bits on any number of cores. 0: TensorFlow's choice.
    threads: int = 1

    def __post_init__(self):
        if self.optimizer not in LEARNING_RATES:
            raise SettingsError(f"unknown optimizer {self.optimizer!r}; choose adam or sgd")
        if self.lr is None:
            object.__setattr__(self, "lr", LEARNING_RATES[self.optimizer])
        for name in ("epochs", "batch_size", "train_samples", "test_samples", "train_size", "epoch_steps"):
            value = getattr(self, name)
            if value is not None or name in ("epochs", "batch_size"):
                _check_positive_int(name, value)
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not (0 < self.lr < math.inf):
            raise SettingsError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("se", "se_bias"):
            if not isinstance(getattr(self, name), bool):
                raise SettingsError(f"{name} must be true or false, got {getattr(self, name)!r}")
        momentum = self.momentum
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
            raise SettingsError(f"momentum must be a number from 0 to below 1, got {momentum!r}")
        if momentum and self.optimizer != "sgd":
            raise SettingsError(f"momentum is SGD's; {self.optimizer} has its own (momentum must be 0)")
        object.__setattr__(self, "momentum", float(momentum))  # run.json and the checks compare 0 and 0.0 alike
        scale = self.gate_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
            raise SettingsError(f"gate_scale must be a positive number, got {scale!r}")
        object.__setattr__(self, "gate_scale", float(scale))
        if self.train_size is not None:
            if self.train_samples is not None:
                raise SettingsError(
                    "train_size (a class-balanced sample) and train_samples (the first N) exclude each other"
                )
            if self.train_size % NUM_CLASSES:
                raise SettingsError(
                    f"train_size must be a multiple of {NUM_CLASSES} (as many of each digit), got {self.train_size}"
                )
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or not 0 <= self.threads <= 1024:
            raise SettingsError(f"threads must be a whole number from 0 to 1024, got {self.threads!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise SettingsError(f"seed must be a whole number from 0 to 2**32 - 1, got {self.seed!r}")
        choices_of = {"se_position": tuple(SE_POSITIONS), "squeeze": SQUEEZES, "gate": GATES, "excitation": EXCITATIONS}
        for name, choices in choices_of.items():
            if getattr(self, name) not in choices:
                raise SettingsError(f"unknown {name} {getattr(self, name)!r}; choose {', '.join(choices)}")
        if self.eca_kernel is not None:
            kernel = self.eca_kernel
            if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
                raise SettingsError(f"eca_kernel must be an odd positive whole number, got {kernel!r}")
            if self.excitation != "conv1d":
                raise SettingsError("eca_kernel is the Conv1D excitation's kernel: it needs excitation conv1d")
        if self.se_bias and self.excitation == "fixed":
            raise SettingsError("se_bias: the fixed gain has no layer that takes the image, so no bias to add")
        if self.excitation != "dense":
            return  # no bottleneck: the reduction is not used
        try:
            for block in self.se_blocks or ("conv2",):
                se_hidden_units(self.block_reduction(block), BLOCK_CHANNELS[block])
        except ValueError as e:
            raise SettingsError(f"{e} (the block after {block})") from e

    @classmethod
    def from_dict(cls, values):
        """Settings from run.json's dict: every field, nothing else, each of the right type."""
        if not isinstance(values, dict):
            raise SettingsError(f"settings must be an object, got {type(values).__name__}")
        names = [field.name for field in dataclasses.fields(cls)]
        values = {**later_settings(values), **values}
        unknown = sorted(set(values) - set(names))
        missing = [name for name in names if name not in values]
        if unknown or missing:
            problems = [f"unknown {', '.join(unknown)}"] if unknown else []
            problems += [f"missing {', '.join(missing)}"] if missing else []
            raise SettingsError(f"settings: {'; '.join(problems)}")
        if values["lr"] is None:
            raise SettingsError("lr must be a positive number, got None")
        return cls(**values)

    def as_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def the_assignments_block(cls):
        """The assignment's SE block: its position, squeeze, gate, Dense excitation without biases (the defaults)."""
        return {name: getattr(cls, name) for name in ("se_position", "squeeze", "gate", "excitation", "se_bias")}

    def block_reduction(self, block):
        """The reduction of the SE block after `block` ("conv1" or "conv2")."""
        return self.conv1_reduction if block == "conv1" else self.reduction

    def steps_per_epoch(self, train_images):
        """Optimizer steps in each epoch of a run on `train_images` images."""
        return self.epoch_steps or ceil_div(train_images, self.batch_size)

    @property
    def model_name(self):
        return "SELeNet" if self.se else "LeNet5"

    @property
    def se_blocks(self):
        """The convolutions followed by an SE block, in depth order: () without SE."""
        return SE_POSITIONS[self.se_position] if self.se else ()


def ceil_div(n, d):
    """n / d rounded up: the batches that hold n images, d to a batch."""
    return -(-n // d)


def _check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SettingsError(f"{name} must be a positive whole number, got {value!r}")


def later_settings(values):
    """The settings a run.json from before they existed had: the assignment's block; the block after conv1
    with the shared reduction; TensorFlow's own thread count (0: one per core); plain SGD; the Dense
    excitation without biases, unscaled; every training image, one pass per epoch."""
    return {
        **Settings.the_assignments_block(),
        "conv1_reduction": values.get("reduction"),
        "threads": 0,
        "momentum": Settings.momentum,
        "eca_kernel": Settings.eca_kernel,
        "gate_scale": Settings.gate_scale,
        "train_size": Settings.train_size,
        "epoch_steps": Settings.epoch_steps,
    }
