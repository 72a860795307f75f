"""The argument parser of ``unet-course``: shared flags written once, each command's options beside it.

``--debug`` (every command), ``--device`` and ``--quiet`` (the commands that compute) and the
RUN argument (the commands that use a trained network) come from parent parsers; each
command's own options are added by its module (:mod:`unet_course.cli.train`, ...).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["build_parser", "TTA_HELP"]

TTA_HELP = ("average the 8 flips/rotations of each tile, as the paper averages rotated inputs "
            "(default; --no-tta is 8 times faster)")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like ours (the usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _parents() -> dict[str, argparse.ArgumentParser]:
    """The shared flags, one parent parser per group."""
    from ..hub import PRETRAINED

    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", help="show the traceback of an error")
    compute = _Parser(add_help=False)
    compute.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    compute.add_argument("--quiet", action="store_true", help="no progress bar")
    run = _Parser(add_help=False)
    run.add_argument("run", type=Path, metavar="RUN",
                     help="a training folder (checkpoint.pt + model.json), a .pt file with a .json beside it, or a "
                     f"published network: {', '.join(sorted(PRETRAINED))}")
    return {"debug": debug, "compute": compute, "run": run}


def add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: replace ``what`` where it exists; without it, nothing is ever replaced."""
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace {what} (without it, an existing one is never replaced)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``unet-course`` with its ``train``, ``predict``, ``evaluate``, ``export`` and ``crossval`` subcommands."""
    from . import crossval, evaluate, export, predict, train

    parser = _Parser(prog="unet-course", description="Train a U-Net the paper's way, and use it.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,predict,evaluate,export,crossval}")
    parents = _parents()
    for module, groups in ((train, ("compute", "debug")), (predict, ("run", "compute", "debug")),
                           (evaluate, ("run", "compute", "debug")), (export, ("run", "debug")),
                           (crossval, ("compute", "debug"))):
        name = module.__name__.rsplit(".", 1)[1]
        command = commands.add_parser(name, parents=[parents[group] for group in groups], **module.DESCRIPTION)
        module.add_arguments(command)
        command.set_defaults(run_command=module.command)
    return parser
