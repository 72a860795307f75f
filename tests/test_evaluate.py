"""Evaluating a trained run on ISBI slices: the report's numbers are the metric functions' own, and it is written safely."""

from __future__ import annotations

import csv
import json
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from unet_course import ISBI2012, dice, iou, match_instances, pixel_error, predict_tiled, rand_error, warping_error
from unet_course.arrays import label_components
from unet_course.calibrate import threshold_sweep
from unet_course.cli import main
from unet_course.evaluation import evaluate_folder
from unet_course.report import REPORT_FILES, write_report
from unet_course.runs import load_run

from test_browser import CHROMEDRIVER, CHROMIUM, browser  # noqa: F401  (the book's headless Chromium, reused)

SLICES = [28, 29]


@pytest.fixture(scope="module")
def slices(isbi_root, tmp_path_factory) -> Path:
    """images/ and masks/ holding two ISBI slices, as a user's folder."""
    folder = tmp_path_factory.mktemp("slices")
    for kind, part in (("image", "images"), ("label", "masks")):
        (folder / part).mkdir()
        for index in SLICES:
            shutil.copy(isbi_root / kind / f"{index}.png", folder / part / f"{index}.png")
    return folder


@pytest.fixture(scope="module")
def report(tiny_run, isbi_root):
    model, config = load_run(tiny_run)
    return evaluate_folder(model, ISBI2012(isbi_root, indices=SLICES), threshold=config["threshold"], progress=False)


def test_numbers_are_those_of_the_metric_functions(report, tiny_run, isbi_root):
    model, config = load_run(tiny_run)
    threshold, pairs = config["threshold"], []
    data = ISBI2012(isbi_root, indices=SLICES)
    assert [row["name"] for row in report.rows] == ["28", "29", "all"]
    for (image, mask), row in zip(data, report.rows):
        probability, truth = predict_tiled(model, image)[1].numpy(), mask.numpy()
        pairs.append((probability, truth))
        assert row["pixel_error"] == pixel_error(probability, truth, threshold=threshold)
        assert [row["iou_0"], row["iou_1"]] == iou(probability, truth, threshold=threshold).tolist()
        assert [row["dice_0"], row["dice_1"]] == dice(probability, truth, threshold=threshold).tolist()
        assert row["rand_error"] == rand_error(probability, truth, threshold=threshold)
        assert row["warping_error"] == warping_error(probability, truth, threshold=threshold)
        match = match_instances(label_components(probability > threshold), label_components(truth == 1),
                                iou_thresholds=0.5)[0]
        assert row["instance_f1"] == pytest.approx(match.f1, nan_ok=True)
    for column in ("pixel_error", "iou_1", "rand_error", "warping_error"):
        assert report.overall[column] == pytest.approx(np.mean([row[column] for row in report.rows[:-1]]))
    sweep = threshold_sweep(pairs)
    assert report.sweep["rand"] == pytest.approx(sweep["rand"].tolist())
    assert report.sweep["threshold"] == pytest.approx(sweep["threshold"].tolist())


def test_warping_error_is_skipped_above_its_size_limit(tiny_run, isbi_root):
    model, _ = load_run(tiny_run)
    report = evaluate_folder(model, ISBI2012(isbi_root, indices=[0]), warping_max_pixels=100, progress=False)
    assert np.isnan(report.rows[0]["warping_error"]) and np.isnan(report.overall["warping_error"])


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.sources, self.links = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag in ("img", "script") and "src" in attrs:
            self.sources.append(attrs["src"])
        if tag == "link":
            self.links.append(attrs.get("href"))


def test_cli_writes_csv_json_and_a_self_contained_page(tiny_run, slices, tmp_path):
    out = tmp_path / "report"
    assert main(["evaluate", str(tiny_run), str(slices / "images"), str(slices / "masks"), "--out", str(out),
                 "--quiet"]) == 0
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [row["name"] for row in rows] == ["28.png", "29.png", "all"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and set(summary["threshold_sweep"]) == {"threshold", "pixel", "rand"}
    assert summary["tta"] is True  # the command line averages the 8 orientations unless told --no-tta
    assert float(rows[-1]["pixel_error"]) == pytest.approx(summary["overall"]["pixel_error"], rel=1e-5)
    page = _Page()
    page.feed((out / "report.html").read_text())
    assert "table" in page.tags and not page.links
    assert len(page.sources) >= 3 and all(src.startswith("data:image/png;base64,") for src in page.sources)
    # the run's stored threshold is the one applied: stored at the swept cut farthest in pixel error from 0.5
    sweep = summary["threshold_sweep"]
    at_half = sweep["pixel"][sweep["threshold"].index(0.5)]
    far = max(range(len(sweep["threshold"])), key=lambda k: abs(sweep["pixel"][k] - at_half))
    assert abs(sweep["pixel"][far] - at_half) > 0.05
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps(config | {"threshold": sweep["threshold"][far]}))
    assert main(["evaluate", str(run), str(slices / "images"), str(slices / "masks"), "--out", str(tmp_path / "cut"),
                 "--quiet"]) == 0
    cut = json.loads((tmp_path / "cut" / "summary.json").read_text())
    assert cut["threshold"] == sweep["threshold"][far]
    assert cut["overall"]["pixel_error"] == pytest.approx(sweep["pixel"][far], rel=1e-6)


def test_report_refuses_to_replace_without_overwrite(report, tmp_path):
    write_report(report, tmp_path)
    before = {name: (tmp_path / name).read_bytes() for name in REPORT_FILES}
    with pytest.raises(ValueError, match="already holds metrics.csv.*--overwrite"):
        write_report(report, tmp_path)
    assert before == {name: (tmp_path / name).read_bytes() for name in REPORT_FILES}
    write_report(report, tmp_path, overwrite=True)


def _status(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return status, lines[0]


def test_cli_refusals(tiny_run, slices, tmp_path, capsys):
    images, masks = str(slices / "images"), str(slices / "masks")
    status, line = _status(["evaluate", str(tmp_path / "none"), images, masks, "--out", str(tmp_path / "o")], capsys)
    assert status == 2 and "unet-course evaluate: error: no checkpoint at" in line
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_run, damaged)
    (damaged / "model.json").write_text("{not json")
    status, line = _status(["evaluate", str(damaged), images, masks, "--out", str(tmp_path / "o")], capsys)
    assert status == 1 and "model.json is not valid JSON" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    status, line = _status(["evaluate", str(tiny_run), str(empty), masks, "--out", str(tmp_path / "o")], capsys)
    assert status == 2 and "no images (" in line
    status, line = _status(["evaluate", str(tiny_run), images, masks, "--out", str(tmp_path / "o"), "--tile-size",
                            "61"], capsys)
    assert status == 2 and "--tile-size 61 is not a valid input size" in line
    out = tmp_path / "existing"
    out.mkdir()
    (out / "report.html").write_text("kept")
    status, line = _status(["evaluate", str(tiny_run), images, masks, "--out", str(out), "--quiet"], capsys)
    assert status == 2 and "already holds report.html" in line and (out / "report.html").read_text() == "kept"
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="needs Debian's chromium and chromium-driver")
def test_report_opens_in_a_browser_without_errors(report, tmp_path, browser):
    write_report(report, tmp_path)
    browser.get_log("browser")  # drop what earlier pages left
    browser.get((tmp_path / "report.html").as_uri())
    widths = browser.execute_script("return Array.from(document.images).map(image => image.naturalWidth)")
    errors = [entry["message"] for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors and widths and all(width > 0 for width in widths)
