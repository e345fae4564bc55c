"""SE-LeNet: a Squeeze-and-Excitation block on LeNet-5, trained on MNIST.

The SE block squeezes each of the 16 feature maps of LeNet's second convolution
to one number (global average pooling), passes the 16 numbers through a small
bottleneck MLP ending in a sigmoid, and rescales each feature map by its
sigmoid output, the "excitation". The model returns the class probabilities
and the 16-dim excitation, so it can be studied (see visualize.py).

    python senet_lenet.py                      # Adam, lr 0.001, batch 100, 10 epochs
    python senet_lenet.py --optimizer sgd      # SGD, lr 0.01
    python senet_lenet.py --data-dir path/to/mnist  # offline: the four MNIST files there

Elsewhere, in selenet/: the data (mnist.py), the settings and their defaults (settings.py), the run
folder (runs.py; what it owns: manifest.py; writing whole files: files.py), checkpoints (checkpoints.py),
TensorBoard logs (tensorboard_logs.py) and the command-line pieces (cli.py, errors.py).
After Ctrl-C, `--resume` continues to the same bits.
"""

import os
import sys
import time

from selenet import cli  # first: it quiets TensorFlow's C++ info lines before TensorFlow loads

if __name__ == "__main__":  # before TensorFlow loads (seconds): Ctrl-C, --help and a bad flag answered at once
    cli.start("senet_lenet.py", cli.train_parser, cli.check_settings)

import keras
import numpy as np
import tensorflow as tf

from selenet import figures, files, locks, runs, signals
from selenet.checkpoints import Checkpoints
from selenet.errors import Diverged, UsageError
from selenet.manifest import Manifest
from selenet.mnist import IMAGE_SIZE, load_mnist, run_data
from selenet.settings import (
    BLOCK_CHANNELS,
    CONV1_FILTERS,
    CONV2_FILTERS,
    EXCITATIONS,
    NUM_CLASSES,
    Settings,
    ceil_div,
    eca_kernel_size,
    se_hidden_units,
)
from selenet.tensorboard_logs import EpochLogs

# Speed knobs that do not change results.
STEPS_PER_CALL = 50  # training steps per tf.function call (and per progress-bar update)
EVAL_BATCH_SIZE = 1000  # test images per test_step call


# ---- Model ---------------------------------------------------------------------


SE_NAMES = {"conv1": "se_conv1", "conv2": "se"}  # each SE block's layer-name prefix (conv2's: the assignment's)
SQUEEZE_LAYERS = {"avg": keras.layers.GlobalAveragePooling2D, "max": keras.layers.GlobalMaxPooling2D}


def se_block(
    x,
    reduction=Settings.reduction,
    name="se",
    squeeze="avg",
    gate="sigmoid",
    excitation="dense",
    bias=False,
    eca_kernel=None,
    given=None,
    gate_scale=1.0,
):
    """Squeeze-and-Excitation on x (N, H, W, C). Returns (scaled x, excitation (N, C)).

    excitation: what turns the squeezed (N, C) into the excitation: "dense", the assignment's bottleneck
    C -> C // reduction -> C; "conv1d", ECA-Net's 1-D convolution across the channels (eca_kernel wide;
    None: ECA's rule); "fixed", one trained number per channel, the same for every image. bias: biases in
    the Dense (or Conv1D) layers. given: an (N, C) tensor to scale by instead of the block's own (to study
    what it does).
    """
    channels = x.shape[-1]
    if squeeze not in SQUEEZE_LAYERS:
        raise ValueError(f"unknown squeeze {squeeze!r}; choose {', '.join(SQUEEZE_LAYERS)}")
    if excitation not in EXCITATIONS:
        raise ValueError(f"unknown excitation {excitation!r}; choose {', '.join(EXCITATIONS)}")
    if given is None:
        given = _excitation(x, reduction, name, squeeze, gate, excitation, bias, eca_kernel)
        if gate_scale != 1:  # (N, C), each in (0, gate_scale) with the sigmoid
            given = keras.layers.Rescaling(gate_scale, name=f"{name}_gate_scale")(given)
    scale = keras.layers.Reshape((1, 1, channels), name=f"{name}_excite")(given)  # (N, 1, 1, C)
    scaled = keras.layers.Multiply(name=f"{name}_scale")([x, scale])  # (N, H, W, C)
    return scaled, given  # the excitation: (N, C), each in (0, 1) with the sigmoid gate


def _excitation(x, reduction, name, squeeze, gate, excitation, bias, eca_kernel):
    channels = x.shape[-1]
    squeezed = SQUEEZE_LAYERS[squeeze](name=f"{name}_squeeze")(x)  # (N, C)
    if excitation == "dense":
        hidden = se_hidden_units(reduction, channels)
        reduced = keras.layers.Dense(hidden, activation="relu", use_bias=bias, name=f"{name}_reduce")(squeezed)
        return keras.layers.Dense(channels, activation=gate, use_bias=bias, name=f"{name}_expand")(reduced)
    if excitation == "conv1d":  # each channel from its eca_kernel neighbours, one kernel shared by all
        sequence = keras.layers.Reshape((channels, 1), name=f"{name}_reshape")(squeezed)  # (N, C, 1)
        kernel = eca_kernel or eca_kernel_size(channels)
        conv = keras.layers.Conv1D(1, kernel, padding="same", activation=gate, use_bias=bias, name=f"{name}_conv1d")
        return keras.layers.Reshape((channels,), name=f"{name}_flatten")(conv(sequence))  # (N, C)
    # fixed: 0 * squeezed + 1, frozen, is a 1 for every image, so that the next layer's C weights are the
    # gains (built-in layers only; the gains get no gradient from the image).
    one = keras.layers.Dense(
        1, kernel_initializer="zeros", bias_initializer="ones", trainable=False, name=f"{name}_one"
    )
    return keras.layers.Dense(channels, activation=gate, use_bias=False, name=f"{name}_gain")(one(squeezed))  # (N, C)


def build_model(settings=None, excitation_inputs=False):
    """LeNet-5 with SE blocks where settings say (the assignment: after conv2).

    Outputs [predictions (N, 10), excitation (N, C) of each SE block in depth order]; without SE,
    plain LeNet-5 (the ablation's baseline): predictions only. excitation_inputs: the model takes
    [image, excitation of each block] and scales by those (its weights come from a trained model).
    """
    settings = settings or Settings()
    layers = keras.layers
    image = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), dtype="uint8", name="image")  # raw MNIST: 0-255
    blocks = settings.se_blocks
    given = {b: keras.Input((BLOCK_CHANNELS[b],), name=f"{SE_NAMES[b]}_given") for b in blocks if excitation_inputs}
    excitations = []

    def se_after(block, x):
        if block not in blocks:
            return x
        x, excitation = se_block(
            x,
            settings.block_reduction(block),
            SE_NAMES[block],
            settings.squeeze,
            settings.gate,
            settings.excitation,
            settings.se_bias,
            settings.eca_kernel,
            given=given.get(block),
            gate_scale=settings.gate_scale,
        )
        excitations.append(excitation)
        return x

    x = layers.Rescaling(1 / 255, name="rescale")(image)  # (N, 28, 28) floats in [0, 1]
    x = layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1), name="add_channel")(x)  # (N, 28, 28, 1)
    x = se_after("conv1", layers.Conv2D(CONV1_FILTERS, 5, activation="relu", name="conv1")(x))  # (N, 24, 24, 6)
    x = layers.MaxPooling2D(2, padding="same", name="pool1")(x)  # (N, 12, 12, 6)
    x = layers.Conv2D(CONV2_FILTERS, 5, activation="relu", name="conv2")(x)  # (N, 8, 8, 16)
    x = se_after("conv2", x)
    x = layers.MaxPooling2D(2, padding="same", name="pool2")(x)  # (N, 4, 4, 16)
    x = layers.Flatten(name="flatten")(x)  # (N, 256)
    x = layers.Dense(120, activation="relu", name="fc1")(x)
    x = layers.Dense(84, activation="relu", name="fc2")(x)
    predictions = layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    name = settings.model_name
    if excitation_inputs:
        return keras.Model([image, *given.values()], predictions, name=f"{name}_given_excitations")
    return keras.Model(image, [predictions, *excitations] if blocks else predictions, name=name)


def forward(model, images, training=False):
    """(predictions, [excitation of each SE block]) of any of the models."""
    outputs = model(images, training=training)
    if isinstance(outputs, (list, tuple)):
        return outputs[0], list(outputs[1:])
    return outputs, []


def use_threads(threads):
    """Runs TensorFlow's ops on `threads` intra-op threads and one inter-op thread (0: TensorFlow's choice).

    TensorFlow takes this only before it runs its first op, so one process trains with one count:
    UsageError if this process already runs with another."""
    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()) == (threads, 1):
        return
    try:
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        running = threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()
        raise UsageError(
            f"TensorFlow already runs ops in this process with {running[0]} intra-op and {running[1]} inter-op "
            f"threads (0: its choice), and takes threads only before its first op; the run's bits need "
            f"{threads} and 1: run the script in a new process (in a notebook: !python senet_lenet.py ...), "
            "or call main() first in a fresh kernel"
        ) from None


def seeded_model(settings):
    """Sets the threads, seeds Python, NumPy and TensorFlow, turns on deterministic ops, builds the model."""
    use_threads(settings.threads)
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()
    return build_model(settings)


# ---- Training ------------------------------------------------------------------


def make_optimizer(settings, model):
    """The optimizer `settings` name, with its state variables built for `model`."""
    if settings.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(settings.lr, momentum=settings.momentum)
    else:
        optimizer = keras.optimizers.Adam(settings.lr)
    optimizer.build(model.trainable_variables)
    return optimizer


def pass_order(seed, pass_number, size):
    """The training-data order of one pass over it (passes count from 1): a function of the seed and the pass only."""
    return np.random.default_rng([seed, pass_number]).permutation(size).astype(np.int32)


def epoch_chunks(seed, epoch, size, batch_size, steps_per_epoch):
    """(first step, last step, images' order) of each tf.function call of an epoch: at most STEPS_PER_CALL
    steps, all in one pass over the training data. The run's steps go pass after pass, each pass in
    pass_order; with one pass an epoch (the default), epoch N is pass N."""
    steps_per_pass = ceil_div(size, batch_size)
    start = (epoch - 1) * steps_per_epoch  # the run's steps before this epoch
    step, end, order = start, start + steps_per_epoch, None
    while step < end:
        done, in_pass = divmod(step, steps_per_pass)
        last = min(step + STEPS_PER_CALL, end, (done + 1) * steps_per_pass)
        if in_pass == 0 or order is None:
            order = pass_order(seed, done + 1, size)
        yield step - start, last - start, order[in_pass * batch_size : (last - done * steps_per_pass) * batch_size]
        step = last


def make_test_step(model, loss_fn, loss_metric, accuracy_metric):
    @tf.function
    def test_step(images, labels):
        predictions, excitations = forward(model, images)
        # Weighted by the batch's size, so that a last, smaller batch counts per image, as Keras counts.
        loss_metric.update_state(loss_fn(labels, predictions), sample_weight=tf.shape(labels)[0])
        accuracy_metric.update_state(labels, predictions)
        return predictions, excitations

    return test_step


def make_train_steps(model, optimizer, loss_fn, loss_metric, accuracy_metric, batch_size):
    """train_steps(images, labels, order): the training steps over the batches `order` picks from the
    whole training set held in memory, in one tf.function call (a step takes milliseconds, so Python's
    per-call overhead would otherwise be a large share of an epoch). Returns whether the loss and every
    weight are still finite numbers, checked on the device."""

    def train_step(images, labels):
        with tf.GradientTape() as tape:
            predictions, _ = forward(model, images, training=True)
            loss = loss_fn(labels, predictions)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        loss_metric.update_state(loss, sample_weight=tf.shape(labels)[0])
        accuracy_metric.update_state(labels, predictions)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.uint8),
            tf.TensorSpec([None], tf.uint8),
            tf.TensorSpec([None], tf.int32),
        ]
    )
    def train_steps(images, labels, order):
        steps = (tf.shape(order)[0] + batch_size - 1) // batch_size
        for step in tf.range(steps):
            batch = order[step * batch_size : (step + 1) * batch_size]
            train_step(tf.gather(images, batch), tf.gather(labels, batch))
        # The loss alone can stay finite while weights overflow: the cross-entropy clips the probabilities.
        finite = [tf.reduce_all(tf.math.is_finite(v)) for v in model.trainable_variables]
        return tf.reduce_all([tf.math.is_finite(loss_metric.result()), *finite])

    return train_steps


def evaluate(test_step, images, labels, batch_size=EVAL_BATCH_SIZE):
    """Runs test_step over the data in order; returns (predictions, [excitations of each SE block]) as NumPy."""
    predictions, excitations = [], []
    for start in range(0, len(images), batch_size):
        p, e = test_step(images[start : start + batch_size], labels[start : start + batch_size])
        predictions.append(p.numpy())
        excitations.append([block.numpy() for block in e])
    return np.concatenate(predictions), [np.concatenate(block) for block in zip(*excitations, strict=True)]


def predictor(model):
    """predict(inputs) -> (predictions (N, 10), [excitations (N, C) of each SE block]) of any of the models, in
    order, as NumPy. inputs: the images (uint8, as MNIST stores them), or a list for a model that takes given
    excitations. Traced once per input shape, however often it is called.

    The bits of model.predict (the same graph, in the same batches) without its tf.data pipeline, most of
    the time of a call on a few hundred images (docs/speed.md; tests/test_model.py compares the two)."""
    step = tf.function(lambda *batch: forward(model, list(batch) if len(batch) > 1 else batch[0]))

    def predict(inputs):
        inputs = inputs if isinstance(inputs, list) else [inputs]
        starts = range(0, len(inputs[0]), EVAL_BATCH_SIZE)
        batches = (step(*(x[i : i + EVAL_BATCH_SIZE] for x in inputs)) for i in starts)
        predictions, excitations = zip(*batches, strict=True)
        return np.concatenate(predictions), [np.concatenate(block) for block in zip(*excitations, strict=True)]

    return predict


def predict(model, inputs):
    """predictor(model)(inputs), for a model predicted once."""
    return predictor(model)(inputs)


def accuracy_percent(predictions, labels):
    """Top-1 accuracy in percent, to 4 decimals (4 decimals hold one test image: 0.01)."""
    return round(100 * float(np.mean(np.argmax(predictions, axis=1) == labels)), 4)


def epoch_record(epoch, train_metrics, test_metrics, seconds):
    """One line of history.csv: (loss, accuracy) metrics of the epoch's training batches and of the test set."""
    (loss, accuracy), (test_loss, test_accuracy) = train_metrics, test_metrics
    return {  # accuracies in percent: 4 decimals hold one test image (0.01)
        "epoch": epoch,
        "loss": round(float(loss.result()), 6),
        "accuracy": round(100 * float(accuracy.result()), 4),
        "test_loss": round(float(test_loss.result()), 6),
        "test_accuracy": round(100 * float(test_accuracy.result()), 4),
        "seconds": round(seconds, 3),
    }


def train(model, optimizer, settings, data, history=(), on_epoch_end=None, stop=None, log=print, progress=True):
    """Trains `model` on data = (train_data, test_data) from the epoch after `history` to settings.epochs;
    returns the history. on_epoch_end(history, test excitations) runs after each epoch; stop.check()
    between chunks of steps; log(line) prints the epoch lines; progress: a progress bar per epoch.
    """
    (train_data, test_data), batch_size = data, settings.batch_size
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    train_metrics = keras.metrics.Mean(name="loss"), keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    test_metrics = keras.metrics.Mean(name="test_loss"), keras.metrics.SparseCategoricalAccuracy(name="test_accuracy")
    train_steps = make_train_steps(model, optimizer, loss_fn, *train_metrics, batch_size)
    test_step = make_test_step(model, loss_fn, *test_metrics)

    x_train, y_train = tf.constant(train_data[0]), tf.constant(train_data[1])  # uint8: 47 MB for all of MNIST
    x_test, y_test = tf.constant(test_data[0]), tf.constant(test_data[1])
    steps_per_epoch = settings.steps_per_epoch(len(train_data[1]))
    history = list(history)
    for epoch in range(len(history) + 1, settings.epochs + 1):
        started = time.perf_counter()
        for metric in (*train_metrics, *test_metrics):
            metric.reset_state()
        progbar = keras.utils.Progbar(steps_per_epoch, verbose=int(progress), stateful_metrics=["loss", "accuracy"])
        chunks = epoch_chunks(settings.seed, epoch, len(train_data[1]), batch_size, steps_per_epoch)
        for _, last_step, order in chunks:
            finite = train_steps(x_train, y_train, order)
            loss = float(train_metrics[0].result())
            if not finite:  # raised before this epoch's checkpoint: the last one saved is finite
                raise Diverged(
                    f"training diverged in epoch {epoch} by step {last_step}: loss {loss:.4g}, and weights or loss "
                    "are no longer finite numbers; lower --lr"
                )
            progbar.update(last_step, [("loss", loss), ("accuracy", float(train_metrics[1].result()))])
            if stop is not None:
                stop.check()
        _, excitations = evaluate(test_step, x_test, y_test)
        history.append(epoch_record(epoch, train_metrics, test_metrics, time.perf_counter() - started))
        record = history[-1]
        log(
            f"Epoch {epoch}, Loss: {record['loss']:.4f}, Accuracy: {record['accuracy']:.2f}, "
            f"Test Loss: {record['test_loss']:.4f}, Test Accuracy: {record['test_accuracy']:.2f}"
        )
        if on_epoch_end is not None:
            on_epoch_end(history, excitations)
    return history


# ---- Saving --------------------------------------------------------------------


def save_run(model, settings, history, out_dir, manifest, train_images, warn=print):
    """Writes every file of a finished run to out_dir, each atomically; returns run.json's contents.

    run.json saying "finished" comes last: a run stopped before it is resumed, and its files redrawn.
    Files drawn from other weights (visualize.py's, recorded with their weights' SHA-256) are removed.
    """
    diagram = figures.diagram_name(model.name)  # .png, or .dot where Graphviz is missing: recorded in run.json
    manifest.claim(*(name for name in runs.run_file_names(settings, diagram) if not name.endswith("/")))
    path = os.path.join(out_dir, runs.WEIGHTS_FILE)
    checksums = {runs.WEIGHTS_FILE: files.write_via_scratch(path, model.save_weights)}
    path = os.path.join(out_dir, runs.MODEL_FILE)
    checksums[runs.MODEL_FILE] = files.write_via_scratch(path, model.save)  # built-in layers: loads anywhere
    files.write_text(os.path.join(out_dir, runs.SUMMARY_FILE), figures.model_summary_text(model))
    figures.save_model_diagram(model, out_dir, diagram, warn=warn)
    manifest.release(*(name for name in runs.diagram_names(settings) if name != diagram))  # drawn before, elsewhere
    curves = figures.plot_training_curves(history, f"{model.name} on MNIST")
    files.save_figure(curves, os.path.join(out_dir, runs.CURVES_FILE))
    weights = checksums[runs.WEIGHTS_FILE]
    stale = manifest.release_all(keep=lambda name, facts: facts.get("weights", weights) == weights)
    if stale:
        warn(f"removed {len(stale)} files in {out_dir} drawn from the run's earlier weights; run visualize.py again")
    run = runs.run_record(model, settings, history, checksums, diagram, train_images)
    runs.save_progress(run, out_dir, manifest)
    return run


def train_run(settings, train_data, test_data, out_dir, resume=False, stop=None, log=print, warn=print, verbose=True):
    """Builds, trains and saves one run as `settings` say, into a writable out_dir that holds no other run
    (runs.make_room_for_a_new_run); returns its run.json contents.

    resume: continue from the newest usable checkpoint in out_dir. stop: a signals.StopOnSignal.
    verbose: print the model summary, and a progress bar per epoch on a terminal.
    """
    model = seeded_model(settings)
    optimizer = make_optimizer(settings, model)
    manifest = Manifest(out_dir, "run")
    checkpoints = Checkpoints(out_dir, model, optimizer, settings, manifest)
    history = []
    if resume:
        history = checkpoints.restore_newest(warn)
        log(f"Resuming {out_dir} after epoch {len(history)} of {settings.epochs}")
    if verbose:
        log(figures.model_summary_text(model).rstrip("\n"))
        steps = settings.steps_per_epoch(len(train_data[1]))
        log(
            f"Training on {len(train_data[1])} images, testing on {len(test_data[1])}: "
            f"{settings.optimizer} lr {settings.lr}, batch {settings.batch_size}, "
            f"{settings.epochs} epochs of {steps} steps, seed {settings.seed}"
        )
    logs = EpochLogs(out_dir, manifest, test_data[1], settings.gate, settings.gate_scale)

    def on_epoch_end(history, excitations):
        logs.write(history[-1], dict(zip(settings.se_blocks, excitations, strict=True)))
        checkpoints.save(history)
        if len(history) < settings.epochs:
            run = runs.run_record(model, settings, history, train_images=len(train_data[1]))
            runs.save_progress(run, out_dir, manifest)

    try:
        data = train_data, test_data
        # Redirected (a log file, CI, nohup), the bar's carriage returns and colours would be noise in the file.
        progress = verbose and sys.stdout.isatty()
        history = train(model, optimizer, settings, data, history, on_epoch_end, stop, log=log, progress=progress)
    finally:
        logs.close()
    return save_run(model, settings, history, out_dir, manifest, len(train_data[1]), warn=warn)


# ---- Command line --------------------------------------------------------------


def main(argv=None):
    cli.printing_never_fails()  # main() called from a notebook or another script skips cli.start
    args = cli.train_parser().parse_args(argv)

    def warn(message):
        print(message, file=sys.stderr)

    try:
        with signals.StopOnSignal() as stop:
            given = cli.given_settings(args)
            settings = Settings(**given)
            files.ensure_writable_dir(args.out_dir)
            with locks.folder_lock(args.out_dir, "senet_lenet.py"):
                Manifest(args.out_dir, "run").remove_temporary_files()
                if args.resume:
                    settings, missing = cli.run_to_resume(args.out_dir, given, log=print)
                    if not missing:
                        print(f"{args.out_dir} already finished all {settings.epochs} epochs: nothing to resume")
                        return 0
                else:
                    runs.make_room_for_a_new_run(args.out_dir, args.overwrite, settings, check_only=True)
                train_data, test_data = load_mnist(args.data_dir)
                train_data, test_data = run_data(train_data, test_data, settings)
                stop.check()
                if not args.resume:  # the data is good: only now is an earlier run replaced
                    runs.make_room_for_a_new_run(args.out_dir, args.overwrite, settings)
                train_run(settings, train_data, test_data, args.out_dir, resume=args.resume, stop=stop, warn=warn)
                stop.check()  # a signal that came while the last files were written: reported, not lost
    except (Exception, KeyboardInterrupt) as e:
        return cli.exit_code(
            "senet_lenet.py", e, lambda signal: runs.interrupted_message("senet_lenet.py", signal, args.out_dir)
        )
    print(f"Saved the run to {args.out_dir}/ (weights, run.json, history.csv, figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
