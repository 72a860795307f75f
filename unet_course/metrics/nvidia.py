"""NVIDIA's evaluation Dice for U-Net on ISBI 2012, and its 512 → 388 resize.

NVIDIA DeepLearningExamples (``TensorFlow2/Segmentation/UNet_Medical``) publish the one
cross-validated U-Net figure on the 30 ISBI 2012 training slices (Dice 0.890, 5 folds).
Their score is one minus their Dice loss: per image and class, the soft Dice of the
softmax probabilities ``(2 Σ p t + ε) / (Σ p² + Σ t² + ε)``, averaged over the images,
then over the two classes. Their network sees images resized to 388 × 388 and is scored
against labels resized the same way (bilinear, then cut at 0.5).

Our hard Dice, of thresholded maps per class, is :func:`~unet_course.metrics.pixel.dice`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ._arrays import ArrayLike, pair

__all__ = ["NVIDIA_SIZE", "NVIDIA_EPS", "nvidia_dice", "nvidia_resize"]

NVIDIA_SIZE = 388  # side of NVIDIA's network output, to which images and labels are resized
NVIDIA_EPS = 1e-6  # the ε of NVIDIA's dice_coef, in numerator and denominator


def _check(probabilities: np.ndarray, truth: np.ndarray) -> None:
    if probabilities.size and (np.nanmin(probabilities) < 0 or np.nanmax(probabilities) > 1 or
                               np.isnan(probabilities).any()):
        raise ValueError(
            f"probabilities must lie in [0, 1], got values from {np.nanmin(probabilities):g} to "
            f"{np.nanmax(probabilities):g}. Pass P(cell interior), e.g. logits.softmax(dim=1)[:, 1], not logits."
        )
    if truth.size and not np.isin(truth, (0, 1)).all():
        raise ValueError(
            "truth must be a binary map (0 = membrane, 1 = cell interior), got values "
            f"{np.unique(truth)[:5].tolist()}. "
            "Divide 0/255 labels by 255."
        )


def nvidia_dice(probabilities: ArrayLike, truth: ArrayLike, *, eps: float = NVIDIA_EPS) -> float:
    """NVIDIA's evaluation Dice: mean over the two classes of the soft Dice, per image, averaged.

    With ``p`` the probabilities of a class (class 1 = cell interior as given, class 0 =
    ``1 - p``) and ``t`` its one-hot truth, per image and class::

        dice = (2 Σ p t + eps) / (Σ p² + Σ t² + eps)

    averaged over the images, then over the two classes. The squares in the denominator
    (not ``Σ p + Σ t``) make a confident prediction score higher than a hesitant one that
    thresholds the same; with a binary ``probabilities`` map it equals the hard Dice.

    Args:
        probabilities: P(cell interior) per pixel, in [0, 1] (a softmax's class-1 channel).
        truth: binary map (1 = cell interior), same shape.
        eps: NVIDIA's smoothing term. Default ``NVIDIA_EPS`` (1e-6).

    Shape:
        ``probabilities`` and ``truth``: ``(H, W)`` or a stack ``(N, H, W)``. Returns a float
        in [0, 1], 1 perfect.

    Example:
        >>> truth = np.array([[0, 1], [1, 1]])
        >>> round(nvidia_dice(np.array([[0.0, 1.0], [1.0, 0.5]]), truth), 4)  # soft: 0.5 costs both classes
        0.9206

    Taught in chapter 7 (evaluation).
    """
    probabilities, truth = pair(probabilities, truth)
    probabilities, truth = probabilities.astype(np.float64), truth.astype(np.float64)
    _check(probabilities, truth)
    if probabilities.ndim == 2:
        probabilities, truth = probabilities[None], truth[None]
    if probabilities.ndim != 3 or probabilities.shape[0] == 0:
        raise ValueError(f"Expected (H, W) or (N, H, W) maps with N ≥ 1, got shape {tuple(probabilities.shape)}.")
    scores = []
    for p, t in ((1.0 - probabilities, 1.0 - truth), (probabilities, truth)):  # class 0, class 1
        intersection = (p * t).sum(axis=(1, 2))
        denominator = (p * p).sum(axis=(1, 2)) + (t * t).sum(axis=(1, 2))
        with np.errstate(invalid="ignore"):  # eps=0 and a class absent from both: 0/0, nan
            scores.append(np.mean((2.0 * intersection + eps) / (denominator + eps)))  # over images
    return float(np.mean(scores))  # over classes


def nvidia_resize(probabilities: ArrayLike, truth: ArrayLike, size: int = NVIDIA_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels resized as NVIDIA resizes theirs: bilinear, labels then cut at 0.5.

    The bilinear resize is TensorFlow 2's ``tf.image.resize`` default (half-pixel centres,
    no antialiasing), which is ``F.interpolate(mode="bilinear", align_corners=False)``;
    resized labels at or above 0.5 become 1. NVIDIA resize the input image and predict at
    388; resizing our 512 × 512 prediction instead scores our network on their grid.

    Args:
        probabilities: P(cell interior), in [0, 1].
        truth: binary map (1 = cell interior), same shape.
        size: side of the square output. Default ``NVIDIA_SIZE`` (388).

    Shape:
        ``(H, W)`` or ``(N, H, W)`` in; ``(size, size)`` or ``(N, size, size)`` out:
        float32 probabilities and uint8 labels.

    Example:
        >>> probabilities, truth = nvidia_resize(np.full((512, 512), 0.7), np.ones((512, 512)))
        >>> probabilities.shape, truth.dtype
        ((388, 388), dtype('uint8'))

    Taught in chapter 7 (evaluation).
    """
    probabilities, truth = pair(probabilities, truth)
    _check(probabilities.astype(np.float64), truth)
    if probabilities.ndim not in (2, 3):
        raise ValueError(f"Expected (H, W) or (N, H, W) maps, got shape {tuple(probabilities.shape)}.")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int (NVIDIA's: {NVIDIA_SIZE}), got {size!r}.")

    def resize(x: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).reshape(-1, 1, *x.shape[-2:])
        resized = F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=False)
        return resized.reshape(*x.shape[:-2], size, size).numpy()

    return resize(probabilities), (resize(truth) >= 0.5).astype(np.uint8)
