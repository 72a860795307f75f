"""The paper's weight map: class balance plus a border term between touching cells.

Ronneberger, Fischer & Brox (2015), eq. (2): ``w(x) = w_c(x) + w0·exp(−(d1(x) + d2(x))² / 2σ²)``,
where ``w_c`` balances the class frequencies and ``d1``, ``d2`` are the distances to the
nearest and second-nearest cell. Separation borders between touching cells are found by
morphology and labelled background, as the paper's training targets are. Choices the
paper leaves open (where the border term applies, how ``w_c`` is normalised) are written
down in :func:`border_weight_map` and :func:`class_weight_map`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from .arrays import label_components, to_numpy

__all__ = [
    "separation_border",
    "semantic_target",
    "instances_from_mask",
    "class_weight_map",
    "border_term",
    "border_weight_map",
    "unet_weight_map",
]

Array = np.ndarray | torch.Tensor

# Where the border term cannot reach this value it is not computed but left at 0: no loss
# changes in any visible digit, and skipping it is what makes the map fast (`border_term`).
TOLERANCE = 1e-6


def _as_batch(array: Array, name: str, *, integer: bool = True, values: str = "") -> tuple[np.ndarray, bool]:
    """``array`` as a numpy ``(N, H, W)`` array, and whether it came as a single ``(H, W)``.

    ``integer`` arrays must also be >= 0; ``values`` says what their values mean, for the error.
    """
    array = to_numpy(array)
    if array.ndim not in (2, 3):
        raise ValueError(
            f"{name} must be (H, W) or (N, H, W), got shape {tuple(array.shape)}. "
            "Drop channel axes first, e.g. labels[:, 0] for (N, 1, H, W)."
        )
    if integer and not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}. Convert with .astype(np.int32).")
    if integer and array.size and array.dtype != bool and array.min() < 0:
        raise ValueError(f"{name} must be >= 0 ({values}), got a minimum of {array.min()}.")
    return (array[None] if array.ndim == 2 else array), array.ndim == 2


def _as_labels(labels: Array) -> tuple[np.ndarray, bool]:
    batch, single = _as_batch(labels, "labels", values="0 = background")
    if batch.dtype == bool:
        raise ValueError(
            "labels must be an instance label image (0 = background, 1..K = cells), got a boolean mask. "
            "Turn a binary mask into instances with instances_from_mask(mask) first."
        )
    return batch.astype(np.int64, copy=False), single  # one dtype for the filters below, no overflow


def _like(result: np.ndarray, single: bool, like: Array, dtype: torch.dtype) -> Array:
    """Give ``result`` the kind of the input: numpy stays numpy, a tensor comes back a tensor."""
    result = result[0] if single else result
    if isinstance(like, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(result)).to(device=like.device, dtype=dtype)
    return result


def _separation_border(labels: np.ndarray) -> np.ndarray:
    """Bool ``(N, H, W)``: cell pixels with another cell among their 8 neighbours."""
    footprint = np.ones((1, 3, 3), dtype=bool)  # (1, 3, 3): never look across images of a batch
    largest = ndimage.maximum_filter(labels, footprint=footprint, mode="nearest")
    # For the smallest *cell* label around, hide the background under a label larger than any.
    hidden = np.where(labels == 0, labels.max(initial=0) + 1, labels)
    smallest = ndimage.minimum_filter(hidden, footprint=footprint, mode="nearest")
    return (labels > 0) & ((largest != labels) | (smallest != labels))


def separation_border(labels: Array) -> Array:
    """The pixels where two cells touch: both sides of every cell-to-cell contact.

    A cell pixel is on the separation border when one of its 8 neighbours belongs to a
    different cell (a 3×3 maximum and minimum filter, the morphology the paper alludes to).
    Background next to a cell is not a border; only contacts between cells are.

    Args:
        labels: instance labels, ``0`` = background, ``1..K`` = cells (any integer dtype).

    Returns:
        Boolean array of the same shape and kind (numpy or tensor on the same device).

    Shape:
        ``(H, W)`` or ``(N, H, W)`` in, the same out.

    Example:
        >>> import numpy as np
        >>> labels = np.zeros((6, 8), dtype=np.int32); labels[1:5, 1:4] = 1; labels[1:5, 4:7] = 2
        >>> separation_border(labels).sum(axis=0)  # columns 3 and 4 touch
        array([0, 0, 0, 4, 4, 0, 0, 0])

    Taught in chapter 5 (the energy function).
    """
    batch, single = _as_labels(labels)
    return _like(_separation_border(batch), single, labels, torch.bool)


def semantic_target(labels: Array) -> Array:
    """The paper's training target: cells are 1, background and separation borders are 0.

    Removing the separation border leaves a one-pixel-wide gap on each side of every
    contact, so touching cells come apart into separate connected components.

    Args:
        labels: instance labels, ``0`` = background, ``1..K`` = cells.

    Returns:
        ``{0, 1}`` array: numpy ``uint8`` (like ``CellsSample.mask``), or a ``torch.int64``
        tensor on the input's device, ready for a cross-entropy loss.

    Shape:
        ``(H, W)`` or ``(N, H, W)`` in, the same out.

    Example:
        >>> from unet_course.data import synthetic_cells
        >>> sample = synthetic_cells(128, seed=1)
        >>> semantic_target(sample.labels).shape
        (128, 128)

    Taught in chapter 5 (the energy function); chapter 6 trains with it.
    """
    batch, single = _as_labels(labels)
    target = (batch > 0) & ~_separation_border(batch)
    return _like(target.astype(np.uint8), single, labels, torch.int64)


def instances_from_mask(mask: Array, connectivity: int = 4) -> Array:
    """Instance labels from a binary interior mask (ISBI 2012: 1 = interior, 0 = membrane).

    Each connected component of nonzero pixels becomes one cell, numbered ``1..K`` per
    image; the images of a batch are labelled independently.

    Args:
        mask: nonzero = cell interior, 0 = background or membrane.
        connectivity: ``4`` joins pixels sharing an edge (default; a diagonal gap in a
            thin membrane keeps two cells apart), ``8`` also joins diagonal neighbours,
            as in :func:`~unet_course.metrics.rand_error`.

    Returns:
        Labels: numpy ``int32``, or a ``torch.int64`` tensor on the input's device.

    Shape:
        ``(H, W)`` or ``(N, H, W)`` in, the same out.

    Example:
        >>> from unet_course.data import synthetic_membranes
        >>> sample = synthetic_membranes(128, seed=1)
        >>> instances_from_mask(sample.mask).shape
        (128, 128)

    Taught in chapter 5 (the energy function), to weight ISBI-style membrane masks.
    """
    batch, single = _as_batch(mask, "mask", integer=False)
    labels = np.stack([label_components(image != 0, connectivity) for image in batch])
    return _like(labels, single, mask, torch.int64)


def _class_weights(target: np.ndarray, class_weights: str | Sequence[float] | None) -> np.ndarray:
    """Float64 ``(H, W)`` class-balance weights ``w_c`` for one class-index target."""
    if class_weights is None:
        return np.ones(target.shape)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f'class_weights must be "balanced", a sequence of floats or None, got {class_weights!r}')
        counts = np.bincount(target.ravel()).astype(np.float64)
        present = counts > 0
        # w_k = 1 / (K · f_k) over the K classes present: rare classes weigh more and the
        # mean of w_c over the image is exactly 1, the scale of the unweighted loss.
        table = np.zeros_like(counts)
        table[present] = target.size / (present.sum() * counts[present])
        return table[target]
    table = np.asarray(class_weights, dtype=np.float64)
    if table.ndim != 1 or len(table) <= target.max(initial=0):
        raise ValueError(
            f"class_weights must give one weight per class (at least {int(target.max(initial=0)) + 1}), "
            f"got {class_weights!r}"
        )
    if not (np.isfinite(table) & (table >= 0)).all():
        raise ValueError(f"class_weights must be finite and >= 0, got {class_weights!r}")
    return table[target]


def class_weight_map(target: Array, class_weights: str | Sequence[float] | None = "balanced") -> Array:
    """The class-balance part ``w_c(x)`` of the weight map.

    Args:
        target: class indices ``0..K-1`` per pixel, e.g. from :func:`semantic_target`.
        class_weights: ``"balanced"`` (default): ``w_k = 1 / (K · f_k)`` with ``f_k`` the
            frequency of class ``k`` in that image and ``K`` the number of classes present,
            so the map has mean 1 in every image; a sequence of one weight per class; or
            ``None`` for 1 everywhere.

    Returns:
        ``float32`` array (numpy, or a tensor on the input's device).

    Shape:
        ``(H, W)`` or ``(N, H, W)`` in, the same out; each image of a batch is balanced
        on its own frequencies.

    Example:
        >>> import numpy as np
        >>> class_weight_map(np.array([[0, 0, 0, 1]])).round(3)  # 3 background pixels, 1 cell
        array([[0.667, 0.667, 0.667, 2.   ]], dtype=float32)

    Taught in chapter 5 (the energy function).
    """
    batch, single = _as_batch(target, "target", values="class indices")
    result = np.stack([_class_weights(image.astype(np.int64), class_weights) for image in batch])
    return _like(result.astype(np.float32), single, target, torch.float32)


def border_term(cells: np.ndarray, w0: float = 10.0, border_sigma: float = 5.0) -> np.ndarray:
    """Float64 ``(H, W)`` border term ``w0·exp(−(d1 + d2)² / 2σ²)`` of one image of target cells.

    ``cells`` holds the cells of the training target (0 = target background, separation
    borders included); the term is computed on its background pixels. This is the fast
    part of :func:`border_weight_map`, shown in chapter 5.

    The direct recipe runs one distance transform over the whole image per cell. Here the
    term is only computed where it can reach ``TOLERANCE``: ``d1 + d2 < reach`` with
    ``reach = σ·sqrt(2 ln(w0 / TOLERANCE))``. Every pixel that matters is within ``reach``
    of both its cells, so each cell's distance transform runs on its bounding box grown by
    ``reach`` only, and two running minima keep the nearest and second-nearest distances.
    """
    term = np.zeros(cells.shape)
    if w0 <= TOLERANCE:
        return term
    reach = math.ceil(border_sigma * math.sqrt(2.0 * math.log(w0 / TOLERANCE)))
    nearest = np.full(cells.shape, np.inf)  # d1
    second = np.full(cells.shape, np.inf)  # d2
    if cells.max(initial=0) > cells.size:  # huge ids would make find_objects' list huge
        ids = np.unique(cells)
        cells = np.searchsorted(ids, cells) + int(ids[0] != 0)  # 0 stays 0, cells become 1..K
    for index, box in enumerate(ndimage.find_objects(cells), start=1):
        if box is None:  # an id with no pixels left (a cell that was all border)
            continue
        window = tuple(slice(max(s.start - reach, 0), min(s.stop + reach, n)) for s, n in zip(box, cells.shape))
        distance = ndimage.distance_transform_edt(cells[window] != index)  # exact: all of the cell is inside
        near, far = nearest[window], second[window]  # views: updated in place
        np.minimum(far, np.maximum(near, distance), out=far)
        np.minimum(near, distance, out=near)
    background = cells == 0
    total = nearest[background] + second[background]  # inf where fewer than two cells are near
    term[background] = w0 * np.exp(-(total**2) / (2.0 * border_sigma**2))
    return term


def check_border_args(w0: float, border_sigma: float) -> None:
    """A ``ValueError`` unless ``w0`` is finite and >= 0 and ``border_sigma`` finite and > 0."""
    if not (w0 >= 0 and math.isfinite(w0)):
        raise ValueError(f"w0 must be finite and >= 0 (the paper uses 10), got {w0!r}")
    if not (border_sigma > 0 and math.isfinite(border_sigma)):
        raise ValueError(f"border_sigma must be finite and > 0 pixels (the paper uses about 5), got {border_sigma!r}")


def border_weight_map(labels: Array, w0: float = 10.0, border_sigma: float = 5.0) -> Array:
    """The border part ``w0·exp(−(d1 + d2)² / 2σ²)`` of the weight map.

    It is computed on the pixels that are background in :func:`semantic_target` (the
    background and the separation borders, where the paper's Fig. 3d is bright) and is 0
    on cells. ``d1`` and ``d2`` are the Euclidean distances, in pixels, to the nearest
    and second-nearest cell of that target; with fewer than two cells the term is 0.
    Where it cannot reach ``TOLERANCE`` (1e-6) it is not computed but left at 0: that
    is what makes it fast, and it changes no value by more than 1e-6.

    Args:
        labels: instance labels, ``0`` = background, ``1..K`` = cells.
        w0: the height of the term. Default 10, as in the paper.
        border_sigma: its width σ in pixels. Default 5, as in the paper.

    Returns:
        ``float32`` array (numpy, or a tensor on the input's device).

    Shape:
        ``(H, W)`` or ``(N, H, W)`` in, the same out.

    Example:
        >>> from unet_course.data import synthetic_cells
        >>> border_weight_map(synthetic_cells(128, seed=1).labels).shape
        (128, 128)

    Taught in chapter 5 (the energy function).
    """
    check_border_args(w0, border_sigma)
    batch, single = _as_labels(labels)
    cells = np.where(_separation_border(batch), 0, batch)
    result = np.stack([border_term(image, w0, border_sigma) for image in cells])
    return _like(result.astype(np.float32), single, labels, torch.float32)


def unet_weight_map(
    labels: Array,
    w0: float = 10.0,
    border_sigma: float = 5.0,
    class_weights: str | Sequence[float] | None = "balanced",
) -> Array:
    """The paper's weight map ``w(x) = w_c(x) + w0·exp(−(d1(x) + d2(x))² / 2σ²)``.

    ``w_c`` is :func:`class_weight_map` of :func:`semantic_target` (background 0, cells 1)
    and the second term is :func:`border_weight_map`; see both for the details. It matches
    a direct computation with one full distance transform per cell to within 1e-5, in
    O(pixels) memory, with time proportional to the cells' bounding boxes grown by the
    reach of the border term rather than to cells × image. It runs on the CPU (SciPy).

    Args:
        labels: instance labels, ``0`` = background, ``1..K`` = cells (numpy or tensor).
        w0: height of the border term. Default 10, as in the paper.
        border_sigma: width σ of the border term in pixels. Default 5, as in the paper.
        class_weights: ``"balanced"`` (default, mean of ``w_c`` is 1 in each image),
            ``(background_weight, cell_weight)``, or ``None`` for ``w_c = 1``.

    Returns:
        ``float32`` array: numpy for numpy input, a tensor on the input's device for a tensor.

    Shape:
        ``(H, W)`` or ``(N, H, W)`` in, the same out.

    Example:
        >>> from unet_course.data import synthetic_cells
        >>> sample = synthetic_cells(256, seed=0)
        >>> weight = unet_weight_map(sample.labels)
        >>> weight.shape, weight.dtype
        ((256, 256), dtype('float32'))

    Taught in chapter 5 (the energy function); used for training in chapter 6.
    """
    check_border_args(w0, border_sigma)
    return class_weight_map(semantic_target(labels), class_weights) + border_weight_map(labels, w0, border_sigma)
