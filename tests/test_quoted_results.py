"""Figures a chapter quotes from a benchmark's stored results agree with the results file."""

from __future__ import annotations

import json
import re
from pathlib import Path

from conftest import stored_outputs, table_rows

ROOT = Path(__file__).resolve().parents[1]

# Chapter 3's short names for the rows of benchmarks/results/predict_cpu.md it quotes (tile 512).
MODELS = {"UNet, padded": "UNet(base_channels=16, padding='same')", "smp.Unet(resnet18)": "smp.Unet(resnet18)"}
METHODS = {"`predict_tiled`, default": "`predict_tiled` default (tile 512)",
           "MONAI, overlap 0.25": "MONAI, tile 512, overlap 0.25", "MONAI, overlap 0.5": "MONAI, tile 512, overlap 0.5"}


def test_chapter_3_quotes_the_prediction_benchmark_as_stored():
    notebook = json.loads((ROOT / "book" / "03_unet_architecture.ipynb").read_text())
    prose = next("".join(cell["source"]) for cell in notebook["cells"]
                 if cell["cell_type"] == "markdown" and "| model | method | time vs MONAI" in "".join(cell["source"]))
    quoted = table_rows(prose, "| model | method | time vs MONAI")
    stored = {(row[0], row[1]): row for row in table_rows(
        (ROOT / "benchmarks" / "results" / "predict_cpu.md").read_text(), "| model | method | time |")}
    assert len(quoted) == 6
    for model, method, ratio, mean_difference, flips in quoted:
        row = stored[MODELS[model], METHODS[method]]
        assert (ratio, mean_difference, flips) == (row[3], row[4], row[6]), (model, method)


def test_chapter_6_quotes_the_cpu_budget_sweep_as_stored():
    notebook = json.loads((ROOT / "book" / "06_training.ipynb").read_text())
    prose = " ".join(" ".join("".join(cell["source"]).split()) for cell in notebook["cells"]
                     if cell["cell_type"] == "markdown")
    assert "held-out pixel error 0.15 at its best threshold against 0.086" in prose
    stored = {row[0]: row for row in table_rows(
        (ROOT / "benchmarks" / "results" / "cpu_budget_sweep.md").read_text(), "| run | steps |")}
    # best pixel error over thresholds: the doubled peak rate against the constant 0.003 of the same length
    faster, constant = stored["faster peak rate"], stored["constant rate (the gpu budget's schedule)"]
    assert (faster[2], constant[2], faster[1]) == ("0.006", "0.003", constant[1])
    assert (f"{float(faster[8]):.2f}", f"{float(constant[8]):.3f}") == ("0.15", "0.086")


def test_the_conclusion_quotes_chapter_8s_road_iou_as_stored():
    notebook = json.loads((ROOT / "book" / "08_beyond_biomedicine.ipynb").read_text())
    printed = stored_outputs(notebook)
    ours, smp = re.search(r"road \(drivable region\) IoU: .*our UNet ([\d.]+), smp\.Unet ([\d.]+)", printed).groups()
    conclusion = " ".join((ROOT / "book" / "conclusion.md").read_text().split())
    assert f"chapter 8's stored run: road IoU {float(smp):.2f} and {float(ours):.2f}" in conclusion
