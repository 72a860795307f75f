"""What a benchmark report says of the machine it ran on, and how the report is written."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The processor's model name from ``/proc/cpuinfo``, else what ``platform`` knows of it."""
    try:
        with open("/proc/cpuinfo") as file:
            return next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def versions(*packages: str) -> str:
    """``"torch 2.14.1, scipy 1.15.3"``: the installed version of each package named."""
    return ", ".join(f"{name} {importlib.metadata.version(name)}" for name in packages)


def write_report(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (its folder made if missing), and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)
    print(f"wrote {path}")
