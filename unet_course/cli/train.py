"""``unet-course train``: fit a U-Net and write its run (checkpoint, history, ``model.json``) to ``--out``.

Sizes not given come from the budget's training run (:data:`unet_course.budget.TRAINING_RUNS`,
the same settings chapter 6 trains with). Every check runs before the first write; under
``torchrun`` every process checks, trains, and rank 0 alone writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..budget import TRAINING_RUNS
from ..distributed import process_group
from ..files import check_output_path
from ..runs import (RUN_FILES, RunError, check_resume, model_from_config, read_checkpoint, read_config, training_config,
                    weights_sha256, write_config)
from ..sizes import check_image_fits, check_model_size, check_tile_size
from .common import CommandFailed, UserError, as_option_error, check_device
from .parser import add_overwrite

__all__ = ["DESCRIPTION", "add_arguments", "command"]

SYNTHETIC = ("synthetic-cells", "synthetic-membranes")
DESCRIPTION = {"help": "train a U-Net; writes OUT/checkpoint.pt, history.json, model.json",
               "description": "Train a U-Net with SGD (momentum 0.99), batch 1, large tiles and elastic deformation. "
               "Sizes not given come from the budget."}


def _per_budget(key: str) -> str:
    return "default: the budget's, " + ", ".join(f"{name} {sizes[key]}" for name, sizes in TRAINING_RUNS.items())


def add_arguments(train: argparse.ArgumentParser) -> None:
    """The options of ``train``."""
    from ..data.isbi import NUM_SLICES

    train.add_argument("--data", default=None, metavar="DATA",
                       help="isbi2012, synthetic-cells, synthetic-membranes, or a folder holding images/ and "
                       "masks/ with matching file names (default: synthetic-membranes; with --resume, the run's)")
    train.add_argument("--data-root", type=Path, default=None, metavar="DIR",
                       help="folder holding isbi2012/ (fetched there if missing); default $UNET_COURSE_DATA or ./data")
    train.add_argument("--out", type=Path, default=Path("runs/unet"), metavar="DIR",
                       help="where checkpoint.pt, history.json and model.json go (default: runs/unet)")
    train.add_argument("--budget", choices=list(TRAINING_RUNS), default=None,
                       help="size of run for the options not given (default: chosen as in the notebooks: "
                       "$UNET_COURSE_BUDGET, CI → smoke, CUDA → gpu, else cpu)")
    train.add_argument("--steps", type=int, help="total optimisation steps (with --resume, including earlier ones); "
                       + _per_budget("steps"))
    train.add_argument("--base-channels", type=int, help="channels of the first level (the paper: 64); "
                       + _per_budget("base_channels"))
    train.add_argument("--depth", type=int, help="number of poolings (the paper: 4); " + _per_budget("depth"))
    train.add_argument("--tile-size", type=int, help="input tile side, a valid size for the model (the paper: 572); "
                       + _per_budget("tile_size"))
    train.add_argument("--lr", type=float, default=None, help="SGD learning rate (the paper gives none); "
                       + _per_budget("lr"))
    train.add_argument("--lr-schedule", choices=["constant", "cosine"], default=None,
                       help="constant or cosine decay to 0 over --steps (the paper names neither); " + _per_budget("lr_schedule"))
    train.add_argument("--momentum", type=float, default=0.99, help="SGD momentum (default: 0.99, the paper's)")
    train.add_argument("--batch-size", type=int, default=1, help="tiles per step (default: 1, the paper's)")
    train.add_argument("--loss-weights", choices=["balanced", "unet", "none"], default=None,
                       help="per-pixel loss weights: class balance, the paper's border map, or none "
                       "(" + _per_budget("loss_weights") + ")")
    augment = train.add_mutually_exclusive_group()
    augment.add_argument("--no-augment", action="store_true", help="train without flips, rotations and elastic "
                         "deformation")
    augment.add_argument("--gray-values", action="store_true", help="also vary each tile's brightness, contrast "
                         "and gamma (GrayValues(): ±0.2 each; default: off)")
    train.add_argument("--num-workers", type=int, default=None, metavar="N",
                       help="stream the training images through N worker processes that read them and compute "
                       "their weight maps (0: in the training process), so that memory stays flat for many "
                       "images (default: in memory when they fit in 1 GiB, else streamed in the training process)")
    train.add_argument("--held-out", type=int, default=None, metavar="N",
                       help=f"images kept out of training to validate on (default: 5 of the {NUM_SLICES} ISBI slices, "
                       "4 synthetic images, none of a folder)")
    train.add_argument("--images", type=int, default=24, help="synthetic training images (default: 24)")
    train.add_argument("--image-size", type=int, default=256, help="side of synthetic images (default: 256, "
                       "or the tile's output size if larger)")
    train.add_argument("--eval-every", type=int, default=None, help="validate every N steps (default: 10 times)")
    train.add_argument("--checkpoint-every", type=int, default=None,
                       help="write the checkpoint every N steps (default: 10 times per run)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt to --steps in all")
    add_overwrite(train, "the run already in --out")
    train.add_argument("--seed", type=int, default=0, help="seed of the model, tiles and augmentation (default: 0)")


def _augmentation(args):
    """What ``fit(augment=...)`` gets: the paper's geometry, with gray values when asked, or nothing."""
    from ..gray_values import GrayValues
    from ..batches import paper_augmentation

    return paper_augmentation(gray_values=GrayValues()) if args.gray_values else not args.no_augment


def _isbi_data(args, tile: int):
    """(train, validation or None): the ISBI 2012 slices, fetched into ``--data-root`` if missing."""
    from ..data import ISBI2012, data_root
    from ..data.isbi import NUM_SLICES

    parent = args.data_root or data_root()
    for folder in (parent, parent / "isbi2012"):
        if folder.exists() and not folder.is_dir():
            raise UserError(f"--data-root: {folder} is a file; pass the folder that holds (or will hold) isbi2012/")
    held_out = 5 if args.held_out is None else args.held_out
    if not 0 <= held_out < NUM_SLICES:
        raise UserError(f"--held-out must be 0..{NUM_SLICES - 1} for the {NUM_SLICES} ISBI slices, got {held_out}")
    root, kept = parent / "isbi2012", NUM_SLICES - held_out
    train = ISBI2012(root, download=True, indices=range(kept))  # fetches only what is missing
    return train, (ISBI2012(root, indices=range(kept, NUM_SLICES)) if held_out else None)


def _folder_data(args, tile: int, depth: int):
    """(train, validation or None): a folder of images/ and masks/, every pair read and checked now."""
    from ..data import ImageMaskFolder
    from ..models.unet import unet_margin

    folder = Path(args.data)
    if not folder.is_dir():
        raise UserError(f"--data {args.data}: expected isbi2012, synthetic-cells, synthetic-membranes or a folder "
                        f"holding images/ and masks/, but {folder} is not a folder")
    for part in ("images", "masks"):
        if not (folder / part).is_dir():
            raise UserError(f"{folder} has no {part}/ folder: put images in {folder}/images and masks with "
                            f"the same file names in {folder}/masks")
    data = ImageMaskFolder(folder / "images", folder / "masks", num_classes=2)
    for index, (image_path, _) in enumerate(data.pairs):  # every pair now: a bad file fails before any write
        check_image_fits(tile, *data[index][1].shape, unet_margin(depth), name="--tile-size", image=image_path)
    held_out = 0 if args.held_out is None else args.held_out
    if not 0 <= held_out < len(data):
        raise UserError(f"--held-out {held_out}: the folder holds {len(data)} images, keep at least one to train on")
    kept = len(data) - held_out
    train = torch.utils.data.Subset(data, range(kept))
    return train, (torch.utils.data.Subset(data, range(kept, len(data))) if held_out else None)


def _training_data(args, tile: int, depth: int):
    """(train, validation or None) datasets for ``--data``, every file read and checked."""
    from ..data import SyntheticCells, SyntheticMembranes
    from ..models.unet import unet_output_size

    if args.data == "isbi2012":
        return _isbi_data(args, tile)
    if args.data in SYNTHETIC:
        kind = SyntheticCells if args.data == "synthetic-cells" else SyntheticMembranes
        size = max(args.image_size, unet_output_size(tile, depth))
        held_out = 4 if args.held_out is None else args.held_out
        val = kind(held_out, size, seed=args.seed + 10_000) if held_out else None  # seeds apart from training
        return kind(args.images, size, seed=args.seed), val
    return _folder_data(args, tile, depth)


def _check_options(args) -> None:
    """The options only the command line has, before anything is read or written."""
    for option in ("images", "image_size"):
        if getattr(args, option) < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    if args.held_out is not None and args.held_out < 0:
        raise UserError(f"--held-out must be 0 or more, got {args.held_out}")
    if args.resume and args.overwrite:
        raise UserError("--resume continues the run in --out and --overwrite replaces it; pass one of them")


def _check_run(args, run: dict) -> None:
    """Every number of the run as ``UNet`` and ``fit`` check it, in their words with the option's name."""
    from ..train import check_fit_arguments

    for option in ("base_channels", "depth"):
        if run[option] < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, got {run[option]}")
    try:
        check_model_size(run, what="--base-channels and --depth")  # before a model too large is allocated
        check_fit_arguments(steps=run["steps"], lr=run["lr"], momentum=args.momentum, batch_size=args.batch_size,
                            lr_schedule=run["lr_schedule"], loss_weights=run["loss_weights"],
                            num_workers=args.num_workers, eval_every=args.eval_every,
                            checkpoint_every=args.checkpoint_every)
        check_tile_size(run["tile_size"], run["depth"], name="--tile-size")
    except ValueError as error:
        raise as_option_error(error) from None


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
        given, recorded = getattr(args, key), stored.get(key)
        if given is not None and recorded is not None and given != recorded:
            raise UserError(f"--{key.replace('_', '-')} {given} differs from the run being resumed ({recorded} in "
                            f"{config_path}); leave it out or train into a new --out folder")
    return stored, read_checkpoint(checkpoint)


NAMED_DATA = ("isbi2012", *SYNTHETIC)


def _data(args, stored: dict | None, config_path: Path) -> str:
    """What ``--data`` trains on: as given (a folder as its absolute path), or, resuming, the run's own data."""
    given = args.data
    if stored is not None and "data" in stored:
        recorded = stored["data"]
        same = given is None or given == recorded or (given not in NAMED_DATA and recorded not in NAMED_DATA and
                                                      Path(given).resolve() == Path(recorded).resolve())
        if not same:
            raise UserError(f"--data {given} differs from the run being resumed ({recorded} in {config_path}); leave "
                            f"--data out to continue on its data, or train into a new --out folder")
        return recorded
    given = given or "synthetic-membranes"
    return given if given in NAMED_DATA else str(Path(given).resolve())


def _settings(args, out: Path):
    """The budget, the run's settings (budget ← stored run ← options) and, with ``--resume``, the stored run."""
    from ..budget import Budget, get_budget

    budget = Budget(args.budget, "from --budget") if args.budget else get_budget()
    run = dict(TRAINING_RUNS[budget.name])
    check_output_path(out, "--out")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder for checkpoint.pt, history.json and model.json")
    existing = [name for name in RUN_FILES if (out / name).exists()]
    stored, state = _resumed_run(args, out) if args.resume else (None, None)
    args.data = _data(args, stored, out / "model.json")
    if stored is not None:
        run.update({key: stored[key] for key in run if key in stored})
    elif existing and not args.overwrite:
        raise UserError(f"--out {out} already holds a run ({', '.join(existing)}); continue it with --resume, "
                        f"replace it with --overwrite, or choose another --out folder")
    run.update({key: getattr(args, key) for key in run if getattr(args, key) is not None})
    run["loss_weights"] = None if run["loss_weights"] == "none" else run["loss_weights"]
    return budget, run, stored, state


def command(args) -> int:
    """``unet-course train``: fit a U-Net and write checkpoint, history and model config to ``--out``.

    Under ``torchrun`` this is one of several processes: each joins the process group
    (NCCL on CUDA, gloo on the CPU) and trains, and rank 0 alone writes to ``--out``.
    """
    from ..budget import best_device
    from ..distributed import join_from_environment, leave

    _check_options(args)
    device = check_device(args.device)
    joined = join_from_environment(device or best_device())
    try:
        return _train(args, device)
    finally:
        if joined:
            leave()


def _train(args, device: torch.device | None) -> int:
    """What ``command`` does in each process: every check first, then rank 0 writes."""
    from ..distributed import wait_for_all
    from ..runs import load_parameters
    from ..train import TrainingDiverged, fit

    rank, world_size = process_group()
    out, checkpoint, config_path = args.out, args.out / "checkpoint.pt", args.out / "model.json"
    budget, run, stored, state = _settings(args, out)
    _check_run(args, run)
    if state is not None:
        try:
            check_resume(state, checkpoint, steps=run["steps"], world_size=world_size)
        except RunError:
            raise
        except ValueError as error:  # too few --steps, or another number of processes
            raise as_option_error(error) from None
    train, val = _training_data(args, run["tile_size"], run["depth"])
    channels = train[0][0].shape[0]
    torch.manual_seed(args.seed)  # the initial weights, so that a run repeats
    config = training_config(run, in_channels=channels, data=args.data, budget=budget.name)
    model = model_from_config(config)
    if stored is not None:  # a checkpoint of another model fails now, not after the data is prepared
        load_parameters(model_from_config(config), state, checkpoint, config_path)
        config = ({key: value for key, value in stored.items() if key not in ("threshold", "weights_sha256")}
                  | {"steps": run["steps"]})

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
                      loss_weights=run["loss_weights"], augment=_augmentation(args), num_workers=args.num_workers,
                      eval_every=args.eval_every, checkpoint=checkpoint,
                      checkpoint_every=args.checkpoint_every or max(1, run["steps"] // 10), resume=args.resume,
                      device=device, seed=args.seed, progress=not args.quiet)
    except TrainingDiverged as error:
        kept = f"{checkpoint} keeps the last good step" if checkpoint.exists() else "no checkpoint was written"
        how = "with --overwrite instead of --resume" if args.resume else "with --overwrite"
        raise CommandFailed(f"training diverged at step {error.step} (the loss became NaN or infinite); {kept}; "
                            f"train a new run with a lower learning rate: the same command {how} and --lr "
                            f"{run['lr'] / 10:g} (now {run['lr']:g}), or with --lr {run['lr'] / 10:g} and another "
                            f"--out; or check the images") from None
    if rank == 0:
        _finish(model, train, history, config, out, device)
    return 0


def _finish(model, train, history, config: dict, out: Path, device) -> None:
    """Rank 0, after training: the history, the threshold chosen on the training images, the final ``model.json``."""
    history.save(out / "history.json")
    summary = f"step {history.step[-1]}: loss {history.smoothed_loss()[-1]:.4f}"
    if history.val_iou:
        summary += f", held-out mean IoU {history.val_iou[-1]:.3f}"
    if config["num_classes"] == 2:
        from ..calibrate import choose_threshold

        config["threshold"] = choose_threshold(model, train, device=device)
        summary += f", threshold {config['threshold']:.2f}"
    config["weights_sha256"] = weights_sha256(model.state_dict())  # the weights checkpoint.pt holds now
    write_config(out / "model.json", config)
    print(summary, file=sys.stderr)
