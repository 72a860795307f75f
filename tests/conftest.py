"""Shared fixtures: the real ISBI 2012 folder, when the test run is given one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def isbi_root() -> Path:
    """``$UNET_COURSE_DATA/isbi2012``; `make test` points it at the shared copy."""
    root = Path(os.environ.get("UNET_COURSE_DATA", "data")) / "isbi2012"
    if not (root / "image" / "0.png").exists():
        pytest.skip(f"no ISBI 2012 copy at {root}: set UNET_COURSE_DATA to a folder holding isbi2012/")
    return root


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Path:
    """The book built once per test run with warnings as errors; returns its html folder."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("book")
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(ROOT), "--path-output", str(out),
               "--warningiserror", "--keep-going", "--all"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return out / "_build" / "html"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder of `unet-course train`, one per test session: a 3-step U-Net of depth 2 and 4 base channels, tile 60.

    Read only: a test that changes a run copies it first.
    """
    from unet_course.cli import main

    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["train", "--data", "synthetic-membranes", "--base-channels", "4", "--depth", "2", "--tile-size", "60",
                 "--steps", "3", "--images", "2", "--image-size", "64", "--held-out", "1", "--out", str(out),
                 "--quiet"]) == 0
    return out


def label_row(*segments: tuple[int, int, int], length: int = 60):
    """A (1, length) int32 label image with label ``k`` on pixels ``start..stop-1`` per ``(k, start, stop)``."""
    import numpy as np

    if any(stop > length for _, _, stop in segments):
        raise ValueError(f"segments {segments} do not fit a row of {length} pixels")
    labels = np.zeros((1, length), dtype=np.int32)
    for label, start, stop in segments:
        labels[0, start:stop] = label
    return labels


def stored_outputs(notebook: dict) -> str:
    """Every text a notebook's code cells printed or displayed (plain and Markdown), as stored."""
    parts = []
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            parts.append("".join(output.get("text", "")))
            for kind in ("text/plain", "text/markdown"):
                parts.append("".join(output.get("data", {}).get(kind, "")))
    return "\n".join(parts)


def table_rows(text: str, header: str) -> list[list[str]]:
    """The cells of each row of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def tiny_unet(seed: int = 0, **options):
    """A U-Net of depth 2 with 4 base channels (a 60-px tile predicts 20 px), weights drawn after manual_seed(seed)."""
    import torch

    from unet_course import UNet

    torch.manual_seed(seed)
    return UNet(**({"base_channels": 4, "depth": 2} | options))


PUBLISHED_CONFIG = {"base_channels": 4, "depth": 2, "tile_size": 60, "in_channels": 1, "num_classes": 2,
                    "threshold": 0.65}


@pytest.fixture
def published(tmp_path, monkeypatch):
    """A tiny run (``tmp_path/run``) packed into ``tmp_path/mirror`` and registered as 'tiny' (not shipped).

    The mirror is ``$UNET_COURSE_WEIGHTS_URL`` (no trailing slash), the cache ``tmp_path/cache``.
    Returns (model, mirror folder, SHA-256 of the packed file).
    """
    import json

    from unet_course.hub import PRETRAINED, pack_run
    from unet_course.runs import write_checkpoint

    model = tiny_unet()
    run = tmp_path / "run"
    run.mkdir()
    write_checkpoint(run / "checkpoint.pt", model=model.state_dict(), step=3)
    (run / "model.json").write_text(json.dumps(PUBLISHED_CONFIG))
    mirror = tmp_path / "mirror"
    digest = pack_run(run, mirror / "tiny.pt")
    monkeypatch.setitem(PRETRAINED, "tiny", {"file": "tiny.pt", "sha256": digest, "shipped": False})
    monkeypatch.setenv("UNET_COURSE_WEIGHTS_URL", mirror.as_uri())
    monkeypatch.setenv("UNET_COURSE_CACHE", str(tmp_path / "cache"))
    return model, mirror, digest
