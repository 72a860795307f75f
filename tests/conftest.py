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
