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
