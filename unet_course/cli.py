"""The ``unet-course`` command line: train a U-Net, then segment a folder of images with it.

    unet-course train --data isbi2012 --data-root data --out runs/isbi   # the budget's sizes
    unet-course train --data isbi2012 --out runs/isbi --steps 2000 --resume
    unet-course predict runs/isbi my_images/ masks/ --tta

Training follows the paper (Ronneberger et al., 2015) through :func:`unet_course.train.fit`;
prediction uses overlap-tile :func:`unet_course.tiling.predict_tiled`. Chapters 6 and 7 teach both.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageSequence, UnidentifiedImageError
from tqdm.auto import tqdm

__all__ = ["main", "build_parser", "BUDGET_SIZES", "model_from_config"]

# Model width, depth, tile and steps per budget; chapter 6 trains with the same numbers.
BUDGET_SIZES = {
    "smoke": {"width": 8, "depth": 4, "tile": 252, "steps": 200},
    "cpu": {"width": 16, "depth": 4, "tile": 316, "steps": 1000},
    "gpu": {"width": 64, "depth": 4, "tile": 572, "steps": 6000},  # the paper's network and tile
}
SYNTHETIC = ("synthetic-cells", "synthetic-membranes")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


def _per_budget(key: str) -> str:
    return ", ".join(f"{name} {sizes[key]}" for name, sizes in BUDGET_SIZES.items())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``unet-course`` with its ``train`` and ``predict`` subcommands."""
    parser = argparse.ArgumentParser(prog="unet-course", description="Train a U-Net the paper's way, and use it.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,predict}")

    train = commands.add_parser("train", help="train a U-Net; writes OUT/checkpoint.pt, history.json, model.json",
                                description="Train a U-Net with SGD (momentum 0.99), batch 1, large tiles and "
                                "elastic deformation. Sizes not given come from the budget.")
    train.add_argument("--data", default="synthetic-membranes", metavar="DATA",
                       help="isbi2012, synthetic-cells, synthetic-membranes, or a folder holding images/ and "
                       "masks/ with matching file names (default: synthetic-membranes)")
    train.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                       help="folder holding isbi2012/ (fetched there if missing); default $UNET_COURSE_DATA or ./data")
    train.add_argument("--out", type=Path, default=Path("runs/unet"), metavar="DIR",
                       help="where checkpoint.pt, history.json and model.json go (default: runs/unet)")
    train.add_argument("--budget", choices=list(BUDGET_SIZES), default=None,
                       help="size of run for the options not given (default: chosen as in the notebooks: "
                       "$UNET_COURSE_BUDGET, CI → smoke, CUDA → gpu, else cpu)")
    train.add_argument("--steps", type=int, help="total optimisation steps (with --resume, including earlier ones); default: the budget's, " + _per_budget("steps"))
    train.add_argument("--width", type=int, help="channels of the first level (the paper: 64); default: the budget's, " + _per_budget("width"))
    train.add_argument("--depth", type=int, help="number of poolings (the paper: 4); default: the budget's, " + _per_budget("depth"))
    train.add_argument("--tile", type=int, help="input tile side, a valid size for the model (the paper: 572); default: the budget's, " + _per_budget("tile"))
    train.add_argument("--lr", type=float, default=0.003, help="SGD learning rate (default: 0.003)")
    train.add_argument("--momentum", type=float, default=0.99, help="SGD momentum (default: 0.99, the paper's)")
    train.add_argument("--batch-size", type=int, default=1, help="tiles per step (default: 1, the paper's)")
    train.add_argument("--weights", choices=["balanced", "unet", "none"], default="balanced",
                       help="per-pixel loss weights: class balance, the paper's border map, or none "
                       "(default: balanced)")
    train.add_argument("--no-augment", action="store_true", help="train without flips, rotations and elastic "
                       "deformation")
    train.add_argument("--held-out", type=int, default=None, metavar="N",
                       help="images kept out of training to validate on (default: 5 of the 30 ISBI slices, "
                       "4 synthetic images, none of a folder)")
    train.add_argument("--images", type=int, default=24, help="synthetic training images (default: 24)")
    train.add_argument("--image-size", type=int, default=256, help="side of synthetic images (default: 256, "
                       "or the tile's output size if larger)")
    train.add_argument("--eval-every", type=int, default=None, help="validate every N steps (default: 10 times)")
    train.add_argument("--checkpoint-every", type=int, default=None,
                       help="write the checkpoint every N steps (default: 10 times per run)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt to --steps in all")
    train.add_argument("--seed", type=int, default=0, help="seed of the model, tiles and augmentation (default: 0)")
    train.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    predict = commands.add_parser("predict", help="segment images with a trained U-Net; writes one PNG mask each",
                                  description="Segment every image of a folder (or every page of a TIFF) by "
                                  "overlap-tile prediction; masks are PNGs, 0/255 for two classes, else class ids.")
    predict.add_argument("checkpoint", type=Path, metavar="CHECKPOINT",
                         help="a training folder (checkpoint.pt + model.json) or a .pt file with a .json beside it")
    predict.add_argument("input", type=Path, metavar="INPUT", help="a folder of images or a (multi-page) TIFF")
    predict.add_argument("output", type=Path, metavar="OUTPUT_DIR", help="folder for the masks (created)")
    predict.add_argument("--tta", action="store_true", help="average the 8 flips/rotations of each tile")
    predict.add_argument("--tile", type=int, default=None, help="input tile side (default: the training tile)")
    predict.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: 4)")
    predict.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def model_from_config(config: dict) -> torch.nn.Module:
    """Rebuild the U-Net described by a ``model.json`` (keys of :class:`UNet` plus ``tile``)."""
    from .models.unet import UNet

    return UNet(in_channels=config.get("in_channels", 1), num_classes=config.get("num_classes", 2),
                base_channels=config["base_channels"], depth=config["depth"],
                padding=config.get("padding", "valid"), batch_norm=config.get("batch_norm", False))


def _training_data(args, tile: int, output: int):
    """(train, validation or None) datasets for ``--data``."""
    from .data import ISBI2012, ImageMaskFolder, SyntheticCells, SyntheticMembranes, data_root

    if args.data == "isbi2012":
        root = (args.data_root or data_root()) / "isbi2012"
        held_out = 5 if args.held_out is None else args.held_out
        if not 0 <= held_out < 30:
            raise UserError(f"--held-out must be 0..29 for the 30 ISBI slices, got {held_out}")
        train = ISBI2012(root, download=not root.exists(), indices=range(30 - held_out))
        return train, (ISBI2012(root, indices=range(30 - held_out, 30)) if held_out else None)
    if args.data in SYNTHETIC:
        kind = SyntheticCells if args.data == "synthetic-cells" else SyntheticMembranes
        size, held_out = max(args.image_size, output), 4 if args.held_out is None else args.held_out
        val = kind(held_out, size, seed=args.seed + 10_000) if held_out else None  # seeds apart from training
        return kind(args.images, size, seed=args.seed), val
    folder = Path(args.data)
    if not folder.is_dir():
        raise UserError(f"--data {args.data}: expected isbi2012, synthetic-cells, synthetic-membranes or a folder "
                        f"holding images/ and masks/, but {folder} is not a folder")
    for part in ("images", "masks"):
        if not (folder / part).is_dir():
            raise UserError(f"{folder} has no {part}/ folder: put images in {folder}/images and masks with "
                            f"the same file names in {folder}/masks")
    data = ImageMaskFolder(folder / "images", folder / "masks")
    for index in range(len(data)):
        data[index]  # reads every pair now: an unreadable file or a size mismatch fails before training starts
    held_out = 0 if args.held_out is None else args.held_out
    if not 0 <= held_out < len(data):
        raise UserError(f"--held-out {held_out}: the folder holds {len(data)} images, keep at least one to train on")
    indices = list(range(len(data)))
    train = torch.utils.data.Subset(data, indices[:len(data) - held_out])
    return train, (torch.utils.data.Subset(data, indices[len(data) - held_out:]) if held_out else None)


def train_command(args) -> int:
    """``unet-course train``: fit a U-Net and write checkpoint, history and model config to ``--out``."""
    from .budget import Budget, get_budget
    from .train import fit

    budget = Budget(args.budget, "from --budget") if args.budget else get_budget()
    sizes = dict(BUDGET_SIZES[budget.name])
    config_path = args.out / "model.json"
    if args.resume and config_path.exists():
        stored = json.loads(config_path.read_text())
        for option, key in (("width", "base_channels"), ("depth", "depth"), ("tile", "tile")):
            given = getattr(args, option)
            if given is not None and given != stored[key]:
                raise UserError(f"--{option} {given} differs from the run being resumed ({stored[key]} in "
                                f"{config_path}); leave it out or train into a new --out folder")
        sizes.update(width=stored["base_channels"], depth=stored["depth"], tile=stored["tile"])
    elif args.resume and (args.out / "checkpoint.pt").exists():
        raise UserError(f"{config_path} is missing, so the run in {args.out} cannot be rebuilt to resume it")
    sizes.update({k: getattr(args, k) for k in ("width", "depth", "tile", "steps") if getattr(args, k) is not None})
    if sizes["steps"] < 1 or sizes["width"] < 1:
        raise UserError(f"--steps and --width must be at least 1, got {sizes['steps']} and {sizes['width']}")

    from .models.unet import UNet, unet_nearest_valid_sizes, unet_output_size, unet_valid_input_size

    if unet_valid_input_size(sizes["tile"], sizes["depth"]) != sizes["tile"]:
        raise UserError(f"--tile {sizes['tile']} is not a valid input size for depth {sizes['depth']}; "
                        f"nearest valid: {unet_nearest_valid_sizes(sizes['tile'], sizes['depth'])}")
    train, val = _training_data(args, sizes["tile"], unet_output_size(sizes["tile"], sizes["depth"]))
    channels = train[0][0].shape[0]
    torch.manual_seed(args.seed)  # the initial weights, so that a run repeats
    model = UNet(in_channels=channels, base_channels=sizes["width"], depth=sizes["depth"])
    config = {"base_channels": sizes["width"], "depth": sizes["depth"], "tile": sizes["tile"], "in_channels": channels,
              "num_classes": 2, "padding": "valid", "data": args.data, "budget": budget.name}
    print(f"{budget}; UNet(base_channels={sizes['width']}, depth={sizes['depth']}), tile {sizes['tile']}, "
          f"{sizes['steps']} steps on {len(train)} images ({args.data}) → {args.out}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    history = fit(model, train, val, steps=sizes["steps"], lr=args.lr, momentum=args.momentum,
                  batch_size=args.batch_size, tile_size=sizes["tile"],
                  weights=None if args.weights == "none" else args.weights, augment=not args.no_augment,
                  eval_every=args.eval_every, checkpoint=args.out / "checkpoint.pt",
                  checkpoint_every=args.checkpoint_every or max(1, sizes["steps"] // 10), resume=args.resume,
                  device=args.device, seed=args.seed, progress=not args.quiet)
    history.save(args.out / "history.json")
    summary = f"step {history.step[-1]}: loss {history.smoothed_loss()[-1]:.4f}"
    if history.val_iou:
        summary += f", held-out mean IoU {history.val_iou[-1]:.3f}"
    print(summary, file=sys.stderr)
    return 0


def _as_float(array: np.ndarray) -> np.ndarray:
    """Pixel values scaled to [0, 1] as in training (8-bit and 16-bit images alike)."""
    if np.issubdtype(array.dtype, np.integer):
        return array.astype(np.float32) / np.iinfo(array.dtype).max
    return array.astype(np.float32)


def _read_pages(path: Path, channels: int) -> list[tuple[str, np.ndarray]]:
    """(name, (C, H, W) float image) for one image file; a multi-page TIFF gives one per page."""
    mode = "L" if channels == 1 else "RGB"
    try:
        with Image.open(path) as file:
            pages = [page.copy() for page in ImageSequence.Iterator(file)]
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"cannot read {path} as an image ({error}); expected PNG, TIFF or JPEG files") from None
    images = []
    for page in pages:
        keep_depth = channels == 1 and page.mode in ("I;16", "I;16B", "I", "F")  # no 8-bit rounding
        array = np.asarray(page) if keep_depth else np.asarray(page.convert(mode))
        array = _as_float(array)
        images.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    if len(images) == 1:
        return [(path.stem, images[0])]
    return [(f"{path.stem}_{index:03d}", image) for index, image in enumerate(images)]


def predict_command(args) -> int:
    """``unet-course predict``: one PNG mask per input image, by overlap-tile prediction."""
    from .budget import device as best_device
    from .tiling import predict_tiled
    from .train import load_checkpoint

    checkpoint = args.checkpoint / "checkpoint.pt" if args.checkpoint.is_dir() else args.checkpoint
    config_path = args.checkpoint / "model.json" if args.checkpoint.is_dir() else checkpoint.with_suffix(".json")
    for path, what in ((checkpoint, "checkpoint"), (config_path, "model description")):
        if not path.is_file():
            raise UserError(f"no {what} at {path}: pass the --out folder of `unet-course train` "
                            f"(or a .pt file with its .json beside it)")
    config = json.loads(config_path.read_text())
    model = model_from_config(config)
    state = load_checkpoint(checkpoint)
    model.load_state_dict(state["model"] if "model" in state else state)
    device = torch.device(args.device) if args.device else best_device()
    model.to(device).eval()

    if args.input.is_dir():
        files = sorted(p for p in args.input.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {args.input}")
    elif args.input.is_file():
        files = [args.input]
    else:
        raise UserError(f"{args.input} does not exist: pass a folder of images or a TIFF file")
    for path in files:  # open every header first: an unreadable file fails before any mask is written
        try:
            Image.open(path).close()
        except (UnidentifiedImageError, OSError) as error:
            raise UserError(f"cannot read {path} as an image ({error}); expected PNG, TIFF or JPEG files") from None
    tile = args.tile or config.get("tile")
    if tile is not None and model.valid_input_size(tile) != tile:
        raise UserError(f"--tile {tile} is not a valid input size; nearest valid: {model.nearest_valid_sizes(tile)}")
    args.output.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in tqdm(files, desc="images", unit="image", disable=args.quiet):
        for name, image in _read_pages(path, model.in_channels):
            probabilities = predict_tiled(model, torch.from_numpy(image).to(device), tile_size=tile,
                                          batch_size=args.batch_size, tta=args.tta)
            labels = probabilities.argmax(0).to(torch.uint8).cpu().numpy()
            if model.num_classes == 2:
                labels = labels * 255  # visible in any viewer; class 1 (cell interior) is white
            Image.fromarray(labels).save(args.output / f"{name}.png")
            written += 1
    print(f"wrote {written} mask(s) to {args.output}", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``unet-course`` with ``argv`` (default: the command line); returns the exit status.

    Mistakes the user can fix (a bad path, an unreadable image, a missing checkpoint) print
    one line to stderr and return 2, as argparse does for bad options; no traceback.
    """
    from .data import ChecksumError, DownloadError

    args = build_parser().parse_args(argv)
    try:
        return train_command(args) if args.command == "train" else predict_command(args)
    except (UserError, FileNotFoundError, ValueError, ChecksumError, DownloadError) as error:
        print(f"unet-course {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.command == "train":
            print(f"unet-course train: interrupted; continue with the same command plus --resume "
                  f"(from the last checkpoint in {args.out})", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
