"""The benchmark scripts run (in their tiny smoke mode) so they cannot rot."""

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def test_weight_map_benchmark_smoke():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_weight_map.py"), "--smoke"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "| " in result.stdout and "ours" in result.stdout


def test_train_step_benchmark_smoke():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train_step.py"), "--smoke"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "UNet(base_channels=4) valid" in result.stdout and "wrote" not in result.stdout
    assert "streamed, `num_workers=2`" in result.stdout and "| bf16 | yes | no |" in result.stdout


def test_streaming_memory_benchmark_smoke():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_streaming_memory.py"), "--smoke"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "streamed (`num_workers=1`)" in result.stdout and "in memory" in result.stdout
    assert "wrote" not in result.stdout


def test_predict_benchmark_smoke():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_predict.py"), "--smoke"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "MONAI, tile 64, overlap 0.25" in result.stdout and "`predict_tiled` default" in result.stdout
    assert "time per megapixel" in result.stdout and "wrote" not in result.stdout


def test_cpu_budget_sweep_smoke(isbi_root):
    """The script behind the cpu budget trains, calibrates on training slices and scores held-out ones."""
    import json
    import os

    env = {**os.environ, "UNET_COURSE_DATA": str(isbi_root.parent)}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sweep_cpu_budget.py"), "--smoke"],
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert row["steps"] == 2 and 0 < row["threshold"] < 1
    assert 0 <= row["best_pixel"] <= row["pixel_at_threshold"] <= 1 and 0 <= row["best_rand"] <= row["rand_at_threshold"]


def test_reports_are_written_whole_and_name_the_machine(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import machine

    report = tmp_path / "results" / "table.md"
    machine.write_report(report, "# a table\n")
    assert report.read_text() == "# a table\n" and list(report.parent.iterdir()) == [report]  # no partial left
    assert machine.cpu_name() and machine.cores() >= 1
    assert machine.versions("numpy") == f"numpy {np.__version__}"
