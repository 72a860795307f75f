"""``unet-course export``: write a run as ONNX, TorchScript or a bioimage.io package, checked against PyTorch.

The work is :func:`unet_course.export.export_run`'s; this module checks ``--out`` first: never
one of the files it reads (the run's checkpoint or ``model.json``), with or without ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..files import check_output_path
from .common import CommandFailed, UserError
from .parser import add_overwrite

__all__ = ["DESCRIPTION", "add_arguments", "command"]

DESCRIPTION = {"help": "write a trained U-Net as ONNX, TorchScript or a bioimage.io package",
               "description": "Export a run for other tools, checked against PyTorch on a valid tile (largest "
               "difference at most 1e-4). The exported network takes only the sizes the U-Net takes (min_size + "
               "k·step per side) and returns an output smaller by its margin on each side. Needs pip install "
               "'unet-course[export]'."}


def add_arguments(export: argparse.ArgumentParser) -> None:
    """The options of ``export`` besides RUN."""
    from ..export import FORMATS

    export.add_argument("--format", required=True, choices=FORMATS,
                        help="onnx (dynamic height and width), torchscript (traced), or bioimageio (a model package "
                        "zip for Fiji/deepImageJ and ilastik, validated)")
    export.add_argument("--out", type=Path, required=True, metavar="PATH", help="the file to write")
    add_overwrite(export, "--out")


def command(args) -> int:
    """``unet-course export``: write a run as ONNX, TorchScript or a bioimage.io package, checked against PyTorch."""
    from ..export import export_run
    from ..hub import PRETRAINED, load_model
    from ..runs import run_files

    model, config = load_model(args.run)
    check_output_path(args.out, "--out")
    if str(args.run) not in PRETRAINED or args.run.exists():
        read = {path.resolve() for path in run_files(args.run)}
        if args.out.resolve() in read:
            raise UserError(f"--out {args.out} is a file this export reads from the run {args.run}; --overwrite "
                            f"replaces earlier output, never an input: choose another path")
    if args.out.is_dir():
        raise UserError(f"--out {args.out} is a folder; pass the path of the file to write")
    if args.out.exists() and not args.overwrite:
        raise UserError(f"--out {args.out} already exists; pass --overwrite to replace it, or choose another path")
    try:
        result = export_run(model, config, args.format, args.out)
    except RuntimeError as error:  # the export disagreed with PyTorch, or the validator rejected it
        raise CommandFailed(str(error)) from None
    differences = ", ".join(f"{name} {value:.1e}" for name, value in result.max_abs_difference.items())
    verdict = f"; bioimage.io validator: {result.validation}" if result.validation else ""
    print(f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB); largest difference to PyTorch: {differences}"
          f"{verdict}", file=sys.stderr)
    return 0
