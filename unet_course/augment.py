"""The paper's elastic deformation: a coarse random grid, bicubic upsampling, one warp.

Ronneberger et al. (2015), section 3.1: "random displacement vectors on a coarse 3 by 3
grid [...] sampled from a Gaussian distribution with 10 pixels standard deviation.
Per-pixel displacements are then computed using bicubic interpolation." The grid spans
the image (nodes on the corners, edge midpoints and centre), and one ``grid_sample`` per
array warps images, masks (nearest) and weight maps alike, with mirrored borders: the
coarse-grid scheme the ``elasticdeform`` package offers on the CPU, here in ``torch``,
batched, on any device. Before the deformation a tile is shown in one of the 8 views of a
square (:func:`orient`); test-time augmentation averages the same 8 and undoes each
(:func:`undo_orient`).
The paper's other named invariance, gray-value variation, lives in :mod:`unet_course.gray_values`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import PIL.Image
import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

__all__ = ["Deformed", "ElasticDeformation", "displacement_field", "elastic_deform", "random_displacement", "orient",
           "undo_orient"]

# Keys' cubic convolution parameter. -0.75 is the "bicubic" of OpenCV and of
# ``F.interpolate(mode="bicubic")``, so a reader can check our field against that call.
CUBIC_A = -0.75
IMAGE_MODES = ("bilinear", "bicubic")
# Geometry that a pixel warp cannot move; KeyPoints only exists in recent torchvision.
_NOT_PIXELS = tuple(getattr(tv_tensors, name) for name in ("BoundingBoxes", "KeyPoints") if hasattr(tv_tensors, name))


class Deformed(NamedTuple):
    """What :func:`elastic_deform` returns: always three fields, ``None`` where nothing was given."""

    images: torch.Tensor  # (N, C, H, W), dtype of the input
    masks: torch.Tensor | None  # (N, H, W), dtype of the input, values from the input's label set
    weight_maps: torch.Tensor | None  # (N, H, W), dtype of the input


def _check_grid_sigma(grid: int, elastic_sigma: float) -> None:
    if grid < 2:
        raise ValueError(f"grid must be at least 2 nodes per side (one at each border), got {grid}")
    if elastic_sigma < 0:
        raise ValueError(f"elastic_sigma is a standard deviation in pixels and cannot be negative, got {elastic_sigma}")


def random_displacement(
    n: int,
    grid: int = 3,
    elastic_sigma: float = 10.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Random displacement vectors on a coarse ``grid × grid`` grid, in pixels.

    Args:
        n: how many independent grids (one per image of a batch).
        grid: nodes per side (default 3, the paper's 3×3 grid); at least 2.
        elastic_sigma: standard deviation of each displacement component in pixels (default 10.0).
        generator: a ``torch.Generator`` to draw from (default: torch's global one).
        device: where the result lives (default: the generator's device, else the CPU).

    Shape:
        ``(N, 2, grid, grid)``: channel 0 moves along rows (y), channel 1 along columns (x).

    Example:
        >>> random_displacement(4).shape
        torch.Size([4, 2, 3, 3])

    Taught in chapter 4, Data augmentation.
    """
    _check_grid_sigma(grid, elastic_sigma)
    # Draw where the generator lives, then move: the same seed gives the same grid on any device.
    draw_on = generator.device if generator is not None else device
    coarse = torch.randn(n, 2, grid, grid, generator=generator, device=draw_on) * elastic_sigma
    return coarse if device is None else coarse.to(device)


def _cubic_kernel(distance: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution weight for taps at ``distance`` (in grid steps) from the point."""
    x = distance.abs()
    a = CUBIC_A
    near = ((a + 2) * x - (a + 3)) * x * x + 1  # |x| <= 1
    far = ((x - 5) * x + 8) * x * a - 4 * a  # 1 < |x| < 2
    return torch.where(x <= 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


@functools.lru_cache(maxsize=32)
def _cubic_matrix(nodes: int, size: int) -> torch.Tensor:
    """The ``(size, nodes)`` float64 matrix that interpolates ``nodes`` values onto ``size`` pixels.

    Node ``k`` sits on pixel ``k * (size - 1) / (nodes - 1)``: the first and last nodes on
    the border pixels, the middle node of a 3×3 grid on the centre. The four taps of each
    pixel are clamped at the ends, exactly as ``F.interpolate(..., align_corners=True)``.
    Cached: a training loop asks for the same few sizes at every step.
    """
    position = torch.linspace(0, nodes - 1, size, dtype=torch.float64)  # pixel -> grid coordinate
    left = position.floor()
    matrix = torch.zeros(size, nodes, dtype=torch.float64)
    rows = torch.arange(size)
    for tap in (-1, 0, 1, 2):
        node = (left + tap).clamp(0, nodes - 1).long()
        matrix.index_put_((rows, node), _cubic_kernel(position - left - tap), accumulate=True)
    return matrix


def displacement_field(coarse: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic interpolation of a coarse displacement grid to one vector per pixel.

    The same numbers as ``F.interpolate(coarse, size, mode="bicubic", align_corners=True)``,
    computed as two thin matrix products (rows, then columns): with only 3 nodes per side
    that is an order of magnitude faster for a 512×512 image on a CPU. The field passes exactly through the
    node values (corners, edge midpoints and centre of the image for a 3×3 grid).

    Args:
        coarse: displacements in pixels on the grid nodes, e.g. from :func:`random_displacement`.
        size: ``(height, width)`` of the images to deform, each at least 2.

    Shape:
        ``(N, 2, grid_h, grid_w)`` → ``(N, 2, H, W)``, in pixels, channel 0 along rows.

    Example:
        >>> displacement_field(random_displacement(2), (64, 80)).shape
        torch.Size([2, 2, 64, 80])

    Taught in chapter 4, Data augmentation.
    """
    if coarse.ndim != 4 or coarse.shape[1] != 2 or min(coarse.shape[2:]) < 2:
        raise ValueError(
            f"Expected a displacement grid of shape (N, 2, grid_h, grid_w) with at least 2 nodes "
            f"per side, got {tuple(coarse.shape)}. Draw one with random_displacement(n, grid)."
        )
    height, width = size
    if min(height, width) < 2:
        raise ValueError(f"Expected images of at least 2×2 pixels, got size {tuple(size)}")
    dtype = coarse.dtype if coarse.dtype.is_floating_point else torch.float32
    rows = _cubic_matrix(coarse.shape[2], height).to(coarse.device, dtype)  # (H, grid_h)
    cols = _cubic_matrix(coarse.shape[3], width).to(coarse.device, dtype)  # (W, grid_w)
    return rows @ coarse.to(dtype) @ cols.T  # (N, 2, H, grid_w) @ (grid_w, W) -> (N, 2, H, W)


def _sampling_grid(field: torch.Tensor) -> torch.Tensor:
    """Where each output pixel reads the input, in ``grid_sample``'s units: ``(N, H, W, 2)``, x first.

    Output pixel ``(y, x)`` reads input position ``(y + dy, x + dx)``. With
    ``align_corners=True``, -1 and +1 are the centres of the border pixels.
    """
    height, width = field.shape[-2:]
    ys = torch.linspace(-1, 1, height, device=field.device, dtype=field.dtype)
    xs = torch.linspace(-1, 1, width, device=field.device, dtype=field.dtype)
    # Written straight into the interleaved layout: no temporaries, no stack (3x faster on CPU).
    grid = torch.empty(field.shape[0], height, width, 2, device=field.device, dtype=field.dtype)
    torch.add(xs, field[:, 1], alpha=2 / (width - 1), out=grid[..., 0])  # x + dx, (N, H, W)
    torch.add(ys[:, None], field[:, 0], alpha=2 / (height - 1), out=grid[..., 1])  # y + dy, (N, H, W)
    return grid


def _sample(x: torch.Tensor, grid: torch.Tensor, mode: str) -> torch.Tensor:
    """Resample ``(N, C, H, W)`` at ``grid``, mirroring at the borders, in the input's dtype.

    Integer data is sampled as float32 (exact for labels below 2**24) and converted back;
    only "nearest" keeps it in its value set, smooth modes round and clamp to the dtype.
    """
    work = x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)
    # "reflection" with align_corners=True mirrors about the border pixel centres,
    # like scipy's mode="mirror": no pixel is repeated and no constant fill appears.
    out = F.grid_sample(work, grid.to(work.dtype), mode=mode, padding_mode="reflection", align_corners=True)
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        return out.to(x.dtype)
    if mode != "nearest":
        info = torch.iinfo(x.dtype)
        out = out.round().clamp(info.min, info.max)
    return out.to(x.dtype)


def _check_batch(name: str, tensor: torch.Tensor, shape: tuple[int, ...], hint: str) -> None:
    if tuple(tensor.shape) != shape:
        raise ValueError(f"Expected {name} of shape {shape} to match the images, got {tuple(tensor.shape)}. {hint}")


def elastic_deform(
    images: torch.Tensor,
    masks: torch.Tensor | None = None,
    weight_maps: torch.Tensor | None = None,
    *,
    grid: int = 3,
    elastic_sigma: float = 10.0,
    displacement: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    interpolation: str = "bilinear",
) -> Deformed:
    """Deform a batch of images, and their label masks and weight maps alike (the paper's scheme).

    Each image gets its own random ``grid × grid`` displacement (Gaussian, ``elastic_sigma`` pixels),
    interpolated bicubically to every pixel (:func:`displacement_field`); output pixel
    ``(y, x)`` then takes the input's value at ``(y + dy, x + dx)``. Images are resampled
    with ``interpolation``, masks with nearest neighbour (their values stay in the label
    set), weight maps bilinearly. Borders are mirrored. ``elastic_sigma=0`` returns the inputs:
    masks exactly, images and weight maps up to the float32 rounding of the sampling positions
    (changes below 1e-4 of the value range on 512×512 images).

    Args:
        images: float images.
        masks: integer label maps, or None (default).
        weight_maps: float per-pixel loss weights, or None (default).
        grid: nodes per side of the coarse grid (default 3).
        elastic_sigma: standard deviation of the node displacements in pixels (default 10.0).
        displacement: explicit node displacements in pixels, ``(N or 1, 2, grid_h, grid_w)``;
            when given, ``grid``, ``elastic_sigma`` and ``generator`` are not used (default None).
        generator: ``torch.Generator`` for reproducible draws (default None: global RNG).
        interpolation: "bilinear" (default) or "bicubic" for the images; bicubic is
            sharper and may overshoot the input's range slightly.

    Shape:
        images ``(N, C, H, W)``, masks and weight maps ``(N, H, W)``; returns
        ``Deformed(images, masks, weight_maps)`` of the same shapes and dtypes, ``None`` where
        no input was given.

    Example:
        >>> out = elastic_deform(torch.rand(2, 1, 64, 64), torch.zeros(2, 64, 64, dtype=torch.long))
        >>> out.images.shape, out.masks.shape, out.weight_maps
        (torch.Size([2, 1, 64, 64]), torch.Size([2, 64, 64]), None)

    Taught in chapter 4, Data augmentation.
    """
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"Expected float images of shape (N, C, H, W), got {images.dtype} of shape {tuple(images.shape)}. "
            f"Add a batch or channel axis with images[None] or images[:, None], and convert with .float()."
        )
    if interpolation not in IMAGE_MODES:
        raise ValueError(f"interpolation must be one of {IMAGE_MODES}, got {interpolation!r}")
    n, _, height, width = images.shape
    if masks is not None:
        _check_batch("masks", masks, (n, height, width), "Masks carry no channel axis: use masks[:, 0].")
        if masks.is_floating_point():
            raise ValueError(f"Expected integer label masks, got {masks.dtype}: pass float maps as weight_maps.")
    if weight_maps is not None:
        _check_batch("weight_maps", weight_maps, (n, height, width), "Weight maps carry no channel axis.")
    if displacement is None:
        displacement = random_displacement(n, grid, elastic_sigma, generator=generator, device=images.device)
    elif displacement.ndim != 4 or displacement.shape[0] not in (1, n) or displacement.shape[1] != 2:
        raise ValueError(
            f"Expected a displacement of shape ({n} or 1, 2, grid_h, grid_w) in pixels, "
            f"got {tuple(displacement.shape)}."
        )
    work_dtype = torch.float64 if images.dtype == torch.float64 else torch.float32
    field = displacement_field(displacement.to(images.device, work_dtype), (height, width))
    sampling_grid = _sampling_grid(field).expand(n, -1, -1, -1)  # built once, shared by all three
    return Deformed(
        images=_sample(images, sampling_grid, interpolation),
        masks=None if masks is None else _sample(masks[:, None], sampling_grid, "nearest")[:, 0],
        weight_maps=None if weight_maps is None else _sample(weight_maps[:, None], sampling_grid, "bilinear")[:, 0],
    )


def orient(tensor: torch.Tensor, quarter_turns: int, flip: int | bool) -> torch.Tensor:
    """One of the 8 views of a square: turned by ``quarter_turns`` × 90°, then mirrored left-right if ``flip``.

    The 8 pairs ``(quarter_turns in 0..3, flip in (False, True))`` give the 8 symmetries of a
    square (the dihedral group D4), each once: the paper's random flips and rotations are a
    random pair, and test-time augmentation (:func:`~unet_course.tiling.predict_tiles`) averages
    all 8. The turn is counter-clockwise as ``torch.rot90`` turns, and happens first; ``flip``
    counts when odd, so an integer draw of 0..3 serves as well as a bool.

    Args:
        tensor: ``(..., H, W)``; images, masks and weight maps alike.
        quarter_turns: how many quarter turns (any integer; 4 is a full turn).
        flip: mirror left-right after turning when odd (True).

    Shape:
        ``(..., H, W)`` → ``(..., H, W)``, or ``(..., W, H)`` for an odd number of quarter turns.

    Example:
        >>> orient(torch.tensor([[1, 2], [3, 4]]), 1, True)
        tensor([[4, 2],
                [3, 1]])

    Taught in chapter 4 (augmentation); averaged over at test time in chapter 7.
    """
    tensor = torch.rot90(tensor, quarter_turns, dims=(-2, -1))
    return tensor.flip(-1) if flip % 2 else tensor


def undo_orient(tensor: torch.Tensor, quarter_turns: int, flip: int | bool) -> torch.Tensor:
    """The inverse of :func:`orient`: ``undo_orient(orient(x, k, f), k, f)`` is ``x``; mirror back, then turn back.

    Test-time augmentation brings each view's prediction back to the tile's own orientation with it.

    Shape:
        ``(..., H, W)`` → ``(..., H, W)``, or ``(..., W, H)`` for an odd number of quarter turns.
    """
    tensor = tensor.flip(-1) if flip % 2 else tensor
    return torch.rot90(tensor, -quarter_turns, dims=(-2, -1))


class ElasticDeformation(v2.Transform):
    """The paper's elastic deformation as a ``torchvision.transforms.v2`` transform.

    One displacement grid is drawn per call (from torch's global RNG, like every v2
    transform) and applied to all inputs alike: ``tv_tensors.Mask`` with nearest
    neighbour, images and plain tensors with ``interpolation``. Inputs are tensors
    ``(..., H, W)`` on any device; integer images are rounded back to their dtype.
    The paper's other augmentations come from torchvision, for example
    ``v2.Compose([v2.RandomAffine(degrees=180, translate=(0.1, 0.1)), ElasticDeformation(),
    v2.ColorJitter(brightness=0.2)])``.

    Args:
        grid: nodes per side of the coarse grid (default 3).
        elastic_sigma: standard deviation of the node displacements in pixels (default 10.0).
        interpolation: "bilinear" (default) or "bicubic" for everything that is not a Mask.

    Example:
        >>> image = tv_tensors.Image(torch.rand(1, 64, 64))
        >>> mask = tv_tensors.Mask(torch.zeros(64, 64, dtype=torch.long))
        >>> image, mask = ElasticDeformation()(image, mask)
        >>> type(mask).__name__, mask.shape
        ('Mask', torch.Size([64, 64]))

    Taught in chapter 4, Data augmentation.
    """

    def __init__(self, grid: int = 3, elastic_sigma: float = 10.0, interpolation: str = "bilinear") -> None:
        super().__init__()
        if interpolation not in IMAGE_MODES:
            raise ValueError(f"interpolation must be one of {IMAGE_MODES}, got {interpolation!r}")
        _check_grid_sigma(grid, elastic_sigma)
        self.grid = grid
        self.elastic_sigma = elastic_sigma
        self.interpolation = interpolation

    def check_inputs(self, flat_inputs: list[Any]) -> None:
        sizes = set()
        for inpt in flat_inputs:
            if isinstance(inpt, _NOT_PIXELS):
                raise ValueError(f"ElasticDeformation warps pixels only, got {type(inpt).__name__}; drop them first.")
            if isinstance(inpt, PIL.Image.Image):
                raise ValueError("ElasticDeformation takes tensors, got a PIL image: put v2.ToImage() before it.")
            if isinstance(inpt, torch.Tensor):
                sizes.add(tuple(inpt.shape[-2:]))
        if len(sizes) > 1:
            raise ValueError(
                f"Expected all inputs to share one (H, W), got {sorted(sizes)}: resize or crop them first."
            )

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        tensors = [inpt for inpt in flat_inputs if isinstance(inpt, torch.Tensor)]
        if not tensors:
            return {"sampling_grid": None}
        height, width = tensors[0].shape[-2:]
        coarse = random_displacement(1, self.grid, self.elastic_sigma).to(tensors[0].device)
        return {"sampling_grid": _sampling_grid(displacement_field(coarse, (height, width)))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        sampling_grid = params["sampling_grid"]
        if sampling_grid is None or not isinstance(inpt, torch.Tensor):
            return inpt
        mode = "nearest" if isinstance(inpt, tv_tensors.Mask) else self.interpolation
        # All leading axes ride along as channels of one batch item: one deformation for all.
        flat = inpt.as_subclass(torch.Tensor).reshape(1, -1, *inpt.shape[-2:])
        out = _sample(flat, sampling_grid, mode).reshape(inpt.shape)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out

    # Older torchvision releases call these by their former private names.
    _get_params = make_params
    _transform = transform
