"""A training run on disk, read back: ``model.json`` and ``checkpoint.pt``, checked before use.

``unet-course train --out RUN`` (and chapter 6) write a run folder; ``predict``, ``evaluate``,
``export`` and :func:`unet_course.hub.pack_run` read it here, so that a damaged or foreign
file gets the same message everywhere. ``model.json`` names things as :class:`UNet` and
:func:`unet_course.fit` do: ``base_channels``, ``depth``, ``tile_size``, ``loss_weights``, plus the
``threshold`` chosen on the training images (chapter 7).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .data.download import atomic_file
from .models.unet import UNet

__all__ = ["RUN_FILES", "RunError", "run_files", "read_config", "write_config", "model_from_config", "read_checkpoint",
           "load_weights", "load_run"]

RUN_FILES = ("checkpoint.pt", "history.json", "model.json")  # what `unet-course train` writes to --out


class RunError(ValueError):
    """A run file that exists but cannot be used: damaged, incomplete, or of another model."""


def run_files(run: str | os.PathLike) -> tuple[Path, Path]:
    """``(checkpoint, model.json)`` of a run folder, or of a ``.pt`` file with its ``.json`` beside it.

    Raises ``FileNotFoundError`` naming what is missing.
    """
    run = Path(run)
    checkpoint, config = (run / "checkpoint.pt", run / "model.json") if run.is_dir() else (run, run.with_suffix(".json"))
    for path, what in ((checkpoint, "checkpoint"), (config, "model description")):
        if not path.is_file():
            raise FileNotFoundError(f"no {what} at {path}: pass the --out folder of `unet-course train` "
                                    f"(or a .pt file with its .json beside it)")
    return checkpoint, config


def read_config(path: str | os.PathLike) -> dict:
    """A run's ``model.json``, checked: a damaged or incomplete file raises :class:`RunError` naming itself."""
    path = Path(path)
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunError(f"{path} is not valid JSON ({error}); it is written by `unet-course train` beside "
                       f"checkpoint.pt: restore it, or train again") from None
    if not isinstance(config, dict):
        raise RunError(f"{path} does not describe a model; restore the model.json written by `unet-course train`, "
                       f"or train again")
    integers = {"base_channels": 1, "depth": 1, "in_channels": 1, "num_classes": 2, "tile_size": 1}
    missing = [key for key in ("base_channels", "depth") if key not in config]
    wrong = [key for key, low in integers.items() if key in config and (type(config[key]) is not int or config[key] < low)]
    threshold = config.get("threshold", 0.5)
    if type(threshold) not in (int, float) or not 0 <= threshold <= 1:
        wrong.append("threshold")
    if config.get("padding", "valid") not in ("valid", "same"):
        wrong.append("padding")
    if missing or wrong:
        what = ", ".join([f"no {key}" for key in missing] + [f"a bad {key}" for key in wrong])
        raise RunError(f"{path} is incomplete or damaged ({what}); restore the model.json written by "
                       f"`unet-course train` beside its checkpoint, or train again")
    return config


def write_config(path: str | os.PathLike, config: dict) -> None:
    """Write ``model.json`` atomically."""
    with atomic_file(path) as (file, _):
        file.write((json.dumps(config, indent=2) + "\n").encode())


def model_from_config(config: dict) -> UNet:
    """Rebuild the U-Net a ``model.json`` describes (the keys of :class:`UNet`; others are ignored)."""
    return UNet(in_channels=config.get("in_channels", 1), num_classes=config.get("num_classes", 2),
                base_channels=config["base_channels"], depth=config["depth"],
                padding=config.get("padding", "valid"), batch_norm=config.get("batch_norm", False))


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint loaded with ``weights_only=True``; a damaged or foreign file raises :class:`RunError`."""
    from .train import CheckpointError, load_checkpoint

    try:
        state = load_checkpoint(path)
    except CheckpointError as error:
        raise RunError(str(error)) from None
    if not isinstance(state, dict):
        raise RunError(f"{path} is not a checkpoint of `unet-course train` (no state dict); train again")
    return state


def load_weights(model: torch.nn.Module, state: dict, checkpoint: Path, config_path: Path) -> None:
    """Load a checkpoint's weights into ``model``, refusing another architecture or diverged weights."""
    weights = state.get("model", state)
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as error:
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "another model")
        raise RunError(f"the checkpoint {checkpoint} does not fit the model in {config_path} ({detail[:160]}); "
                       f"keep each checkpoint with the model.json written beside it, or train again") from None
    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
        raise RunError(f"the checkpoint {checkpoint} holds NaN or infinite weights: the training that wrote it "
                       f"diverged; train again with a lower --lr")


def load_run(run: str | os.PathLike) -> tuple[UNet, dict]:
    """The trained :class:`UNet` of a run (eval mode, on the CPU) and its ``model.json``.

    ``run`` is the ``--out`` folder of ``unet-course train`` or a ``.pt`` file with its
    ``.json`` beside it (as chapter 6 writes). Raises ``FileNotFoundError`` for a missing
    file and :class:`RunError` for one that cannot be used, each naming the file and the fix.
    """
    checkpoint, config_path = run_files(run)
    config = read_config(config_path)
    model = model_from_config(config)
    load_weights(model, read_checkpoint(checkpoint), checkpoint, config_path)
    return model.eval(), config
