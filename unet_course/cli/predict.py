"""``unet-course predict``: one PNG mask per input image (or TIFF page), by overlap-tile prediction.

Where each mask goes is planned, and every input read, before the first mask is written. Each
mask is written whole or not at all, so after Ctrl-C the masks on disk are complete and
``--skip-existing`` continues where the run stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..files import check_output_path
from ..sizes import check_tile_size
from .common import UserError, check_device, input_images
from .parser import TTA_HELP, add_overwrite

__all__ = ["DESCRIPTION", "add_arguments", "command"]

DESCRIPTION = {"help": "segment images with a trained U-Net; writes one PNG mask each",
               "description": "Segment every image of a folder (or every page of a TIFF) by overlap-tile "
               "prediction; masks are PNGs, 0/255 for two classes (255 where the probability of class 1 is above "
               "the run's threshold), else class ids."}


def add_arguments(predict: argparse.ArgumentParser) -> None:
    """The arguments of ``predict`` besides RUN."""
    predict.add_argument("input", type=Path, metavar="INPUT", help="a folder of images or a (multi-page) TIFF")
    predict.add_argument("output", type=Path, metavar="OUTPUT_DIR", help="folder for the masks (created)")
    predict.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True, help=TTA_HELP)
    predict.add_argument("--tile-size", type=int, default=None, help="input tile side (default: the training tile)")
    predict.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: 4)")
    add_overwrite(predict, "masks already in OUTPUT_DIR")
    predict.add_argument("--skip-existing", action="store_true",
                         help="leave the images whose masks are already in OUTPUT_DIR as they are, and segment the "
                         "others (to continue a run stopped by Ctrl-C)")


def _mask_names(path: Path) -> list[str]:
    """The mask file names for one input file (one per page of a multi-page TIFF)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as file:
            pages = getattr(file, "n_frames", 1)
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"cannot read {path} as an image ({error}); expected PNG, TIFF or JPEG files") from None
    return [f"{path.stem}.png"] if pages == 1 else [f"{path.stem}_{index:03d}.png" for index in range(pages)]


def _planned_masks(files: list[Path], input_path: Path, output: Path, overwrite: bool,
                   skip_existing: bool = False) -> list[list[Path]]:
    """Where each input's masks go; refuses collisions, inputs as outputs and unasked-for replacements.

    With ``skip_existing``, an input whose masks all exist gets an empty list (nothing to write).
    """
    inputs, output = input_path.resolve(), check_output_path(output, "OUTPUT_DIR").resolve()
    if output.exists() and not output.is_dir():
        raise UserError(f"{output} is a file; pass a folder for the masks")
    if input_path.is_dir() and (output == inputs or inputs in output.parents):
        raise UserError(f"the output folder {output} is the input folder or inside it; masks would mix with (or "
                        f"replace) the images: pass an output folder outside {inputs}")
    if input_path.is_file() and output == inputs.parent:
        raise UserError(f"the output folder {output} is the folder of the input {input_path.name}; masks would mix "
                        f"with (or replace) the images beside it: pass an output folder of its own")
    planned, seen = [], {}
    sources = {path.resolve() for path in files}
    for path in files:
        masks = [output / name for name in _mask_names(path)]
        for mask in masks:
            key = mask.name.casefold()  # a.png and A.tif collide on case-insensitive disks too
            if key in seen:
                raise UserError(f"{seen[key].name} and {path.name} would both be written as {mask.name}; masks are "
                                f"named after their image, so rename one of them or move it to another folder")
            if mask in sources:
                raise UserError(f"the mask of {path.name} would replace the input {mask}; pass an output folder "
                                f"that holds no input images")
            seen[key] = path
        planned.append(masks)
    if skip_existing:
        return [[] if all(mask.exists() for mask in masks) else masks for masks in planned]
    existing = [mask.name for masks in planned for mask in masks if mask.exists()]
    if existing and not overwrite:
        listed = ", ".join(existing[:3]) + (" …" if len(existing) > 3 else "")
        raise UserError(f"{output} already holds {len(existing)} of the masks to write ({listed}); pass --overwrite "
                        f"to replace them, --skip-existing to keep them and segment the rest, or choose another output folder")
    return planned


def _mask(probabilities: torch.Tensor, threshold: float):
    """The PNG's pixels: 0/255 for two classes (class 1, cell interior, white in any viewer), else class ids."""
    from ..arrays import above_threshold

    if probabilities.shape[0] == 2:  # cut as the metrics cut
        return above_threshold(probabilities[1], threshold).to(torch.uint8).cpu().numpy() * 255
    return probabilities.argmax(0).to(torch.uint8).cpu().numpy()


def command(args) -> int:
    """``unet-course predict``: one PNG mask per input image, by overlap-tile prediction."""
    from PIL import Image

    from ..budget import best_device
    from ..data.images import read_image_pages
    from ..files import atomic_file
    from ..hub import load_model
    from ..runs import run_threshold
    from ..tiling import predict_tiled

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.overwrite and args.skip_existing:
        raise UserError("--overwrite replaces the masks in OUTPUT_DIR and --skip-existing keeps them; pass one of them")
    device = check_device(args.device) or best_device()
    model, config = load_model(args.run)
    tile = args.tile_size if args.tile_size is not None else config.get("tile_size")
    if tile is not None:
        check_tile_size(tile, model, name="--tile-size" if args.tile_size is not None else f"the tile_size of {args.run}")

    files = input_images(args.input)
    planned = _planned_masks(files, args.input, args.output, args.overwrite, args.skip_existing)
    todo = [(path, masks) for path, masks in zip(files, planned) if masks]
    for path, _ in tqdm(todo, desc="checking", unit="image", disable=args.quiet, leave=False):
        read_image_pages(path, channels=model.in_channels)  # unreadable or non-finite: fails before any mask
    model.to(device).eval()
    args.output.mkdir(parents=True, exist_ok=True)
    written = 0
    for path, masks in tqdm(todo, desc="images", unit="image", disable=args.quiet):
        for image, mask_path in zip(read_image_pages(path, channels=model.in_channels), masks):
            probabilities = predict_tiled(model, torch.from_numpy(image).to(device), tile_size=tile,
                                          batch_size=args.batch_size, tta=args.tta)
            with atomic_file(mask_path) as (file, _):
                Image.fromarray(_mask(probabilities, run_threshold(config))).save(file, format="PNG")
            written += 1
    skipped = f" (kept {len(files) - len(todo)} image(s)' masks already there)" if len(todo) < len(files) else ""
    print(f"wrote {written} mask(s) to {args.output}{skipped}", file=sys.stderr)
    return 0
