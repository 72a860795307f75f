"""The warping error of Jain et al. (2010): pixel disagreement that topology cannot explain.

One binary map is warped toward the other by flipping *simple* pixels only, pixels
whose flip changes no object's topology (no cell split, merged, created, deleted, no
hole opened or closed). What still disagrees after the warping is a topological error.
The ISBI 2012 challenge reported this metric (the U-Net paper's Table 1); as there,
the ground truth is warped toward the prediction and cells are 4-connected.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import ndimage

from ..arrays import THRESHOLD
from ._arrays import ArrayLike, binary, pair

__all__ = ["simple_point_table", "topology_preserving_warp", "warping_error"]

# Offsets of the 3×3 neighbourhood in raster order; bit k of a pixel's code is neighbour k.
_NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
_FOUR_NEIGHBOURS = np.zeros((3, 3), dtype=bool)
_FOUR_NEIGHBOURS[[0, 1, 1, 2], [1, 0, 2, 1]] = True


def _topological_number(patch: np.ndarray, connectivity: int) -> int:
    """Components of ``patch`` minus its centre that touch the centre (Bertrand & Malandain, 1994).

    With 8-connectivity every pixel of the ring touches the centre; with 4-connectivity
    only components holding one of the four direct neighbours do.
    """
    ring = patch.copy()
    ring[1, 1] = False
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, count = ndimage.label(ring, structure=structure)
    if connectivity == 8:
        return count
    return len(np.unique(labels[_FOUR_NEIGHBOURS & ring]))


@lru_cache(maxsize=None)
def simple_point_table(connectivity: int = 4) -> np.ndarray:
    """For each of the 512 binary 3×3 neighbourhoods, whether its centre pixel is simple.

    The centre is simple when it touches exactly one foreground component and exactly
    one background component of its ring of 8 neighbours, foreground taken with
    ``connectivity`` and background with the other one (4 with 8, 8 with 4): flipping
    it then changes no topology. Built on first use (some milliseconds), then cached.

    Args:
        connectivity: 4 or 8, the foreground (cell interior) connectivity. Default 4.

    Shape:
        Returns ``(512,)`` bool, indexed by ``Σ_k bit_k · 2**k`` over the 3×3
        neighbourhood in raster order (bit 4 is the centre itself).

    Example:
        >>> simple_point_table().shape
        (512,)

    Taught in chapter 7 (evaluation).
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity!r}.")
    background_connectivity = 12 - connectivity
    table = np.zeros(512, dtype=bool)
    for code in range(512):
        patch = ((code >> np.arange(9)) & 1).astype(bool).reshape(3, 3)
        table[code] = (
            _topological_number(patch, connectivity) == 1
            and _topological_number(~patch, background_connectivity) == 1
        )
    table.setflags(write=False)
    return table


def topology_preserving_warp(source: ArrayLike, target: ArrayLike, *, connectivity: int = 4) -> np.ndarray:
    """Warp binary ``source`` toward ``target`` by flipping simple pixels only.

    Repeats until nothing changes: every pixel where the warped source still disagrees
    with the target is flipped if it is simple. Pixels are visited in four phases of a
    2×2 pattern; pixels of one phase are two apart, never in each other's 3×3
    neighbourhood, so flipping all the simple ones of a phase at once is the same as
    flipping them one by one, and each phase is one vectorised lookup in
    :func:`simple_point_table`. Outside the image is background (membrane).

    The warp that leaves the fewest disagreements is not unique and finding it is hard;
    this greedy order, like the ISBI script's, finds one that leaves only topological
    disagreements: each is a pixel whose flip would split, merge, create or delete.

    Args:
        source: the binary map to warp (booleans, or numbers: nonzero is foreground).
        target: the binary map to warp toward, same shape.
        connectivity: 4 or 8, the foreground connectivity; background takes the other. Default 4.

    Shape:
        ``source`` and ``target``: ``(H, W)``. Returns ``(H, W)`` bool, the warped source.

    Example:
        >>> target = np.zeros((6, 6), dtype=bool); target[1:5, 2:5] = True
        >>> source = np.zeros((6, 6), dtype=bool); source[1:5, 1:4] = True  # shifted by one
        >>> bool((topology_preserving_warp(source, target) == target).all())
        True

    Taught in chapter 7 (evaluation).
    """
    source, target = pair(source, target, two_d=True)
    table = simple_point_table(connectivity)
    height, width = source.shape
    stride = width + 2
    warped = np.zeros((height + 2, stride), dtype=bool)  # a frame of background
    warped[1:-1, 1:-1] = source != 0
    framed_target = np.zeros_like(warped)
    framed_target[1:-1, 1:-1] = target != 0
    flat = warped.ravel()  # a view: flipping flat flips warped
    offsets = np.array([dr * stride + dc for dr, dc in _NEIGHBOURS])
    weights = 1 << np.arange(9)

    mismatched = np.flatnonzero(flat != framed_target.ravel())
    phase = (mismatched // stride % 2) * 2 + mismatched % stride % 2
    candidates = [mismatched[phase == k] for k in range(4)]
    while True:
        flipped = 0
        for k, pixels in enumerate(candidates):
            if pixels.size == 0:
                continue
            codes = flat[pixels[:, None] + offsets].astype(np.int64) @ weights
            simple = table[codes]
            # A flipped pixel now agrees with the target and is never flipped back.
            flat[pixels[simple]] = ~flat[pixels[simple]]
            candidates[k] = pixels[~simple]
            flipped += int(simple.sum())
        if flipped == 0:
            return warped[1:-1, 1:-1].copy()


def warping_error(pred: ArrayLike, truth: ArrayLike, *, threshold: float = THRESHOLD, connectivity: int = 4) -> float:
    """The ISBI 2012 warping error: the fraction of pixels left wrong after a topology-preserving warp.

    The truth (1 = cell interior, 0 = membrane) is warped toward the binarized
    prediction through simple points (:func:`topology_preserving_warp`), as in Jain et
    al. (2010) and the challenge's Fiji script; the pixels where they still differ are
    counted and divided by the number of pixels. A boundary drawn a pixel or two off
    costs nothing; a split, a merge or a missing cell costs at least one pixel; an
    extra cell or an extra hole costs its whole area (the truth cannot grow one from nothing).

    Args:
        pred: probabilities of cell interior (cut at ``threshold``) or a binary map.
        truth: binary map (1 or True = cell interior), same shape.
        threshold: values strictly above it are interior. Default 0.5.
        connectivity: 4 or 8, the connectivity of cells; membrane takes the other.
            Default 4, as in the challenge (and in
            :func:`~unet_course.metrics.rand.rand_error`).

    Shape:
        ``pred`` and ``truth``: ``(H, W)``. Returns a float in [0, 1].

    Example:
        >>> truth = np.ones((5, 7), dtype=bool); truth[:, 3] = False  # two cells
        >>> shifted = np.ones((5, 7), dtype=bool); shifted[:, 4] = False
        >>> warping_error(shifted, truth)  # the membrane moved: no topological error
        0.0

    Taught in chapter 7 (evaluation).
    """
    pred, truth = pair(pred, truth, two_d=True)
    target = binary(pred, threshold)
    warped = topology_preserving_warp(binary(truth, threshold), target, connectivity=connectivity)
    return float(np.mean(warped != target)) if target.size else float("nan")
