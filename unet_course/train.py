"""Training the paper's way: one plain loop, SGD with momentum 0.99, large tiles, batch 1.

``fit`` samples random tiles from whole images (mirror-padded so border pixels get
context, as in overlap-tile prediction), deforms them elastically, and minimises the
weighted cross-entropy of chapter 5. It keeps a :class:`History`, shows a progress
bar, validates every ``eval_every`` steps and writes atomic checkpoints that
``resume=True`` continues from exactly. Chapter 6 teaches it. With ``num_workers`` it streams
the data through a ``DataLoader`` instead of holding it in memory (:mod:`unet_course.streaming`),
and under ``torchrun`` it trains in several processes (:mod:`unet_course.distributed`).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import pickle
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .augment import elastic_deform
from .budget import best_device
from .data.download import atomic_file
from .distributed import (gather_objects, mean_over_processes, process_device, process_group, replicate,
                          share_from_main, wait_for_all)
from .losses import center_crop, weighted_cross_entropy
from .metrics import iou
from .sizes import check_tile_size, training_tile_size, whole_image_tile_size
from .streaming import Augment, Sample, augment_tiles, orient, random_tile, tile_loader
from .tiling import mirror_pad, predict_tiled
from .weights import check_border_args, class_weight_map, instances_from_mask, unet_weight_map

__all__ = ["History", "CheckpointError", "TrainingDiverged", "fit", "evaluate", "paper_loss", "load_checkpoint",
           "save_checkpoint", "paper_augmentation", "prepare_sample", "prepare_samples", "random_tiles",
           "batch_on_device", "loss_weight_map",
           "scheduled_lr", "autocast_dtype", "LOSS_WEIGHTS", "LR_SCHEDULES"]


class CheckpointError(ValueError):
    """A checkpoint file is damaged, incomplete, or holds objects ``weights_only=True`` refuses to load."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: :func:`fit` stopped before the update, checkpoint untouched."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


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
        if len(loss) == 0:
            return loss
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


def save_checkpoint(path: str | os.PathLike, **state) -> None:
    """Save a checkpoint dictionary atomically (tensors, numbers, strings, lists, dicts)."""
    with atomic_file(path) as (file, _):
        torch.save(state, file)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code runs)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"No checkpoint at {path}. Train with fit(..., checkpoint='{path}') first.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # torch's text would suggest weights_only=False, which can run code
        raise CheckpointError(f"{path} holds Python objects besides tensors and numbers, which are not loaded because "
                              f"loading them could run code; use a checkpoint written by fit or `unet-course train`, "
                              f"or re-save yours as a plain state dict: torch.save(model.state_dict(), path)") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError):
        raise CheckpointError(f"cannot read the checkpoint {path}: the file is damaged or incomplete; train again, "
                              f"or use an intact copy") from None


LOSS_WEIGHTS = ("balanced", "unet", None)


def loss_weight_map(mask: torch.Tensor, loss_weights: str | None, *, w0: float = 10.0,
                    border_sigma: float = 5.0) -> torch.Tensor:
    """The per-pixel loss weights ``(H, W)`` float32 of one ``(H, W)`` class mask.

    ``loss_weights="unet"``: the paper's map (class balance + separation-border term, with cells
    taken as the 4-connected components of the foreground); ``"balanced"``: class balance
    only; ``None``: all ones. Chapter 5 teaches the map, chapter 6 trains with it.
    """
    _check_loss_weights(loss_weights)
    if loss_weights is None:
        return torch.ones(mask.shape, dtype=torch.float32)
    if loss_weights == "balanced":
        return torch.as_tensor(class_weight_map(mask.numpy()), dtype=torch.float32)
    cells = instances_from_mask(mask.numpy() > 0)  # "unet"
    return torch.as_tensor(unet_weight_map(cells, w0=w0, border_sigma=border_sigma), dtype=torch.float32)


def _check_loss_weights(loss_weights: str | None) -> None:
    if loss_weights not in LOSS_WEIGHTS:
        raise ValueError(f"loss_weights must be 'unet', 'balanced' or None, got {loss_weights!r}")


LR_SCHEDULES = ("constant", "cosine")


def scheduled_lr(lr: float, step: int, steps: int, schedule: str = "constant") -> float:
    """The learning rate of step ``step`` (0-based) of ``steps``: ``lr``, or ``lr`` on a half cosine to 0."""
    if schedule == "constant":
        return lr
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * step / steps))
    raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, LR_SCHEDULES))}, got {schedule!r}")


def autocast_dtype(device: torch.device | str, amp: bool | str | None = None) -> torch.dtype | None:
    """The autocast precision ``fit`` trains in: ``torch.bfloat16``, ``torch.float16`` or None (fp32).

    ``amp=None`` chooses: on CUDA, bf16 where the GPU has bf16 tensor cores (compute capability
    8.0 and up) and fp16 where it has not (a T4 or V100, where bf16 is emulated, slower than
    fp32); fp32 elsewhere. ``True`` is the same choice, with bf16 on the CPU; ``False`` is fp32;
    ``"bf16"``/``"fp16"`` force one. Chapter 6 explains the choice.
    """
    device = torch.device(device)
    if amp is False:
        return None
    if amp in ("bf16", "fp16"):
        return torch.bfloat16 if amp == "bf16" else torch.float16
    if amp not in (None, True):
        raise ValueError(f"amp must be None (choose), True, False, 'bf16' or 'fp16', got {amp!r}")
    if device.type == "cuda":
        major, _ = torch.cuda.get_device_capability(device)
        return torch.bfloat16 if major >= 8 else torch.float16
    return torch.bfloat16 if amp is True else None


def paper_augmentation(grid: int = 3, elastic_sigma: float = 10.0) -> Augment:
    """The paper's augmentation: a random flip/90° rotation, then elastic deformation (chapter 4)."""

    def augment(images, masks, weight_maps, generator):
        k, flip = torch.randint(0, 4, (2,), generator=generator).tolist()
        images, masks, weight_maps = (orient(t, k, flip) for t in (images, masks, weight_maps))
        return tuple(elastic_deform(images, masks, weight_maps, grid=grid, elastic_sigma=elastic_sigma,
                                    generator=generator))

    return augment


def prepare_sample(data, index: int, loss_weights: str | None, *, margin: int = 0, num_classes: int | None = None,
                   w0: float = 10.0, border_sigma: float = 5.0) -> Sample:
    """Item ``index`` of ``data`` as ``(image (C, H, W), mask (H, W), weight_map (H, W))``, mirror-padded by ``margin``.

    An item that brings a weight map keeps it; the others get :func:`loss_weight_map`. The
    mask must hold classes ``0..num_classes-1`` and the weight map be finite and >= 0, or a
    ``ValueError`` names the item. ``fit`` calls it once per item up front, or, when it
    streams the data, in the DataLoader's workers whenever a tile needs the item.
    """
    item = data[index]
    image, mask = item[0].float(), item[1].long()
    weight_map = (item[2].float() if len(item) > 2
                  else loss_weight_map(mask, loss_weights, w0=w0, border_sigma=border_sigma))
    _check_sample(index, mask, weight_map, num_classes)
    if margin:  # mirror_pad, unlike F.pad, allows images smaller than the margin
        image, mask, weight_map = (mirror_pad(t, margin) for t in (image, mask, weight_map))
    return image, mask, weight_map


def prepare_samples(data, loss_weights: str | None, *, margin: int = 0, num_classes: int | None = None,
                    w0: float = 10.0, border_sigma: float = 5.0, progress: bool = False) -> list[Sample]:
    """Every item of ``data`` prepared by :func:`prepare_sample`, in memory: a bad item fails before the first step."""
    _check_loss_weights(loss_weights)
    return [prepare_sample(data, index, loss_weights, margin=margin, num_classes=num_classes, w0=w0,
                           border_sigma=border_sigma)
            for index in tqdm(range(len(data)), desc="weight maps", leave=False,
                              disable=not progress or loss_weights != "unet" or len(data) < 5)]


def _check_sample(index: int, mask: torch.Tensor, weight_map: torch.Tensor, num_classes: int | None) -> None:
    if num_classes is not None and (mask.min() < 0 or mask.max() >= num_classes):
        values = mask.unique().tolist()
        shown = values if len(values) <= 8 else values[:5] + ["…", values[-1]]
        raise ValueError(f"training mask {index} holds the values {shown}, but the model has {num_classes} "
                         f"classes (0..{num_classes - 1}); map the mask's values to class indices")
    if not bool((torch.isfinite(weight_map) & (weight_map >= 0)).all()):
        raise ValueError(f"training item {index} has negative or non-finite loss weights; weights must be "
                         f"finite and >= 0")


def random_tiles(samples: list[Sample], batch_size: int, tile_size: int, generator: torch.Generator) -> Sample:
    """A batch ``(images (B, C, T, T), masks (B, T, T), weight_maps (B, T, T))`` of random crops, one random item each."""
    indices = torch.randint(0, len(samples), (batch_size,), generator=generator).tolist()
    tiles = [random_tile(samples[index], tile_size, generator, index) for index in indices]
    return tuple(torch.stack(parts) for parts in zip(*tiles))


def batch_on_device(batch: tuple[torch.Tensor, ...], device: torch.device | str, augment: Augment | None = None,
                    generator: torch.Generator | None = None) -> Sample:
    """A batch of tiles moved to ``device`` once, then augmented there (on a GPU, by the GPU).

    ``batch`` is ``(images (B, C, T, T), masks (B, T, T), weight_maps (B, T, T))``, augmented
    by ``augment(images, masks, weight_maps, generator)`` when given; or a streamed batch that
    also brings its tiles' draws, ``orientations (B, 2)`` and ``displacement (B, 2, g, g)``,
    which :func:`~unet_course.streaming.augment_tiles` applies. The copy does not block when
    the batch is in pinned memory. Returns ``(images, masks, weight_maps)`` on ``device``.
    """
    images, masks, weight_maps = (t.to(device, non_blocking=True) for t in batch[:3])
    if len(batch) == 5:
        return augment_tiles(images, masks, weight_maps, *batch[3:])
    return augment(images, masks, weight_maps, generator) if augment is not None else (images, masks, weight_maps)


@torch.no_grad()
def evaluate(model: nn.Module, data, *, device: torch.device | str | None = None, tile_size: int | None = None) -> dict:
    """Mean cross-entropy and mean IoU over classes of ``model`` on ``data`` (overlap-tile predictions).

    ``data`` yields ``(image (C, H, W), mask (H, W), ...)``; ``tile_size`` defaults to one
    tile covering each whole image. :func:`fit` validates with it; chapters 4 and 6 use it.
    Returns ``{"loss": float, "iou": float}``.
    """
    losses, ious = [], []
    for index in range(len(data)):
        image, mask = data[index][:2]
        tile = tile_size or whole_image_tile_size(model, *mask.shape)
        probabilities = predict_tiled(model, image[None].to(device), tile_size=tile).cpu()
        losses.append(float(F.nll_loss(torch.log(probabilities.clamp_min(1e-8)), mask[None].long())))
        ious.append(float(np.nanmean(iou(probabilities[0].argmax(0), mask, num_classes=probabilities.shape[1]))))
    return {"loss": float(np.mean(losses)), "iou": float(np.nanmean(ious))}


def paper_loss(logits: torch.Tensor, target: torch.Tensor, weight_map: torch.Tensor) -> torch.Tensor:
    """The paper's energy function, eq. (1): :func:`weighted_cross_entropy` on the cropped target; ``fit``'s default."""
    return weighted_cross_entropy(logits, target, weight_map)


def _takes_weight_map(loss: Callable) -> bool:
    """Whether ``loss`` takes a third positional argument (the weight map) besides logits and target."""
    function = loss.forward if isinstance(loss, nn.Module) else loss
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def _model_description(model: nn.Module) -> dict:
    """What a checkpoint records of the model's shape, to refuse resuming into another one."""
    described = {"model": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters())}
    for name in ("in_channels", "num_classes", "base_channels", "depth", "padding", "batch_norm"):
        if isinstance(getattr(model, name, None), (int, str, bool)):
            described[name] = getattr(model, name)
    return described


class _Trainer:
    """The state of one run: model, SGD optimizer, gradient scaler, random stream; one step, save, restore.

    Under a process group of several processes the model is replicated with
    ``DistributedDataParallel``: every process steps on its own tiles with the averaged
    gradients, reports the loss of all of them, and only rank 0 writes the checkpoint.
    """

    def __init__(self, model: nn.Module, *, lr: float, momentum: float, device: torch.device, amp: bool | str | None,
                 channels_last: bool | None, compile: bool, seed: int, loss: Callable | None) -> None:
        self.model, self.device = model.to(device), device
        self.rank, self.world_size = process_group()
        self.amp_dtype = autocast_dtype(device, amp)
        self.channels_last = device.type == "cuda" if channels_last is None else channels_last
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        replica = replicate(model, device)  # the model itself in one process
        self.step_model = torch.compile(replica) if compile else replica
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        # fp16 gradients of small losses underflow; the scaler multiplies the loss and unscales before the step.
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.generator = torch.Generator().manual_seed(seed)
        self.loss = loss or paper_loss
        self.pass_weight_map = loss is None or _takes_weight_map(loss)
        torch.manual_seed(seed + self.rank)  # drop-out: each process its own masks

    def step(self, batch: Sample, lr: float, step: int) -> float:
        """One SGD step on a batch of tiles at learning rate ``lr``; returns the loss."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.step_model.train()
        images, masks, weight_maps = (t.to(self.device) for t in batch)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits = self.step_model(images)
        loss = self._loss(logits.float(), masks, weight_maps)
        run_loss = mean_over_processes(loss.detach())  # every process's tiles; all processes see the same value
        if not torch.isfinite(run_loss):  # stop before the update: the model and the last checkpoint stay as they were
            raise TrainingDiverged(f"training diverged at step {step + 1} (loss {run_loss.item()}), so it stopped and "
                                   f"kept the last checkpoint; lower lr (now {lr}) or check the data", step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # DistributedDataParallel averages the gradients here
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(run_loss)

    def _loss(self, logits: torch.Tensor, masks: torch.Tensor, weight_maps: torch.Tensor) -> torch.Tensor:
        """The loss on the target cropped to the output (a valid U-Net's output is smaller than its tile)."""
        size = tuple(logits.shape[-2:])
        if size != tuple(masks.shape[-2:]):
            masks, weight_maps = center_crop(masks, size), center_crop(weight_maps, size)
        arguments = (logits, masks, weight_maps) if self.pass_weight_map else (logits, masks)
        try:
            loss = self.loss(*arguments)
        except (RuntimeError, ValueError, TypeError, IndexError) as error:
            if self.loss is paper_loss:
                raise
            raise ValueError(f"the loss {getattr(self.loss, '__name__', type(self.loss).__name__)} failed on logits "
                             f"{tuple(logits.shape)} and a target {tuple(masks.shape)} cropped to the output ({error}); "
                             f"fit calls loss(logits (N, K, h, w), target (N, h, w) int64[, weight_map (N, h, w)]) "
                             f"and needs a scalar back") from error
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError(f"the loss must return a scalar tensor, got {type(loss).__name__} of shape "
                             f"{tuple(getattr(loss, 'shape', ()))}; reduce it with .mean()")
        return loss

    def save(self, path: str | os.PathLike | None, step: int, history: History, settings: dict) -> None:
        """Write the checkpoint from rank 0; every process calls it, and hands rank 0 its random state."""
        if path is None:
            return
        rng_states = gather_objects(torch.get_rng_state())
        if self.rank != 0:
            return
        processes = {} if self.world_size == 1 else {"world_size": self.world_size,
                                                     "torch_rng_per_rank": rng_states}
        save_checkpoint(path, model=self.model.state_dict(), optimizer=self.optimizer.state_dict(), step=step,
                        scaler=self.scaler.state_dict(), generator=self.generator.get_state(),
                        torch_rng=rng_states[0], history=asdict(history), settings=settings, **processes)

    def restore(self, path: str | os.PathLike, settings: dict, steps: int) -> tuple[History, int]:
        """The history and step of the checkpoint at ``path``, after checking it was trained the same way."""
        state = load_checkpoint(path, map_location=self.device)
        trained_by = int(state.get("world_size", 1))
        if trained_by != self.world_size:
            raise ValueError(f"cannot resume {path}: it was trained by {trained_by} process(es) and this run has "
                             f"{self.world_size}; each process's share of a step's tiles depends on their number, "
                             f"so resume with {trained_by} (torchrun --nproc-per-node {trained_by}"
                             f"{', or without torchrun' if trained_by == 1 else ''}), or train a new checkpoint")
        if int(state["step"]) > steps:
            raise ValueError(f"the checkpoint {path} is at step {state['step']}, past steps={steps}; steps is "
                             f"the total, so pass steps >= {state['step']} to continue it")
        recorded = state.get("settings", {})
        differ = [f"{key} {recorded[key]!r} there, {settings[key]!r} here" for key in settings
                  if key in recorded and key != "steps" and recorded[key] != settings[key]]
        if differ:
            raise ValueError(f"cannot resume {path}: it was trained with other settings ({'; '.join(differ)}); "
                             f"pass the recorded settings, or train a new checkpoint")
        if settings["lr_schedule"] != "constant" and recorded.get("steps", steps) != steps:
            warnings.warn(f"resuming a {settings['lr_schedule']} schedule planned for {recorded['steps']} steps to "
                          f"{steps}: the learning rate follows the new length from step {state['step']} on",
                          stacklevel=3)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        rng_state = state["torch_rng_per_rank"][self.rank] if self.world_size > 1 else state["torch_rng"]
        torch.set_rng_state(rng_state.cpu())
        self.scaler.load_state_dict(state["scaler"])
        return History(**state["history"]), int(state["step"])


def _check_arguments(steps: int, lr: float, momentum: float, batch_size: int, w0: float, border_sigma: float,
                     lr_schedule: str, loss_weights: str | None, resume: bool, checkpoint,
                     num_workers: int | None) -> None:
    """Every number of :func:`fit` in range, before any work."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}; the paper's recipe here uses 0.003")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}; the paper uses 0.99")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 tile per step, got {batch_size}")
    check_border_args(w0, border_sigma)
    scheduled_lr(lr, 0, steps, lr_schedule)  # an unknown schedule fails here
    _check_loss_weights(loss_weights)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the checkpoint path to resume from: fit(..., checkpoint='run.pt')")
    if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int)
                                    or num_workers < 0):
        raise ValueError(f"num_workers must be None (every item in memory) or a number of worker processes >= 0 "
                         f"(0 streams in this process), got {num_workers!r}")


def _training_batches(train_data, samples: list[Sample] | None, *, loss_weights: str | None, margin: int,
                      num_classes: int | None, w0: float, border_sigma: float, tile_size: int, batch_size: int,
                      augment: bool | Augment, num_workers: int | None, generator: torch.Generator, seed: int,
                      start: int, steps: int, device: torch.device) -> Iterator[Sample]:
    """The batches of steps ``start`` to ``steps - 1``, on ``device`` and augmented there.

    In memory and in one process, each batch comes from one random stream (``generator``),
    as in the book. Streamed, or in several processes, tile ``t`` of the run comes from its
    own seed (:mod:`unet_course.streaming`), so the batches do not depend on how many workers
    or processes share them.
    """
    rank, world_size = process_group()
    if samples is not None and world_size == 1:
        paper = paper_augmentation() if augment is True else augment or None
        for _ in range(start, steps):
            yield batch_on_device(random_tiles(samples, batch_size, tile_size, generator), device, paper, generator)
        return
    prepare = samples.__getitem__ if samples is not None else functools.partial(
        prepare_sample, train_data, loss_weights=loss_weights, margin=margin, num_classes=num_classes, w0=w0,
        border_sigma=border_sigma)
    loader = tile_loader(prepare, len(train_data), tile_size=tile_size, batch_size=batch_size, steps=steps,
                         start=start, seed=seed, augment=augment, num_workers=num_workers or 0,
                         pin_memory=device.type == "cuda", rank=rank, world_size=world_size)
    for batch in loader:
        yield batch_on_device(batch, device)


def fit(
    model: nn.Module,
    train_data,
    val_data=None,
    *,
    steps: int,
    lr: float = 0.003,
    lr_schedule: str = "constant",
    momentum: float = 0.99,
    batch_size: int = 1,
    tile_size: int | None = None,
    loss_weights: str | None = "balanced",
    w0: float = 10.0,
    border_sigma: float = 5.0,
    loss: Callable | None = None,
    augment: bool | Augment = True,
    num_workers: int | None = None,
    eval_every: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    device: torch.device | str | None = None,
    seed: int = 0,
    amp: bool | str | None = None,
    channels_last: bool | None = None,
    compile: bool = False,
    progress: bool = True,
    callback: Callable[[History], None] | None = None,
) -> History:
    """Train ``model`` on random tiles of ``train_data`` with the paper's recipe.

    Args:
        model: maps ``(N, C, T, T)`` to ``(N, K, t, t)`` logits, centred (valid U-Net) or same size.
        train_data: a dataset of ``(image (C, H, W), mask (H, W))`` or ``(image, mask, weight_map)``.
        val_data: like ``train_data``; evaluated whole, by overlap-tile, every ``eval_every`` steps.
        steps: total optimisation steps (with ``resume``, the total including earlier ones).
        lr: SGD learning rate. Default 0.003: with momentum 0.99 a step moves about 100× the
            gradient, and the loss is a mean over pixels.
        lr_schedule: ``"constant"`` (default, the paper's) or ``"cosine"`` (half a cosine to 0).
        momentum: SGD momentum. Default 0.99, the paper's: each update averages ~100 tiles.
        batch_size: tiles per step. Default 1, the paper's choice (large tiles instead).
        tile_size: input tile side. Default: the model's valid size nearest 572 that the images allow.
        loss_weights: per-pixel loss weights for items that bring none: ``"balanced"`` (default:
            class balance), ``"unet"`` (the paper's map with the border term, for touching objects;
            compute it from instance labels and pass triples when you have them) or None.
        w0, border_sigma: the border term of the weight map. Defaults 10 and 5 px, the paper's.
        loss: ``loss(logits (N, K, h, w), target (N, h, w)[, weight_map (N, h, w)]) -> scalar``;
            the target and weight map arrive cropped to the logits' size, and the weight map is
            passed when the loss takes a third argument. Default: the paper's weighted
            cross-entropy (:func:`paper_loss`). Chapter 5 trains with Dice and focal losses.
        augment: True (default) for flips/rotations + elastic deformation, False for none,
            or a callable ``(images, masks, weight_maps, generator) -> (images, masks, weight_maps)``.
            The paper's augmentation runs where the model trains (on the GPU for CUDA); a callable
            runs there too, or, when the data is streamed, on each tile in the workers.
        num_workers: None (default) prepares every item and its weight map in memory before
            the first step: fastest for data that fits, such as the book's. A number streams
            the items through a ``DataLoader`` instead, with that many worker processes reading
            them, computing weight maps and cutting tiles (0: in this process); memory then
            stays flat however many items there are, and ``train_data`` may be any map-style
            dataset. Streamed, tile ``t`` draws its crop and augmentation from the seed
            ``(seed, t)``, so a run repeats with any number of workers (but differs from the
            in-memory run of the same seed).
        eval_every: validate every this many steps. Default: 10 times per run.
        checkpoint: file to write the checkpoint to (atomically). Default None.
        checkpoint_every: also write it every this many steps. Default: only at the end.
        resume: continue from ``checkpoint`` exactly where it stopped, refusing a checkpoint
            trained with other settings (tile, lr, schedule, momentum, batch, loss weights,
            model shape). If the file does not exist yet, training starts at step 0 and a warning
            says so (the command line refuses instead); a checkpoint past ``steps`` is refused.
        device: where to train. Default :func:`unet_course.best_device`; under ``torchrun``,
            CUDA means this process's GPU, ``cuda:LOCAL_RANK``.
        seed: seeds the drop-out, tile sampling and augmentation; CPU runs repeat exactly.
        amp: mixed precision, chosen by :func:`autocast_dtype`. Default None: on CUDA, bf16
            where the GPU computes it natively (compute capability 8.0 and up: A100, L4, H100)
            and fp16 with gradient scaling where it does not (T4, V100: bf16 would be emulated
            and slower than fp32); fp32 on the CPU. ``False`` forces fp32; ``"bf16"`` or
            ``"fp16"`` force one (fp16 always with a gradient scaler, saved in the checkpoint).
        channels_last: channels-last memory format. Default: on for CUDA.
        compile: wrap the model in ``torch.compile``. Default False.
        progress: show a progress bar with the running loss and print each validation. Default
            True; False prints nothing.
        callback: called with the history after every validation (for live plots).

    Several processes: called in each process of an initialised ``torch.distributed`` process
    group (``torchrun``; :mod:`unet_course.distributed`), ``fit`` trains with
    ``DistributedDataParallel``. Each step, process ``r`` of ``W`` trains on tiles
    ``r·B … r·B + B - 1`` of the step's ``W·B`` (``B = batch_size``), drawn as when streaming,
    and the gradients are averaged: the run takes the steps one process would take with
    ``batch_size=W·B`` and ``num_workers`` set (up to float rounding, and for a model without
    drop-out, whose masks each process draws), the history records the loss over all ``W·B``
    tiles, and rank 0 alone shows the progress bar, validates (sharing the figures), calls
    ``callback`` and writes the checkpoint, which only a run of ``W`` processes resumes.

    Returns:
        The :class:`History` of the run (the model is trained in place).

    Raises:
        ValueError: a bad argument (``lr`` not positive and finite, ``batch_size < 1``,
            ``num_workers < 0``, ...), masks with values that are not classes of the model,
            negative or non-finite loss weights, a loss that fails on the cropped target, or a
            checkpoint to resume that is past ``steps``, was trained with other settings or by
            another number of processes. Streamed, an item is checked when a tile first needs it.
        TrainingDiverged: the loss became NaN or infinite; the last checkpoint written is kept.

    Example:
        >>> from unet_course import UNet, SyntheticMembranes
        >>> history = fit(UNet(base_channels=4, depth=2), SyntheticMembranes(2, 64), steps=2, progress=False)
        >>> len(history.loss)
        2

    Chapter 6 teaches it.
    """
    _check_arguments(steps, lr, momentum, batch_size, w0, border_sigma, lr_schedule, loss_weights, resume, checkpoint,
                     num_workers)
    rank, _ = process_group()
    progress = progress and rank == 0  # one progress bar and one log, from rank 0
    device = process_device(device if device is not None else best_device())
    margin, num_classes = int(getattr(model, "margin", 0)), getattr(model, "num_classes", None)
    if len(train_data) == 0:
        raise ValueError("train_data is empty; fit needs at least one (image, mask) item to cut tiles from")
    if num_workers is None:  # every item and its weight map in memory, prepared once
        samples = prepare_samples(train_data, loss_weights, margin=margin, w0=w0, border_sigma=border_sigma,
                                  num_classes=num_classes, progress=progress)
        smallest_side = min(min(mask.shape) for _, mask, _ in samples)
    else:  # streamed: the workers prepare items as tiles need them; the first one now, to fail early
        samples = None
        first = prepare_sample(train_data, 0, loss_weights, margin=margin, num_classes=num_classes, w0=w0,
                               border_sigma=border_sigma)
        smallest_side = min(first[1].shape)
    tile_size = check_tile_size(tile_size or training_tile_size(model, smallest_side), model)
    settings = {"tile_size": tile_size, "lr": lr, "lr_schedule": lr_schedule, "momentum": momentum,
                "batch_size": batch_size, "loss_weights": loss_weights, "w0": w0, "border_sigma": border_sigma,
                **_model_description(model), "steps": steps}
    trainer = _Trainer(model, lr=lr, momentum=momentum, device=device, amp=amp, channels_last=channels_last,
                       compile=compile, seed=seed, loss=loss)
    history, start = History(), 0
    if resume and Path(checkpoint).exists():
        history, start = trainer.restore(checkpoint, settings, steps)
    elif resume:
        warnings.warn(f"resume=True but there is no checkpoint at {checkpoint} yet: training starts at step 0",
                      stacklevel=2)
    eval_every = eval_every or max(1, steps // 10)
    batches = _training_batches(train_data, samples, loss_weights=loss_weights, margin=margin,
                                num_classes=num_classes, w0=w0, border_sigma=border_sigma, tile_size=tile_size,
                                batch_size=batch_size, augment=augment, num_workers=num_workers,
                                generator=trainer.generator, seed=seed, start=start, steps=steps, device=device)

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="training", disable=not progress)
    for step in bar:
        began = time.perf_counter()
        batch = next(batches)
        history.record(step + 1, trainer.step(batch, scheduled_lr(lr, step, steps, lr_schedule), step),
                       time.perf_counter() - began)
        bar.set_postfix(loss=f"{history.smoothed_loss()[-1]:.4f}")
        if val_data is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            figures = evaluate(model, val_data, device=device) if rank == 0 else None
            history.record_validation(step + 1, **share_from_main(figures))
            if progress:
                bar.write(history.last_validation(eval_every))
            if callback is not None and rank == 0:
                callback(history)
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            trainer.save(checkpoint, step + 1, history, settings)
    bar.close()
    trainer.save(checkpoint, steps, history, settings)
    wait_for_all()  # every process returns once the checkpoint is written
    model.eval()
    return history
