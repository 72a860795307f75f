"""Synthetic microscopy images: the course's embedded default data, no network needed.

Two generators, both deterministic by seed and any size:

- :func:`synthetic_cells`: blob-shaped cells that touch and press against each other,
  the situation the paper's border weight map was designed for (its HeLa data set);
- :func:`synthetic_membranes`: a tessellation of cells separated by thin dark
  membranes, looking like a slice of the ISBI 2012 EM stack.

Cells are grown from random seed points: every pixel belongs to its nearest seed
(a Voronoi tessellation, from one Euclidean distance transform), cut to a wobbly
disc around that seed. Where two discs overlap the cells touch along the Voronoi edge.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from ..arrays import as_shape

__all__ = [
    "CellsSample",
    "MembranesSample",
    "synthetic_cells",
    "synthetic_membranes",
    "SyntheticCells",
    "SyntheticMembranes",
]


class CellsSample(NamedTuple):
    """One touching-cells image. All arrays are ``(H, W)``."""

    image: np.ndarray  # float32 in [0, 1]
    mask: np.ndarray  # uint8, 1 = cell, 0 = background
    labels: np.ndarray  # int32, 0 = background, 1..K = cell instances


class MembranesSample(NamedTuple):
    """One EM-like image. Both arrays are ``(H, W)``."""

    image: np.ndarray  # float32 in [0, 1]
    mask: np.ndarray  # uint8, 1 = cell interior, 0 = membrane (the ISBI 2012 convention)


def _seed_points(rng: np.random.Generator, shape: tuple[int, int], count: int, min_dist: float) -> np.ndarray:
    """Up to ``count`` random points (row, col) at least ``min_dist`` apart (dart throwing)."""
    height, width = shape
    candidates = rng.uniform((0, 0), (height, width), size=(count * 30, 2))
    points: list[np.ndarray] = []
    for point in candidates:
        if not points or np.min(np.sum((np.asarray(points) - point) ** 2, axis=1)) >= min_dist**2:
            points.append(point)
            if len(points) == count:
                break
    return np.asarray(points, dtype=np.float32)


def _jittered_grid(rng: np.random.Generator, shape: tuple[int, int], spacing: float) -> np.ndarray:
    """One random point (row, col) in each cell of a square grid of the given spacing."""
    rows = np.arange(-spacing / 2, shape[0] + spacing / 2, spacing)
    cols = np.arange(-spacing / 2, shape[1] + spacing / 2, spacing)
    corners = np.stack(np.meshgrid(rows, cols, indexing="ij"), axis=-1).reshape(-1, 2)
    points = corners + rng.uniform(0.1, 0.9, corners.shape) * spacing
    inside = (points >= 0).all(axis=1) & (points[:, 0] < shape[0]) & (points[:, 1] < shape[1])
    if not inside.any():  # an image smaller than one cell: one cell it is
        return rng.uniform((0, 0), shape, size=(1, 2)).astype(np.float32)
    return points[inside].astype(np.float32)


def _voronoi(points: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-point index ``(H, W)`` and offset from that point ``(2, H, W)`` in pixels."""
    grid = np.ones(shape, dtype=bool)
    rows, cols = np.clip(np.round(points).astype(int), 0, np.array(shape) - 1).T
    grid[rows, cols] = False
    index_image = np.full(shape, -1, dtype=np.int32)
    index_image[rows, cols] = np.arange(len(points), dtype=np.int32)
    _, (near_r, near_c) = ndimage.distance_transform_edt(grid, return_indices=True)
    nearest = index_image[near_r, near_c]
    yy, xx = np.indices(shape, dtype=np.float32)
    offset = np.stack([yy - points[nearest, 0], xx - points[nearest, 1]])
    return nearest, offset


def _label_edges(labels: np.ndarray) -> np.ndarray:
    """Pixels whose right or lower neighbour has another label, ``(H, W)`` bool."""
    edges = np.zeros(labels.shape, dtype=bool)
    edges[:-1] |= labels[:-1] != labels[1:]
    edges[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edges


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean, unit standard deviation.

    Wide filters are applied at a coarser resolution and upsampled bilinearly: the
    result is equally smooth and the cost no longer grows with ``sigma``.
    """
    factor = max(1, int(sigma // 2))
    coarse = shape if factor == 1 else tuple(n // factor + 2 for n in shape)
    noise = ndimage.gaussian_filter(rng.standard_normal(coarse).astype(np.float32), sigma / factor)
    if factor > 1:
        noise = ndimage.zoom(noise, factor, order=1)[: shape[0], : shape[1]]
    return (noise - noise.mean()) / (noise.std() + 1e-8)


def _finish(rng: np.random.Generator, image: np.ndarray, blur: float, noise: float) -> np.ndarray:
    """Uneven illumination, optical blur and camera noise; clipped to [0, 1]."""
    height, width = image.shape
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * yy / height + np.sin(angle) * xx / width) * rng.uniform(0.1, 0.25)
    image = ndimage.gaussian_filter(image * (1.0 + ramp - ramp.mean()), blur)
    image = image + noise * rng.standard_normal(image.shape).astype(np.float32)
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def synthetic_cells(
    size: int | tuple[int, int] = 256,
    *,
    num_cells: int | None = None,
    radius: float = 18.0,
    seed: int = 0,
) -> CellsSample:
    """A grayscale image of touching, textured cells with its semantic and instance masks.

    Args:
        size: image side, or ``(height, width)``, in pixels. Default 256.
        num_cells: how many cells to try to place; default fills about 60% of the area.
        radius: typical cell radius in pixels (each cell varies ±25%). Default 18.
        seed: the random seed; the same seed gives the same image.

    Returns:
        ``CellsSample(image, mask, labels)``, each ``(H, W)``. Touching cells share an
        edge in ``labels`` and merge in ``mask`` (what a plain semantic segmentation sees).

    Example:
        >>> sample = synthetic_cells(128, seed=1)
        >>> sample.image.shape, sample.image.dtype, int(sample.labels.max()) > 5
        ((128, 128), dtype('float32'), True)

    Taught in chapter 1 and used throughout, above all in chapter 5 (the weight map).
    """
    shape = as_shape(size, smallest=8)
    rng = np.random.default_rng(seed)
    if num_cells is None:
        num_cells = max(1, int(0.6 * shape[0] * shape[1] / (np.pi * radius**2)))
    points = _seed_points(rng, shape, num_cells, min_dist=1.2 * radius)
    nearest, offset = _voronoi(points, shape)

    # A wobbly disc around each seed: radius varies per cell and with the angle.
    cell_radius = radius * rng.uniform(0.75, 1.25, len(points))
    harmonics = rng.uniform(0, 0.15, (len(points), 2))
    phases = rng.uniform(0, 2 * np.pi, (len(points), 2))
    distance = np.hypot(offset[0], offset[1])
    theta = np.arctan2(offset[0], offset[1])
    wobble = 1 + harmonics[nearest, 0] * np.sin(2 * theta + phases[nearest, 0])
    wobble += harmonics[nearest, 1] * np.sin(3 * theta + phases[nearest, 1])
    inside = distance <= cell_radius[nearest] * wobble

    labels = np.where(inside, nearest + 1, 0).astype(np.int32)
    labels = _relabel_sequential(labels)
    mask = (labels > 0).astype(np.uint8)

    # Rendering: brighter cells with textured cytoplasm, a darker nucleus, a faint rim
    # where cells meet, on a dim background.
    brightness = rng.uniform(0.55, 0.8, len(points))
    texture = _smooth_noise(rng, shape, 2.0)
    image = np.full(shape, 0.15, dtype=np.float32)
    image[inside] = brightness[nearest[inside]] + 0.06 * texture[inside]
    nucleus = distance <= 0.4 * cell_radius[nearest]
    image[inside & nucleus] -= 0.18
    image[_label_edges(labels) & inside] -= 0.12
    image = _finish(rng, image, blur=1.0, noise=0.03)
    return CellsSample(image=image, mask=mask, labels=labels)


def synthetic_membranes(
    size: int | tuple[int, int] = 256,
    *,
    cell_size: float = 40.0,
    membrane_width: float = 5.0,
    seed: int = 0,
) -> MembranesSample:
    """An EM-like image: cells filling the plane, separated by thin dark membranes.

    Args:
        size: image side, or ``(height, width)``, in pixels. Default 256.
        cell_size: typical distance between neighbouring cell centres, pixels. Default 40.
        membrane_width: membrane thickness in pixels, rounded to an odd number. Default 5.
        seed: the random seed; the same seed gives the same image.

    Returns:
        ``MembranesSample(image, mask)``, each ``(H, W)``; ``mask`` is 1 inside cells and
        0 on membranes, as the ISBI 2012 labels are.

    Example:
        >>> sample = synthetic_membranes(128, seed=1)
        >>> sample.mask.shape, set(sample.mask.ravel().tolist())
        ((128, 128), {0, 1})

    Used where chapters need ISBI-like data without a download (chapters 4 and 6).
    """
    shape = as_shape(size, smallest=8)
    rng = np.random.default_rng(seed)
    points = _jittered_grid(rng, shape, cell_size)
    nearest, _ = _voronoi(points, shape)

    # Bend the straight Voronoi edges by looking the labels up at displaced positions.
    yy, xx = np.indices(shape, dtype=np.float32)
    bend = 0.25 * cell_size
    coords = [yy + bend * _smooth_noise(rng, shape, cell_size / 2), xx + bend * _smooth_noise(rng, shape, cell_size / 2)]
    regions = ndimage.map_coordinates(nearest, coords, order=0, mode="reflect")

    boundary = _label_edges(regions)
    # Thicken the one-pixel edges by dilation: (2k + 1)-pixel membranes, far cheaper than a
    # distance transform.
    steps = max(0, round((membrane_width - 1) / 2))
    membrane = ndimage.binary_dilation(boundary, iterations=steps) if steps else boundary
    mask = (~membrane).astype(np.uint8)

    # Rendering: grainy mid-grey cytoplasm, dark membranes, a few dark organelles.
    image = 0.62 + 0.05 * _smooth_noise(rng, shape, 1.0) + 0.04 * _smooth_noise(rng, shape, 6.0)
    organelles = _smooth_noise(rng, shape, 3.0) > 2.2
    image[organelles] -= 0.22
    image[membrane] = 0.18 + 0.05 * rng.standard_normal(int(membrane.sum()))
    image = _finish(rng, image.astype(np.float32), blur=0.8, noise=0.05)
    return MembranesSample(image=image, mask=mask)


def _relabel_sequential(labels: np.ndarray) -> np.ndarray:
    """Renumber labels to 0, 1, ..., K with no gaps (0 stays background)."""
    values = np.unique(labels)
    lookup = np.zeros(int(values.max()) + 1, dtype=np.int32)
    lookup[values] = np.arange(len(values), dtype=np.int32) - (values[0] != 0)
    lookup[0] = 0
    return lookup[labels]


class _Generated(torch.utils.data.Dataset):
    """``length`` images drawn by ``make(size, seed=seed + i, **kwargs)``, as ``(image (1, H, W), mask (H, W))``."""

    make = staticmethod(lambda size, seed, **kwargs: None)  # set by each subclass

    def __init__(self, length: int = 30, size: int | tuple[int, int] = 256, *, seed: int = 0, **kwargs) -> None:
        if length < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        self.length, self.size, self.seed, self.kwargs = length, size, seed, kwargs

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int):
        """The full sample of item ``index`` (with instance labels for touching cells)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} images")
        return self.make(self.size, seed=self.seed + index, **self.kwargs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.sample(index)
        return torch.from_numpy(sample.image)[None], torch.from_numpy(sample.mask).long()


class SyntheticCells(_Generated):
    """``length`` touching-cells images as ``(image (1, H, W) float32, mask (H, W) int64)``.

    Item ``i`` is ``synthetic_cells(size, seed=seed + i, ...)``; :meth:`sample` gives the
    full :class:`CellsSample` with instance labels (needed for the weight map).
    """

    make = staticmethod(synthetic_cells)


class SyntheticMembranes(_Generated):
    """``length`` EM-like images as ``(image (1, H, W) float32, mask (H, W) int64)``."""

    make = staticmethod(synthetic_membranes)
