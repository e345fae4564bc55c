"""benchmarks/bench_train.py runs and reports every measurement (no speed is asserted here)."""

import json

import pytest

from helpers import run_script

# Each benchmark script runs and reports every figure, on a small slice; speeds are not asserted, nor its
# own arithmetic: the benchmarks themselves are scripts a reader runs (docs/speed.md).
pytestmark = pytest.mark.runs

TRAIN_FIGURES = ["python senet_lenet.py", "python visualize.py"]
TRAIN_FIGURES += ["training loop (ours)", "model.fit, steps_per_execution=50", "model.fit, plain"]
TRAIN_FIGURES += ["model.fit, steps_per_execution=50 ÷ loop", "model.fit, plain ÷ loop"]


def test_benchmark_reports_every_measurement(tmp_path, synthetic_mnist_dir):
    report = tmp_path / "benchmark.json"
    args = ["--epochs", "2", "--train-samples", "500", "--test-samples", "200", "--json", report]
    result = run_script("benchmarks/bench_train.py", *args, env={"MNIST_DIR": synthetic_mnist_dir}, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in result.stdout.splitlines() if line.startswith("| ")}
    assert [name for name in TRAIN_FIGURES if name not in rows] == []
    data = json.loads(report.read_text())
    for side in ("loop", "fit_steps_per_execution", "fit"):
        assert len(data[side]["epoch_seconds"]) == 2 and data[side]["images_per_second"] > 0
        assert data[side]["test_accuracy"] > 20  # trained on the slice: above chance (10 %)
    for script in ("train_script", "visualize_script"):
        assert data[script]["seconds"] > 0 and 0.05 < data[script]["peak_rss_gb"] < 24
    assert data["versions"]["tensorflow"] and data["machine"]["cpu"]
