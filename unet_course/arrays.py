"""Small conversions every module needs once: tensors to numpy, sizes to shapes, masks to components,
a model to the device it computes on.

The metrics, the weight maps and the plots compute on numpy arrays on the CPU; they take
tensors too and convert them here, in one way.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

__all__ = ["ArrayLike", "THRESHOLD", "to_numpy", "as_shape", "label_components", "above_threshold", "model_device"]

ArrayLike = np.ndarray | torch.Tensor
THRESHOLD = 0.5  # the default cut of P(class 1); a run stores its own, chosen on its training images (chapter 7)


def to_numpy(array: ArrayLike) -> np.ndarray:
    """A numpy array of ``array``: tensors are detached and moved to the CPU; shape and dtype kept."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def as_shape(size: int | tuple[int, int], *, smallest: int = 1) -> tuple[int, int]:
    """``(height, width)`` from an int (a square) or a pair, each at least ``smallest`` pixels."""
    shape = (size, size) if isinstance(size, int) else tuple(size)
    if len(shape) != 2 or min(shape) < smallest:
        raise ValueError(f"size must be an int or (height, width) of at least {smallest} pixels, got {size!r}")
    return int(shape[0]), int(shape[1])


def label_components(mask: np.ndarray, connectivity: int = 4) -> np.ndarray:
    """Connected components of a boolean ``(H, W)`` mask as ``int32`` labels 1..K, 0 where it is False.

    ``connectivity`` 4 joins pixels that share an edge (a diagonal gap in a thin membrane keeps
    two cells apart), 8 also joins diagonal neighbours.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8 (pixel neighbours in 2D), got {connectivity!r}")
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels = np.zeros(mask.shape, dtype=np.int32)
    ndimage.label(mask, structure=structure, output=labels)
    return labels


def above_threshold(probabilities: ArrayLike, threshold: float = THRESHOLD) -> ArrayLike:
    """Where ``probabilities`` (of class 1, any shape) are strictly above ``threshold``: the one cut the library makes.

    Returns a boolean array or tensor of the same shape and kind. The metrics, ``predict`` and
    :func:`~unet_course.evaluation.evaluate_folder` all cut here, so a mask and its score agree.
    """
    return probabilities > threshold


def model_device(model: torch.nn.Module, device: torch.device | str | None = None, *,
                 default: torch.device | str = "cpu") -> torch.device:
    """``device`` when given, else where ``model``'s parameters are, else ``default`` (a model without any).

    Prediction, calibration and evaluation compute where the model is unless told otherwise;
    :func:`~unet_course.tiling.predict_tiled` passes the image's device as ``default``.
    """
    if device is not None:
        return torch.device(device)
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device(default)
