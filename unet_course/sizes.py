"""Tile sizes, decided in one place: which sizes a model takes, and which one to use.

A valid-convolution U-Net takes only some input sides (572 does, 570 does not: chapter 3),
and tiles must move by multiples of its downsampling factor so that every tile pools the
same pixel pairs as the whole image. Training (:func:`unet_course.fit`), overlap-tile
prediction (:func:`unet_course.predict_tiled`) and the command line all ask this module,
so that a wrong size gets the same message everywhere: what was wrong and the nearest
valid sizes. Chapter 3 teaches the arithmetic; the size functions of a valid U-Net are
in :mod:`unet_course.models.unet`. The size of the model itself is checked here too
(:func:`check_model_size`), against this machine's memory, before any model is built.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from .models.unet import (UNet, unet_nearest_valid_sizes, unet_num_parameters, unet_output_size,
                          unet_valid_input_size)

__all__ = ["PAPER_TILE", "SAME_SIZE_TILE", "alignment", "check_tile_size", "training_tile_size", "check_image_fits",
           "prediction_tile_size", "whole_image_tile_size", "check_model_size"]

PAPER_TILE = 572  # the paper's input tile (Fig. 1): 388² outputs
SAME_SIZE_TILE = 512  # the default tile of models whose output has the input's size (smp.Unet)

SizeRule = nn.Module | int  # a model, or the depth of a valid-convolution UNet


class _UNetOfDepth:
    """The size rule of a valid-convolution U-Net of ``depth`` poolings, before any model exists (the command line)."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def valid_input_size(self, size: int) -> int:
        return unet_valid_input_size(size, self.depth)

    def nearest_valid_sizes(self, size: int) -> tuple[int | None, int]:
        return unet_nearest_valid_sizes(size, self.depth)

    def output_size(self, size: int) -> int:
        return unet_output_size(size, self.depth)

    def __str__(self) -> str:
        return f"a U-Net of depth {self.depth}"


def _as_rule(rule: SizeRule):
    """A model, or the rule of a U-Net of that depth for an int: from here on every rule is asked alike."""
    return _UNetOfDepth(rule) if isinstance(rule, int) else rule


def _valid_size(rule, size: int) -> int:
    """The smallest size ``>= size`` the model takes (every size for models without a rule)."""
    return rule.valid_input_size(size) if hasattr(rule, "valid_input_size") else size


def _describe(rule) -> str:
    if isinstance(rule, UNet):
        return f"UNet(depth={rule.depth}, padding={rule.padding!r})"
    return str(rule) if isinstance(rule, _UNetOfDepth) else f"this {type(rule).__name__}"


def _with_output(rule, size: int | None) -> str | None:
    """``"572 (output 388)"``: a valid size with the output side it gives."""
    if size is None:
        return None
    return f"{size} (output {rule.output_size(size)})" if hasattr(rule, "output_size") else str(size)


def alignment(model: nn.Module) -> int:
    """Tiles move by multiples of this (pixels): ``2**depth`` for our UNet, the encoder's stride for smp models."""
    factor = getattr(model, "downsampling_factor", None)
    if factor is None:  # segmentation_models_pytorch models name it on their encoder
        factor = getattr(getattr(model, "encoder", None), "output_stride", 1)
    return int(factor)


def check_tile_size(tile_size: int, model: SizeRule, *, name: str = "tile_size") -> int:
    """``tile_size`` if ``model`` takes it as an input side, else a ``ValueError`` naming the nearest valid sizes.

    Args:
        tile_size: the tile side in pixels.
        model: a model (any; our UNet and models with ``valid_input_size`` are checked), or
            the depth of a valid-convolution UNet when no model exists yet (the command line).
        name: how the caller calls the size, for the message (``"--tile-size"`` on the command line).

    Example:
        >>> check_tile_size(570, 4)
        Traceback (most recent call last):
        ...
        ValueError: tile_size 570 is not a valid input size for a U-Net of depth 4; nearest valid sizes: 556 (output 372) and 572 (output 388)
    """
    if not isinstance(tile_size, int) or isinstance(tile_size, bool) or tile_size < 1:
        raise ValueError(f"{name} must be a positive whole number of pixels, got {tile_size!r}")
    model = _as_rule(model)
    if _valid_size(model, tile_size) != tile_size:
        below, above = (_with_output(model, s) for s in model.nearest_valid_sizes(tile_size))
        nearest = f"{below} and {above}" if below is not None else f"{above} (none is smaller)"
        raise ValueError(f"{name} {tile_size} is not a valid input size for {_describe(model)}; nearest valid sizes: "
                         f"{nearest}")
    return tile_size


def training_tile_size(model: nn.Module, smallest_side: int) -> int:
    """The training tile: the paper's 572 where the images allow, else the largest valid tile that fits.

    ``smallest_side`` is the smallest image side after mirror padding by the model's margin.
    """
    size = min(PAPER_TILE, smallest_side)
    if not hasattr(model, "valid_input_size"):
        return size
    below, above = model.nearest_valid_sizes(size)
    fitting = [s for s in (below, above) if s is not None and s <= smallest_side]
    if not fitting:
        raise ValueError(f"images of {smallest_side} px (after mirror padding) are smaller than the smallest tile "
                         f"{_describe(model)} takes ({above} px); use larger images or a shallower model")
    return max(fitting)


def check_image_fits(tile_size: int, height: int, width: int, margin: int, *, name: str = "tile_size",
                     image: object = "an image") -> None:
    """Refuse a ``height × width`` image that a ``tile_size`` tile does not fit, even mirror-padded by ``margin``.

    ``fit`` pads every training image by the model's margin before cutting tiles, so an image
    needs ``min(height, width) + 2·margin >= tile_size``. ``name`` and ``image`` are how the
    caller calls the size and the image, for the message.
    """
    if min(height, width) + 2 * margin < tile_size:
        raise ValueError(f"{image} is {width}×{height} pixels, too small for {name} {tile_size} even with "
                         f"{margin} mirrored pixels per side; pass a smaller {name}")


def whole_image_tile_size(model: nn.Module, height: int, width: int, context: int = 0) -> int:
    """The smallest valid tile whose output covers a ``height × width`` image in one forward pass."""
    needed = max(height, width) + 2 * (int(getattr(model, "margin", 0)) + context)
    if hasattr(model, "valid_input_size"):
        return model.valid_input_size(needed)
    step = alignment(model)
    return -(-needed // step) * step


def prediction_tile_size(model: nn.Module, height: int, width: int, context: int = 0) -> int:
    """The default tile of overlap-tile prediction.

    A valid U-Net: the paper's 572, or a smaller tile that covers a small image in one go;
    a same-size model: 512, or 8 × ``context`` if that is larger, so that overlaps of
    ``2·context`` px cost at most 1.8× the pixels (the nearest valid size for models with a size rule).
    """
    if getattr(model, "margin", 0) == 0:
        return whole_image_tile_size(model, max(SAME_SIZE_TILE, 8 * context), 1)
    return min(_valid_size(model, PAPER_TILE), whole_image_tile_size(model, height, width, context))


def _memory_bytes() -> int | None:
    """The memory this process may use: the machine's, or its container's limit where lower (None if unknown)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        return min(total, int(limit)) if limit.isdigit() else total
    except OSError:
        return total


def check_model_size(config: dict, *, what: str = "the model") -> int:
    """The parameter count of the U-Net ``config`` describes, refused before allocating when it cannot fit.

    Training holds each parameter about four times (weights, gradient, momentum, a copy) as
    float32; a model whose parameters alone, that many times over, exceed this machine's
    memory raises ``ValueError`` naming ``what`` (a file, or the options that set the size).
    """
    count = unet_num_parameters(in_channels=config.get("in_channels", 1), num_classes=config.get("num_classes", 2),
                                base_channels=config["base_channels"], depth=config["depth"],
                                batch_norm=config.get("batch_norm", False))
    memory = _memory_bytes()
    if memory is not None and 16 * count > memory:
        raise ValueError(f"{what}: UNet(base_channels={config['base_channels']}, depth={config['depth']}) has "
                         f"{count:.3g} parameters, about {16 * count / 1e9:.3g} GB to train or "
                         f"{4 * count / 1e9:.3g} GB to load, more than this machine's {memory / 1e9:.3g} GB; "
                         f"use a smaller base_channels or depth (the paper: 64 and 4)")
    return count
