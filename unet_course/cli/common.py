"""What every ``unet-course`` command shares: its two kinds of error, ``--device`` and input folders."""

from __future__ import annotations

import re
from pathlib import Path

import torch

__all__ = ["UserError", "CommandFailed", "one_line", "as_option_error", "check_device", "input_images"]


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit status 2."""


class CommandFailed(Exception):
    """A failure (training diverged, a damaged run file): printed as one line, exit status 1."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line, starting in lower case like the rest of the line."""
    message = " ".join(str(error).split()) or type(error).__name__
    return message[0].lower() + message[1:] if message[:1].isupper() and message[1:2].islower() else message


def as_option_error(error: ValueError) -> UserError:
    """A library check's message (``lr must be …``) worded for the command line (``--lr must be …``)."""
    return UserError(re.sub(r"^([a-z][a-z0-9_]*)", lambda name: "--" + name[1].replace("_", "-"), str(error)))


def check_device(name: str | None) -> torch.device | None:
    """``--device`` as a torch device that this machine has, or None for the best available."""
    if name is None:
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {name} is not a device name; use cpu, cuda, cuda:N or mps") from None
    usable = {"cpu": True, "cuda": torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count(),
              "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not usable.get(device.type, False):
        raise UserError(f"--device {name}: PyTorch finds no such device on this machine; leave --device out to use "
                        f"the best one available, or pass --device cpu")
    return device


def input_images(path: Path, *, single_file: bool = True) -> list[Path]:
    """The image files of a folder (or the one file ``path``), refused when there are none."""
    from ..data.images import IMAGE_EXTENSIONS, image_files

    if path.is_dir():
        files = image_files(path)
        if not files:
            raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}; pass a folder that holds "
                            f"PNG, TIFF or JPEG files")
        return files
    if path.is_file() and single_file:
        return [path]
    if path.exists():
        raise UserError(f"{path} is not a folder: pass a folder of images")
    raise UserError(f"{path} does not exist: pass a folder of images" + (" or a TIFF file" if single_file else ""))
