"""Run budgets and device choice: one notebook, three sizes of run.

Every chapter runs under one of three budgets, chosen automatically:

- ``smoke``: continuous integration on 2 CPU cores (every notebook in about a minute);
- ``cpu``: a reader's laptop (minutes);
- ``gpu``: a Colab GPU (the paper's full configuration).

``UNET_COURSE_BUDGET=smoke|cpu|gpu`` overrides the choice. Training cells read their
sizes from :meth:`Budget.pick`, so no cell is ever edited to make CI fast.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

__all__ = ["Budget", "BUDGET_NAMES", "get_budget", "device", "seed_everything"]

BUDGET_NAMES = ("smoke", "cpu", "gpu")
ENV_VAR = "UNET_COURSE_BUDGET"

T = TypeVar("T")


@dataclass(frozen=True)
class Budget:
    """The size of run a notebook is executed under.

    Args:
        name: ``"smoke"``, ``"cpu"`` or ``"gpu"``.
        reason: why this budget was chosen (shown in each notebook's first output).

    Example:
        >>> budget = Budget("smoke", "set by hand")
        >>> budget.pick(smoke=20, cpu=500, gpu=20_000)
        20
    """

    name: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.name not in BUDGET_NAMES:
            raise ValueError(
                f"Unknown budget {self.name!r}: expected one of {', '.join(BUDGET_NAMES)}. "
                f"Set {ENV_VAR} to one of them, or leave it unset to choose automatically."
            )

    def pick(self, *, smoke: T, cpu: T, gpu: T) -> T:
        """Return the value for this budget, e.g. a number of training steps."""
        return {"smoke": smoke, "cpu": cpu, "gpu": gpu}[self.name]

    @property
    def is_smoke(self) -> bool:
        return self.name == "smoke"

    def __str__(self) -> str:
        return f"budget: {self.name} ({self.reason})" if self.reason else f"budget: {self.name}"


def get_budget() -> Budget:
    """Choose the budget: ``$UNET_COURSE_BUDGET``, else CI → smoke, CUDA → gpu, else cpu."""
    chosen = os.environ.get(ENV_VAR, "").strip().lower()
    if chosen:
        return Budget(chosen, f"from ${ENV_VAR}")
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return Budget("smoke", "running under CI")
    if torch.cuda.is_available():
        return Budget("gpu", f"CUDA device {torch.cuda.get_device_name(0)}")
    return Budget("cpu", "no GPU found")


def device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch so that CPU runs repeat exactly.

    Returns a ``torch.Generator`` seeded with ``seed`` for code that takes one.
    GPU kernels may still be non-deterministic; CPU results repeat bit for bit.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
