"""The benchmark scripts run (in their tiny smoke mode) so they cannot rot."""

import subprocess
import sys
from pathlib import Path

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
