"""Synthetic driving scenes: the offline default for multi-class segmentation (chapter 8).

A camera looks down a straight road: the road narrows in perspective to a vanishing
point on a random horizon, dashed lane markings shrink with distance, cars stand on the
road, grass, buildings and trees line it, and the sky fills the rest. Every pixel carries
one of five class labels (:data:`ROAD_CLASSES`), in the spirit of CamVid
(Brostow et al., 2009) with its 32 classes folded into five. Deterministic by seed.

The geometry is a flat ground plane seen by a level camera: a ground point at distance
``d`` appears ``∝ 1/d`` rows below the horizon, so we draw everything in terms of
``t = (row - horizon) / (height - horizon)`` (1 at the bottom, 0 at the horizon), and
sizes scale with ``t``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

from ..arrays import as_shape

__all__ = ["ROAD_CLASSES", "ROAD_COLORS", "RoadSample", "synthetic_roads", "SyntheticRoads"]

ROAD_CLASSES = ("sky", "road", "lane marking", "vehicle", "roadside")
SKY, ROAD, MARKING, VEHICLE, ROADSIDE = range(5)

# Display colours for the label maps, one RGB triple in [0, 1] per class (index = class id).
ROAD_COLORS = np.array(
    [[0.45, 0.65, 0.95], [0.35, 0.35, 0.38], [1.0, 0.9, 0.2], [0.85, 0.15, 0.15], [0.3, 0.6, 0.25]],
    dtype=np.float32,
)


class RoadSample(NamedTuple):
    """One driving scene."""

    image: np.ndarray  # float32 (H, W, 3) in [0, 1]
    labels: np.ndarray  # uint8 (H, W), class ids indexing ROAD_CLASSES


def _coarse_noise(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Smooth noise in about [-1, 1]: random values on a coarse grid, bilinearly upsampled."""
    coarse = rng.uniform(-1, 1, (shape[0] // cell + 2, shape[1] // cell + 2)).astype(np.float32)
    return ndimage.zoom(coarse, cell, order=1)[: shape[0], : shape[1]]


def _paint(image: np.ndarray, labels: np.ndarray, where: np.ndarray, colour, label: int) -> None:
    image[where] = colour
    labels[where] = label


def _paint_sky(rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, rows: np.ndarray,
               horizon: float) -> None:
    """Above the horizon: a vertical gradient from deep blue to a pale horizon, with soft clouds."""
    above = rows < horizon
    top, low = rng.uniform([0.2, 0.4, 0.75], [0.4, 0.6, 0.95]), rng.uniform([0.65, 0.75, 0.85], [0.85, 0.9, 1.0])
    mix = np.clip(rows / horizon, 0, 1)[..., None]
    sky = top * (1 - mix) + low * mix + 0.15 * np.clip(_coarse_noise(rng, rows.shape, 24), 0, 1)[..., None]
    _paint(image, labels, above, sky[above], SKY)


def _paint_roadside(rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, rows: np.ndarray,
                    cols: np.ndarray, horizon: float, vanish_x: float) -> None:
    """Buildings and trees standing on the horizon line, off the road; they belong to the roadside."""
    width = cols.shape[1]
    windows = ((rows // 5) % 2 == 0) & ((cols // 4) % 2 == 0)
    for _ in range(rng.integers(3, 9)):
        centre = rng.uniform(0, width)
        if abs(centre - vanish_x) < 0.08 * width:
            continue  # keep the far end of the road visible
        half = width * rng.uniform(0.03, 0.12)
        rise = horizon * rng.uniform(0.15, 0.7)
        if rng.random() < 0.5:  # a building: a box with a flat colour and rows of windows
            box = (abs(cols - centre) < half) & (rows > horizon - rise) & (rows < horizon + 2)
            wall = rng.uniform(0.35, 0.8, 3)
            _paint(image, labels, box, wall, ROADSIDE)
            image[box & windows] = wall * 0.5
        else:  # a tree: a dark green crown on a short trunk
            crown = ((cols - centre) / half) ** 2 + ((rows - (horizon - rise * 0.6)) / (rise * 0.45)) ** 2 < 1
            trunk = (abs(cols - centre) < max(1.0, half * 0.15)) & (rows > horizon - rise * 0.4) & (rows < horizon + 2)
            leaves = rng.uniform([0.05, 0.25, 0.05], [0.2, 0.45, 0.15])
            _paint(image, labels, trunk, (0.3, 0.2, 0.1), ROADSIDE)
            _paint(image, labels, crown, leaves, ROADSIDE)


def synthetic_roads(size: int | tuple[int, int] = (192, 256), *, seed: int = 0) -> RoadSample:
    """A colour driving scene with its per-pixel class labels.

    Args:
        size: image side, or ``(height, width)``, in pixels (at least 32). Default (192, 256).
        seed: the random seed; the same seed gives the same scene.

    Returns:
        ``RoadSample(image, labels)``: ``image`` float32 ``(H, W, 3)`` in [0, 1], ``labels``
        uint8 ``(H, W)`` with the class ids of :data:`ROAD_CLASSES` (sky 0, road 1, lane
        marking 2, vehicle 3, roadside 4).

    Example:
        >>> scene = synthetic_roads((96, 128), seed=1)
        >>> scene.image.shape, scene.labels.shape
        ((96, 128, 3), (96, 128))

    Taught in chapter 8 (beyond biomedicine).
    """
    height, width = as_shape(size, smallest=32)
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), dtype=np.float32)
    labels = np.full((height, width), ROADSIDE, dtype=np.uint8)

    horizon = height * rng.uniform(0.32, 0.5)  # the row where the sky meets the ground
    _paint_sky(rng, image, labels, rows, horizon)

    # Ground below the horizon: textured grass or a grey verge, shaded darker far away.
    t = np.clip((rows - horizon) / (height - horizon), 0, 1)  # 0 at the horizon, 1 at the bottom
    below = rows >= horizon
    grass = rng.uniform([0.2, 0.35, 0.1], [0.35, 0.55, 0.2]) if rng.random() < 0.7 else rng.uniform(0.4, 0.55, 3)
    ground = grass + 0.06 * _coarse_noise(rng, (height, width), 3)[..., None]
    image[below] = ground[below]

    vanish_x = width * rng.uniform(0.35, 0.65)  # where the road meets the horizon
    _paint_roadside(rng, image, labels, rows, cols, horizon, vanish_x)

    # The road: a trapezoid from the bottom edge to the vanishing point.
    bottom_centre = width * rng.uniform(0.4, 0.6)
    bottom_half = width * rng.uniform(0.45, 0.8)
    centre_x = vanish_x + t * (bottom_centre - vanish_x)  # road centre on each row
    half_width = t * bottom_half
    across = (cols - centre_x) / np.maximum(half_width, 1e-6)  # -1 .. 1 from the left edge to the right
    road = below & (np.abs(across) < 1)
    asphalt = rng.uniform(0.25, 0.45) + 0.03 * _coarse_noise(rng, (height, width), 2)
    _paint(image, labels, road, asphalt[road][:, None] * np.ones(3), ROAD)

    # Lane markings: solid edge lines and dashed lane dividers, thinner and shorter far away.
    # The distance along the road is ∝ 1/t; dashes repeat every `period` of it.
    lanes = int(rng.integers(2, 4))
    line_width = np.maximum(0.012 * width * t, 0.6) / np.maximum(half_width, 1e-6)  # in `across` units
    distance = 1.0 / np.maximum(t, 1e-3)
    dashed = ((distance / rng.uniform(0.25, 0.4) + rng.uniform()) % 1.0) < 0.5
    visible = road & (t > 0.06)
    edges = np.abs(np.abs(across) - 0.92) < line_width
    dividers = np.zeros_like(road)
    for k in range(1, lanes):
        dividers |= np.abs(across - (-0.92 + 1.84 * k / lanes)) < line_width
    paint = visible & (edges | (dividers & dashed))
    _paint(image, labels, paint, rng.uniform(0.85, 1.0) * np.array([1.0, 1.0, rng.uniform(0.6, 1.0)]), MARKING)

    # Vehicles, drawn far to near so that near ones hide far ones, each with a shadow.
    distances = np.sort(rng.uniform(1.1, 6.0, rng.integers(0, 5)))[::-1]
    for d in distances:
        tv = 1.0 / d
        base = horizon + tv * (height - horizon)  # bottom row of the vehicle
        lane = rng.integers(0, lanes)
        centre = (vanish_x + tv * (bottom_centre - vanish_x)) + tv * bottom_half * (-0.92 + 1.84 * (lane + 0.5) / lanes)
        car_half = 0.55 * tv * bottom_half / lanes * rng.uniform(0.8, 1.0)
        car_height = 2 * car_half * rng.uniform(0.6, 0.95)
        dx, dy = np.abs(cols - centre), base - rows
        shadow = (dx < car_half * 1.05) & (dy < 0) & (dy > -max(1.0, 0.08 * car_height)) & road
        image[shadow] *= 0.45
        body = (dx < car_half) & (dy >= 0) & (dy < car_height)
        _paint(image, labels, body, rng.uniform(0.05, 0.95, 3), VEHICLE)
        image[body & (dx < car_half * 0.75) & (dy > car_height * 0.55) & (dy < car_height * 0.85)] = (0.15, 0.2, 0.25)
        image[body & (dx > car_half * 0.55) & (dy < car_height * 0.18)] = (0.05, 0.05, 0.05)  # wheels

    # Camera: overall exposure and tint, a left-right light gradient, and sensor noise.
    gain = rng.uniform(0.7, 1.2) * rng.uniform(0.9, 1.1, 3)
    ramp = 1 + rng.uniform(-0.15, 0.15) * (cols / width - 0.5)
    image = image * gain * ramp[..., None] + rng.normal(0, 0.02, image.shape)
    return RoadSample(image=np.clip(image, 0, 1).astype(np.float32), labels=labels)


class SyntheticRoads(torch.utils.data.Dataset):
    """``length`` driving scenes as ``(image (3, H, W) float32, mask (H, W) int64)``.

    Item ``i`` is ``synthetic_roads(size, seed=seed + i)``; give a validation set another
    ``seed`` (e.g. 10_000) so that it shares no scene with the training set.

    Args:
        length: number of scenes. Default 100.
        size: ``(height, width)`` or a side, in pixels. Default (192, 256).
        seed: seed of the first scene. Default 0.

    Example:
        >>> image, mask = SyntheticRoads(4, (96, 128))[0]
        >>> image.shape, mask.shape
        (torch.Size([3, 96, 128]), torch.Size([96, 128]))

    Taught in chapter 8 (beyond biomedicine).
    """

    classes = ROAD_CLASSES

    def __init__(self, length: int = 100, size: int | tuple[int, int] = (192, 256), *, seed: int = 0) -> None:
        if length < 1:
            raise ValueError(f"length must be at least 1, got {length}")
        self.length, self.size, self.seed = length, as_shape(size, smallest=32), seed

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> RoadSample:
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} scenes")
        return synthetic_roads(self.size, seed=self.seed + index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        scene = self.sample(index)
        return torch.from_numpy(scene.image).permute(2, 0, 1).contiguous(), torch.from_numpy(scene.labels).long()
