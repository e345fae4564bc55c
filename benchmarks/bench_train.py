"""Benchmark: SE-LeNet's training loop against model.fit, and the two scripts end to end.

    python benchmarks/bench_train.py [--data-dir DIR] [--epochs E]

In one invocation, on this machine:
  1. the project's training loop (senet_lenet.train), Adam, batch 100, E epochs;
  2. the same model, data, batch size, optimizer and epochs with model.fit, first with
     steps_per_execution equal to the loop's steps per call (the fair comparison), then plain;
  3. `python senet_lenet.py` (the default 10-epoch job) and `python visualize.py`
     on its output, each as a subprocess: wall time and peak resident memory;
Both 1 and 2 evaluate the 10,000 test images after every epoch, so an epoch is
the same work on both sides; throughput is training images per second of the
median epoch after the first (which includes tracing).
Prints a table and writes it as JSON to outputs/benchmark.json.

The scripts are measured first, before this process imports TensorFlow: a
child's peak RSS counts the pages it shared with this process before exec.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def steady_epoch_seconds(seconds):
    """Median epoch time after the first epoch (tracing); the only one if there is just one."""
    return statistics.median(seconds[1:] or seconds)


def bench_loop(settings, train_data, test_data):
    import senet_lenet

    model = senet_lenet.seeded_model(settings)
    optimizer = senet_lenet.make_optimizer(settings, model)
    data = train_data, test_data
    history = senet_lenet.train(model, optimizer, settings, data, log=lambda line: None, bar=False)
    return [record["seconds"] for record in history], history[-1]["test_accuracy"]


def bench_fit(settings, train_data, test_data, steps_per_execution=1):
    """What a Keras user would write: the predictions head of the same model, compile, fit.
    steps_per_execution: training steps per call of Keras's compiled function (ours runs STEPS_PER_CALL)."""
    import keras

    import senet_lenet
    from senet_lenet import EVAL_BATCH_SIZE  # TensorFlow: not on top, so that --help answers at once

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    model = senet_lenet.seeded_model(settings)
    classifier = keras.Model(model.inputs, model.outputs[0])
    classifier.compile(
        optimizer=keras.optimizers.Adam(settings["lr"]),
        steps_per_execution=steps_per_execution,
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    fit = classifier.fit(
        train_data[0],
        train_data[1],
        batch_size=settings["batch_size"],
        epochs=settings["epochs"],
        shuffle=True,
        validation_data=(test_data[0], test_data[1]),
        validation_batch_size=EVAL_BATCH_SIZE,
        callbacks=[timer],
        verbose=0,
    )
    return timer.seconds, 100 * fit.history["val_accuracy"][-1]


def run_measured(args, env):
    """Runs a command; returns (wall seconds, peak RSS in GB) of that process alone."""
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    stderr = process.stderr.read().decode(errors="replace")
    if process.returncode != 0:
        print(f"bench_train.py: {' '.join(args[1:])} failed ({process.returncode}): {stderr[-2000:]}", file=sys.stderr)
        sys.exit(2)
    return seconds, usage.ru_maxrss / 1024**2  # ru_maxrss is in KiB on Linux


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench_train.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="the MNIST folder (default: $MNIST_DIR)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs for the loop and for model.fit (at least 2)")
    parser.add_argument("--json", default=os.path.join(ROOT, "outputs", "benchmark.json"), help="where the JSON goes")
    parser.add_argument("--train-samples", type=int, default=None, help="a slice: the first N training images")
    parser.add_argument("--test-samples", type=int, default=None, help="a slice: the first N test images")
    args = parser.parse_args(argv)
    samples = [f"--{kind}-samples={n}" for kind, n in (("train", args.train_samples), ("test", args.test_samples)) if n]
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the first epoch includes tracing")

    env = dict(os.environ)
    if args.data_dir:
        env["MNIST_DIR"] = args.data_dir
    with tempfile.TemporaryDirectory() as out_dir:
        print("python senet_lenet.py (10 epochs) ...", flush=True)
        train_wall, train_rss = run_measured([sys.executable, "senet_lenet.py", *samples, "--out-dir", out_dir], env)
        print("python visualize.py ...", flush=True)
        visualize_wall, visualize_rss = run_measured([sys.executable, "visualize.py", "--run-dir", out_dir], env)

    import senet_lenet  # TensorFlow from here on

    tf = senet_lenet.tf
    try:
        train_data, test_data = senet_lenet.load_mnist(args.data_dir)
    except senet_lenet.UsageError as e:
        parser.error(str(e))
    train_data, test_data = (
        senet_lenet.first(train_data, args.train_samples),
        senet_lenet.first(test_data, args.test_samples),
    )
    settings = senet_lenet.settings_of(
        senet_lenet.parser().parse_args(["--epochs", str(args.epochs)])
    )  # the assignment's
    images = len(train_data[1])
    per_call = senet_lenet.STEPS_PER_CALL
    sides = {  # name -> (what, measure)
        "loop": ("training loop (ours)", lambda: bench_loop(settings, train_data, test_data)),
        "fit_steps_per_execution": (
            f"model.fit, steps_per_execution={per_call}",
            lambda: bench_fit(settings, train_data, test_data, per_call),
        ),
        "fit": ("model.fit, plain", lambda: bench_fit(settings, train_data, test_data)),
    }
    measured = {}
    for name, (what, measure) in sides.items():
        print(f"{what}, {args.epochs} epochs ...", flush=True)
        seconds, accuracy = measure()
        steady = steady_epoch_seconds(seconds)
        measured[name] = {
            "epoch_seconds": seconds,
            "steady_epoch_seconds": steady,
            "images_per_second": images / steady,
            "test_accuracy": accuracy,
        }
    loop_epoch = measured["loop"]["steady_epoch_seconds"]
    result = {
        **senet_lenet.machine(),
        "epochs": args.epochs,
        **measured,
        "fit_steps_per_execution_vs_loop": measured["fit_steps_per_execution"]["steady_epoch_seconds"] / loop_epoch,
        "fit_vs_loop": measured["fit"]["steady_epoch_seconds"] / loop_epoch,
        "train_script": {"seconds": train_wall, "peak_rss_gb": train_rss},
        "visualize_script": {"seconds": visualize_wall, "peak_rss_gb": visualize_rss},
    }
    rows = [
        (sides[name][0], f"{m['images_per_second']:,.0f} img/s", f"{m['steady_epoch_seconds']:.2f} s/epoch")
        for name, m in measured.items()
    ]
    rows += [
        (f"model.fit, steps_per_execution={per_call} ÷ loop", f"{result['fit_steps_per_execution_vs_loop']:.2f} ×", ""),
        ("model.fit, plain ÷ loop", f"{result['fit_vs_loop']:.2f} ×", ""),
        ("python senet_lenet.py", f"{train_wall:.1f} s", f"{train_rss:.2f} GB peak RSS"),
        ("python visualize.py", f"{visualize_wall:.1f} s", f"{visualize_rss:.2f} GB peak RSS"),
    ]
    print(f"\n{result['machine']['cpu']}, {result['machine']['cpus']} cores, TensorFlow {tf.__version__}")
    print("| what | speed | time |\n| --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    senet_lenet.write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
