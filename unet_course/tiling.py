"""Overlap-tile prediction (Ronneberger et al. 2015, Fig. 2): any image size, no seams.

The image is mirrored at its borders so that every output pixel sees its full context,
cut into overlapping input tiles, predicted a batch of tiles at a time and stitched.
Works for the paper's valid-convolution U-Net and for same-size models such as ``smp.Unet``;
optionally averages the 8 flips and rotations of each tile (test-time augmentation).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .sizes import alignment, check_tile_size, prediction_tile_size

__all__ = ["mirror_pad", "predict_tiled", "predict_tiles", "dihedral_transforms"]


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
    """The 8 flips/rotations of a square as ``(quarter_turns, flip)``; ``(0, False)`` is the identity."""
    return [(turns, flip) for flip in (False, True) for turns in range(4)]


def _apply(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = x.flip(-1) if flip else x
    return torch.rot90(x, turns, dims=(-2, -1))


def _undo(x: torch.Tensor, turns: int, flip: bool) -> torch.Tensor:
    x = torch.rot90(x, -turns, dims=(-2, -1))
    return x.flip(-1) if flip else x


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
        tile_size: side of the square input tiles. Default: for a model with
            ``valid_input_size`` (our UNet) 572, or the smallest valid tile covering a small
            image; 512 otherwise. It must be a valid input size of the model.
        batch_size: tiles per forward pass. Default 4.
        tta: average the predictions of the 8 flips/rotations of each tile. Default False.
        progress: show a progress bar over batches. Default False.
        activation: ``"softmax"`` over classes, ``"sigmoid"``, or None for raw logits; applied
            before averaging (TTA, overlaps). Default "softmax".
        context: extra pixels cut from every side of each tile's output. Default 0 for models
            that lose a margin (they already see full context), ``tile_size // 8`` for same-size
            models, whose predictions near a tile edge saw zero padding instead of image.

    Returns:
        ``(N, K, H, W)`` (or ``(K, H, W)``) float32, on the image's device. With a valid
        model the result equals the whole mirror-padded image predicted at once.

    The model is put in eval mode and every submodule's train/eval flag is restored afterwards.

    Example:
        >>> model = UNet(base_channels=4)
        >>> predict_tiled(model, torch.rand(1, 1000, 700)).shape
        torch.Size([2, 1000, 700])

    Explained in chapter 3, "The U-Net architecture"; used for evaluation in chapter 7.
    """
    images = _checked_images(image, tile_size, batch_size, activation)
    single = images.ndim == 3
    images = images[None] if single else images
    num_images, channels, height, width = images.shape
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32

    modes = [(module, module.training) for module in model.modules()]
    model.eval()  # dropout off, batch norm uses its running statistics
    try:
        tile_size = check_tile_size(int(tile_size or prediction_tile_size(model, height, width, context or 0)), model)
        model_margin = _margin_of(model, channels, tile_size, device, dtype)
        if context is None:
            context = 0 if model_margin > 0 else tile_size // 8
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
        outputs = model(_apply(inputs, turns, flip)).float()
        if activation == "softmax":
            outputs = outputs.softmax(dim=1)
        elif activation == "sigmoid":
            outputs = outputs.sigmoid()
        outputs = _undo(outputs, turns, flip)
        mean = outputs if mean is None else mean + outputs
    return mean / len(transforms)
