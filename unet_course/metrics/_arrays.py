"""Input handling shared by the metrics: tensors or arrays in, numpy out, shapes checked.

Metrics are computed once per image on the CPU, so everything is converted to numpy
here, once, and the rest of the package works on plain arrays.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

ArrayLike = np.ndarray | torch.Tensor


def as_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """A numpy view (or copy) of an array or tensor, detached and on the CPU."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold numbers or booleans, got dtype {x.dtype}.")
    return x


def pair(pred: ArrayLike, truth: ArrayLike, *, two_d: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``truth`` as numpy arrays of one shape (and ``(H, W)`` if ``two_d``)."""
    pred, truth = as_numpy(pred, "pred"), as_numpy(truth, "truth")
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
        return (x > threshold).astype(np.int64)
    return x.astype(np.int64, copy=False)


def binary(x: np.ndarray, threshold: float) -> np.ndarray:
    """A boolean map, True = cell interior: values above ``threshold`` (booleans as they are)."""
    return x if x.dtype == bool else x > threshold


def label_components(mask: np.ndarray, connectivity: int) -> np.ndarray:
    """Connected components of a boolean mask, 1..K, and 0 where the mask is False."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8 (pixel neighbours in 2D), got {connectivity!r}.")
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, _ = ndimage.label(mask, structure=structure)
    return labels
