"""Overlap-tile prediction (Ronneberger et al. 2015, Fig. 2): any image size, no seams.

The image is mirrored at its borders so that every output pixel sees its full context,
cut into overlapping input tiles, predicted a batch of tiles at a time and stitched.
Works for the paper's valid-convolution U-Net, exactly, and for same-size models such as
``smp.Unet``, whose tiles overlap by their effective receptive field and are blended;
optionally averages the 8 flips and rotations of each tile (test-time augmentation).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .arrays import model_device
from .augment import orient, undo_orient
from .sizes import alignment, check_tile_size, prediction_tile_size, whole_image_tile_size

__all__ = ["mirror_pad", "predict_tiled", "predict_tiles", "dihedral_transforms", "effective_receptive_field"]

PROBE_TILE = 128  # side of the crop on which predict_tiled measures a same-size model's receptive field


def _reflect_indices(length: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source index of each position in ``[-before, length + after)`` when mirroring at both ends."""
    positions = torch.arange(-before, length + after, device=device)
    if length == 1:
        return torch.zeros_like(positions)
    period = 2 * (length - 1)  # reflecting twice brings the signal back: it repeats every period
    positions = positions.remainder(period)
    return torch.where(positions >= length, period - positions, positions)


def mirror_pad(image: torch.Tensor, pad: int | tuple[int, int, int, int]) -> torch.Tensor:
    """Extend ``image`` by mirroring it at its borders, by any amount (reflecting again if needed).

    ``pad`` is one width for every side, or ``(left, right, top, bottom)`` in the order of
    ``F.pad``. The border pixel is not repeated (as ``F.pad(mode="reflect")``), but the pads
    may be larger than the image, which ``F.pad`` refuses.

    Shape:
        ``(..., H, W)`` → ``(..., top + H + bottom, left + W + right)``

    Example:
        >>> mirror_pad(torch.zeros(1, 1, 30, 20), 92).shape
        torch.Size([1, 1, 214, 204])
        >>> mirror_pad(torch.zeros(1, 1, 30, 20), (0, 4, 0, 2)).shape
        torch.Size([1, 1, 32, 24])
    """
    left, right, top, bottom = (pad,) * 4 if isinstance(pad, int) else pad
    if min(left, right, top, bottom) < 0:
        raise ValueError(f"pad widths must be >= 0 pixels, got {pad!r}")
    rows = _reflect_indices(image.shape[-2], top, bottom, image.device)
    cols = _reflect_indices(image.shape[-1], left, right, image.device)
    return image.index_select(-2, rows).index_select(-1, cols)


def dihedral_transforms() -> list[tuple[int, bool]]:
    """The 8 flips/rotations of a square as ``(quarter_turns, flip)`` for :func:`~unet_course.augment.orient`.

    ``(0, False)`` is the identity; test-time augmentation averages the predictions of all 8.
    """
    return [(turns, flip) for flip in (False, True) for turns in range(4)]


def _margin_of(model: nn.Module, channels: int, tile_size: int, device: torch.device,
               dtype: torch.dtype) -> int:
    """Pixels a model loses per side: its ``margin`` attribute, else measured with one forward pass."""
    margin = getattr(model, "margin", None)
    if isinstance(margin, int):
        return margin
    out_h, out_w = model(torch.zeros(1, channels, tile_size, tile_size, device=device, dtype=dtype)).shape[-2:]
    lost = tile_size - out_h
    if out_h != out_w or lost < 0 or lost % 2:
        raise ValueError(f"predict_tiled needs a model whose output is the input cropped equally on every "
                         f"side; a {tile_size}×{tile_size} tile gave a {out_h}×{out_w} output.")
    return lost // 2


@torch.no_grad()
def predict_tiled(
    model: nn.Module,
    image: torch.Tensor | np.ndarray,
    *,
    tile_size: int | None = None,
    batch_size: int = 4,
    tta: bool = False,
    progress: bool = False,
    activation: Literal["softmax", "sigmoid"] | None = "softmax",
    context: int | None = None,
) -> torch.Tensor:
    """Predict an image of any size with the overlap-tile strategy; returns probabilities.

    Args:
        model: maps ``(N, C, h, w)`` to ``(N, K, h - 2m, w - 2m)``, e.g. :class:`UNet` (``m`` =
            ``model.margin``, else measured by one forward pass) or a same-size model (``m = 0``).
        image: ``(N, C, H, W)`` or ``(C, H, W)``, any H and W; numpy arrays are converted.
        tile_size: side of the square input tiles. Default: for a valid model 572, or the smallest
            valid tile covering a small image; for a same-size model 512 (or 8 × ``context`` if
            larger), cut to the image where it is smaller. It must be a valid input size of the model.
        batch_size: tiles per forward pass. Default 4.
        tta: average the predictions of the 8 flips/rotations of each tile. Default False.
        progress: show a progress bar over batches. Default False.
        activation: ``"softmax"`` over classes, ``"sigmoid"``, or None for raw logits; applied
            before averaging (TTA, overlaps). Default "softmax".
        context: pixels of image a tile's predictions need beyond them. A valid model already sees
            its full context (default 0; more is cut from every side of each output tile). A
            same-size model sees zero padding instead of image near a tile edge: its tiles overlap
            by ``2·context`` px and are blended across the middle of each overlap. Default: its
            :func:`effective_receptive_field`, at most ``tile_size // 8``; none when the image fits one tile.

    Returns:
        ``(N, K, H, W)`` (or ``(K, H, W)``) float32, on the image's device. With a valid
        model the result equals the whole mirror-padded image predicted at once; with a
        same-size model it is close to the whole image predicted at once (equal if it fits one tile).

    The model is put in eval mode and every submodule's train/eval flag is restored afterwards.

    Example:
        >>> model = UNet(base_channels=4)
        >>> predict_tiled(model, torch.rand(1, 1000, 700)).shape
        torch.Size([2, 1000, 700])

    Explained in chapter 3, "The U-Net architecture"; used for evaluation in chapter 7.
    """
    images = _checked_images(image, tile_size, batch_size, activation)
    requested = tile_size
    single = images.ndim == 3
    images = images[None] if single else images
    num_images, channels, height, width = images.shape
    device = model_device(model, default=images.device)
    parameter = next(model.parameters(), None)
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32

    modes = [(module, module.training) for module in model.modules()]
    model.eval()  # dropout off, batch norm uses its running statistics
    try:
        tile_size = check_tile_size(int(tile_size or prediction_tile_size(model, height, width, context or 0)), model)
        model_margin = _margin_of(model, channels, tile_size, device, dtype)
        if model_margin == 0:  # a same-size model: tiles inside the image, blended (see _predict_same_size)
            result = _predict_same_size(model, images.to(device, dtype), tile_size, context, requested_tile=requested,
                                        batch_size=batch_size, tta=tta, progress=progress, activation=activation)
            result = result.to(images.device)
            return result[0] if single else result
        if context is None:
            context = 0  # a valid model already sees its full context
        margin, out_tile, rows, cols = _tile_grid(model, tile_size, model_margin + context, height, width)
        padded = mirror_pad(images.to(device, dtype), (margin, cols[-1] + out_tile + margin - width,
                                                       margin, rows[-1] + out_tile + margin - height))
        tiles = [(n, y, x) for n in range(num_images) for y in rows for x in cols]
        total = torch.zeros((num_images, 0, rows[-1] + out_tile, cols[-1] + out_tile), device=device)
        counts = torch.zeros((num_images, 1) + total.shape[2:], device=device)
        for start in tqdm(range(0, len(tiles), batch_size), disable=not progress, desc="tiles"):
            batch = tiles[start:start + batch_size]
            inputs = torch.stack([padded[n, :, y:y + tile_size, x:x + tile_size] for n, y, x in batch])
            outputs = predict_tiles(model, inputs, tta=tta, activation=activation)  # (B, K, out_tile + 2·context, …)
            _check_output(outputs, tile_size, model_margin)
            outputs = outputs[..., context:context + out_tile, context:context + out_tile]
            if total.shape[1] == 0:  # the number of classes is known after the first batch
                total = total.new_zeros((num_images, outputs.shape[1]) + total.shape[2:])
            for output, (n, y, x) in zip(outputs, batch):
                total[n, :, y:y + out_tile, x:x + out_tile] += output
                counts[n, :, y:y + out_tile, x:x + out_tile] += 1
    finally:
        for module, mode in modes:  # model.train(mode) would overwrite submodules frozen on purpose
            module.training = mode
    result = (total / counts)[..., :height, :width].to(images.device)
    return result[0] if single else result


def _checked_images(image: torch.Tensor | np.ndarray, tile_size: int | None, batch_size: int,
                    activation: str | None) -> torch.Tensor:
    """``image`` as a tensor, with every argument of :func:`predict_tiled` checked before any work."""
    images = torch.as_tensor(image)
    if images.ndim not in (3, 4):
        raise ValueError(f"image must be (N, C, H, W) or (C, H, W), got shape {tuple(images.shape)}; "
                         f"for a grayscale (H, W) image pass image[None].")
    if activation not in ("softmax", "sigmoid", None):
        raise ValueError(f"activation must be 'softmax', 'sigmoid' or None (logits), got {activation!r}")
    if images.shape[-1] == 0 or images.shape[-2] == 0:
        raise ValueError(f"image is empty (shape {tuple(images.shape)}); pass an image at least 1 pixel high and wide")
    if tile_size is not None and tile_size < 1:
        raise ValueError(f"tile_size must be a positive number of pixels, got {tile_size}; leave it out for the "
                         f"model's default")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 tile per forward pass, got {batch_size}")
    if images.is_floating_point() and not bool(torch.isfinite(images).all()):
        raise ValueError("image holds NaN or infinite values, which would blank every tile they reach; "
                         "replace them with finite numbers first")
    return images


def _tile_grid(model: nn.Module, tile_size: int, margin: int, height: int,
               width: int) -> tuple[int, int, list[int], list[int]]:
    """``(margin, out_tile, rows, cols)``: the top-left corners of the output tiles covering the image."""
    out_tile = tile_size - 2 * margin
    step = out_tile // alignment(model) * alignment(model)
    if step < 1:
        raise ValueError(f"tile_size={tile_size} leaves {out_tile} output pixels per tile after cutting "
                         f"{margin} px of context per side, fewer than the model's alignment of "
                         f"{alignment(model)} px; use a larger tile_size.")
    rows = [step * k for k in range(1 + math.ceil(max(height - out_tile, 0) / step))]
    cols = [step * k for k in range(1 + math.ceil(max(width - out_tile, 0) / step))]
    return margin, out_tile, rows, cols


def _check_output(outputs: torch.Tensor, tile_size: int, model_margin: int) -> None:
    expected = tile_size - 2 * model_margin
    if outputs.shape[-1] != expected or outputs.shape[-2] != expected:
        raise ValueError(f"the model mapped a {tile_size}-px tile to {tuple(outputs.shape[-2:])}, "
                         f"expected {expected} px per side (margin {model_margin}).")


def effective_receptive_field(model: nn.Module, image: torch.Tensor, *, mass: float = 0.99) -> int:
    """How far from a tile edge a same-size model still looks, in pixels, measured on ``image``.

    The radius of the square around ``image``'s centre pixel that holds ``mass`` of the gradient of
    that pixel's logits with respect to the input: the *effective* receptive field of Luo et al.
    (2016), which training makes far smaller than the theoretical one. One forward and one
    backward pass; the model's own gradients are left untouched. It sets how much context
    :func:`predict_tiled` gives each tile of a same-size model (chapter 3).

    Shape:
        ``image``: ``(C, S, S)`` or ``(1, C, S, S)``, a square of a size the model takes; the result is at
        most ``S / 2``.

    Example:
        >>> model = UNet(base_channels=4, depth=2, padding="same")
        >>> effective_receptive_field(model, torch.rand(1, 64, 64)) < 32
        True
    """
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be a fraction of the gradient in (0, 1], got {mass}")
    probe = (image[None] if image.ndim == 3 else image).detach().clone().requires_grad_(True)
    size = probe.shape[-1]
    if probe.ndim != 4 or probe.shape[0] != 1 or probe.shape[-2] != size:
        raise ValueError(f"image must be one square, (C, S, S) or (1, C, S, S); got {tuple(image.shape)}; "
                         f"cut a square crop")
    with torch.enable_grad():
        outputs = model(probe)
        if outputs.shape[-2:] != probe.shape[-2:]:
            raise ValueError(f"effective_receptive_field needs a same-size model; a {size}-px tile gave "
                             f"{tuple(outputs.shape[-2:])}")
        (gradient,) = torch.autograd.grad(outputs[0, :, size // 2, size // 2].sum(), probe)
    gradient = gradient[0].abs().sum(0).double()  # (S, S)
    offsets = (torch.arange(size, device=gradient.device) - size // 2).abs()
    ring = torch.maximum(offsets[:, None], offsets[None, :])  # Chebyshev distance from the centre pixel
    per_ring = torch.zeros(size, dtype=gradient.dtype, device=gradient.device).index_add_(0, ring.flatten(),
                                                                                          gradient.flatten())
    if per_ring.sum() == 0:  # a network that ignores its input here: nothing reaches in from outside either
        return 0
    return int((per_ring.cumsum(0) < mass * per_ring.sum()).sum())


def _tile_starts(length: int, tile: int, overlap: int, step: int) -> list[int]:
    """Tile starts along one axis: multiples of ``step``, evenly spread, neighbours overlapping by at
    least ``overlap`` px, the first at 0 and the last flush with the end (``length - tile``)."""
    if tile >= length:
        return [0]
    longest = (tile - overlap) // step * step
    count = 1 + math.ceil((length - tile) / longest)
    return [round(k * (length - tile) / (count - 1) / step) * step for k in range(count)]


def _crossfades(starts: list[int], tile: int, fade: int) -> list[torch.Tensor]:
    """Each tile's weight along one axis: 1, except across the middle ``fade`` px of an overlap with a
    neighbour, where it falls as ``cos²`` while the neighbour's rises as ``sin²`` (they sum to 1)."""
    position = torch.arange(tile) + 0.5

    def rising(overlap: int) -> torch.Tensor:  # 0 → 1 across the band centred in an overlap starting at 0
        width = max(min(fade, overlap), 1e-6)
        return torch.sin(torch.pi / 2 * ((position - (overlap - width) / 2) / width).clamp(0, 1)) ** 2

    weights = []
    for k, start in enumerate(starts):
        weight = torch.ones(tile)
        if k > 0:
            weight = weight * rising(starts[k - 1] + tile - start)
        if k + 1 < len(starts):
            weight = weight * rising(start + tile - starts[k + 1]).flip(0)
        weights.append(weight)
    return weights


def _predict_same_size(model: nn.Module, images: torch.Tensor, tile_size: int, context: int | None, *,
                       requested_tile: int | None, batch_size: int, tta: bool, progress: bool,
                       activation: str | None) -> torch.Tensor:
    """Overlap-tile for a model whose output has its input's size (``UNet(padding="same")``, ``smp.Unet``).

    Such a model pads every convolution with zeros, so a pixel near a tile edge sees zeros where the
    image goes on, and its prediction differs from a whole-image pass. Tiles therefore overlap by
    ``2·context`` px (the model's effective receptive field by default) and are blended across the
    middle of each overlap, where both see the most image. Tiles lie inside the image: at the image
    border the model sees the same zero padding as in a whole-image pass, and an image that fits in
    one tile is predicted whole, exactly. Returns ``(N, K, H, W)`` on the model's device.
    """
    num_images, channels, height, width = images.shape
    covering = [whole_image_tile_size(model, side, 1) for side in (height, width)]  # sizes the model takes
    padded = mirror_pad(images, (0, covering[1] - width, 0, covering[0] - height))  # far sides only
    if context is None:
        if max(covering) <= tile_size:  # one tile: the whole image, no context needed
            context = 0
        else:  # measured on a central crop of the first image, PROBE_TILE px (or the model's nearest size)
            side = min(whole_image_tile_size(model, PROBE_TILE, 1), *covering)
            top, left = (covering[0] - side) // 2, (covering[1] - side) // 2
            context = effective_receptive_field(model, padded[0, :, top:top + side, left:left + side])
        if requested_tile is None:  # grows past 512 px only for a model aligned to more than PROBE_TILE px
            tile_size = prediction_tile_size(model, height, width, context)
        context = min(context, tile_size // 8)  # a small tile keeps its cost: at most 1.8× the pixels
    elif context < 0:
        raise ValueError(f"context must be >= 0 pixels, got {context}")
    tile = [min(tile_size, side) for side in covering]  # (tile height, tile width)
    step = alignment(model)
    if any(t < side and t - 2 * context < step for t, side in zip(tile, covering)):
        raise ValueError(f"tile_size={tile_size} leaves fewer than the model's alignment of {step} px between "
                         f"overlaps of 2·context = {2 * context} px; use a larger tile_size or a smaller context.")
    starts = [_tile_starts(side, t, 2 * context, step) for side, t in zip(covering, tile)]
    fades = [_crossfades(axis_starts, t, context) for axis_starts, t in zip(starts, tile)]
    tiles = [(n, i, j) for n in range(num_images) for i in range(len(starts[0])) for j in range(len(starts[1]))]
    total = weights = None
    for first in tqdm(range(0, len(tiles), batch_size), disable=not progress, desc="tiles"):
        batch = tiles[first:first + batch_size]
        crops = [padded[n, :, starts[0][i]:starts[0][i] + tile[0], starts[1][j]:starts[1][j] + tile[1]]
                 for n, i, j in batch]
        outputs = predict_tiles(model, torch.stack(crops), tta=tta, activation=activation)  # (B, K, th, tw)
        if outputs.shape[-2:] != crops[0].shape[-2:]:
            raise ValueError(f"the model mapped a {tuple(crops[0].shape[-2:])} tile to {tuple(outputs.shape[-2:])}; "
                             f"a same-size model must keep the size")
        if total is None:
            total = outputs.new_zeros((num_images, outputs.shape[1], *covering))
            weights = outputs.new_zeros((num_images, 1, *covering))
        for output, (n, i, j) in zip(outputs, batch):
            weight = (fades[0][i][:, None] * fades[1][j][None, :]).to(output)
            region = (n, slice(None), slice(starts[0][i], starts[0][i] + tile[0]),
                      slice(starts[1][j], starts[1][j] + tile[1]))
            total[region] += weight * output
            weights[region] += weight
    return (total / weights)[..., :height, :width]


@torch.no_grad()
def predict_tiles(model: nn.Module, inputs: torch.Tensor, *, tta: bool = False,
                  activation: Literal["softmax", "sigmoid"] | None = "softmax") -> torch.Tensor:
    """Model outputs for a batch of square tiles, averaged over the 8 flips/rotations if ``tta``.

    Each transformed tile is predicted, its ``activation`` applied, the transform undone,
    and the results averaged: probabilities are averaged, not logits. Chapter 7 shows it.

    Shape:
        ``(B, C, T, T)`` → ``(B, K, t, t)`` float32.
    """
    transforms = dihedral_transforms() if tta else [(0, False)]
    mean = None
    for turns, flip in transforms:
        outputs = model(orient(inputs, turns, flip)).float()
        if activation == "softmax":
            outputs = outputs.softmax(dim=1)
        elif activation == "sigmoid":
            outputs = outputs.sigmoid()
        outputs = undo_orient(outputs, turns, flip)
        mean = outputs if mean is None else mean + outputs
    return mean / len(transforms)
