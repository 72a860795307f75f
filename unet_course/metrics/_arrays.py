"""Input handling shared by the metrics: tensors or arrays in, numpy out, shapes checked.

Metrics are computed once per image on the CPU, so everything is converted to numpy
here, once, and the rest of the package works on plain arrays.
"""

from __future__ import annotations

import numpy as np

from ..arrays import ArrayLike, above_threshold, label_components, to_numpy

__all__ = ["ArrayLike", "as_numbers", "pair", "class_labels", "binary", "label_components"]


def as_numbers(x: ArrayLike, name: str) -> np.ndarray:
    """:func:`~unet_course.arrays.to_numpy`, refusing arrays that do not hold numbers or booleans."""
    x = to_numpy(x)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers or booleans, got dtype {x.dtype}.")
    return x


def pair(pred: ArrayLike, truth: ArrayLike, *, two_d: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``truth`` as numpy arrays of one shape (and ``(H, W)`` if ``two_d``)."""
    pred, truth = as_numbers(pred, "pred"), as_numbers(truth, "truth")
    if pred.shape != truth.shape:
        raise ValueError(
            f"pred and truth must have the same shape, got {tuple(pred.shape)} and {tuple(truth.shape)}. "
            "Crop or resize one to the other (a valid-convolution U-Net output is smaller than its input)."
        )
    if two_d and pred.ndim != 2:
        raise ValueError(
            f"Expected one (H, W) slice, got shape {tuple(pred.shape)}. "
            "Score slices one at a time, e.g. metric(pred[0], truth[0]), and average."
        )
    return pred, truth


def class_labels(x: np.ndarray, threshold: float) -> np.ndarray:
    """Integer class labels: floats are probabilities of class 1, cut at ``threshold``."""
    if x.dtype.kind == "f":
        return above_threshold(x, threshold).astype(np.int64)
    return x.astype(np.int64, copy=False)


def binary(x: np.ndarray, threshold: float) -> np.ndarray:
    """A boolean map, True = cell interior: values above ``threshold`` (booleans as they are)."""
    return x if x.dtype == bool else above_threshold(x, threshold)

