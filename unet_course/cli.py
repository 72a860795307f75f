"""The ``unet-course`` command line: train a U-Net, then segment a folder of images with it.

    unet-course train --data isbi2012 --data-root data --out runs/isbi   # the budget's sizes
    unet-course train --data isbi2012 --out runs/isbi --steps 2000 --resume
    torchrun --nproc-per-node 4 -m unet_course train --data my_data/ --num-workers 4 --out runs/mine
    unet-course predict runs/isbi my_images/ masks/   # 8-fold test-time augmentation; --no-tta is faster
    unet-course evaluate runs/isbi my_data/images my_data/masks --out report/
    unet-course export runs/isbi --format bioimageio --out unet.zip

Training follows the paper (Ronneberger et al., 2015) through :func:`unet_course.train.fit`;
prediction uses overlap-tile :func:`unet_course.tiling.predict_tiled`. Chapters 6 and 7 teach both.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .budget import TRAINING_RUNS  # the run of each budget; chapter 6 trains with the same settings
from .distributed import process_group
from .runs import RUN_FILES, RunError, load_run, read_checkpoint, read_config, write_config
from .sizes import check_tile_size

__all__ = ["main", "build_parser"]

SYNTHETIC = ("synthetic-cells", "synthetic-membranes")


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


class CommandFailed(Exception):
    """A failure (training diverged, a damaged run file): printed as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like ours (the usage is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _per_budget(key: str) -> str:
    return ", ".join(f"{name} {sizes[key]}" for name, sizes in TRAINING_RUNS.items())


TTA_HELP = ("average the 8 flips/rotations of each tile, as the paper averages rotated inputs "
            "(default; --no-tta is 8 times faster)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``unet-course`` with its ``train``, ``predict``, ``evaluate`` and ``export`` subcommands."""
    from .evaluation import WARPING_MAX_PIXELS
    from .export import FORMATS

    parser = _Parser(prog="unet-course", description="Train a U-Net the paper's way, and use it.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,predict,evaluate,export}")

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
    train.add_argument("--budget", choices=list(TRAINING_RUNS), default=None,
                       help="size of run for the options not given (default: chosen as in the notebooks: "
                       "$UNET_COURSE_BUDGET, CI → smoke, CUDA → gpu, else cpu)")
    train.add_argument("--steps", type=int, help="total optimisation steps (with --resume, including earlier ones); default: the budget's, " + _per_budget("steps"))
    train.add_argument("--base-channels", type=int, help="channels of the first level (the paper: 64); default: the budget's, " + _per_budget("base_channels"))
    train.add_argument("--depth", type=int, help="number of poolings (the paper: 4); default: the budget's, " + _per_budget("depth"))
    train.add_argument("--tile-size", type=int, help="input tile side, a valid size for the model (the paper: 572); default: the budget's, " + _per_budget("tile_size"))
    train.add_argument("--lr", type=float, default=None, help="SGD learning rate (the paper's recipe: 0.003); "
                       "default: the budget's, " + _per_budget("lr"))
    train.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None,
                       help="constant (the paper's) or cosine decay to 0 over --steps; default: the budget's, "
                       + _per_budget("lr_schedule"))
    train.add_argument("--momentum", type=float, default=0.99, help="SGD momentum (default: 0.99, the paper's)")
    train.add_argument("--batch-size", type=int, default=1, help="tiles per step (default: 1, the paper's)")
    train.add_argument("--loss-weights", choices=["balanced", "unet", "none"], default=None,
                       help="per-pixel loss weights: class balance, the paper's border map, or none "
                       "(default: the budget's, " + _per_budget("loss_weights") + ")")
    train.add_argument("--no-augment", action="store_true", help="train without flips, rotations and elastic "
                       "deformation")
    train.add_argument("--num-workers", type=int, default=None, metavar="N",
                       help="stream the training images through N worker processes that read them and compute "
                       "their weight maps (0: in the training process), so that memory stays flat for many "
                       "images (default: all images in memory before the first step)")
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
    train.add_argument("--overwrite", action="store_true", help="replace the run already in --out (without it, "
                       "an existing run is never replaced)")
    train.add_argument("--seed", type=int, default=0, help="seed of the model, tiles and augmentation (default: 0)")
    train.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.add_argument("--debug", action="store_true", help="show the traceback of an error")

    predict = commands.add_parser("predict", help="segment images with a trained U-Net; writes one PNG mask each",
                                  description="Segment every image of a folder (or every page of a TIFF) by "
                                  "overlap-tile prediction; masks are PNGs, 0/255 for two classes (255 where the "
                                  "probability of class 1 is above the run's threshold), else class ids.")
    predict.add_argument("checkpoint", type=Path, metavar="CHECKPOINT",
                         help="a training folder (checkpoint.pt + model.json) or a .pt file with a .json beside it")
    predict.add_argument("input", type=Path, metavar="INPUT", help="a folder of images or a (multi-page) TIFF")
    predict.add_argument("output", type=Path, metavar="OUTPUT_DIR", help="folder for the masks (created)")
    predict.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True, help=TTA_HELP)
    predict.add_argument("--tile-size", type=int, default=None, help="input tile side (default: the training tile)")
    predict.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass (default: 4)")
    predict.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    predict.add_argument("--overwrite", action="store_true", help="replace masks already in OUTPUT_DIR (without "
                         "it, an existing mask is never replaced)")
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.add_argument("--debug", action="store_true", help="show the traceback of an error")

    evaluate = commands.add_parser("evaluate", help="score a trained U-Net on images with masks; writes metrics.csv, "
                                   "summary.json and report.html",
                                   description="Predict every image of a folder by overlap-tile and score it against "
                                   "the mask of the same name: pixel error, IoU and Dice per class; for two classes "
                                   "also the Rand and warping errors, the F1 of the objects at IoU 0.5 and a sweep of "
                                   "the threshold. The warping error is left out (empty) for images above "
                                   f"{WARPING_MAX_PIXELS:,} pixels.")
    evaluate.add_argument("checkpoint", type=Path, metavar="RUN",
                          help="a training folder (checkpoint.pt + model.json) or a .pt file with a .json beside it")
    evaluate.add_argument("images", type=Path, metavar="IMAGES", help="a folder of images")
    evaluate.add_argument("masks", type=Path, metavar="MASKS", help="a folder of masks with the images' file names")
    evaluate.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the report (created)")
    evaluate.add_argument("--tta", action=argparse.BooleanOptionalAction, default=True, help=TTA_HELP)
    evaluate.add_argument("--tile-size", type=int, default=None, help="input tile side, a valid size for the model "
                          "(default: predict_tiled's, the largest that fits; a valid U-Net's scores do not depend on it)")
    evaluate.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available)")
    evaluate.add_argument("--overwrite", action="store_true", help="replace a report already in --out (without it, "
                          "an existing report is never replaced)")
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")
    evaluate.add_argument("--debug", action="store_true", help="show the traceback of an error")

    export = commands.add_parser("export", help="write a trained U-Net as ONNX, TorchScript or a bioimage.io package",
                                 description="Export a run for other tools, checked against PyTorch on a valid tile "
                                 "(largest difference at most 1e-4). The exported network takes only the sizes the "
                                 "U-Net takes (min_size + k·step per side) and returns an output smaller by its "
                                 "margin on each side. Needs pip install 'unet-course[export]'.")
    export.add_argument("checkpoint", type=Path, metavar="RUN",
                        help="a training folder (checkpoint.pt + model.json) or a .pt file with a .json beside it")
    export.add_argument("--format", required=True, choices=FORMATS,
                        help="onnx (dynamic height and width), torchscript (traced), or bioimageio (a model package "
                        "zip for Fiji/deepImageJ and ilastik, validated)")
    export.add_argument("--out", type=Path, required=True, metavar="PATH", help="the file to write")
    export.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    export.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


def _check_device(name: str | None) -> torch.device | None:
    """``--device`` as a torch device that this machine has, or None for the best available."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name} is not a device name; use cpu, cuda, cuda:N or mps") from None
    usable = {"cpu": True, "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
              "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not usable.get(device.type, False):
        raise UserError(f"--device {name}: PyTorch finds no such device on this machine; leave --device out to use "
                        f"the best one available, or pass --device cpu")
    return device


def _training_data(args, tile: int, output: int):
    """(train, validation or None) datasets for ``--data``, every file read and checked."""
    from .data import ISBI2012, ImageMaskFolder, SyntheticCells, SyntheticMembranes, data_root

    if args.data == "isbi2012":
        parent = args.data_root or data_root()
        for folder in (parent, parent / "isbi2012"):
            if folder.exists() and not folder.is_dir():
                raise UserError(f"--data-root: {folder} is a file; pass the folder that holds (or will hold) "
                                f"isbi2012/")
        held_out = 5 if args.held_out is None else args.held_out
        if not 0 <= held_out < 30:
            raise UserError(f"--held-out must be 0..29 for the 30 ISBI slices, got {held_out}")
        root = parent / "isbi2012"
        train = ISBI2012(root, download=True, indices=range(30 - held_out))  # fetches only what is missing
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
    data = ImageMaskFolder(folder / "images", folder / "masks", num_classes=2)
    margin = (tile - output) // 2
    for index, (image_path, _) in enumerate(data.pairs):  # every pair now: a bad file fails before any write
        height, width = data[index][1].shape
        if min(height, width) + 2 * margin < tile:
            raise UserError(f"{image_path} is {width}×{height} pixels, too small for --tile-size {tile} even with "
                            f"{margin} mirrored pixels per side; pass a smaller --tile-size")
    held_out = 0 if args.held_out is None else args.held_out
    if not 0 <= held_out < len(data):
        raise UserError(f"--held-out {held_out}: the folder holds {len(data)} images, keep at least one to train on")
    indices = list(range(len(data)))
    train = torch.utils.data.Subset(data, indices[:len(data) - held_out])
    return train, (torch.utils.data.Subset(data, indices[len(data) - held_out:]) if held_out else None)


def _check_train_numbers(args) -> None:
    """Every numeric option of ``train`` in range, before anything is read or written."""
    if args.lr is not None and not (args.lr > 0 and math.isfinite(args.lr)):
        raise UserError(f"--lr must be a finite number above 0, got {args.lr}; leave it out for the budget's")
    if not 0 <= args.momentum < 1:
        raise UserError(f"--momentum must be at least 0 and below 1, got {args.momentum}; the paper's is 0.99")
    for option in ("batch_size", "images", "image_size", "eval_every", "checkpoint_every"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.held_out is not None and args.held_out < 0:
        raise UserError(f"--held-out must be 0 or more, got {args.held_out}")
    if args.num_workers is not None and args.num_workers < 0:
        raise UserError(f"--num-workers must be 0 or more, got {args.num_workers}; leave it out to hold the "
                        f"images in memory")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it; pass one of them")


def _resumed_run(args, out: Path) -> tuple[dict, dict]:
    """The stored ``model.json`` and checkpoint of the run ``--resume`` continues, checked against the options."""
    checkpoint, config_path = out / "checkpoint.pt", out / "model.json"
    if not checkpoint.is_file():
        also = " (with --overwrite, as the folder holds other run files)" if any((out / n).exists() for n in RUN_FILES) else ""
        raise UserError(f"--resume: there is no {checkpoint} to continue from; leave out --resume to start a new "
                        f"run{also}")
    if not config_path.is_file():
        raise UserError(f"{config_path} is missing, so the run in {out} cannot be rebuilt to resume it")
    stored = read_config(config_path)
    for key in ("base_channels", "depth", "tile_size", "lr", "lr_schedule", "loss_weights"):
        given = getattr(args, key)
        recorded = stored.get(key)
        if given is not None and recorded is not None and given != recorded:
            raise UserError(f"--{key.replace('_', '-')} {given} differs from the run being resumed ({recorded} in "
                            f"{config_path}); leave it out or train into a new --out folder")
    state = read_checkpoint(checkpoint)
    if not isinstance(state.get("step"), int) or "model" not in state:
        raise CommandFailed(f"{checkpoint} is not a training checkpoint (it has no step count); train again")
    trained_by, world_size = state.get("world_size", 1), process_group()[1]
    if trained_by != world_size:
        how = "without torchrun" if trained_by == 1 else f"with torchrun --nproc-per-node {trained_by}"
        raise UserError(f"--resume: {checkpoint} was trained by {trained_by} process(es) and this run has "
                        f"{world_size}; resume it {how}, as each process's share of the tiles depends on their number")
    return stored, state


def train_command(args) -> int:
    """``unet-course train``: fit a U-Net and write checkpoint, history and model config to ``--out``.

    Under ``torchrun`` this is one of several processes: each joins the process group
    (NCCL on CUDA, gloo on the CPU) and trains, and rank 0 alone writes to ``--out``.
    """
    from .budget import best_device
    from .distributed import join_from_environment, leave

    _check_train_numbers(args)
    device = _check_device(args.device)
    joined = join_from_environment(device or best_device())
    try:
        return _train(args, device)
    finally:
        if joined:
            leave()


def _train(args, device: torch.device | None) -> int:
    """What ``train_command`` does in each process: every check first, then rank 0 writes."""
    from .budget import Budget, get_budget
    from .distributed import wait_for_all
    from .models.unet import UNet, unet_output_size
    from .runs import load_weights
    from .train import TrainingDiverged, fit

    rank = process_group()[0]
    budget = Budget(args.budget, "from --budget") if args.budget else get_budget()
    run = dict(TRAINING_RUNS[budget.name])
    out, checkpoint, config_path = args.out, args.out / "checkpoint.pt", args.out / "model.json"
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for checkpoint.pt, history.json and model.json")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    stored, state = _resumed_run(args, out) if args.resume else (None, None)
    if stored is not None:
        run.update({key: stored[key] for key in run if key in stored})
    elif existing and not args.overwrite:
        raise UserError(f"--out {out} already holds a run ({', '.join(existing)}); continue it with --resume, "
                        f"replace it with --overwrite, or choose another --out folder")
    run.update({key: getattr(args, key) for key in run if getattr(args, key) is not None})
    run["loss_weights"] = None if run["loss_weights"] == "none" else run["loss_weights"]
    for option in ("steps", "base_channels", "depth"):
        if run[option] < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, got {run[option]}")
    done = state["step"] if state else 0
    if run["steps"] < done:
        raise UserError(f"--steps {run['steps']} is fewer than the {done} steps {checkpoint} already holds; --steps "
                        f"is the total, so pass --steps {done} or more, or train into a new --out folder")
    check_tile_size(run["tile_size"], run["depth"], name="--tile-size")
    train, val = _training_data(args, run["tile_size"], unet_output_size(run["tile_size"], run["depth"]))
    channels = train[0][0].shape[0]
    torch.manual_seed(args.seed)  # the initial weights, so that a run repeats
    model = UNet(in_channels=channels, base_channels=run["base_channels"], depth=run["depth"])
    config = {"in_channels": channels, "num_classes": 2, "padding": "valid", **run, "data": args.data,
              "budget": budget.name}
    if stored is not None:  # a checkpoint of another model fails now, not after the data is prepared
        load_weights(UNet(in_channels=channels, base_channels=run["base_channels"], depth=run["depth"]), state,
                     checkpoint, config_path)
        config = {key: value for key, value in stored.items() if key != "threshold"} | {"steps": run["steps"]}

    # Every check has passed: from here on, files are written, by rank 0 alone under torchrun.
    wait_for_all()  # no process writes before every process has looked at what --out holds
    if rank == 0:
        print(f"{budget}; UNet(base_channels={run['base_channels']}, depth={run['depth']}), tile {run['tile_size']}, "
              f"{run['steps']} steps on {len(train)} images ({args.data}) → {out}", file=sys.stderr)
        if args.overwrite:
            for name in RUN_FILES:
                (out / name).unlink(missing_ok=True)
        if not args.resume:
            write_config(config_path, config)  # before training, so that an interrupted run can be resumed
    try:
        history = fit(model, train, val, steps=run["steps"], lr=run["lr"], lr_schedule=run["lr_schedule"],
                      momentum=args.momentum, batch_size=args.batch_size, tile_size=run["tile_size"],
                      loss_weights=run["loss_weights"], augment=not args.no_augment, num_workers=args.num_workers,
                      eval_every=args.eval_every, checkpoint=checkpoint,
                      checkpoint_every=args.checkpoint_every or max(1, run["steps"] // 10), resume=args.resume,
                      device=device, seed=args.seed, progress=not args.quiet)
    except TrainingDiverged as error:
        kept = f"{checkpoint} keeps the last good step" if checkpoint.exists() else "no checkpoint was written"
        raise CommandFailed(f"training diverged at step {error.step} (the loss became NaN or infinite); {kept}; "
                            f"train again with a lower --lr (now {run['lr']}), or check the images") from None
    if rank != 0:
        return 0
    history.save(out / "history.json")
    summary = f"step {history.step[-1]}: loss {history.smoothed_loss()[-1]:.4f}"
    if history.val_iou:
        summary += f", held-out mean IoU {history.val_iou[-1]:.3f}"
    if config["num_classes"] == 2:
        from .calibrate import choose_threshold

        config["threshold"] = choose_threshold(model, train, device=device)
        summary += f", threshold {config['threshold']:.2f}"
    write_config(config_path, config)
    print(summary, file=sys.stderr)
    return 0


def _mask_names(path: Path) -> list[str]:
    """The mask file names for one input file (one per page of a multi-page TIFF)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as file:
            pages = getattr(file, "n_frames", 1)
    except (UnidentifiedImageError, OSError) as error:
        raise UserError(f"cannot read {path} as an image ({error}); expected PNG, TIFF or JPEG files") from None
    return [f"{path.stem}.png"] if pages == 1 else [f"{path.stem}_{index:03d}.png" for index in range(pages)]


def _planned_masks(files: list[Path], input_path: Path, output: Path, overwrite: bool) -> list[list[Path]]:
    """Where each input's masks go; refuses collisions, inputs as outputs and unasked-for replacements."""
    inputs, output = input_path.resolve(), output.resolve()
    if output.exists() and not output.is_dir():
        raise UserError(f"{output} is a file; pass a folder for the masks")
    if input_path.is_dir() and (output == inputs or inputs in output.parents):
        raise UserError(f"the output folder {output} is the input folder or inside it; masks would mix with (or "
                        f"replace) the images: pass an output folder outside {inputs}")
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
    existing = [mask.name for masks in planned for mask in masks if mask.exists()]
    if existing and not overwrite:
        listed = ", ".join(existing[:3]) + (" …" if len(existing) > 3 else "")
        raise UserError(f"{output} already holds {len(existing)} of the masks to write ({listed}); pass --overwrite "
                        f"to replace them, or choose another output folder")
    return planned


def _input_images(path: Path, *, single_file: bool = True) -> list[Path]:
    """The image files of a folder (or the one file ``path``), refused when there are none."""
    from .data.images import IMAGE_EXTENSIONS, image_files

    if path.is_dir():
        files = image_files(path)
        if not files:
            raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}; pass a folder that holds "
                            f"PNG, TIFF or JPEG files")
        return files
    if path.is_file() and single_file:
        return [path]
    if path.exists():
        raise UserError(f"{path} is not a folder: pass a folder of images")
    raise UserError(f"{path} does not exist: pass a folder of images" + (" or a TIFF file" if single_file else ""))


def predict_command(args) -> int:
    """``unet-course predict``: one PNG mask per input image, by overlap-tile prediction."""
    from PIL import Image

    from .budget import best_device
    from .data.download import atomic_file
    from .data.images import read_image_pages
    from .tiling import predict_tiled

    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = _check_device(args.device) or best_device()
    model, config = load_run(args.checkpoint)
    tile = args.tile_size if args.tile_size is not None else config.get("tile_size")
    if tile is not None:
        check_tile_size(tile, model, name="--tile-size" if args.tile_size is not None else f"the tile_size of {args.checkpoint}")

    files = _input_images(args.input)
    planned = _planned_masks(files, args.input, args.output, args.overwrite)
    for path in tqdm(files, desc="checking", unit="image", disable=args.quiet, leave=False):
        read_image_pages(path, channels=model.in_channels)  # unreadable or non-finite: fails before any mask
    threshold = config.get("threshold", 0.5)
    model.to(device).eval()
    args.output.mkdir(parents=True, exist_ok=True)
    written = 0
    for path, masks in tqdm(list(zip(files, planned)), desc="images", unit="image", disable=args.quiet):
        for image, mask_path in zip(read_image_pages(path, channels=model.in_channels), masks):
            probabilities = predict_tiled(model, torch.from_numpy(image).to(device), tile_size=tile,
                                          batch_size=args.batch_size, tta=args.tta)
            if model.num_classes == 2:  # class 1 (cell interior) is white, visible in any viewer
                labels = (probabilities[1] > threshold).to(torch.uint8).cpu().numpy() * 255  # as the metrics cut
            else:
                labels = probabilities.argmax(0).to(torch.uint8).cpu().numpy()
            with atomic_file(mask_path) as (file, _):
                Image.fromarray(labels).save(file, format="PNG")
            written += 1
    print(f"wrote {written} mask(s) to {args.output}", file=sys.stderr)
    return 0


def evaluate_command(args) -> int:
    """``unet-course evaluate``: score a run on a folder of images with masks; writes the report to ``--out``."""
    from .budget import best_device
    from .data import ImageMaskFolder
    from .evaluation import evaluate_folder
    from .report import check_report_folder, write_report

    device = _check_device(args.device) or best_device()
    model, config = load_run(args.checkpoint)
    tile = args.tile_size if args.tile_size is None else check_tile_size(args.tile_size, model, name="--tile-size")
    _input_images(args.images, single_file=False)
    if not args.masks.is_dir():
        raise UserError(f"{args.masks} is not a folder: pass the folder of masks, named as the images")
    out = args.out.resolve()
    if out in (args.images.resolve(), args.masks.resolve()):
        raise UserError(f"--out {args.out} is the images or masks folder; pass a folder of its own for the report")
    check_report_folder(args.out, overwrite=args.overwrite)
    data = ImageMaskFolder(args.images, args.masks, grayscale=model.in_channels == 1, num_classes=model.num_classes)
    for index in tqdm(range(len(data)), desc="checking", unit="image", disable=args.quiet, leave=False):
        data[index]  # unreadable, mismatched or out-of-range: fails before the first write
    report = evaluate_folder(model, data, threshold=config.get("threshold", 0.5), tta=args.tta, tile_size=tile,
                             device=device, progress=not args.quiet)
    write_report(report, args.out, overwrite=args.overwrite)
    overall = report.overall
    line = f"{len(report.rows) - 1} image(s): pixel error {overall['pixel_error']:.4f}"
    if "rand_error" in overall:
        line += f", Rand error {overall['rand_error']:.4f}, object F1 {overall['instance_f1']:.3f}"
    print(f"{line}; wrote metrics.csv, summary.json and report.html to {args.out}", file=sys.stderr)
    return 0


def export_command(args) -> int:
    """``unet-course export``: write a run as ONNX, TorchScript or a bioimage.io package, checked against PyTorch."""
    from .export import export_run

    model, config = load_run(args.checkpoint)
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


def _one_line(error: BaseException) -> str:
    """An exception's message on one line, starting in lower case like the rest of the line."""
    message = " ".join(str(error).split()) or type(error).__name__
    return message[0].lower() + message[1:] if message[:1].isupper() and message[1:2].islower() else message


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``unet-course`` with ``argv`` (default: the command line); returns the exit status.

    Every error is one line on stderr, ``unet-course <command>: error: <what>; <how to fix>``:
    status 2 for a mistake in the command (a bad option, path or input file), 1 for a
    failure (training diverged, a damaged checkpoint, a failed download, a full disk).
    ``--debug`` shows the traceback instead.
    """
    from .data import ChecksumError, DownloadError

    args = build_parser().parse_args(argv)
    try:
        commands = {"train": train_command, "predict": predict_command, "evaluate": evaluate_command,
                    "export": export_command}
        return commands[args.command](args)
    except KeyboardInterrupt:
        if args.command == "train":
            how = ("continue with the same command plus --resume" if (args.out / "checkpoint.pt").exists()
                   else "no step was saved yet; start again with --overwrite")
            print(f"unet-course train: interrupted; {how}", file=sys.stderr)
        return 130
    except Exception as error:
        if args.debug:
            raise
        if isinstance(error, RunError):
            status, message = 1, _one_line(error)
        elif isinstance(error, (UserError, ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError)):
            status, message = 2, _one_line(error)
        elif isinstance(error, (CommandFailed, RunError, ChecksumError, DownloadError, torch.cuda.OutOfMemoryError)):
            status, message = 1, _one_line(error)
            if isinstance(error, torch.cuda.OutOfMemoryError):
                message = "the GPU ran out of memory; pass a smaller --tile-size or --batch-size"
        elif isinstance(error, OSError):
            status, message = 1, f"{_one_line(error)}; check the path, its permissions and the free disk space"
        else:
            status, message = 1, (f"unexpected {type(error).__name__}: {_one_line(error)}; run again with --debug "
                                  f"to see where it happened")
        print(f"unet-course {args.command}: error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
