"""Training the paper's way: one plain loop, SGD with momentum 0.99, large tiles, batch 1.

``fit`` samples random tiles from whole images (mirror-padded so border pixels get
context, as in overlap-tile prediction), deforms them elastically, and minimises the
weighted cross-entropy of chapter 5. It keeps a :class:`~unet_course.runs.History`, shows a
progress bar, validates every ``eval_every`` steps and writes atomic checkpoints
(:mod:`unet_course.runs`) that ``resume=True`` continues from exactly. Chapter 6 teaches it.
The batches come from :mod:`unet_course.batches`: held in memory, or, for data too big for
that (or with ``num_workers``), streamed through a ``DataLoader`` (:mod:`unet_course.streaming`);
under ``torchrun`` it trains in several processes (:mod:`unet_course.distributed`).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .batches import check_loss_weights, item_preparer, training_batches, training_samples
from .budget import best_device
from .distributed import (gather_objects, mean_over_processes, process_device, process_group, replicate,
                          share_from_main, wait_for_all)
from .losses import center_crop, takes_weight_map, weighted_cross_entropy
from .metrics import iou
from .runs import History, check_resume, model_description, read_checkpoint, write_checkpoint
from .sizes import check_tile_size, training_tile_size, whole_image_tile_size
from .streaming import Augment, Sample
from .tiling import predict_tiled
from .weight_map import check_border_args

__all__ = ["TrainingDiverged", "fit", "check_fit_arguments", "validate", "paper_loss", "scheduled_lr",
           "autocast_dtype", "LR_SCHEDULES"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: :func:`fit` stopped before the update, checkpoint untouched."""

    def __init__(self, message: str, step: int) -> None:
        super().__init__(message)
        self.step = step


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


@torch.no_grad()
def validate(model: nn.Module, data, *, device: torch.device | str | None = None, tile_size: int | None = None) -> dict:
    """Mean cross-entropy and mean IoU over classes of ``model`` on ``data`` (overlap-tile predictions).

    The figures :func:`fit` records on ``val_data`` while it trains; chapters 4 and 6 use it.
    (A folder of held-out images is scored, with the paper's metrics and a report, by
    :func:`~unet_course.evaluation.evaluate_folder` and ``unet-course evaluate``.)
    ``data`` yields ``(image (C, H, W), mask (H, W), ...)``; ``tile_size`` defaults to one
    tile covering each whole image. Returns ``{"loss": float, "iou": float}``.
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
        self.pass_weight_map = loss is None or takes_weight_map(loss)
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
        write_checkpoint(path, model=self.model.state_dict(), optimizer=self.optimizer.state_dict(), step=step,
                         scaler=self.scaler.state_dict(), generator=self.generator.get_state(),
                         torch_rng=rng_states[0], history=asdict(history), settings=settings, **processes)

    def restore(self, path: str | os.PathLike, settings: dict, steps: int) -> tuple[History, int]:
        """The history and step of the checkpoint at ``path``, after checking it was trained the same way."""
        state = read_checkpoint(path, map_location=self.device)
        check_resume(state, path, steps=steps, world_size=self.world_size, settings=settings)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"].cpu())
        rng_state = state["torch_rng_per_rank"][self.rank] if self.world_size > 1 else state["torch_rng"]
        torch.set_rng_state(rng_state.cpu())
        self.scaler.load_state_dict(state["scaler"])
        return History(**state["history"]), int(state["step"])

    def start(self, checkpoint: str | os.PathLike | None, resume: bool, settings: dict,
              steps: int) -> tuple[History, int]:
        """A new history at step 0, or, with ``resume``, the history and step of ``checkpoint`` when it exists."""
        if resume and Path(checkpoint).exists():
            return self.restore(checkpoint, settings, steps)
        if resume:
            warnings.warn(f"resume=True but there is no checkpoint at {checkpoint} yet: training starts at step 0",
                          stacklevel=3)
        return History(), 0


def check_fit_arguments(*, steps: int, lr: float, momentum: float = 0.99, batch_size: int = 1, w0: float = 10.0,
                        border_sigma: float = 5.0, lr_schedule: str = "constant", loss_weights: str | None = "balanced",
                        resume: bool = False, checkpoint: str | os.PathLike | None = None,
                        num_workers: int | None = None, eval_every: int | None = None,
                        checkpoint_every: int | None = None) -> None:
    """Every number of :func:`fit` in range, before any work: the one place these rules are written.

    Raises ``ValueError`` whose message starts with the argument's name (``unet-course train``
    turns it into the option's, ``--lr``, and prints it as is).
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a finite number above 0, got {lr!r}; the course uses 0.003 (the paper gives none)")
    if not 0 <= momentum < 1:
        raise ValueError(f"momentum must be at least 0 and below 1, got {momentum!r}; the paper uses 0.99")
    for name, value in (("batch_size", batch_size), ("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    check_border_args(w0, border_sigma)
    scheduled_lr(lr, 0, steps, lr_schedule)  # an unknown schedule fails here
    check_loss_weights(loss_weights)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs the checkpoint path to resume from: fit(..., checkpoint='run.pt')")
    if num_workers is not None and (isinstance(num_workers, bool) or not isinstance(num_workers, int)
                                    or num_workers < 0):
        raise ValueError(f"num_workers must be 0 or more, got {num_workers!r}: a number of worker processes (0 "
                         f"streams in this process), or None to let the data's size choose")


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
        lr: SGD learning rate. Default 0.003, the course's (the paper gives none): with momentum
            0.99 a step moves about 100× the gradient, and the loss is a mean over pixels.
        lr_schedule: ``"constant"`` (default) or ``"cosine"`` (half a cosine to 0); the paper names none.
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
            or a callable ``(images, masks, weight_maps, generator) -> (images, masks, weight_maps)``,
            such as ``paper_augmentation(gray_values=GrayValues())`` to vary gray values too.
            The paper's augmentation runs where the model trains (on the GPU for CUDA); a callable
            runs there too, or, when the data is streamed, on each tile in the workers.
        num_workers: None (default) chooses by the data's size: every item and its weight map is
            prepared in memory before the first step when all of them take at most
            :data:`~unet_course.batches.IN_MEMORY_BYTES` (1 GiB, estimated from the first item;
            fastest for data that fits, such as the book's), and streamed in this process
            otherwise. A number always streams, through a ``DataLoader`` with that many worker
            processes reading the items, computing weight maps and cutting tiles (0: in this
            process); memory then stays flat however many items there are, and ``train_data``
            may be any map-style dataset. Streamed, tile ``t`` draws its crop and augmentation
            from the seed ``(seed, t)``, so a run repeats with any number of workers (but differs
            from the in-memory run of the same seed).
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
    check_fit_arguments(steps=steps, lr=lr, momentum=momentum, batch_size=batch_size, w0=w0, border_sigma=border_sigma,
                        lr_schedule=lr_schedule, loss_weights=loss_weights, resume=resume, checkpoint=checkpoint,
                        num_workers=num_workers, eval_every=eval_every, checkpoint_every=checkpoint_every)
    rank, _ = process_group()
    progress = progress and rank == 0  # one progress bar and one log, from rank 0
    device = process_device(device if device is not None else best_device())
    prepare = item_preparer(train_data, model, loss_weights, w0=w0, border_sigma=border_sigma)
    samples, smallest_side = training_samples(prepare, len(train_data), num_workers=num_workers,
                                              progress=progress and loss_weights == "unet")
    tile_size = check_tile_size(tile_size or training_tile_size(model, smallest_side), model)
    settings = {"tile_size": tile_size, "lr": lr, "lr_schedule": lr_schedule, "momentum": momentum,
                "batch_size": batch_size, "loss_weights": loss_weights, "w0": w0, "border_sigma": border_sigma,
                **model_description(model), "steps": steps}
    trainer = _Trainer(model, lr=lr, momentum=momentum, device=device, amp=amp, channels_last=channels_last,
                       compile=compile, seed=seed, loss=loss)
    history, start = trainer.start(checkpoint, resume, settings, steps)
    eval_every = eval_every or max(1, steps // 10)
    batches = training_batches(samples, prepare, len(train_data), tile_size=tile_size, batch_size=batch_size,
                               augment=augment, num_workers=num_workers, generator=trainer.generator, seed=seed,
                               start=start, steps=steps, device=device)

    bar = tqdm(range(start, steps), initial=start, total=steps, desc="training", disable=not progress)
    for step in bar:
        began = time.perf_counter()
        loss_value = trainer.step(next(batches), scheduled_lr(lr, step, steps, lr_schedule), step)
        history.record(step + 1, loss_value, time.perf_counter() - began)
        bar.set_postfix(loss=f"{history.smoothed_loss()[-1]:.4f}")
        if val_data is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
            figures = validate(model, val_data, device=device) if rank == 0 else None
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
