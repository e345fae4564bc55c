"""SE-LeNet: a Squeeze-and-Excitation block on LeNet-5, trained on MNIST.

The SE block squeezes each of the 16 feature maps of LeNet's second convolution to one number (global
average pooling), passes the 16 numbers through a small bottleneck MLP ending in a sigmoid, and rescales
each feature map by its sigmoid output, the "excitation". The model returns the class probabilities and
the 16-dim excitation, so it can be studied (see visualize.py).

    python senet_lenet.py                      # Adam, lr 0.001, batch 100, 10 epochs
    python senet_lenet.py --optimizer sgd      # SGD, lr 0.01
    python senet_lenet.py --data-dir path/to/mnist  # offline: the four MNIST files there

This file is the assignment: model, training, saving, command line. In selenet/: the data (mnist.py), the
study's other SE blocks (variants.py), settings, seeds and threads (determinism.py), the run folder and its
record (runs.py, manifest.py), checkpoints, TensorBoard logs, figures. Ctrl-C, then `--resume`: the same bits.
"""

import sys
import time

from selenet import cli  # first: it quiets TensorFlow's C++ info lines before TensorFlow loads

if __name__ == "__main__":  # before TensorFlow loads (seconds): Ctrl-C, --help and a bad flag answered at once
    cli.start("senet_lenet.py", cli.train_parser, cli.check_settings)

import keras
import tensorflow as tf
from keras import layers

from selenet import figures, files, locks, runs, signals, variants
from selenet.determinism import make_deterministic
from selenet.errors import Diverged
from selenet.manifest import Manifest
from selenet.mnist import IMAGE_SIZE, epoch_chunks, load_mnist, run_data
from selenet.predict import in_batches, outputs
from selenet.progress import EpochFiles
from selenet.settings import CONV1_FILTERS, CONV2_FILTERS, NUM_CLASSES, Settings, se_hidden_units


# ---- Model ---------------------------------------------------------------------
def se_block(x, reduction=Settings.reduction, name="se", excitation=None):
    """Squeeze-and-Excitation on x (N, H, W, C). Returns (x rescaled per channel, the excitation (N, C)).

    excitation: an (N, C) tensor to rescale by instead of the assignment's (the study's variants)."""
    channels = x.shape[-1]
    if excitation is None:
        hidden = se_hidden_units(reduction, channels)  # ValueError if the reduction leaves no unit
        squeezed = layers.GlobalAveragePooling2D(name=f"{name}_squeeze")(x)  # (N, C)
        reduced = layers.Dense(hidden, activation="relu", use_bias=False, name=f"{name}_reduce")(squeezed)
        expand = layers.Dense(channels, activation="sigmoid", use_bias=False, name=f"{name}_expand")
        excitation = expand(reduced)  # (N, C), each in (0, 1)
    scale = layers.Reshape((1, 1, channels), name=f"{name}_excite")(excitation)  # (N, 1, 1, C)
    return layers.Multiply(name=f"{name}_scale")([x, scale]), excitation  # (N, H, W, C), (N, C)


def build_model(settings=None, excitation_inputs=False):
    """LeNet-5 with the assignment's SE block after conv2: outputs [predictions (N, 10), excitation (N, 16)];
    without SE, plain LeNet-5: predictions only. The study's other blocks, and excitation_inputs (a model that
    takes [image, excitation of each block] and scales by those), come from selenet/variants.py."""
    settings = settings or Settings()
    study_block = variants.is_variant(settings) or excitation_inputs
    blocks = variants.Blocks(settings, se_block, excitation_inputs) if study_block else None

    def se_after(conv, x):  # x and [its excitation], scaled by the block after `conv`, if any
        if blocks is not None:
            return blocks.after(conv, x)
        if conv == "conv2" and settings.se:
            x, excitation = se_block(x, settings.reduction)
            return x, [excitation]
        return x, []

    image = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE), dtype="uint8", name="image")  # raw MNIST: 0-255
    x = layers.Rescaling(1 / 255, name="rescale")(image)  # (N, 28, 28) floats in [0, 1]
    x = layers.Reshape((IMAGE_SIZE, IMAGE_SIZE, 1), name="add_channel")(x)  # (N, 28, 28, 1)
    x, first = se_after("conv1", layers.Conv2D(CONV1_FILTERS, 5, activation="relu", name="conv1")(x))  # 24x24x6
    x = layers.MaxPooling2D(2, padding="same", name="pool1")(x)  # (N, 12, 12, 6)
    x, second = se_after("conv2", layers.Conv2D(CONV2_FILTERS, 5, activation="relu", name="conv2")(x))  # 8x8x16
    x = layers.MaxPooling2D(2, padding="same", name="pool2")(x)  # (N, 4, 4, 16)
    x = layers.Flatten(name="flatten")(x)  # (N, 256)
    x = layers.Dense(120, activation="relu", name="fc1")(x)
    x = layers.Dense(84, activation="relu", name="fc2")(x)
    predictions = layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(x)
    if blocks is not None:
        return blocks.model(image, predictions, first + second)
    excitations = first + second
    return keras.Model(image, [predictions, *excitations] if excitations else predictions, name=settings.model_name)


def seeded_model(settings):
    """The model of `settings`, built after its threads, seeds and deterministic ops are set."""
    make_deterministic(settings)
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


def make_test_step(model, loss_fn, loss_metric, accuracy_metric):
    @tf.function
    def test_step(images, labels):
        predictions, excitations = outputs(model, images)
        # Weighted by the batch's size, so that a last, smaller batch counts per image, as Keras counts.
        loss_metric.update_state(loss_fn(labels, predictions), sample_weight=tf.shape(labels)[0])
        accuracy_metric.update_state(labels, predictions)
        return predictions, excitations

    return test_step


def make_train_steps(model, optimizer, loss_fn, loss_metric, accuracy_metric, batch_size):
    """train_steps(images, labels, order): the steps over the batches `order` picks from the training set in
    memory, in one tf.function call (a step takes milliseconds: Python's per-call overhead would otherwise be
    a large share). Returns whether the loss and every weight are still finite, checked on the device."""

    def train_step(images, labels):
        with tf.GradientTape() as tape:
            predictions, _ = outputs(model, images, training=True)
            loss = loss_fn(labels, predictions)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        loss_metric.update_state(loss, sample_weight=tf.shape(labels)[0])
        accuracy_metric.update_state(labels, predictions)

    images_spec = tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.uint8)

    @tf.function(input_signature=[images_spec, tf.TensorSpec([None], tf.uint8), tf.TensorSpec([None], tf.int32)])
    def train_steps(images, labels, order):
        for step in tf.range((tf.shape(order)[0] + batch_size - 1) // batch_size):
            batch = order[step * batch_size : (step + 1) * batch_size]
            train_step(tf.gather(images, batch), tf.gather(labels, batch))
        # The loss alone can stay finite while weights overflow: the cross-entropy clips the probabilities.
        finite = [tf.reduce_all(tf.math.is_finite(v)) for v in model.trainable_variables]
        return tf.reduce_all([tf.math.is_finite(loss_metric.result()), *finite])

    return train_steps


def train(model, optimizer, settings, data, history=(), on_epoch_end=None, stop=None, log=print, progress=True):
    """Trains `model` on data = (train_data, test_data) from the epoch after `history` to settings.epochs;
    returns the history. on_epoch_end(history, test excitations) runs after each epoch; stop.check()
    between chunks of steps; log(line) prints the epoch lines; progress: a progress bar per epoch."""
    (train_data, test_data), batch_size = data, settings.batch_size
    loss_fn = keras.losses.SparseCategoricalCrossentropy()
    train_metrics = keras.metrics.Mean(name="loss"), keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    test_metrics = keras.metrics.Mean(name="test_loss"), keras.metrics.SparseCategoricalAccuracy(name="test_accuracy")
    train_steps = make_train_steps(model, optimizer, loss_fn, *train_metrics, batch_size)
    test_step = make_test_step(model, loss_fn, *test_metrics)

    x_train, y_train = tf.constant(train_data[0]), tf.constant(train_data[1])  # uint8: 47 MB for all of MNIST
    x_test, y_test = tf.constant(test_data[0]), tf.constant(test_data[1])
    steps_per_epoch, history = settings.steps_per_epoch(len(train_data[1])), list(history)
    for epoch in range(len(history) + 1, settings.epochs + 1):
        started = time.perf_counter()
        for metric in (*train_metrics, *test_metrics):
            metric.reset_state()
        progbar = keras.utils.Progbar(steps_per_epoch, verbose=int(progress), stateful_metrics=["loss", "accuracy"])
        for _, last_step, order in epoch_chunks(settings.seed, epoch, len(y_train), batch_size, steps_per_epoch):
            finite = train_steps(x_train, y_train, order)
            loss = float(train_metrics[0].result())
            if not finite:  # raised before this epoch's checkpoint: the last one saved is finite
                raise Diverged(
                    f"training diverged in epoch {epoch} by step {last_step}: loss {loss:.4g}, and weights "
                    "or loss are no longer finite numbers; lower --lr"
                )
            progbar.update(last_step, [("loss", loss), ("accuracy", float(train_metrics[1].result()))])
            if stop is not None:
                stop.check()
        _, excitations = in_batches(test_step, [x_test, y_test])
        history.append(runs.epoch_record(epoch, train_metrics, test_metrics, time.perf_counter() - started))
        log(runs.epoch_line(history[-1]))  # Epoch 1, Loss: ..., Accuracy: ..., Test Loss: ..., Test Accuracy: ...
        if on_epoch_end is not None:
            on_epoch_end(history, excitations)
    return history


# ---- Saving --------------------------------------------------------------------
def save_run(model, settings, history, folder, train_images, warn=print):
    """Writes every file of a finished run into its folder (a Manifest), each whole; returns run.json's
    contents. run.json saying "finished" comes last: a run stopped before it is resumed, its files redrawn.
    Files drawn from other weights (visualize.py's, recorded with their weights' SHA-256) are removed."""
    diagram = figures.diagram_name(model.name)  # .png, or .dot where Graphviz is missing: recorded in run.json
    folder.check_free(*(name for name in runs.run_file_names(settings, diagram) if not name.endswith("/")))
    checksums = {runs.WEIGHTS_FILE: folder.write_file(runs.WEIGHTS_FILE, model.save_weights)}
    checksums[runs.MODEL_FILE] = folder.write_file(runs.MODEL_FILE, model.save)  # built-in layers: loads anywhere
    folder.write_text(runs.SUMMARY_FILE, figures.model_summary_text(model))
    figures.save_model_diagram(model, folder, diagram, warn=warn)  # and removes one of the other kind
    folder.save_figure(runs.CURVES_FILE, figures.plot_training_curves(history, f"{model.name} on MNIST"))
    runs.remove_what_other_weights_drew(folder, checksums[runs.WEIGHTS_FILE], warn)
    run = runs.run_record(model, settings, history, checksums, diagram, train_images)
    runs.save_progress(run, folder)
    return run


def train_run(settings, train_data, test_data, out_dir, resume=False, stop=None, log=print, warn=print, verbose=True):
    """Builds, trains and saves one run as `settings` say, into a writable out_dir that holds no other run
    (runs.make_room_for_a_new_run); returns its run.json contents. resume: from the newest usable
    checkpoint. stop: a signals.StopOnSignal. verbose: the model summary, and a progress bar on a terminal."""
    model = seeded_model(settings)
    optimizer = make_optimizer(settings, model)
    folder, data = Manifest(out_dir, "run"), (train_data, test_data)
    epoch_files = EpochFiles(folder, model, optimizer, settings, data)  # checkpoint, logs, run.json
    history = epoch_files.restore(warn) if resume else []
    if resume:
        log(f"Resuming {out_dir} after epoch {len(history)} of {settings.epochs}")
    if verbose:
        log(figures.model_summary_text(model).rstrip("\n") + "\n" + runs.describe_training(settings, *data))
    try:  # redirected (a log file, CI, nohup), a progress bar's carriage returns would be noise
        progress = verbose and sys.stdout.isatty()
        history = train(model, optimizer, settings, data, history, epoch_files.save, stop, log, progress)
    finally:
        epoch_files.close()
    return save_run(model, settings, history, folder, len(train_data[1]), warn=warn)


# ---- Command line --------------------------------------------------------------
def main(argv=None):
    cli.printing_never_fails()  # main() called from a notebook or another script skips cli.start
    args = cli.train_parser().parse_args(argv)

    try:
        with signals.StopOnSignal() as stop:
            cli.check_settings(args)  # before anything is written
            files.ensure_writable_dir(args.out_dir)
            with locks.folder_lock(args.out_dir, "senet_lenet.py"):
                settings = cli.settings_for_the_folder(args)  # refused here, before the data loads
                if settings is None:
                    return 0  # --resume of a finished run: nothing to do
                train_data, test_data = run_data(*load_mnist(args.data_dir), settings)
                stop.check()
                if not args.resume:  # the data is good: only now is an earlier run replaced
                    runs.make_room_for_a_new_run(args.out_dir, args.overwrite, settings)
                train_run(settings, train_data, test_data, args.out_dir, resume=args.resume, stop=stop, warn=cli.warn)
                stop.check()  # a signal that came while the last files were written: reported, not lost
    except (Exception, KeyboardInterrupt) as e:
        return cli.exit_code(
            "senet_lenet.py", e, lambda signal: runs.interrupted_message("senet_lenet.py", signal, args.out_dir)
        )
    print(f"Saved the run to {args.out_dir}/ (weights, run.json, history.csv, figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
