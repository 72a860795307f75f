"""A training run on disk, written and read in one place: the checkpoint, ``model.json`` and the history.

:func:`unet_course.fit` writes its checkpoint here; ``unet-course train --out RUN`` and chapter 6
add ``model.json``; ``predict``, ``evaluate``, ``export``, :mod:`unet_course.hub` and chapter 7
read them back here, so that a damaged or foreign file gets the same message everywhere and
resuming is refused for the same reasons in Python and on the command line. ``model.json``
names things as :class:`UNet` and :func:`unet_course.fit` do: ``base_channels``, ``depth``,
``tile_size``, ``loss_weights``, plus the ``threshold`` chosen on the training images (chapter 7).

A checkpoint carries the SHA-256 of its weights (``model_sha256``), and a finished run's
``model.json`` the same digest (``weights_sha256``): flipped bits, or a ``model.json`` beside
another run's weights, are refused on load rather than predicted with. Files written before
the digests existed load without that check.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

import torch
from torch import nn

from .arrays import THRESHOLD
from .files import atomic_file
from .models.unet import UNet
from .sizes import check_model_size

__all__ = ["RUN_FILES", "RunError", "History", "run_files", "config_path", "read_config", "write_config",
           "run_threshold", "model_from_config", "model_description", "read_checkpoint", "write_checkpoint",
           "check_resume", "check_config_fits", "load_parameters", "load_run", "weights_sha256"]

RUN_FILES = ("checkpoint.pt", "history.json", "model.json")  # what `unet-course train` writes to --out


class RunError(ValueError):
    """A run file that exists but cannot be used: damaged, incomplete, of another model, or unsafe to load."""


@dataclass
class History:
    """What a run measured: training loss per step, validation figures every few steps."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_iou: list[float] = field(default_factory=list)
    seconds_per_step: list[float] = field(default_factory=list)

    def record(self, step: int, loss: float, seconds: float) -> None:
        """Append one training step: its number (1-based), loss and duration."""
        self.step.append(step)
        self.loss.append(loss)
        self.seconds_per_step.append(seconds)

    def record_validation(self, step: int, loss: float, iou: float) -> None:
        """Append one validation: the step it followed, the held-out loss and mean IoU."""
        self.val_step.append(step)
        self.val_loss.append(loss)
        self.val_iou.append(iou)

    def last_validation(self, window: int = 20) -> str:
        """The last validation as one line, with the mean step time of the last ``window`` steps."""
        return (f"step {self.val_step[-1]}: loss {self.smoothed_loss()[-1]:.4f}, val loss {self.val_loss[-1]:.4f}, "
                f"val IoU {self.val_iou[-1]:.3f}, {1000 * np.mean(self.seconds_per_step[-window:]):.0f} ms/step")

    def smoothed_loss(self, window: int = 20) -> np.ndarray:
        """Running mean of the training loss over ``window`` steps (shorter at the start)."""
        loss = np.asarray(self.loss, dtype=float)
        cumulative = np.cumsum(np.insert(loss, 0, 0.0))
        starts = np.maximum(np.arange(1, len(loss) + 1) - window, 0)
        return (cumulative[1:] - cumulative[starts]) / (np.arange(1, len(loss) + 1) - starts)

    def plot(self, ax=None, window: int = 20):
        """Loss curve (raw and smoothed) with the validation IoU on a second axis; returns the axes."""
        import matplotlib.pyplot as plt  # plotting is optional for library users

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(self.step, self.loss, color="tab:blue", alpha=0.25, lw=0.8)
        ax.plot(self.step, self.smoothed_loss(window), color="tab:blue", label="training loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        if self.val_step:
            right = ax.twinx()
            right.plot(self.val_step, self.val_iou, "o-", color="tab:orange", label="validation IoU")
            right.set_ylabel("validation IoU")
            right.set_ylim(0, 1)
            right.legend(loc="upper right")
        ax.legend(loc="upper left")
        return ax

    def save(self, path: str | os.PathLike) -> None:
        """Write the history as JSON (atomically)."""
        with atomic_file(path) as (file, _):
            file.write(json.dumps(asdict(self)).encode())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "History":
        return cls(**json.loads(Path(path).read_text()))


def config_path(run: str | os.PathLike) -> Path:
    """Where the ``model.json`` of ``run`` lives: ``RUN/model.json`` for a folder, the ``.json`` beside a ``.pt`` file."""
    run = Path(run)
    return run / "model.json" if run.is_dir() else run.with_suffix(".json")


def run_files(run: str | os.PathLike) -> tuple[Path, Path]:
    """``(checkpoint, model.json)`` of a run folder, or of a ``.pt`` file with its ``.json`` beside it.

    Raises ``FileNotFoundError`` naming what is missing.
    """
    run = Path(run)
    checkpoint = run / "checkpoint.pt" if run.is_dir() else run
    for path, what in ((checkpoint, "checkpoint"), (config_path(run), "model description")):
        if not path.is_file():
            raise FileNotFoundError(f"no {what} at {path}: pass the --out folder of `unet-course train` "
                                    f"(or a .pt file with its .json beside it)")
    return checkpoint, config_path(run)


def run_threshold(config: dict) -> float:
    """The probability of class 1 above which a run's pixels are class 1: its stored threshold, else the default."""
    return config.get("threshold", THRESHOLD)


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
    threshold = run_threshold(config)
    if type(threshold) not in (int, float) or not 0 <= threshold <= 1:
        wrong.append("threshold")
    if config.get("padding", "valid") not in ("valid", "same"):
        wrong.append("padding")
    if "weights_sha256" in config and not (isinstance(config["weights_sha256"], str)
                                           and len(config["weights_sha256"]) == 64):
        wrong.append("weights_sha256")
    if missing or wrong:
        what = ", ".join([f"no {key}" for key in missing] + [f"a bad {key}" for key in wrong])
        raise RunError(f"{path} is incomplete or damaged ({what}); restore the model.json written by "
                       f"`unet-course train` beside its checkpoint, or train again")
    return config


def write_config(path: str | os.PathLike, config: dict) -> None:
    """Write ``model.json`` atomically (chapter 6 writes one beside its checkpoint)."""
    with atomic_file(path) as (file, _):
        file.write((json.dumps(config, indent=2) + "\n").encode())


def model_from_config(config: dict) -> UNet:
    """Rebuild the U-Net a ``model.json`` describes (the keys of :class:`UNet`; others are ignored).

    Raises ``ValueError`` before allocating a model too large for this machine
    (:func:`unet_course.sizes.check_model_size`).
    """
    check_model_size(config)
    return UNet(in_channels=config.get("in_channels", 1), num_classes=config.get("num_classes", 2),
                base_channels=config["base_channels"], depth=config["depth"],
                padding=config.get("padding", "valid"), batch_norm=config.get("batch_norm", False))


def training_config(run: dict, *, in_channels: int, data: str, budget: str, **extra) -> dict:
    """The ``model.json`` a new training run starts with: a valid two-class U-Net, ``run``'s settings.

    ``run`` is a :data:`~unet_course.budget.TRAINING_RUNS` entry, possibly overridden
    (``base_channels``, ``depth``, ``tile_size``, ``steps``, ``lr``, ...); ``extra`` adds what the
    caller records beside them (cross-validation: the fold's slices). Build the network with
    :func:`model_from_config`; ``threshold`` and ``weights_sha256`` are added when training ends.
    """
    return {"in_channels": in_channels, "num_classes": 2, "padding": "valid", **run, "data": data, "budget": budget,
            **extra}


def model_description(model: nn.Module) -> dict:
    """What a checkpoint records of the model's shape, to refuse resuming into another one."""
    described = {"model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters())}
    for name in ("in_channels", "num_classes", "base_channels", "depth", "padding", "batch_norm"):
        if isinstance(getattr(model, name, None), (int, str, bool)):
            described[name] = getattr(model, name)
    return described


def weights_sha256(parameters: dict) -> str:
    """The SHA-256 of a state dict's tensors: each name, dtype, shape and bytes, in name order (hex, 64 digits).

    The same weights give the same digest on any device and memory layout; it is what a
    checkpoint's ``model_sha256`` and a finished run's ``model.json`` ``weights_sha256`` hold.
    """
    digest = hashlib.sha256()
    for name in sorted(parameters):
        value = parameters[name]
        digest.update(f"{name}\0{getattr(value, 'dtype', type(value).__name__)}\0{tuple(getattr(value, 'shape', ()))}\0"
                      .encode())
        if isinstance(value, torch.Tensor):
            digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()


def write_checkpoint(path: str | os.PathLike | BinaryIO, **state) -> None:
    """Save a checkpoint dictionary atomically (tensors, numbers, strings, lists, dicts), or into an open file.

    A ``model`` state dict gets its :func:`weights_sha256` beside it, as ``model_sha256``,
    which :func:`read_checkpoint` checks.
    """
    if isinstance(state.get("model"), dict):
        state["model_sha256"] = weights_sha256(state["model"])
    if isinstance(path, io.IOBase):
        torch.save(state, path)
        return
    with atomic_file(path) as (file, _):
        torch.save(state, file)


def read_checkpoint(path: str | os.PathLike | BinaryIO, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint loaded with ``weights_only=True`` (no code runs), from a file or its bytes.

    Raises ``FileNotFoundError`` for a missing file and :class:`RunError` for a damaged one,
    one that holds Python objects besides tensors and numbers, or one that is no dictionary.
    """
    stream = isinstance(path, io.IOBase)
    described = "the checkpoint" if stream else f"the checkpoint {path}"
    if not stream and not Path(path).exists():
        raise FileNotFoundError(f"No checkpoint at {path}. Train with fit(..., checkpoint='{path}') first.")
    try:
        with warnings.catch_warnings():  # torch warns before refusing a raw pickle; our message says it all
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # torch's text would suggest weights_only=False, which can run code
        raise RunError(f"{described} holds Python objects besides tensors and numbers, which are not loaded because "
                       f"loading them could run code; use a checkpoint written by fit or `unet-course train`, "
                       f"or re-save yours as a plain state dict: torch.save(model.state_dict(), path)") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError):
        raise RunError(f"cannot read {described}: the file is damaged or incomplete; train again, "
                       f"or use an intact copy") from None
    if not isinstance(state, dict):
        raise RunError(f"{described} holds no state dict: it is not a checkpoint of `unet-course train`; train again")
    _check_digest(state, described)
    return state


def _check_digest(state: dict, described: str) -> None:
    """Refuse a checkpoint whose weights no longer match the ``model_sha256`` written with them."""
    parameters, recorded = state.get("model"), state.get("model_sha256")
    if recorded is None or not isinstance(parameters, dict):
        return  # written before checkpoints carried a digest
    if any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in parameters.values()):
        return  # no bytes to hash
    if weights_sha256(parameters) != recorded:
        raise RunError(f"{described} is damaged: its weights do not match the SHA-256 written with them; "
                       f"restore an intact copy, or train again")


def check_resume(state: dict, path: str | os.PathLike, *, steps: int, world_size: int,
                 settings: dict | None = None) -> None:
    """Refuse to resume the checkpoint ``state`` (read from ``path``) into another run.

    The run must have as many processes as the one that wrote it (each process's share of a
    step's tiles depends on their number), no fewer ``steps`` in all than it holds, and, where
    ``settings`` are given, the settings it recorded (tile, lr, schedule, momentum, batch,
    loss weights, model shape). Raises ``ValueError`` naming the difference and the fix;
    ``fit(resume=True)`` and ``unet-course train --resume`` both ask it. With ``settings``, a
    schedule other than constant that was planned for another number of steps is resumed
    with a warning: its learning rate follows the new length.
    """
    if not isinstance(state.get("step"), int) or "model" not in state:
        raise RunError(f"{path} is not a training checkpoint (it has no step count); train again")
    trained_by = int(state.get("world_size", 1))
    if trained_by != world_size:
        how = "without torchrun" if trained_by == 1 else f"with torchrun --nproc-per-node {trained_by}"
        raise ValueError(f"cannot resume {path}: it was trained by {trained_by} process(es) and this run has "
                         f"{world_size}; resume it {how}, as each process's share of a step's tiles depends on "
                         f"their number, or train a new checkpoint")
    if state["step"] > steps:
        raise ValueError(f"steps {steps} is fewer than the {state['step']} steps {path} already holds; steps is the "
                         f"total, so pass {state['step']} or more to continue it, or train a new checkpoint")
    recorded = state.get("settings", {})
    differ = [f"{key} {recorded[key]!r} there, {value!r} here" for key, value in (settings or {}).items()
              if key in recorded and key != "steps" and recorded[key] != value]
    if differ:
        raise ValueError(f"cannot resume {path}: it was trained with other settings ({'; '.join(differ)}); "
                         f"pass the recorded settings, or train a new checkpoint")
    if settings and settings.get("lr_schedule", "constant") != "constant" and recorded.get("steps", steps) != steps:
        warnings.warn(f"resuming a {settings['lr_schedule']} schedule planned for {recorded['steps']} steps to "
                      f"{steps}: the learning rate follows the new length from step {state['step']} on",
                      stacklevel=5)  # check_resume ← restore ← start ← fit ← the caller


def _unet_shape(parameters: dict) -> dict:
    """What a U-Net state dict's tensors say of the model: channels, classes, width, depth, batch norm."""
    first, head = parameters.get("contracting.0.0.weight"), parameters.get("head.weight")
    if not (isinstance(first, torch.Tensor) and first.ndim == 4 and isinstance(head, torch.Tensor) and head.ndim == 4):
        return {}
    levels = {key.split(".")[1] for key in parameters if key.startswith("contracting.")}
    return {"in_channels": first.shape[1], "base_channels": first.shape[0], "depth": len(levels),
            "num_classes": head.shape[0], "batch_norm": any(key.endswith("running_mean") for key in parameters)}


def check_config_fits(config: dict, state: dict, checkpoint: Path, config_path: Path) -> None:
    """Refuse a ``model.json`` whose model is not the one the checkpoint holds, before any model is built.

    The sizes are read off the checkpoint's tensors; the padding (which leaves the tensors
    alone) off the settings :func:`unet_course.fit` records in it; the ``weights_sha256`` of a
    finished run's ``model.json`` must name the checkpoint's weights.
    """
    parameters = state.get("model", state)
    described = {"in_channels": 1, "num_classes": 2, "batch_norm": False, "padding": "valid"} | config
    stored = _unet_shape(parameters) | {key: value for key, value in state.get("settings", {}).items()
                                        if key == "padding"}
    differ = [f"{key} {described[key]!r} there, {value!r} in the checkpoint" for key, value in stored.items()
              if described.get(key) != value]
    if differ:
        raise RunError(f"the checkpoint {checkpoint} does not fit the model in {config_path} ({'; '.join(differ)}); "
                       f"keep each checkpoint with the model.json written beside it, or train again")
    recorded = config.get("weights_sha256")
    if recorded is not None and recorded != (state.get("model_sha256") or weights_sha256(parameters)):
        raise RunError(f"{config_path} was written for other weights than those in {checkpoint} (its weights_sha256 "
                       f"differs): keep each checkpoint with the model.json written beside it, or finish an "
                       f"interrupted --resume with the same command")


def load_parameters(model: nn.Module, state: dict, checkpoint: Path, config_path: Path) -> None:
    """Load a checkpoint's network parameters into ``model``, refusing another architecture or diverged ones."""
    parameters = state.get("model", state)
    try:
        model.load_state_dict(parameters)
    except (RuntimeError, TypeError, AttributeError) as error:
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "another model")
        raise RunError(f"the checkpoint {checkpoint} does not fit the model in {config_path} ({detail[:160]}); "
                       f"keep each checkpoint with the model.json written beside it, or train again") from None
    if not all(bool(torch.isfinite(t).all()) for t in model.state_dict().values() if t.is_floating_point()):
        raise RunError(f"the checkpoint {checkpoint} holds NaN or infinite weights: the training that wrote it "
                       f"diverged; train a new run with a lower --lr (with --overwrite, or into another --out)")


def load_run(run: str | os.PathLike) -> tuple[UNet, dict]:
    """The trained :class:`UNet` of a run (eval mode, on the CPU) and its ``model.json``.

    ``run`` is the ``--out`` folder of ``unet-course train`` or a ``.pt`` file with its
    ``.json`` beside it (as chapter 6 writes). Raises ``FileNotFoundError`` for a missing
    file and :class:`RunError` for one that cannot be used, each naming the file and the fix.
    Chapter 7 reads chapter 6's run with it.
    """
    checkpoint, config_file = run_files(run)
    config = read_config(config_file)
    state = read_checkpoint(checkpoint)
    check_config_fits(config, state, checkpoint, config_file)  # the sizes are the checkpoint's: nothing huge is built
    try:
        check_model_size(config, what=str(config_file))
    except ValueError as error:
        raise RunError(str(error)) from None
    model = model_from_config(config)
    load_parameters(model, state, checkpoint, config_file)
    return model.eval(), config
