"""Dataset items to device batches: weight maps, mirror padding, random tiles, the paper's augmentation.

:func:`unet_course.fit` asks this module for its training batches and nothing else about the
data. An item ``(image, mask[, weight_map])`` is prepared once (:func:`prepare_sample`: its
loss weights computed, mask and weights checked, mirror-padded by the model's margin so border
pixels get context); then either every prepared item is held in memory and each batch is cut
from one random stream, as in chapter 6, or, for data too big to hold, the items are streamed
through a ``DataLoader`` (:mod:`unet_course.streaming`). Batches reach the device once and are
augmented there. Chapters 5 and 6 teach the weights and the tiles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

import torch
from torch import nn
from tqdm.auto import tqdm

from .augment import elastic_deform, orient
from .gray_values import GrayValues, _check_gray_values, random_gray_values, vary_gray_values
from .data.images import check_mask_values
from .distributed import process_group
from .streaming import Augment, Sample, augment_tiles, random_tile, tile_loader
from .tiling import mirror_pad
from .weight_map import class_weight_map, instances_from_mask, unet_weight_map

__all__ = ["LOSS_WEIGHTS", "IN_MEMORY_BYTES", "loss_weight_map", "check_loss_weights", "paper_augmentation",
           "prepare_sample", "prepare_samples", "item_preparer", "training_samples", "random_tiles",
           "batch_on_device", "training_batches"]

LOSS_WEIGHTS = ("balanced", "unet", None)
# Prepared items are held in memory up to this many bytes (16 per mirror-padded pixel: about 7.8 MB for a
# 512×512 slice padded for the paper's U-Net, so some 130 slices); a bigger data set is streamed.
IN_MEMORY_BYTES = 2**30


def check_loss_weights(loss_weights: str | None) -> None:
    """Refuse a ``loss_weights`` that is not ``"balanced"``, ``"unet"`` or None."""
    if loss_weights not in LOSS_WEIGHTS:
        raise ValueError(f"loss_weights must be 'unet', 'balanced' or None, got {loss_weights!r}")


def loss_weight_map(mask: torch.Tensor, loss_weights: str | None, *, w0: float = 10.0,
                    border_sigma: float = 5.0) -> torch.Tensor:
    """The per-pixel loss weights ``(H, W)`` float32 of one ``(H, W)`` class mask.

    ``loss_weights="unet"``: the paper's map (class balance + separation-border term, with cells
    taken as the 4-connected components of the foreground); ``"balanced"``: class balance
    only; ``None``: all ones. Chapter 5 teaches the map, chapter 6 trains with it.
    """
    check_loss_weights(loss_weights)
    if loss_weights is None:
        return torch.ones(mask.shape, dtype=torch.float32)
    if loss_weights == "balanced":
        return torch.as_tensor(class_weight_map(mask.numpy()), dtype=torch.float32)
    cells = instances_from_mask(mask.numpy() > 0)  # "unet"
    return torch.as_tensor(unet_weight_map(cells, w0=w0, border_sigma=border_sigma), dtype=torch.float32)


def paper_augmentation(grid: int = 3, elastic_sigma: float = 10.0, gray_values: GrayValues | None = None) -> Augment:
    """The course's augmentation: a random flip/90° rotation, then elastic deformation (chapter 4).

    ``gray_values`` (default None: off, so that runs of earlier versions repeat) then varies
    each image's brightness, contrast and gamma (:class:`~unet_course.augment.GrayValues`),
    drawn after the geometry from the same generator. ``fit(augment=paper_augmentation(
    gray_values=GrayValues()))`` trains with it, in memory or streamed.
    """
    if gray_values is not None:
        _check_gray_values(gray_values)

    def augment(images, masks, weight_maps, generator):
        k, flip = torch.randint(0, 4, (2,), generator=generator).tolist()
        images, masks, weight_maps = (orient(t, k, flip) for t in (images, masks, weight_maps))
        images, masks, weight_maps = elastic_deform(images, masks, weight_maps, grid=grid, elastic_sigma=elastic_sigma,
                                                    generator=generator)
        if gray_values is not None:
            variation = random_gray_values(len(images), gray_values, generator=generator, device=images.device)
            images = vary_gray_values(images, variation)
        return images, masks, weight_maps

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
    check_loss_weights(loss_weights)
    return [prepare_sample(data, index, loss_weights, margin=margin, num_classes=num_classes, w0=w0,
                           border_sigma=border_sigma)
            for index in tqdm(range(len(data)), desc="weight maps", leave=False,
                              disable=not progress or loss_weights != "unet" or len(data) < 5)]


def _check_sample(index: int, mask: torch.Tensor, weight_map: torch.Tensor, num_classes: int | None) -> None:
    if num_classes is not None:
        check_mask_values(mask.numpy(), num_classes, f"{index} of the training data")
    if not bool((torch.isfinite(weight_map) & (weight_map >= 0)).all()):
        raise ValueError(f"training item {index} has negative or non-finite loss weights; weights must be "
                         f"finite and >= 0")


def item_preparer(data, model: nn.Module, loss_weights: str | None, *, w0: float = 10.0,
                  border_sigma: float = 5.0) -> Callable[[int], Sample]:
    """``prepare(index)``: :func:`prepare_sample` of ``data`` for ``model`` (its margin and classes); picklable."""
    return functools.partial(prepare_sample, data, loss_weights=loss_weights, margin=int(getattr(model, "margin", 0)),
                             num_classes=getattr(model, "num_classes", None), w0=w0, border_sigma=border_sigma)


def _nbytes(sample: Sample) -> int:
    return sum(t.element_size() * t.numel() for t in sample)


def training_samples(prepare: Callable[[int], Sample], num_items: int, *, num_workers: int | None,
                     progress: bool = False) -> tuple[list[Sample] | None, int]:
    """``(samples, smallest side)``: every item prepared in memory, or None where the items will be streamed.

    ``num_workers=None`` holds the items in memory when all of them, prepared, take at most
    :data:`IN_MEMORY_BYTES` (estimated from the first item), and streams them otherwise; a
    number always streams. The first item is prepared either way, so a bad one fails before
    the first step; the smallest side is over every item held, or the first one's when streamed.
    """
    if num_items == 0:
        raise ValueError("train_data is empty; fit needs at least one (image, mask) item to cut tiles from")
    first = prepare(0)
    if num_workers is not None or num_items * _nbytes(first) > IN_MEMORY_BYTES:
        return None, min(first[1].shape)
    samples = [first] + [prepare(index) for index in tqdm(range(1, num_items), desc="weight maps", leave=False,
                                                         disable=not progress or num_items < 5)]
    return samples, min(min(mask.shape) for _, mask, _ in samples)


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


def training_batches(samples: list[Sample] | None, prepare: Callable[[int], Sample], num_items: int, *,
                     tile_size: int, batch_size: int, augment: bool | Augment, num_workers: int | None,
                     generator: torch.Generator, seed: int, start: int, steps: int,
                     device: torch.device) -> Iterator[Sample]:
    """The batches of steps ``start`` to ``steps - 1``, on ``device`` and augmented there.

    In memory (``samples`` given) and in one process, each batch comes from one random stream
    (``generator``), as in the book. Streamed, or in several processes, tile ``t`` of the run
    comes from its own seed (:mod:`unet_course.streaming`), so the batches do not depend on
    how many workers or processes share them.
    """
    rank, world_size = process_group()
    if samples is not None and world_size == 1:
        paper = paper_augmentation() if augment is True else augment or None
        for _ in range(start, steps):
            yield batch_on_device(random_tiles(samples, batch_size, tile_size, generator), device, paper, generator)
        return
    loader = tile_loader(samples.__getitem__ if samples is not None else prepare, num_items, tile_size=tile_size,
                         batch_size=batch_size, steps=steps, start=start, seed=seed, augment=augment,
                         num_workers=num_workers or 0, pin_memory=device.type == "cuda", rank=rank,
                         world_size=world_size)
    for batch in loader:
        yield batch_on_device(batch, device)
