"""Figures a chapter quotes from a benchmark's stored results agree with the results file."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Chapter 3's short names for the rows of benchmarks/results/predict_cpu.md it quotes (tile 512).
MODELS = {"UNet, padded": "UNet(base_channels=16, padding='same')", "smp.Unet(resnet18)": "smp.Unet(resnet18)"}
METHODS = {"`predict_tiled`, default": "`predict_tiled` default (tile 512)",
           "MONAI, overlap 0.25": "MONAI, tile 512, overlap 0.25", "MONAI, overlap 0.5": "MONAI, tile 512, overlap 0.5"}


def _table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_chapter_3_quotes_the_prediction_benchmark_as_stored():
    notebook = json.loads((ROOT / "book" / "03_unet_architecture.ipynb").read_text())
    prose = next("".join(cell["source"]) for cell in notebook["cells"]
                 if cell["cell_type"] == "markdown" and "| model | method | time vs MONAI" in "".join(cell["source"]))
    quoted = _table_rows(prose, "| model | method | time vs MONAI")
    stored = {(row[0], row[1]): row for row in _table_rows(
        (ROOT / "benchmarks" / "results" / "predict_cpu.md").read_text(), "| model | method | time |")}
    assert len(quoted) == 6
    for model, method, ratio, mean_difference, flips in quoted:
        row = stored[MODELS[model], METHODS[method]]
        assert (ratio, mean_difference, flips) == (row[3], row[4], row[6]), (model, method)
