"""The paper's energy: a pixel-wise softmax with a weighted cross-entropy loss.

Ronneberger, Fischer & Brox (2015), eq. (1): ``E = Σ_x w(x) · log p_ℓ(x)(x)`` (taken with a
minus sign, so it is minimised), with the weight map ``w`` of :mod:`unet_course.weight_map`.
A valid-convolution U-Net predicts a smaller map than its input; :func:`center_crop`
cuts the target and weights to match. Same-size models (e.g. ``smp.Unet``) need no crop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .models.unet import center_crop

__all__ = ["center_crop", "weighted_cross_entropy", "takes_weight_map"]  # center_crop lives with the crop-and-concat


def weighted_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight_map: torch.Tensor | None = None,
    *,
    crop: bool = False,
    ignore_index: int | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Pixel-wise softmax cross-entropy, each pixel weighted by ``w(x)``.

    The loss at pixel ``x`` is ``w(x) · (−log softmax(logits)[target(x)](x))``.
    ``reduction="mean"`` divides the weighted sum by the **number of pixels** counted (those
    whose target is not ``ignore_index``), not by ``Σ w``: the weights then scale each
    pixel's gradient as in the paper, ``weight_map=None`` (or all ones) gives exactly
    ``F.cross_entropy``, and with a ``"balanced"`` weight map (mean 1) the loss keeps
    the plain loss's scale. If every pixel is ignored the mean is 0 (not NaN).

    Args:
        logits: raw scores, one channel per class (at least 2; the paper uses 2).
        target: class indices; any integer dtype.
        weight_map: per-pixel weights, e.g. from :func:`unet_course.unet_weight_map`; finite
            and ``>= 0`` (else ``ValueError``). Default ``None``: every pixel weighs 1.
        crop: if ``True`` and the logits are smaller than the target (a valid-convolution
            U-Net), center-crop target and weight map to the logits' size. Default ``False``:
            a size mismatch raises an error naming both shapes.
        ignore_index: a target value whose pixels add nothing and are not counted.
            Default ``None``: every pixel counts, and a target outside ``0..K-1`` (PyTorch's
            ``-100`` included) raises ``ValueError``; pass ``ignore_index=-100`` to skip those.
        reduction: ``"mean"`` (default), ``"sum"``, or ``"none"`` for the ``(N, h, w)`` map.

    Shape:
        ``logits (N, K, h, w)``, ``target (N, H, W)``, ``weight_map (N, H, W)``; ``(H, W)``
        equals ``(h, w)`` unless ``crop=True``. Returns a scalar, or ``(N, h, w)``.

    Example:
        >>> import torch
        >>> logits = torch.randn(2, 2, 388, 388)
        >>> target = torch.randint(0, 2, (2, 572, 572))
        >>> weight_map = torch.ones(2, 572, 572)
        >>> weighted_cross_entropy(logits, target, weight_map, crop=True).shape
        torch.Size([])

    Taught in chapter 5 (the energy function); chapter 6 trains with it.
    """
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f'reduction must be "mean", "sum" or "none", got {reduction!r}')
    if logits.ndim != 4 or logits.shape[1] < 2:
        raise ValueError(
            f"logits must be (N, K, h, w) with K >= 2 classes, got shape {tuple(logits.shape)}. "
            "For a binary problem give the model 2 output channels (background, cell)."
        )
    if target.ndim != 3 or target.shape[0] != logits.shape[0]:
        raise ValueError(
            f"target must be (N, H, W) with N = {logits.shape[0]} like the logits, got shape {tuple(target.shape)}. "
            "For a (N, 1, H, W) mask pass target[:, 0]."
        )
    if target.dtype.is_floating_point or target.dtype == torch.bool:
        raise ValueError(f"target must hold class indices (an integer dtype), got {target.dtype}. Use target.long().")
    if weight_map is not None and weight_map.shape != target.shape:
        raise ValueError(
            f"weight_map must have the target's shape {tuple(target.shape)}, got {tuple(weight_map.shape)}."
        )
    size, target_size = tuple(logits.shape[-2:]), tuple(target.shape[-2:])
    if size != target_size:
        if not crop:
            raise ValueError(
                f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in size. A valid-"
                "convolution U-Net predicts only the centre of its input: pass crop=True to center-crop "
                "target and weight map to the logits, or use padded convolutions."
            )
        if size[0] > target_size[0] or size[1] > target_size[1]:
            raise ValueError(
                f"logits {tuple(logits.shape)} are larger than target {tuple(target.shape)}: "
                "crop=True can only cut the target down. Check the model's output size."
            )
        target = center_crop(target, size)
        weight_map = None if weight_map is None else center_crop(weight_map, size)

    target = target.long()
    _check_values(target, weight_map, logits.shape[1], ignore_index)
    # With no ignore_index every target is a class (checked above), so -100 matches none.
    ignored = -100 if ignore_index is None else ignore_index
    loss = F.cross_entropy(logits, target, reduction="none", ignore_index=ignored)  # (N, h, w), 0 where ignored
    if weight_map is not None:
        loss = loss * weight_map.to(device=loss.device, dtype=loss.dtype)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if ignore_index is None:
        return loss.sum() / target.numel()
    counted = (target != ignore_index).sum().clamp(min=1)  # a tensor: no device sync
    return loss.sum() / counted


def _check_values(target: torch.Tensor, weight_map: torch.Tensor | None, num_classes: int,
                  ignore_index: int | None) -> None:
    """Raise ``ValueError`` for targets that are not classes, or negative or non-finite weights."""
    outside = (target < 0) | (target >= num_classes)
    if ignore_index is not None:
        outside &= target != ignore_index
    checks = [outside.any()]
    if weight_map is not None:
        checks.append((~(torch.isfinite(weight_map) & (weight_map >= 0))).any())
    bad = torch.stack(checks).tolist()  # one device sync for both checks
    if bad[0]:
        values = target[outside].unique()[:8].tolist()
        raise ValueError(f"target holds values outside the {num_classes} classes 0..{num_classes - 1}: {values}; "
                         f"map them to class indices, or pass ignore_index=<value> to leave those pixels out")
    if len(bad) > 1 and bad[1]:
        raise ValueError("weight_map holds negative, NaN or infinite values; per-pixel weights must be finite "
                         "and >= 0 (check w0, border_sigma and class weights)")


def takes_weight_map(loss: Callable) -> bool:
    """Whether ``loss`` takes a third positional argument, the weight map, besides logits and target.

    :func:`~unet_course.train.fit` passes the weight map only to a loss that takes it, so that
    two-argument losses such as ``smp.losses.DiceLoss`` train as they are (chapter 5). A callable
    whose signature cannot be read (a builtin) is given the two.

    Example:
        >>> takes_weight_map(weighted_cross_entropy), takes_weight_map(torch.nn.CrossEntropyLoss())
        (True, False)
    """
    function = loss.forward if isinstance(loss, nn.Module) else loss
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in parameters)
