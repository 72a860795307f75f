"""Gray-value variation: the paper's second named invariance, brightness, contrast and gamma per image.

Ronneberger et al. (2015), section 3.1, asks the augmentation for "robustness to deformations
and gray value variations" and says no more. :class:`GrayValues` (off unless asked for) holds
the strengths of the three changes common practice draws (albumentations, nnU-Net);
:func:`random_gray_values` draws one change per image and :func:`vary_gray_values` applies it,
a pure function. Masks and weight maps never change. Chapter 4 measures what it adds.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["GrayValues", "random_gray_values", "vary_gray_values"]


class GrayValues(NamedTuple):
    """How strongly :func:`random_gray_values` varies each image's gray values; 0 leaves that part out.

    The paper names "gray value variations" among the invariances the augmentation teaches
    and gives no recipe. The defaults are common practice's: the ranges of albumentations'
    ``RandomBrightnessContrast`` (±0.2) and ``RandomGamma`` (0.8 to 1.2) when told nothing.
    Only the images change; the loss still asks for the same labels. Chapter 4 measures it.
    """

    brightness: float = 0.2  # shift by up to ± this fraction of the image's value range
    contrast: float = 0.2  # scale about the image's mean by a factor in [1 - contrast, 1 + contrast]
    gamma: float = 0.2  # raise the image, rescaled to [0, 1], to an exponent in [1 - gamma, 1 + gamma]


def _check_gray_values(gray_values: GrayValues) -> None:
    for name, value, high in zip(GrayValues._fields, gray_values, (float("inf"), 1.0, 1.0)):
        if not 0 <= value < high:
            raise ValueError(f"GrayValues.{name} must be at least 0 and below {high}, got {value}: "
                             "0 leaves that part out, 0.1-0.3 is a usual strength")


def random_gray_values(
    n: int,
    gray_values: GrayValues = GrayValues(),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One random (shift, contrast factor, gamma exponent) per image, uniform in the ranges of ``gray_values``.

    Args:
        n: how many images.
        gray_values: the strengths (default ``GrayValues()``: 0.2 each).
        generator: a ``torch.Generator`` to draw from (default: torch's global one).
        device: where the result lives (default: the generator's device, else the CPU).

    Shape:
        ``(N, 3)``: the shift in units of the image's value range, then the two factors.

    Example:
        >>> random_gray_values(4, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 3])

    Taught in chapter 4, Data augmentation.
    """
    _check_gray_values(gray_values)
    draw_on = generator.device if generator is not None else device
    uniform = torch.rand(n, 3, generator=generator, device=draw_on) * 2 - 1  # in [-1, 1)
    strengths = torch.tensor(gray_values, dtype=uniform.dtype, device=uniform.device)
    variation = uniform * strengths + torch.tensor([0.0, 1.0, 1.0], device=uniform.device)
    return variation if device is None else variation.to(device)


def vary_gray_values(images: torch.Tensor, variation: torch.Tensor) -> torch.Tensor:
    """Apply one gamma, contrast and brightness change per image: pure arithmetic, no draws.

    Each image (all its channels together) is first raised to its gamma exponent on its own
    value range (rescaled to [0, 1] and back, so its minimum and maximum stay put), then
    scaled about its mean by the contrast factor, then shifted by ``shift`` times its value
    range. A variation of ``(0, 1, 1)`` returns the image unchanged, bit for bit. Masks and
    weight maps are not touched: gray values change what the network sees, not the answer.

    Args:
        images: float images.
        variation: per image ``(shift, contrast factor, gamma exponent)``, e.g. from
            :func:`random_gray_values`; the factors must be positive.

    Shape:
        images ``(N, C, H, W)``, variation ``(N, 3)`` → ``(N, C, H, W)``, dtype of the images.

    Example:
        >>> vary_gray_values(torch.rand(2, 1, 8, 8), torch.tensor([[0.1, 1.2, 0.9], [0.0, 1.0, 1.0]])).shape
        torch.Size([2, 1, 8, 8])

    Taught in chapter 4, Data augmentation.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"Expected float images of shape (N, C, H, W), got {images.dtype} of shape "
                         f"{tuple(images.shape)}; convert with .float() and add axes with images[None].")
    if variation.shape != (images.shape[0], 3) or not bool((variation[:, 1:] > 0).all()):
        raise ValueError(f"Expected a variation of shape ({images.shape[0]}, 3) with positive factors, got "
                         f"{tuple(variation.shape)}; draw one with random_gray_values(len(images)).")
    shift, factor, exponent = (v.to(images)[:, None, None, None] for v in variation.unbind(1))  # (N, 1, 1, 1) each
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    span = images.amax(dim=(1, 2, 3), keepdim=True) - low
    unit = (images - low) / span.clamp_min(torch.finfo(images.dtype).tiny)  # in [0, 1]
    x = torch.where(exponent == 1, images, low + span * unit.pow(exponent))  # gamma, range kept
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = torch.where(factor == 1, x, mean + factor * (x - mean))  # contrast
    return x + shift * span  # brightness
