"""Reading images and masks from files: one reader for training folders and for prediction.

Images come back as float32 ``(C, H, W)`` at their real range: 8-bit values divided by
255, 16-bit values by 65535, floating-point values as stored. Grey and RGB files are
converted to the channels the model wants. Masks come back as class indices, with
black-and-white 0/255 masks read as 0/1. A file that cannot be used (unreadable,
non-finite pixels, a colour mask) raises ``ValueError`` naming the file and the fix.

Pixels are never rescaled by what a file happens to hold: the same file reads the same in
training and in prediction. An image far from the 0–1 range the networks see, a float
image holding 0–255 (Fiji's 8-bit → 32-bit) or 12-bit camera data in a 16-bit file (at
most 4095 of 65535), gets a :class:`RangeWarning` naming the file, its range and the fix.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "RangeWarning", "read_image", "read_image_pages", "load_image", "read_mask", "check_mask_values",
           "image_files"]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
UINT16_MAX = 65535
TWELVE_BIT_MAX = 4095  # a 16-bit file whose pixels stay at or below this holds 12-bit (or dimmer) data


class RangeWarning(UserWarning):
    """An image read at a range far from the 0–1 a network trained on 8- or 16-bit files sees."""


def _warn_range(path, kind: str, low: float, high: float) -> None:
    if kind == "float" and (high > 1.5 or low < -0.5):
        warnings.warn(f"{path} holds 32-bit float pixels from {low:.4g} to {high:.4g}, read as stored, but the "
                      f"network expects 0–1 (as 8-bit files / 255 give); divide by {high:.4g} (or 255 for "
                      f"8-bit data) and save again, or save it as an 8- or 16-bit image", RangeWarning, stacklevel=4)
    elif kind == "16-bit" and high <= TWELVE_BIT_MAX:
        warnings.warn(f"{path} is a 16-bit image whose pixels reach only {high:g} of 65535 (12-bit camera data?), "
                      f"so it reads as at most {high / UINT16_MAX:.3f} on the 0–1 scale the network expects; "
                      f"stretch it to the full range (× 16 for 12-bit data) or save it as 8-bit", RangeWarning,
                      stacklevel=4)


def _cannot_read(path, error: Exception) -> ValueError:
    return ValueError(f"Cannot read {path} as an image ({error}); save it as a PNG, TIFF or JPEG file")


def read_image(path: str | os.PathLike, *, mode: str | None = None) -> np.ndarray:
    """The first page of an image file as stored (``mode`` converts it first, e.g. ``"L"``).

    The raw array: uint8, uint16, int32 or float32 as Pillow holds the file. Use
    :func:`load_image` for a float image at its real range.
    """
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode) if mode else image)
    except (UnidentifiedImageError, OSError) as error:
        raise _cannot_read(path, error) from error


def _as_float(page: Image.Image, channels: int, path) -> np.ndarray:
    """One page as float32 ``(channels, H, W)`` at its real range."""
    if page.mode not in ("F", "I") and not page.mode.startswith("I;16"):
        # 8-bit files (grey, RGB, palette, with alpha, bilevel): Pillow's own conversion,
        # so that a colour image turns grey exactly as it always has (ITU-R 601-2 luma).
        array = np.asarray(page.convert("L" if channels == 1 else "RGB"), dtype=np.float32) / 255
    else:
        array = np.asarray(page)
        if array.dtype.kind == "f":
            bad = ~np.isfinite(array)
            if bad.any():
                raise ValueError(f"{path} holds {int(bad.sum())} non-finite pixel value(s) (NaN or infinity); "
                                 f"replace them with finite numbers (e.g. 0 or the image's mean) and save it again")
            array = array.astype(np.float32)
            _warn_range(path, "float", float(array.min(initial=0)), float(array.max(initial=0)))
        elif array.min(initial=0) < 0 or array.max(initial=0) > UINT16_MAX:
            raise ValueError(f"{path} holds 32-bit integer pixels from {array.min()} to {array.max()}, which have no "
                             f"fixed range; save it as an 8- or 16-bit image, or as 32-bit float")
        else:  # 16-bit, or 32-bit integers within the 16-bit range (how Pillow may open 16-bit PNGs)
            _warn_range(path, "16-bit", 0, float(array.max(initial=0)))
            array = array.astype(np.float32) / UINT16_MAX
        if channels == 3:
            array = np.repeat(array[..., None], 3, axis=-1)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def read_image_pages(path: str | os.PathLike, *, channels: int = 1) -> list[np.ndarray]:
    """Every page of an image file (one, or each page of a multi-page TIFF) as float32 ``(C, H, W)``.

    Args:
        path: a PNG, TIFF, JPEG or BMP file; 8- or 16-bit, grey or RGB, or 32-bit float.
        channels: 1 (colour images are turned grey) or 3 (grey images are repeated). Default 1.

    Raises:
        ValueError: the file cannot be read, holds NaN or infinite pixels, or 32-bit
            integers outside 0..65535; the message names the file.

    Example:
        >>> import numpy as np, tempfile, pathlib
        >>> from PIL import Image
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.png"
        >>> Image.fromarray(np.full((4, 6), 255, np.uint8)).save(path)
        >>> [page.shape for page in read_image_pages(path)]
        [(1, 4, 6)]
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    try:
        with Image.open(path) as file:
            pages = [page.copy() for page in ImageSequence.Iterator(file)]
            for page in pages:
                page.load()  # decode now: a truncated file fails here, with its name
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise _cannot_read(path, error) from error
    return [_as_float(page, channels, path) for page in pages]


def load_image(path: str | os.PathLike, *, channels: int = 1) -> np.ndarray:
    """One image file as float32 ``(C, H, W)`` at its real range (see :func:`read_image_pages`).

    Raises ``ValueError`` for a multi-page TIFF as well: one file, one image.
    """
    pages = read_image_pages(path, channels=channels)
    if len(pages) != 1:
        raise ValueError(f"{path} holds {len(pages)} pages, but one image per file is expected; "
                         f"save each page as its own file")
    return pages[0]


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file as int64 class indices ``(H, W)``; 0/255 black-and-white masks become 0/1.

    Grey, palette (the palette index is the class) and 16-bit masks are read as stored;
    an RGB mask is accepted when its three channels agree.

    Raises:
        ValueError: the file cannot be read, is a colour image, holds several pages, or
            holds values that are not whole numbers; the message names the file.
    """
    try:
        with Image.open(path) as file:
            if getattr(file, "n_frames", 1) != 1:
                raise ValueError(f"mask {path} holds {file.n_frames} pages, but one mask per file is expected; "
                                 f"save each page as its own file")
            mask = np.asarray(file)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise _cannot_read(path, error) from error
    if mask.ndim == 3:
        colour = mask[..., :3]
        if (colour != colour[..., :1]).any():
            raise ValueError(f"mask {path} is a colour image; save one class index per pixel instead "
                             f"(a grey or palette PNG: 0 = background, 1, 2, … for the classes)")
        mask = mask[..., 0]
    if mask.dtype.kind == "f" and not (np.isfinite(mask).all() and (mask == np.round(mask)).all()):
        raise ValueError(f"mask {path} holds values that are not whole numbers; save one class index per pixel "
                         f"(0 = background, 1, 2, … for the classes)")
    mask = mask.astype(np.int64)
    if mask.max(initial=0) == 255 and np.isin(mask, (0, 255)).all():
        mask = mask // 255
    return mask


def _listed(values: np.ndarray) -> str:
    shown = [str(v) for v in values.tolist()]
    return ", ".join(shown) if len(shown) <= 8 else f"{', '.join(shown[:5])}, …, {shown[-1]} ({len(shown)} values)"


def check_mask_values(mask: np.ndarray, num_classes: int, path: str | os.PathLike | None = None) -> None:
    """Raise ``ValueError`` unless every value of ``mask`` is a class index ``0..num_classes-1``.

    The message lists the values found and how to map them (grey levels and JPEG noise
    in a black-and-white mask, or more classes than the model has).
    """
    mask = np.asarray(mask)
    if mask.size == 0 or (mask.min() >= 0 and mask.max() < num_classes):  # the common case: no sort
        return
    values = np.unique(mask)
    where = f"mask {path}" if path is not None else "the mask"
    how = ("threshold it to 0/1 (e.g. mask > 127) or save it as a 0/255 PNG; JPEG compression adds grey levels"
           if num_classes == 2 else f"map each value to a class index 0..{num_classes - 1}")
    raise ValueError(f"{where} holds the values {_listed(values)}, but the model has {num_classes} classes "
                     f"(0..{num_classes - 1}); {how}")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The image files of ``folder`` (by extension), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
