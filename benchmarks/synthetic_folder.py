"""A folder of synthetic touching-cells images and masks as PNG files, laid out as ``ImageMaskFolder`` reads it.

The data-loading benchmarks train from files, as a user with their own data does:
``root/images/cell_0000.png`` (8-bit grey) pairs with ``root/masks/cell_0000.png`` (0/255).
"""

from __future__ import annotations

from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

from unet_course import synthetic_cells


def _write_one(root: Path, size: int, seed: int, index: int) -> None:
    sample = synthetic_cells(size, seed=seed + index)
    name = f"cell_{index:05d}.png"
    Image.fromarray(np.round(sample.image * 255).astype(np.uint8)).save(root / "images" / name)
    Image.fromarray(sample.mask * 255).save(root / "masks" / name)


def write_synthetic_folder(root: Path, count: int, size: int = 512, seed: int = 0, processes: int = 2) -> Path:
    """Write ``count`` distinct ``size``² images (``synthetic_cells(size, seed=seed + i)``) and their masks."""
    for part in ("images", "masks"):
        (root / part).mkdir(parents=True, exist_ok=True)
    with Pool(processes) as pool:
        pool.map(partial(_write_one, root, size, seed), range(count), chunksize=8)
    return root
