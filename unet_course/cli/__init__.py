"""The ``unet-course`` command line: train a U-Net, then segment, score or export with it.

    unet-course train --data isbi2012 --data-root data --out runs/isbi   # the budget's sizes
    unet-course train --data isbi2012 --out runs/isbi --steps 2000 --resume
    torchrun --nproc-per-node 4 -m unet_course train --data my_data/ --num-workers 4 --out runs/mine
    unet-course predict runs/isbi my_images/ masks/   # 8-fold test-time augmentation; --no-tta is faster
    unet-course predict isbi2012-cpu my_images/ masks/   # a published network instead of a run
    unet-course evaluate runs/isbi my_data/images my_data/masks --out report/
    unet-course export runs/isbi --format bioimageio --out unet.zip

The command line is thin: :mod:`~unet_course.cli.parser` reads the options, one module per
command calls the library (:func:`unet_course.fit`, :func:`unet_course.tiling.predict_tiled`,
:func:`unet_course.evaluate_folder`, :func:`unet_course.export.export_run`), and :func:`main`
turns what they raise into one line and an exit status. Chapters 6 and 7 teach what it runs.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Sequence

import torch

from ..runs import RunError
from .common import CommandFailed, UserError, one_line
from .parser import build_parser

__all__ = ["main", "build_parser"]


def _status_and_message(error: Exception) -> tuple[int, str]:
    """The exit status and the one-line message of an error: 2 for a mistake in the command, 1 for a failure."""
    from ..data import ChecksumError, DownloadError

    if isinstance(error, RunError):  # a ValueError, but a damaged file rather than a mistake in the command
        return 1, one_line(error)
    if isinstance(error, (UserError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return 2, one_line(error)
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return 1, "the GPU ran out of memory; pass a smaller --tile-size or --batch-size"
    if isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and _out_of_memory(str(error))):
        return 1, ("this machine ran out of memory (RAM); pass a smaller --tile-size or --batch-size, or run on a "
                   "machine with more memory")
    if isinstance(error, (CommandFailed, ChecksumError, DownloadError)):
        return 1, one_line(error)
    if isinstance(error, OSError):
        return 1, f"{one_line(error)}; check the path, its permissions and the free disk space"
    return 1, f"unexpected {type(error).__name__}: {one_line(error)}; run again with --debug to see where it happened"


# torchrun stops every process as soon as one exits with an error, so the other ranks, which
# print nothing, give rank 0 this long to print its line before they exit.
QUIET_RANK_WAIT_S = 2.0


def _out_of_memory(message: str) -> bool:
    """Whether a RuntimeError is PyTorch failing to allocate host memory."""
    return any(words in message for words in ("can't allocate memory", "not enough memory", "DefaultCPUAllocator"))


def _rank() -> int:
    """This process's rank under torchrun (``RANK``), else 0: only rank 0 speaks, so each line is printed once."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _interrupted(args) -> str:
    """What Ctrl-C left behind, and the command that continues."""
    if args.command == "train":
        return ("continue with the same command plus --resume" if (args.out / "checkpoint.pt").exists()
                else "no step was saved yet; start again with --overwrite")
    if args.command == "predict":
        return ("every mask written is complete (none is half-written); continue with the same command plus "
                "--skip-existing")
    return "nothing was written"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``unet-course`` with ``argv`` (default: the command line); returns the exit status.

    Every error is one line on stderr, ``unet-course <command>: error: <what>; <how to fix>``:
    status 2 for a mistake in the command (a bad option, path or input file), 1 for a
    failure (training diverged, a damaged checkpoint, a failed download, a full disk).
    ``--debug`` shows the traceback instead. Warnings are one line each,
    ``unet-course <command>: warning: ...``; Ctrl-C exits with 130 and says how to continue.
    Under ``torchrun`` only rank 0 prints (the launcher then adds its own report).
    """
    args = build_parser().parse_args(argv)
    speaks = _rank() == 0
    try:
        with warnings.catch_warnings():
            def show(message, category, *_, **__):  # a warning is one line too, from rank 0
                if speaks:
                    print(f"unet-course {args.command}: warning: {' '.join(str(message).split())}", file=sys.stderr)
            warnings.showwarning = show
            return args.run_command(args)
    except KeyboardInterrupt:
        if speaks:
            print(f"unet-course {args.command}: interrupted; {_interrupted(args)}", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        status, message = _status_and_message(error)
        if speaks:  # under torchrun every process fails alike; rank 0 says it once
            print(f"unet-course {args.command}: error: {message}", file=sys.stderr)
        else:
            time.sleep(QUIET_RANK_WAIT_S)
        return status


if __name__ == "__main__":
    sys.exit(main())
