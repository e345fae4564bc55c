"""benchmarks/bench_train.py runs and reports every measurement (no speed is asserted here)."""

import json

import pytest

from helpers import run_script

# The benchmark runs and reports every figure, on a small slice; speeds are not asserted: the benchmark itself is
# a script a reader runs (docs/speed.md).
pytestmark = pytest.mark.runs


def test_benchmark_reports_every_cap(tmp_path, synthetic_mnist_dir):
    report = tmp_path / "benchmark.json"
    args = ["--epochs", "2", "--rounds", "1", "--train-samples", "500", "--json", report]
    result = run_script("benchmarks/bench_train.py", *args, env={"MNIST_DIR": synthetic_mnist_dir}, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(report.read_text())
    assert list(data["caps"]) == ["AVX2", "DEFAULT", "AVX", "SSE41"] and data["caps"]["AVX2"]["ratio_to_avx2"] == 1
    assert data["caps"]["AVX2"]["onednn"] == "Intel AVX2" and data["caps"]["SSE41"]["onednn"] == "Intel SSE4.1"
    assert all(len(cap["epoch_seconds"]) == 1 and cap["epoch_seconds"][0] > 0 for cap in data["caps"].values())
    assert data["visualize_seconds"] > 0 and "| SSE41 | Intel SSE4.1 |" in result.stdout
