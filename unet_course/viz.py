"""Plots for the course: masks over images, grids of samples, the library's own source.

A leaf module: nothing in the core imports it. Every function draws with matplotlib
and returns the figure or axes it drew on, so notebooks can end a cell on it.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

from .arrays import to_numpy

__all__ = ["as_image", "overlay", "show_grid", "show_source", "label_colors"]


def as_image(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """An array in the layout ``imshow`` draws: ``(C, H, W)`` becomes ``(H, W, C)``, one channel ``(H, W)``."""
    array = to_numpy(array)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = np.moveaxis(array, 0, -1)
    return array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array


def label_colors(num_labels: int, seed: int = 0) -> ListedColormap:
    """A colormap with black for label 0 and random bright colours for labels 1..num_labels."""
    rng = np.random.default_rng(seed)
    colors = rng.uniform(0.25, 1.0, (num_labels + 1, 3))
    colors[0] = 0.0
    return ListedColormap(colors)


def overlay(
    image: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    *,
    ax: plt.Axes | None = None,
    alpha: float = 0.45,
    instances: bool = False,
    title: str | None = None,
) -> plt.Axes:
    """Draw ``mask`` in colour over a grayscale ``image``.

    Args:
        image: ``(H, W)`` or ``(1, H, W)``, any range (shown min to max).
        mask: ``(H, W)`` class indices, or instance labels with ``instances=True``.
            Label 0 (background) is left transparent.
        ax: axes to draw on; a new figure if None.
        alpha: opacity of the mask colours. Default 0.45.
        instances: colour each label at random (for instance labels). Default False.
        title: axes title.

    Returns:
        The axes drawn on.
    """
    image, mask = as_image(image), as_image(mask).astype(np.int64)
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    ax.imshow(image, cmap="gray")
    num_labels = int(mask.max()) if mask.size else 0
    cmap = label_colors(num_labels) if instances else plt.get_cmap("tab10")
    colored = np.ma.masked_where(mask == 0, mask if instances else mask - 1)
    ax.imshow(colored, cmap=cmap, alpha=alpha, interpolation="nearest",
              vmin=0, vmax=num_labels if instances else 9)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def show_grid(
    images: Sequence[np.ndarray | torch.Tensor],
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 4,
    size: float = 3.0,
    cmap: str = "gray",
) -> plt.Figure:
    """Show images in a grid, ``ncols`` per row, each ``size`` inches wide."""
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(images)} images but {len(titles)} titles; give one title per image")
    ncols = max(1, min(ncols, len(images)))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < len(images):
            ax.imshow(as_image(images[index]), cmap=cmap, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[index])
    fig.tight_layout()
    return fig


def show_source(obj: object):
    """The source code of a library function or class, syntax-highlighted in a notebook.

    Chapters show the library's own code this way, so book and library cannot drift.
    """
    from IPython.display import Code  # imported here: the library does not need IPython

    return Code(inspect.getsource(obj), language="python")
