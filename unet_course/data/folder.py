"""Your own data: a folder of images and a folder of masks, paired by file name.

``images/cell_01.png`` pairs with ``masks/cell_01.png`` (or ``masks/cell_01.tif`` —
the extension may differ). Masks hold class indices; binary masks saved as 0/255
become 0/1.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

__all__ = ["ImageMaskFolder", "IMAGE_EXTENSIONS", "read_image"]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def read_image(path: str | os.PathLike, *, mode: str | None = None) -> np.ndarray:
    """Read an image file to a numpy array, with an error that names the file if it fails."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode) if mode else image)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"Cannot read {path} as an image ({error}). Is it a PNG, TIFF or JPEG file?") from error


def _files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder. Pass the folder that holds your images.")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}


class ImageMaskFolder(torch.utils.data.Dataset):
    """Image/mask pairs as ``(image (C, H, W) float32 in [0, 1], mask (H, W) int64)``.

    Args:
        images: folder of images (grayscale or RGB).
        masks: folder of masks with the same file names (extensions may differ).
        grayscale: convert images to one channel. Default True (as the paper's data).

    Raises:
        FileNotFoundError: a folder is missing, or holds no images.
        ValueError: an image has no mask (or a mask no image), sizes differ, or a file
            cannot be read; the message names the files.
    """

    def __init__(self, images: str | os.PathLike, masks: str | os.PathLike, *, grayscale: bool = True) -> None:
        self.grayscale = grayscale
        image_files, mask_files = _files(Path(images)), _files(Path(masks))
        if not image_files:
            raise FileNotFoundError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) found in {images}.")
        unmatched = sorted(set(image_files) ^ set(mask_files))
        if unmatched:
            raise ValueError(
                f"Images and masks are paired by file name, but {len(unmatched)} name(s) have no "
                f"partner: {', '.join(unmatched[:5])}{' …' if len(unmatched) > 5 else ''}. "
                f"Give each image in {images} a mask with the same name in {masks}."
            )
        self.pairs = [(image_files[name], mask_files[name]) for name in sorted(image_files)]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image = read_image(image_path, mode="L" if self.grayscale else "RGB")
        mask = read_image(mask_path)
        if mask.ndim == 3:
            mask = mask[..., 0]
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"{image_path.name} is {image.shape[1]}×{image.shape[0]} pixels but its mask "
                f"{mask_path.name} is {mask.shape[1]}×{mask.shape[0]}: they must be the same size."
            )
        if mask.max() == 255 and set(np.unique(mask).tolist()) <= {0, 255}:
            mask = mask // 255
        image = torch.from_numpy(np.array(image, dtype=np.float32)).div_(255.0)
        image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
        return image, torch.from_numpy(mask.astype(np.int64))
