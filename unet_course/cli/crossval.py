"""``unet-course crossval``: k-fold cross-validation on the 30 ISBI 2012 slices (chapter 7).

Each fold is trained under the budget into ``OUT/fold-K`` (a run folder that ``predict`` and
``evaluate`` accept), its threshold chosen on its own training slices, its held-out slices
scored; ``OUT/summary.json`` has the mean and standard deviation over folds. Run the same
command again to continue: finished folds are kept and the fold in progress resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..budget import TRAINING_RUNS
from .common import UserError, check_device

__all__ = ["DESCRIPTION", "add_arguments", "command"]

DESCRIPTION = {"help": "cross-validate on the 30 ISBI 2012 slices; writes OUT/fold-K/ and OUT/summary.json",
               "description": "Train one run per fold, choose each fold's threshold on its training slices and score "
               "its held-out slices. Running it again continues where it stopped."}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``crossval``."""
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="folder for fold-K/ (one run each), crossval.json and summary.json")
    parser.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                        help="folder holding isbi2012/ (fetched there if missing); default $UNET_COURSE_DATA or ./data")
    parser.add_argument("--budget", choices=list(TRAINING_RUNS), default=None,
                        help="training sizes of every fold (default: chosen as in the notebooks)")
    parser.add_argument("--split", choices=["nvidia", "disjoint"], default="nvidia",
                        help="nvidia: the folds of NVIDIA's UNet_Medical (6 held-out slices each, overlapping); "
                        "disjoint: every slice held out once (default: nvidia)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default: 5)")
    parser.add_argument("--only", type=int, nargs="+", default=None, metavar="K",
                        help="run only these folds (0-based); the summary covers the folds finished so far")
    parser.add_argument("--steps", type=int, default=None, help="training steps per fold (default: the budget's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of fold K is seed + K (default: 0)")


def command(args) -> int:
    """``unet-course crossval``: run or continue the folds, then print the summary table."""
    from ..budget import get_budget
    from ..crossval import cross_validate
    from ..data import data_root

    device = check_device(args.device)
    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    if args.out.exists() and not args.out.is_dir():
        raise UserError(f"--out {args.out} is a file; pass a folder for the folds")
    budget = args.budget or get_budget().name
    summary = cross_validate(args.out, budget=budget, data_root=args.data_root or data_root(), split=args.split,
                             n_folds=args.folds, only=args.only, device=device, seed=args.seed, steps=args.steps,
                             progress=not args.quiet)
    for name, mean in summary["mean"].items():
        spread = "" if summary["std"][name] is None else f" ± {summary['std'][name]:.4f}"
        print(f"{name}: {mean:.4f}{spread} over {summary['folds']} folds", file=sys.stderr)
    return 0
