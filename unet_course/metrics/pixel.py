"""Pixel-wise metrics: pixel error, and IoU and Dice per class.

The pixel error is the third metric of the ISBI 2012 challenge (Arganda-Carreras et
al., 2015) reported in Table 1 of the U-Net paper; IoU (Jaccard) and Dice are the usual
overlap scores of semantic segmentation. All three count pixels and nothing else: a
one-pixel gap that merges two cells costs them almost nothing (see ``rand.py``).
"""

from __future__ import annotations

import numpy as np

from ..arrays import THRESHOLD
from ._arrays import ArrayLike, class_labels, pair

__all__ = ["pixel_error", "iou", "dice", "confusion_matrix"]


def pixel_error(pred: ArrayLike, truth: ArrayLike, *, threshold: float = THRESHOLD) -> float:
    """The fraction of pixels whose predicted class differs from the true class.

    The ISBI 2012 challenge scored binary maps this way (the squared Euclidean distance
    between the binarized prediction and the labels, over the number of pixels) and
    reported the best value over thresholds; pass each threshold yourself to do the same.

    Args:
        pred: class labels (integer or bool), or probabilities of class 1 (floating
            point), which are cut at ``threshold``.
        truth: class labels, same shape (floating point is cut at ``threshold`` too).
        threshold: probabilities strictly above it count as class 1. Default 0.5.

    Shape:
        ``pred`` and ``truth``: any shape, the same for both, e.g. ``(H, W)``.
        Returns a float in [0, 1] (nan for empty arrays).

    Example:
        >>> truth = np.array([[0, 1], [1, 1]])
        >>> pixel_error(np.array([[0.2, 0.9], [0.4, 0.8]]), truth)
        0.25

    Taught in chapter 7 (evaluation).
    """
    pred, truth = pair(pred, truth)
    if pred.size == 0:
        return float("nan")
    return float(np.mean(class_labels(pred, threshold) != class_labels(truth, threshold)))


def confusion_matrix(
    pred: ArrayLike, truth: ArrayLike, num_classes: int = 2, *, threshold: float = THRESHOLD
) -> np.ndarray:
    """Pixel counts ``C[t, p]``: pixels of true class ``t`` predicted as class ``p``.

    Args:
        pred: class labels in ``0..num_classes-1``, or (two classes) probabilities of
            class 1 cut at ``threshold``.
        truth: class labels in ``0..num_classes-1``, same shape.
        num_classes: number of classes. Default 2.
        threshold: probabilities strictly above it count as class 1. Default 0.5.

    Shape:
        ``pred`` and ``truth``: any shape, the same for both. Returns ``(num_classes, num_classes)`` int64.

    Example:
        >>> confusion_matrix(np.array([0, 1, 1]), np.array([0, 0, 1])).shape
        (2, 2)

    Taught in chapter 7 (evaluation).
    """
    pred, truth = pair(pred, truth)
    if pred.dtype.kind == "f" and num_classes != 2:
        raise ValueError(
            f"Floating-point pred is read as probabilities of class 1, which needs num_classes=2, got "
            f"num_classes={num_classes}. Pass class labels instead, e.g. logits.argmax(dim=0)."
        )
    pred, truth = class_labels(pred, threshold).ravel(), class_labels(truth, threshold).ravel()
    for name, labels in (("pred", pred), ("truth", truth)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} must hold class labels in 0..{num_classes - 1}, got values from {labels.min()} to "
                f"{labels.max()}. Set num_classes to the number of classes."
            )
    # One bincount over (true, predicted) pairs instead of a loop over classes.
    counts = np.bincount(truth * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def iou(pred: ArrayLike, truth: ArrayLike, num_classes: int = 2, *, threshold: float = THRESHOLD) -> np.ndarray:
    """Intersection over union (Jaccard index) of each class: ``|P ∩ T| / |P ∪ T|``.

    A class absent from both ``pred`` and ``truth`` has no defined IoU and gets nan
    (0/0), so that ``np.nanmean(iou(...))`` averages over the classes present; a class
    present in only one of them gets 0.

    Args:
        pred: class labels in ``0..num_classes-1``, or (two classes) probabilities of
            class 1 cut at ``threshold``.
        truth: class labels in ``0..num_classes-1``, same shape.
        num_classes: number of classes. Default 2 (ISBI: 0 = membrane, 1 = cell interior).
        threshold: probabilities strictly above it count as class 1. Default 0.5.

    Shape:
        ``pred`` and ``truth``: any shape, the same for both. Returns ``(num_classes,)`` float64.

    Example:
        >>> iou(np.array([[0, 1], [1, 1]]), np.array([[0, 0], [1, 1]]))
        array([0.5       , 0.66666667])

    Taught in chapter 7 (evaluation).
    """
    counts = confusion_matrix(pred, truth, num_classes, threshold=threshold).astype(np.float64)
    intersection = np.diag(counts)
    union = counts.sum(axis=0) + counts.sum(axis=1) - intersection
    with np.errstate(invalid="ignore"):
        return intersection / union


def dice(pred: ArrayLike, truth: ArrayLike, num_classes: int = 2, *, threshold: float = THRESHOLD) -> np.ndarray:
    """Dice coefficient (F1 score of the pixels) of each class: ``2|P ∩ T| / (|P| + |T|)``.

    Dice and IoU rank predictions alike (``dice = 2 iou / (1 + iou)``). A class absent
    from both ``pred`` and ``truth`` gets nan, one present in only one of them gets 0.

    Args:
        pred: class labels in ``0..num_classes-1``, or (two classes) probabilities of
            class 1 cut at ``threshold``.
        truth: class labels in ``0..num_classes-1``, same shape.
        num_classes: number of classes. Default 2.
        threshold: probabilities strictly above it count as class 1. Default 0.5.

    Shape:
        ``pred`` and ``truth``: any shape, the same for both. Returns ``(num_classes,)`` float64.

    Example:
        >>> dice(np.array([[0, 1], [1, 1]]), np.array([[0, 0], [1, 1]]))
        array([0.66666667, 0.8       ])

    Taught in chapter 7 (evaluation).
    """
    counts = confusion_matrix(pred, truth, num_classes, threshold=threshold).astype(np.float64)
    with np.errstate(invalid="ignore"):
        return 2 * np.diag(counts) / (counts.sum(axis=0) + counts.sum(axis=1))
