"""benchmarks/smoke_margins.py: it records every comparison of every assert, offsets the seeds, never stops a run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from smoke_margins import instrument, summarise, table  # noqa: E402


def _code(source: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": source}


def test_instrument_records_each_comparison_instead_of_raising():
    source = "x = 0.3\nassert x > 0.5 and 0 < x <= 1, 'message'\nassert all(v >= 0.2 for v in [x, 0.1])\nassert x\n"
    namespace: dict = {"records": []}
    exec("def _margin_write(*args): records.append(args)\n"
         "def _margin_all(cell, line, text, pairs, op):\n"
         "    for left, right in pairs: records.append((cell, line, text, left, op, right))\n", namespace)
    exec(instrument(source, 7), namespace)  # the failing asserts no longer raise
    texts = [(text, op, left, right) for _, _, text, left, op, right in namespace["records"]]
    assert texts == [("x > 0.5", ">", 0.3, 0.5), ("0 < x", ">", 0.3, 0), ("x <= 1", "<=", 0.3, 1),
                     ("all(v >= 0.2 for v in [x, 0.1])", ">=", 0.3, 0.2),
                     ("all(v >= 0.2 for v in [x, 0.1])", ">=", 0.1, 0.2), ("x", "bool", 0.3, None)]
    assert all(record[0] == 7 for record in namespace["records"])
    assert instrument("x = 1\n", 0) is None and instrument("%pip install x\nassert True\n", 0) is None


def test_summary_takes_the_worst_run_and_the_spread():
    record = {"cell": 3, "line": 1, "text": "a > b", "op": ">", "right": 0.5}
    runs = {("nb", 1, 0): [dict(record, left=0.6, margin=0.1, held=True)],
            ("nb", 2, 0): [dict(record, left=0.52, margin=0.02, held=True)],
            ("nb", 1, 1): [dict(record, left=0.45, margin=-0.05, held=False)]}
    (row,) = summarise(runs)
    assert row["worst value"] == 0.45 and row["worst margin"] == -0.05 and not row["held in every run"]
    assert row["spread"] == pytest.approx(0.15) and row["worst run"] == "threads 1, seed +1"
    assert "**fails** (threads 1, seed +1)" in table([row])
    runs[("nb", 1, 1)] = [dict(record, left=0.58, margin=0.08, held=True)]
    (row,) = summarise(runs)
    assert "holds, margin below its spread" in table([row])  # 0.02 worst margin, 0.08 spread


@pytest.mark.slow
def test_the_tool_runs_a_notebook_under_seeds_and_threads(tmp_path):
    notebook = {"cells": [_code("import torch"),
                          _code("from unet_course import seed_everything\nseed_everything(5)\n"
                                "value = torch.rand(()).item()"),
                          _code("assert value > 2.0, 'never holds'\nassert 0 < value < 1"),
                          _code("after = True\nassert after")],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "tiny.ipynb"
    path.write_text(json.dumps(notebook))
    out = tmp_path / "margins.md"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "smoke_margins.py"), str(path),
                             "--threads", "1", "--seeds", "0", "1", "--out", str(out)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    records = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    values = {record["seed"]: record["left"] for record in records if record["text"] == "value > 2.0"}
    assert set(values) == {0, 1} and values[0] != values[1]  # the offset reached seed_everything
    assert all(0 < value < 1 for value in values.values())
    assert [record["held"] for record in records if record["text"] == "after"] == [True, True]  # ran on after a failure
    assert "**fails**" in out.read_text() and "`0 < value`" in out.read_text()
    rerun = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "smoke_margins.py"), str(path), "--out", str(out)],
                           capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 2 and "exists" in rerun.stderr  # never overwrites an earlier table
