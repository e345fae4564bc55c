"""Benchmark: what the instruction-set cap costs, and how long the two scripts take, on this machine.

    python benchmarks/bench_train.py [--data-dir DIR] [--epochs E] [--rounds R]

In one invocation, `python senet_lenet.py --epochs E` under each oneDNN cap (--isa AVX2, the default; DEFAULT,
no cap: AVX-512 where the CPU has it; AVX; SSE41), R rounds alternating between them so that a drift of the
machine's speed reaches every cap alike, then `python visualize.py` on the AVX2 run. A run's speed is the median
seconds per epoch after the first (which includes tracing), read from its run.json; each cap's figure is the
median over the rounds, and its ratio to AVX2's. Prints a table and writes it as JSON (--json).
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
CAPS = ("AVX2", "DEFAULT", "AVX", "SSE41")


def run(args, env):
    """Runs one of the project's scripts; its wall seconds (exit 2 with its last lines if it fails)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_train.py: {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(prog="bench_train.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="the MNIST folder (default: $MNIST_DIR)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run, at least 2 (the first traces)")
    parser.add_argument("--rounds", type=int, default=2, help="runs under each cap, alternating")
    parser.add_argument("--train-samples", type=int, help="a slice: the first N training images")
    parser.add_argument("--json", default=os.path.join(ROOT, "outputs", "benchmark.json"), help="the report")
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.rounds < 1:
        parser.error("--epochs must be at least 2 and --rounds at least 1")
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    env |= {"MNIST_DIR": args.data_dir} if args.data_dir else {}
    common = ["--epochs", str(args.epochs), *(["--train-samples", str(args.train_samples)] * bool(args.train_samples))]
    epochs, reported, report = {cap: [] for cap in CAPS}, {}, {}
    with tempfile.TemporaryDirectory() as out:
        for round_ in range(args.rounds):
            for cap in CAPS:
                folder = os.path.join(out, f"{cap}-{round_}")
                print(f"round {round_ + 1}: python senet_lenet.py --isa {cap} ...", flush=True)
                run(["senet_lenet.py", *common, "--isa", cap, "--out-dir", folder], env)
                with open(os.path.join(folder, "run.json"), encoding="utf-8") as f:
                    record = json.load(f)
                epochs[cap].append(statistics.median(r["seconds"] for r in record["history"][1:]))
                reported[cap] = record["machine"]["isa"]["onednn"]
        print("python visualize.py ...", flush=True)
        report["visualize_seconds"] = run(["visualize.py", "--run-dir", os.path.join(out, "AVX2-0")], env)
    report |= {"cpu": record["machine"]["cpu"], "versions": record["versions"], "epochs": args.epochs}
    base = statistics.median(epochs["AVX2"])
    report["caps"] = {
        cap: {"onednn": reported[cap], "epoch_seconds": seconds, "ratio_to_avx2": statistics.median(seconds) / base}
        for cap, seconds in epochs.items()
    }
    print(f"\n{report['cpu']}, TensorFlow {report['versions']['tensorflow']}, one thread, {args.rounds} rounds")
    print("| --isa | oneDNN reported | seconds per epoch (median of rounds) | ÷ AVX2 |\n| --- | --- | --- | --- |")
    for cap, row in report["caps"].items():
        seconds = statistics.median(row["epoch_seconds"])
        print(f"| {cap} | {row['onednn']} | {seconds:.2f} | {row['ratio_to_avx2']:.2f} |")
    print(f"python visualize.py: {report['visualize_seconds']:.1f} s")
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json + ".tmp", "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
    os.replace(args.json + ".tmp", args.json)  # whole or absent
    print(f"Wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
