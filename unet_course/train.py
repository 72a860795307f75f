"""Training the paper's way: one plain loop, SGD with momentum 0.99, large tiles, batch 1.

``fit`` samples random tiles from whole images (mirror-padded so border pixels get
context, as in overlap-tile prediction), deforms them elastically, and minimises the
weighted cross-entropy of chapter 5. It keeps a :class:`History`, shows a progress
bar, validates every ``eval_every`` steps and writes atomic checkpoints that
``resume=True`` continues from exactly. Chapter 6 teaches it.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .augment import elastic_deform
from .data.download import atomic_file
from .losses import weighted_cross_entropy
from .metrics import iou
from .tiling import mirror_pad, predict_tiled
from .weights import class_weight_map, instances_from_mask, unet_weight_map

__all__ = ["History", "CheckpointError", "TrainingDiverged", "fit", "load_checkpoint", "save_checkpoint", "paper_augmentation", "prepare_weights", "scheduled_lr",
           "autocast_dtype"]

Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # image (C, H, W), mask (H, W), weight (H, W)
Augment = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, ...]]


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


def prepare_weights(mask: torch.Tensor, weights: str | None, *, w0: float = 10.0, sigma: float = 5.0) -> torch.Tensor:
    """The per-pixel loss weights for one ``(H, W)`` mask.

    ``"unet"``: the paper's map (class balance + separation-border term, with cells taken as
    the connected components of the foreground); ``"balanced"``: class balance only;
    ``None``: all ones.
    """
    if weights is None:
        return torch.ones(mask.shape, dtype=torch.float32)
    if weights == "balanced":
        return torch.as_tensor(class_weight_map(mask.numpy()), dtype=torch.float32)
    if weights == "unet":
        cells = instances_from_mask(mask.numpy() > 0)
        return torch.as_tensor(unet_weight_map(cells, w0=w0, sigma=sigma), dtype=torch.float32)
    raise ValueError(f"weights must be 'unet', 'balanced' or None, got {weights!r}")


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


def paper_augmentation(grid: int = 3, sigma: float = 10.0) -> Augment:
    """The paper's augmentation: a random flip/90° rotation, then elastic deformation."""

    def augment(images, masks, weights, generator):
        k, flip = torch.randint(0, 4, (2,), generator=generator).tolist()
        images, masks, weights = (torch.rot90(t, k, dims=(-2, -1)) for t in (images, masks, weights))
        if flip % 2:
            images, masks, weights = (t.flip(-1) for t in (images, masks, weights))
        return tuple(elastic_deform(images, masks, weights, grid=grid, sigma=sigma, generator=generator))

    return augment


def _samples(data, weights: str | None, padding: int, w0: float, sigma: float) -> list[Sample]:
    """Every training item as (image, mask, weight), mirror-padded by the model's margin."""
    samples = []
    for item in tqdm((data[i] for i in range(len(data))), total=len(data), desc="weight maps", leave=False,
                     disable=weights != "unet" or len(data) < 5):
        image, mask = item[0].float(), item[1].long()
        weight = item[2].float() if len(item) > 2 else prepare_weights(mask, weights, w0=w0, sigma=sigma)
        if padding:  # mirror_pad, unlike F.pad, allows images smaller than the margin
            image, mask, weight = (mirror_pad(t, padding, padding, padding, padding) for t in (image, mask, weight))
        samples.append((image, mask, weight))
    return samples


def _check_samples(samples: list[Sample], num_classes: int | None) -> None:
    """Masks hold classes of the model and weights are finite and >= 0, before the first step."""
    for index, (_, mask, weight) in enumerate(samples):
        if num_classes is not None and (mask.min() < 0 or mask.max() >= num_classes):
            values = mask.unique().tolist()
            shown = values if len(values) <= 8 else values[:5] + ["…", values[-1]]
            raise ValueError(f"training mask {index} holds the values {shown}, but the model has {num_classes} "
                             f"classes (0..{num_classes - 1}); map the mask's values to class indices")
        if not bool((torch.isfinite(weight) & (weight >= 0)).all()):
            raise ValueError(f"training item {index} has negative or non-finite loss weights; weights must be "
                             f"finite and >= 0")


def _random_tiles(samples: list[Sample], batch_size: int, tile: int, generator: torch.Generator) -> Sample:
    """A batch of random ``tile × tile`` crops, one random image each."""
    images, masks, weights = [], [], []
    for index in torch.randint(0, len(samples), (batch_size,), generator=generator).tolist():
        image, mask, weight = samples[index]
        height, width = mask.shape
        if height < tile or width < tile:
            raise ValueError(
                f"Training image {index} is {height}×{width} (after mirror padding) but the tile is "
                f"{tile}×{tile}. Use a smaller tile_size or larger images."
            )
        top = int(torch.randint(0, height - tile + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - tile + 1, (1,), generator=generator))
        images.append(image[:, top : top + tile, left : left + tile])
        masks.append(mask[top : top + tile, left : left + tile])
        weights.append(weight[top : top + tile, left : left + tile])
    return torch.stack(images), torch.stack(masks), torch.stack(weights)


def _whole_image_tile(model: nn.Module, height: int, width: int) -> int:
    """The smallest tile that covers a whole image in one forward pass (cheapest for validation)."""
    side = max(height, width)
    if hasattr(model, "valid_input_size"):
        return model.valid_input_size(side + 2 * int(getattr(model, "margin", 0)))
    return -(-side // 32) * 32  # same-size encoders usually downsample by 32


@torch.no_grad()
def evaluate(model: nn.Module, data, *, device: torch.device | None = None, tile_size: int | None = None) -> dict:
    """Mean cross-entropy and mean IoU over classes of ``model`` on ``data`` (overlap-tile predictions).

    ``tile_size`` defaults to one tile covering each whole image.
    """
    losses, ious = [], []
    for index in range(len(data)):
        image, mask = data[index][:2]
        tile = tile_size or _whole_image_tile(model, *mask.shape)
        probabilities = predict_tiled(model, image[None].to(device), tile_size=tile).cpu()
        losses.append(float(F.nll_loss(torch.log(probabilities.clamp_min(1e-8)), mask[None].long())))
        ious.append(float(np.nanmean(iou(probabilities[0].argmax(0), mask, num_classes=probabilities.shape[1]))))
    return {"loss": float(np.mean(losses)), "iou": float(np.nanmean(ious))}


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
    weights: str | None = "balanced",
    w0: float = 10.0,
    sigma: float = 5.0,
    augment: bool | Augment = True,
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
        train_data: a dataset of ``(image (C, H, W), mask (H, W))`` or ``(image, mask, weight)``.
        val_data: like ``train_data``; evaluated whole, by overlap-tile, every ``eval_every`` steps.
        steps: total optimisation steps (with ``resume``, the total including earlier ones).
        lr: SGD learning rate. Default 0.003: with momentum 0.99 a step moves about 100× the
            gradient, and the loss is a mean over pixels.
        momentum: SGD momentum. Default 0.99, the paper's: each update averages ~100 tiles.
        batch_size: tiles per step. Default 1, the paper's choice (large tiles instead).
        tile_size: input tile side. Default: the model's valid size nearest 572 that the images allow.
        weights: per-pixel loss weights when the data has none: ``"balanced"`` (default: class
            balance), ``"unet"`` (the paper's map with the border term, for touching objects;
            compute it from instance labels and pass triples when you have them) or None.
        w0, sigma: the border term of the weight map. Defaults 10 and 5 px, the paper's.
        augment: True (default) for flips/rotations + elastic deformation, False for none,
            or a callable ``(images, masks, weights, generator) -> (images, masks, weights)``.
        eval_every: validate every this many steps. Default: 10 times per run.
        checkpoint: file to write the checkpoint to (atomically). Default None.
        checkpoint_every: also write it every this many steps. Default: only at the end.
        resume: continue from ``checkpoint`` exactly where it stopped. If the file does not
            exist yet, training starts at step 0 and a warning says so (the command line
            refuses instead); a checkpoint past ``steps`` is refused.
        device: where to train. Default :func:`unet_course.device`.
        seed: seeds the tile sampling, augmentation and dropout; CPU runs repeat exactly.
        amp: mixed precision, chosen by :func:`autocast_dtype`. Default None: on CUDA, bf16
            where the GPU computes it natively (compute capability 8.0 and up: A100, L4, H100)
            and fp16 with gradient scaling where it does not (T4, V100: bf16 would be emulated
            and slower than fp32); fp32 on the CPU. ``False`` forces fp32; ``"bf16"`` or
            ``"fp16"`` force one (fp16 always with a gradient scaler, saved in the checkpoint).
        channels_last: channels-last memory format. Default: on for CUDA.
        compile: wrap the model in ``torch.compile``. Default False.
        progress: show a tqdm progress bar with the running loss. Default True.
        callback: called with the history after every validation (for live plots).

    Returns:
        The :class:`History` of the run (the model is trained in place).

    Raises:
        ValueError: a bad argument (``lr`` not positive and finite, ``batch_size < 1``, ...),
            masks with values that are not classes of the model, negative or non-finite loss
            weights, or a checkpoint to resume that is already past ``steps``.
        TrainingDiverged: the loss became NaN or infinite; the last checkpoint written is kept.

    Example:
        >>> from unet_course import UNet, SyntheticMembranes
        >>> history = fit(UNet(base_channels=4, depth=2), SyntheticMembranes(2, 64), steps=2, progress=False)
        >>> len(history.loss)
        2
    """
    from .budget import device as best_device

    device = torch.device(device) if device is not None else best_device()
    amp_dtype = autocast_dtype(device, amp)
    channels_last = device.type == "cuda" if channels_last is None else channels_last
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}; the paper's recipe here uses 0.003")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}; the paper uses 0.99")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 tile per step, got {batch_size}")
    if not (w0 >= 0 and math.isfinite(w0)) or not (sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"w0 must be finite and >= 0 and sigma finite and > 0, got w0={w0!r}, sigma={sigma!r}; "
                         f"the paper uses w0=10, sigma=5")
    scheduled_lr(lr, 0, steps, lr_schedule)  # an unknown schedule fails here, before any work
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the checkpoint path to resume from: fit(..., checkpoint='run.pt')")

    margin = int(getattr(model, "margin", 0))
    samples = _samples(train_data, weights, margin, w0, sigma)
    _check_samples(samples, getattr(model, "num_classes", None))
    smallest = min(min(mask.shape) for _, mask, _ in samples)
    tile_size = tile_size or _default_tile(model, smallest)
    if hasattr(model, "valid_input_size") and model.valid_input_size(tile_size) != tile_size:
        nearest = model.nearest_valid_sizes(tile_size)
        raise ValueError(f"tile_size {tile_size} is not a valid input size for this model; nearest valid: {nearest}")
    augment = paper_augmentation() if augment is True else augment or None

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    # fp16 gradients of small losses underflow; the scaler multiplies the loss and unscales before the step.
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    generator = torch.Generator().manual_seed(seed)
    history, start = History(), 0
    if resume and checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint, map_location=device)
        if int(state["step"]) > steps:
            raise ValueError(f"the checkpoint {checkpoint} is at step {state['step']}, past steps={steps}; steps is "
                             f"the total, so pass steps >= {state['step']} to continue it")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        history, start = History(**state["history"]), int(state["step"])
    else:
        if resume:
            warnings.warn(f"resume=True but there is no checkpoint at {checkpoint} yet: training starts at step 0",
                          stacklevel=2)
        torch.manual_seed(seed)
    eval_every = eval_every or max(1, steps // 10)
    step_model = torch.compile(model) if compile else model

    def save(step: int) -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, model=model.state_dict(), optimizer=optimizer.state_dict(), step=step,
                            scaler=scaler.state_dict(),
                            generator=generator.get_state(), torch_rng=torch.get_rng_state(),
                            history=asdict(history), tile_size=tile_size, lr=lr, momentum=momentum)

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="training", disable=not progress)
    for step in bar:
        began = time.perf_counter()
        for group in optimizer.param_groups:  # a function of the step alone, so resuming needs no extra state
            group["lr"] = scheduled_lr(lr, step, steps, lr_schedule)
        model.train()
        images, masks, pixel_weights = _random_tiles(samples, batch_size, tile_size, generator)
        if augment is not None:
            images, masks, pixel_weights = augment(images, masks, pixel_weights, generator)
        images, masks, pixel_weights = images.to(device), masks.to(device), pixel_weights.to(device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            logits = step_model(images)
        loss = weighted_cross_entropy(logits.float(), masks, pixel_weights, crop=True)
        if not torch.isfinite(loss):  # stop before the update: the model and the last checkpoint stay as they were
            raise TrainingDiverged(f"training diverged at step {step + 1} (loss {loss.item()}), so it stopped and "
                                   f"kept the last checkpoint; lower lr (now {lr}) or check the data", step + 1)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

        history.step.append(step + 1)
        history.loss.append(float(loss.detach()))
        history.seconds_per_step.append(time.perf_counter() - began)
        bar.set_postfix(loss=f"{history.smoothed_loss()[-1]:.4f}")
        done = step + 1 == steps
        if val_data is not None and ((step + 1) % eval_every == 0 or done):
            figures = evaluate(model, val_data, device=device)
            history.val_step.append(step + 1)
            history.val_loss.append(figures["loss"])
            history.val_iou.append(figures["iou"])
            bar.write(f"step {step + 1}: loss {history.smoothed_loss()[-1]:.4f}, val loss {figures['loss']:.4f}, "
                      f"val IoU {figures['iou']:.3f}, {1000 * np.mean(history.seconds_per_step[-eval_every:]):.0f} ms/step")
            if callback is not None:
                callback(history)
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and not done:
            save(step + 1)
    bar.close()
    save(steps)
    model.eval()
    return history


def _default_tile(model: nn.Module, smallest: int) -> int:
    """The paper's 572 where the images allow, else the largest valid tile that fits."""
    size = min(572, smallest)
    if hasattr(model, "valid_input_size"):
        candidates = [s for s in model.nearest_valid_sizes(size) if s is not None and s <= smallest]
        if not candidates:
            raise ValueError(f"Images of {smallest} pixels (after padding) are too small for this model.")
        return max(candidates)
    return size
