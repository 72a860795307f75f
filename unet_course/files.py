"""Files written all at once or not at all: the one way the library writes to disk.

Checkpoints, ``model.json``, histories, downloads, masks, reports and exports all go through
:func:`atomic_file`, so that an interrupted write never leaves a half file under the final name,
and every file gets the mode the user's umask gives a new file (``0644`` under umask 022).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "check_output_path"]


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the umask (read without changing it for good)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def check_output_path(path: str | os.PathLike, what: str = "the output") -> Path:
    """``path``, refused with ``ValueError`` when one of the folders above it is a file (it could never be created).

    Example:
        >>> check_output_path("masks/a.png")
        PosixPath('masks/a.png')
    """
    path = Path(path)
    for folder in path.absolute().parents:
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"{what} {path} cannot be created: {folder} is a file, not a folder; choose a path "
                                 f"below a folder")
            break
    return path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[tuple[BinaryIO, Path]]:
    """Write ``path`` all at once or not at all.

    Yields ``(file, temporary_path)``: write to ``file`` (and check ``temporary_path`` if
    you like); when the block ends without an exception the data is flushed to disk and
    renamed to ``path``. If the block raises, the temporary file is removed and ``path``
    is left as it was. Used for downloads, run files, masks, reports and exports.
    """
    path = check_output_path(path)
    created = [folder for folder in [path.parent, *path.parent.parents] if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            yield file, Path(temporary)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _new_file_mode())  # mkstemp makes it 0600: private to its writer
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
            for folder in created:  # leave no empty folders behind a failed write either
                with contextlib.suppress(OSError):
                    folder.rmdir()
