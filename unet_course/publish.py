"""Publishing trained U-Nets: pack a training run into one checkpoint, verify a folder of them.

    python -m unet_course.publish pack runs/isbi weights/unet_isbi2012_cpu.pt   # prints the SHA-256
    python -m unet_course.publish verify weights/    # every registry file present and unchanged

`make weights` packs, the release workflow verifies before it attaches the files; the registry
and the loading side are in :mod:`unet_course.hub`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .hub import PRETRAINED, pack_run, verify
from .runs import RunError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m unet_course.publish pack RUN OUT`` or ``verify DIR``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m unet_course.publish", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    pack = commands.add_parser("pack", help="write a training folder as one fp16 checkpoint; prints its SHA-256")
    pack.add_argument("run", type=Path)
    pack.add_argument("out", type=Path)
    pack.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    check = commands.add_parser("verify", help="check every registry file in DIR against its SHA-256")
    check.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    if args.command == "pack":
        try:
            print(f"{pack_run(args.run, args.out, overwrite=args.overwrite)}  {args.out}")
        except (FileNotFoundError, FileExistsError, RunError) as error:
            print(f"publish pack: error: {error}", file=sys.stderr)
            return 2
        return 0
    problems = verify(args.folder)
    for problem in problems:
        print(f"publish verify: error: {problem}", file=sys.stderr)
    if not problems:
        print(f"publish verify: {len(PRETRAINED)} checkpoint(s) in {args.folder} match the registry")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
