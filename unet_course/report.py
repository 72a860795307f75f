"""An evaluation, written down: ``metrics.csv``, ``summary.json`` and a one-page ``report.html``.

The page holds the table, the threshold curve and a gallery of the worst regions, its figures
drawn with matplotlib and inlined as base64 PNGs, so that it opens anywhere, offline, as one file.
Every file is written atomically and none is replaced unless asked (``overwrite``).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import os
from pathlib import Path

from .files import atomic_file
from .evaluation import EvaluationReport

__all__ = ["REPORT_FILES", "check_report_folder", "write_report"]

REPORT_FILES = ("metrics.csv", "summary.json", "report.html")


def check_report_folder(out: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """``out`` as a path, refused (``ValueError``) if it is a file or already holds a report and not ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; pass a folder for metrics.csv, summary.json and report.html")
    existing = [name for name in REPORT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise ValueError(f"{out} already holds {', '.join(existing)}; pass --overwrite to replace them, or choose "
                         f"another output folder")
    return out


def _number(value) -> str:
    if isinstance(value, str):
        return value
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def _json_safe(value):
    """nan (an undefined score) as null, which JSON has and nan is not."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    return value


def _png(figure) -> str:
    """A matplotlib figure as a ``data:`` URL, closed afterwards."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _threshold_figure(report: EvaluationReport) -> str:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3))
    axis.plot(report.sweep["threshold"], report.sweep["pixel"], label="pixel error")
    axis.plot(report.sweep["threshold"], report.sweep["rand"], label="Rand error")
    axis.axvline(report.threshold, color="grey", linestyle=":", label=f"threshold {report.threshold:.2f}")
    axis.set(xlabel="threshold on P(class 1)", ylabel="mean over images")
    axis.legend()
    return _png(figure)


def _region_figure(region) -> str:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(6, 2.2))
    for axis, (title, picture) in zip(axes, (("image", region.image), ("truth", region.truth),
                                             ("prediction", region.prediction))):
        axis.imshow(picture, cmap="gray", interpolation="nearest")
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    return _png(figure)


def _html(report: EvaluationReport) -> str:
    escape = html.escape
    head = "".join(f"<th>{escape(column)}</th>" for column in report.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_number(row[column]))}</td>" for column in report.columns)
                   + "</tr>" for row in report.rows)
    parts = [f"<h1>Evaluation</h1><p>{len(report.rows) - 1} image(s), {report.num_classes} classes, threshold "
             f"{report.threshold:.2f}, test-time augmentation {'on' if report.tta else 'off'}.</p>",
             f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"]
    if report.sweep is not None:
        parts.append(f"<h2>Threshold</h2><img alt=\"errors against the threshold\" src=\"{_threshold_figure(report)}\">")
    if report.regions:
        parts.append("<h2>Worst regions</h2>")
        parts += [f"<figure><img alt=\"{escape(region.name)}\" src=\"{_region_figure(region)}\"><figcaption>"
                  f"{escape(region.name)} at ({region.top}, {region.left}): {region.errors} wrong pixels"
                  f"</figcaption></figure>" for region in report.regions]
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:90%}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}figure{display:inline-block}")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Evaluation</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n")


def write_report(report: EvaluationReport, out: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Write ``metrics.csv`` (one row per image and ``all``), ``summary.json`` and ``report.html`` to ``out``.

    Refuses (``ValueError``) a folder that already holds one of them unless ``overwrite``.
    Returns the paths written.
    """
    out = check_report_folder(out, overwrite=overwrite)
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=report.columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: _number(value) for key, value in row.items()} for row in report.rows)
    summary = {"images": len(report.rows) - 1, "num_classes": report.num_classes, "threshold": report.threshold,
               "tta": report.tta, "tile_size": report.tile_size, "overall": report.overall,
               "threshold_sweep": report.sweep,
               "worst_regions": [{"name": r.name, "top": r.top, "left": r.left, "errors": r.errors}
                                 for r in report.regions]}
    contents = {"metrics.csv": table.getvalue(), "summary.json": json.dumps(_json_safe(summary), indent=2) + "\n",
                "report.html": _html(report)}
    for name, text in contents.items():
        with atomic_file(out / name) as (file, _):
            file.write(text.encode())
    return [out / name for name in contents]
