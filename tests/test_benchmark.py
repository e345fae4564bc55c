"""benchmarks/bench_train.py runs and reports every measurement (no speed is asserted here)."""

import json
import os

import pytest

from helpers import run_script

pytestmark = pytest.mark.e2e


def test_benchmark_reports_every_measurement(tmp_path, mnist_dir):
    report = tmp_path / "benchmark.json"
    result = run_script(
        "benchmarks/bench_train.py", "--epochs", "2", "--json", report, env={"MNIST_DIR": mnist_dir}, timeout=1200
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| model.fit, steps_per_execution=50 ÷ loop |" in result.stdout
    data = json.loads(report.read_text())
    for side in ("loop", "fit_steps_per_execution", "fit"):
        assert len(data[side]["epoch_seconds"]) == 2
        assert data[side]["images_per_second"] == pytest.approx(60000 / data[side]["steady_epoch_seconds"])
        assert data[side]["test_accuracy"] > 97  # both really trained the model
    for side in ("fit_steps_per_execution", "fit"):
        ratio = data[side]["steady_epoch_seconds"] / data["loop"]["steady_epoch_seconds"]
        assert data[f"{side}_vs_loop"] == pytest.approx(ratio)
    for script in ("train_script", "visualize_script"):
        assert data[script]["seconds"] > 0 and 0.05 < data[script]["peak_rss_gb"] < 24
    assert data["machine"]["cpus"] >= 1
    slice_ = data["study_slice"]
    for workers in (1, 2):
        assert slice_[f"workers_{workers}"]["seconds"] > 0
        assert 0.05 < slice_[f"workers_{workers}"]["peak_rss_gb_all_processes"] < 24
    assert slice_["speedup_2_workers"] == pytest.approx(slice_["workers_1"]["seconds"] / slice_["workers_2"]["seconds"])
    assert "| study slice: 1 ÷ 2 workers |" in result.stdout


def test_heatmap_benchmark_reports_every_variant(tmp_path):
    report = tmp_path / "heatmaps.json"
    result = run_script("benchmarks/bench_heatmaps.py", "--rounds", "1", "--json", report, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    variants = json.loads(report.read_text())["variants"]
    plain = variants["one figure, set_data + savefig"]["median"]
    assert len(variants) == (4 if os.cpu_count() > 1 else 3)
    for name, row in variants.items():
        assert row["median"] > 0 and row["vs_plain"] == pytest.approx(row["median"] / plain), name
        assert f"| {name} | " in result.stdout
