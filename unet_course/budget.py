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
import sys
import warnings
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

__all__ = ["Budget", "BUDGET_NAMES", "TRAINING_RUNS", "get_budget", "training_run", "best_device", "describe_runtime",
           "seed_everything"]

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


def best_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_runtime(budget: Budget | None = None) -> str:
    """One line saying what this notebook runs on: torch version, device and budget.

    A training chapter prints it first. On Colab without a GPU it also warns, with the
    menu path that asks for one: the chapter still runs, under the smaller cpu budget.

    Args:
        budget: the budget in force; default :func:`get_budget`.

    Example:
        >>> describe_runtime(Budget("smoke", "set by hand"))  # doctest: +ELLIPSIS
        'torch ... · device ... · budget: smoke (set by hand)'
    """
    budget = budget or get_budget()
    chosen = best_device()
    where = f"cuda ({torch.cuda.get_device_name(chosen)})" if chosen.type == "cuda" else chosen.type
    if chosen.type != "cuda" and "google.colab" in sys.modules:
        warnings.warn(
            "Colab gave this runtime no GPU, so training runs on the CPU under a smaller budget. "
            "For the full run: Runtime → Change runtime type → T4 GPU, then run the notebook again.",
            RuntimeWarning,
            stacklevel=2,
        )
    return f"torch {torch.__version__} · device {where} · {budget}"


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and PyTorch so that CPU runs repeat exactly.

    Returns a ``torch.Generator`` seeded with ``seed`` for code that takes one.
    GPU kernels may still be non-deterministic; CPU results repeat bit for bit.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# The ISBI 2012 training run of chapter 6 and `unet-course train`, per budget. The cpu run
# spends about 15 minutes on two laptop cores; its settings were chosen on held-out slices
# by `benchmarks/sweep_cpu_budget.py` (results/cpu_budget_sweep.md). The gpu run is the
# paper's network and tile.
TRAINING_RUNS: dict[str, dict] = {
    "smoke": {"base_channels": 8, "depth": 4, "tile_size": 252, "steps": 200, "lr": 0.003, "lr_schedule": "constant",
              "loss_weights": "balanced"},
    "cpu": {"base_channels": 16, "depth": 4, "tile_size": 316, "steps": 7500, "lr": 0.003, "lr_schedule": "cosine",
            "loss_weights": "balanced"},
    "gpu": {"base_channels": 64, "depth": 4, "tile_size": 572, "steps": 6000, "lr": 0.003, "lr_schedule": "constant",
            "loss_weights": "balanced"},
}


def training_run(budget: Budget | None = None) -> dict:
    """The sizes and schedule of the ISBI 2012 run under ``budget`` (default :func:`get_budget`).

    Keys: ``base_channels``, ``depth``, ``tile_size``, ``steps``, ``lr``, ``lr_schedule``,
    ``loss_weights``, named as :class:`~unet_course.UNet` and :func:`~unet_course.fit` name them. Chapter 6 trains with them; ``unet-course train`` takes them as defaults.
    """
    return dict(TRAINING_RUNS[(budget or get_budget()).name])
