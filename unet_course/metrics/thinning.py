"""Border thinning, as the ISBI 2012 challenge's Fiji script does it before V_Rand and V_Info.

The predicted membrane is flooded from the predicted cells by the watershed of Vincent and
Soille (1991) on the binary map, 4-connected, in the script's scan order (its
``WatershedTransform2D``), so that a membrane of any width becomes a line one pixel wide where
the fronts of two cells meet; a gap stays a gap. ``challenge.py`` scores the result.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ..arrays import THRESHOLD
from ._arrays import ArrayLike, as_numbers, binary, label_components

__all__ = ["interior_mask", "thin_borders"]

_MASK, _IN_QUEUE, _LINE, _OUTSIDE = -2, -3, 0, -9  # flooding states of membrane pixels (_LINE: the thinned
# membrane) and the frame around the image


def interior_mask(x: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Where ``x`` is cell interior as the script decides: strictly above ``threshold``, compared in float64.

    Args:
        x: probabilities of cell interior, or a binary map (booleans are kept as they are).
        threshold: the cut. Default 0.5.

    Shape:
        Any shape; returns a boolean array of the same shape.

    Example:
        >>> interior_mask(np.array([0.3], dtype=np.float32), 0.1 + 0.1 + 0.1).tolist()  # float32 0.3 is 0.30000001
        [True]

    Taught in chapter 7 (evaluation).
    """
    # Fiji compares each pixel, widened to a double, with the double threshold: compare in float64,
    # or numpy would round the threshold to float32 (0.30000000000000004 → 0.3f) for float32 maps.
    return binary(x if x.dtype == bool else x.astype(np.float64), threshold)


def _flood(interior: np.ndarray) -> np.ndarray:
    """Watershed of a binary map: membrane pixels join the cell that reaches them first, 0 where two meet."""
    # The script scans pixels column by column (x outer, y inner) and visits the neighbours
    # (x-1, y), (x, y-1), (x+1, y), (x, y+1); on a two-level image the order decides which pixel
    # of a meeting front becomes line, so the same order is followed here. A frame of _OUTSIDE
    # pixels stands for the script's bounds checks; flat index k = (x + 1) * stride + (y + 1).
    labels = np.pad(label_components(interior, 4).astype(np.int64), 1, constant_values=_OUTSIDE).T.copy()
    membrane = np.pad(~interior, 1).T
    labels[membrane] = _MASK
    stride = labels.shape[1]
    touching = np.zeros_like(membrane)  # membrane pixels with an interior 4-neighbour
    for shift in (-1, 1):
        for axis in (0, 1):
            touching |= np.roll(labels > 0, shift, axis=axis)
    first = np.flatnonzero(touching & membrane)  # in the script's scan order
    labels = labels.ravel()
    labels[first] = _IN_QUEUE
    labels = labels.tolist()  # list indexing is several times faster than numpy's in this loop
    queue = deque(first.tolist())
    line_flag = False  # Vincent and Soille's flag: the last line pixel came from a line neighbour
    while queue:
        k = queue.popleft()
        for c in (k - stride, k - 1, k + stride, k + 1):
            neighbour, own = labels[c], labels[k]
            if neighbour > 0:
                if own == _IN_QUEUE or (own == _LINE and line_flag):
                    labels[k] = neighbour
                elif own > 0 and own != neighbour:
                    labels[k] = _LINE
                    line_flag = False
            elif neighbour == _LINE:
                if own == _IN_QUEUE:
                    labels[k] = _LINE
                    line_flag = True
            elif neighbour == _MASK:
                labels[c] = _IN_QUEUE
                queue.append(c)
    labels = np.asarray(labels, dtype=np.int64).reshape(membrane.shape).T[1:-1, 1:-1]
    unreached = labels == _MASK  # membrane that no cell reaches: only when there is no interior at all
    if unreached.any():
        labels[unreached] = label_components(unreached, 4)[unreached] + max(labels.max(), 0)
    return labels.astype(np.int32)


def thin_borders(pred: ArrayLike, *, threshold: float = THRESHOLD) -> np.ndarray:
    """Predicted cells after the challenge's border thinning: membranes become one-pixel lines.

    The map is cut at ``threshold``; every 4-connected patch of interior is a cell, and the
    membrane around the cells is flooded from them (a watershed on the binary map,
    4-connected, in the order of the challenge's Fiji script) until the fronts of two
    cells meet: the pixels where they meet form the line, label 0. A membrane 3 pixels
    wide keeps its middle column, one 2 pixels wide its right (or lower) column. A gap in a
    membrane stays a gap: thinning never splits what the threshold joined. Without any
    interior, each connected patch of membrane is one object.

    Args:
        pred: probabilities of cell interior, or a binary map (True = interior).
        threshold: values strictly above it are interior. Default 0.5.

    Shape:
        ``pred``: ``(H, W)``. Returns ``(H, W)`` int32 labels, 1..K the cells, 0 the lines.

    Example:
        >>> interior = np.ones((3, 7), dtype=bool); interior[:, 2:5] = False  # two cells, membrane 3 wide
        >>> thin_borders(interior)[0].tolist()
        [1, 1, 1, 0, 2, 2, 2]

    Taught in chapter 7 (evaluation).
    """
    pred = as_numbers(pred, "pred")
    if pred.ndim != 2:
        raise ValueError(f"Expected one (H, W) map, got shape {tuple(pred.shape)}. Thin slices one at a time.")
    return _flood(interior_mask(pred, threshold))
