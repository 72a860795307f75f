"""Your own data: a folder of images and a folder of masks, paired by file name.

``images/cell_01.png`` pairs with ``masks/cell_01.png`` (or ``masks/cell_01.tif`` —
the extension may differ). Images are read at their real range by
:mod:`unet_course.data.images` (8- and 16-bit, grey or RGB); masks hold class indices,
and binary masks saved as 0/255 become 0/1.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .images import IMAGE_EXTENSIONS, check_mask_values, image_files, load_image, read_image, read_mask

__all__ = ["ImageMaskFolder", "IMAGE_EXTENSIONS", "read_image"]


def _files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass the folder that holds your images")
    files: dict[str, Path] = {}
    for path in image_files(folder):
        if path.stem in files:  # a.png and a.tif: pairing by name could not tell them apart
            raise ValueError(f"{files[path.stem]} and {path} share the name {path.stem!r}; images and masks are "
                             f"paired by name, so keep one file per name (rename or move one of them)")
        files[path.stem] = path
    return files


class ImageMaskFolder(torch.utils.data.Dataset):
    """Image/mask pairs as ``(image (C, H, W) float32, mask (H, W) int64)``.

    Args:
        images: folder of images (grey or RGB, 8- or 16-bit, or 32-bit float), read at their
            real range: 8-bit values / 255, 16-bit / 65535, float as stored.
        masks: folder of masks with the same file names (extensions may differ).
        grayscale: convert images to one channel. Default True (as the paper's data).
        num_classes: when given, every mask is checked to hold only ``0..num_classes-1``.
            Default None: masks are not checked.

    Raises:
        FileNotFoundError: a folder is missing, or holds no images.
        ValueError: an image has no mask (or a mask no image), two files share a name,
            sizes differ, a file cannot be read or holds non-finite pixels, or a mask holds
            values that are not classes of the model; the message names the files.

    Example:
        >>> data = ImageMaskFolder("my_data/images", "my_data/masks", num_classes=2)  # doctest: +SKIP
        >>> image, mask = data[0]; image.shape, mask.shape  # doctest: +SKIP
        (torch.Size([1, 512, 512]), torch.Size([512, 512]))
    """

    def __init__(self, images: str | os.PathLike, masks: str | os.PathLike, *, grayscale: bool = True,
                 num_classes: int | None = None) -> None:
        self.grayscale = grayscale
        self.num_classes = num_classes
        image_files, mask_files = _files(Path(images)), _files(Path(masks))
        if not image_files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {images}; "
                                    f"put your images there, with masks of the same names in {masks}")
        unmatched = sorted(set(image_files) ^ set(mask_files))
        if unmatched:
            raise ValueError(
                f"images and masks are paired by file name, but {len(unmatched)} name(s) have no "
                f"partner: {', '.join(unmatched[:5])}{' …' if len(unmatched) > 5 else ''}; "
                f"give each image in {images} a mask with the same name in {masks}"
            )
        self.pairs = [(image_files[name], mask_files[name]) for name in sorted(image_files)]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, mask_path = self.pairs[index]
        image = load_image(image_path, channels=1 if self.grayscale else 3)
        mask = read_mask(mask_path)
        if image.shape[1:] != mask.shape:
            raise ValueError(
                f"{image_path.name} is {image.shape[2]}×{image.shape[1]} pixels but its mask "
                f"{mask_path.name} is {mask.shape[1]}×{mask.shape[0]}; they must be the same size"
            )
        if self.num_classes is not None:
            check_mask_values(mask, self.num_classes, mask_path)
        return torch.from_numpy(image), torch.from_numpy(mask)
