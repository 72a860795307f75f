"""``unet-course evaluate``: score a run on a folder of images with masks; writes the report to ``--out``.

The figures are :func:`unet_course.evaluate_folder`'s (chapter 7); the report is
:mod:`unet_course.report`'s. Every image and mask is read and checked before the report is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm.auto import tqdm

from ..files import check_output_path
from ..sizes import check_tile_size
from .common import UserError, check_device, input_images
from .parser import TTA_HELP, add_overwrite

__all__ = ["DESCRIPTION", "add_arguments", "command"]


def _description() -> dict:
    from ..evaluation import WARPING_MAX_PIXELS

    return {"help": "score a trained U-Net on images with masks; writes metrics.csv, summary.json and report.html",
            "description": "Predict every image of a folder by overlap-tile and score it against the mask of the "
            "same name: pixel error, IoU and Dice per class; for two classes also the Rand and warping errors, the F1 "
            "of the objects at IoU 0.5 and a sweep of the threshold. The warping error is left out (empty) for "
            f"images above {WARPING_MAX_PIXELS:,} pixels."}


DESCRIPTION = _description()


def add_arguments(evaluate: argparse.ArgumentParser) -> None:
    """The arguments of ``evaluate`` besides RUN."""
    evaluate.add_argument("images", type=Path, metavar="IMAGES", help="a folder of images")
    evaluate.add_argument("masks", type=Path, metavar="MASKS", help="a folder of masks with the images' file names")
    evaluate.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the report (created)")
    evaluate.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True, help=TTA_HELP)
    evaluate.add_argument("--tile-size", type=int, default=None, help="input tile side, a valid size for the model "
                          "(default: predict_tiled's, the largest that fits; a valid U-Net's scores do not depend on it)")
    add_overwrite(evaluate, "a report already in --out")


def command(args) -> int:
    """``unet-course evaluate``: score a run on a folder of images with masks; writes the report to ``--out``."""
    from ..budget import best_device
    from ..data import ImageMaskFolder
    from ..evaluation import evaluate_folder
    from ..hub import load_model
    from ..report import check_report_folder, write_report
    from ..runs import run_threshold

    device = check_device(args.device) or best_device()
    model, config = load_model(args.run)
    tile = args.tile_size if args.tile_size is None else check_tile_size(args.tile_size, model, name="--tile-size")
    input_images(args.images, single_file=False)
    if not args.masks.is_dir():
        raise UserError(f"{args.masks} is not a folder: pass the folder of masks, named as the images")
    out = check_output_path(args.out, "--out").resolve()
    if out in (args.images.resolve(), args.masks.resolve()):
        raise UserError(f"--out {args.out} is the images or masks folder; pass a folder of its own for the report")
    check_report_folder(args.out, overwrite=args.overwrite)
    data = ImageMaskFolder(args.images, args.masks, grayscale=model.in_channels == 1, num_classes=model.num_classes)
    for index in tqdm(range(len(data)), desc="checking", unit="image", disable=args.quiet, leave=False):
        data[index]  # unreadable, mismatched or out-of-range: fails before the first write
    report = evaluate_folder(model, data, threshold=run_threshold(config), tta=args.tta, tile_size=tile,
                             device=device, progress=not args.quiet)
    write_report(report, args.out, overwrite=args.overwrite)
    overall = report.overall
    line = f"{len(report.rows) - 1} image(s): pixel error {overall['pixel_error']:.4f}"
    if "rand_error" in overall:
        line += f", Rand error {overall['rand_error']:.4f}, object F1 {overall['instance_f1']:.3f}"
    print(f"{line}; wrote metrics.csv, summary.json and report.html to {args.out}", file=sys.stderr)
    return 0
