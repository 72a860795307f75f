"""Files written all at once or not at all: the one way the library writes to disk.

Checkpoints, ``model.json``, histories, downloads, masks, reports and exports all go through
:func:`atomic_file`, so that an interrupted write never leaves a half file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file"]


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[tuple[BinaryIO, Path]]:
    """Write ``path`` all at once or not at all.

    Yields ``(file, temporary_path)``: write to ``file`` (and check ``temporary_path`` if
    you like); when the block ends without an exception the data is flushed to disk and
    renamed to ``path``. If the block raises, the temporary file is removed and ``path``
    is left as it was. Used for downloads, run files, masks, reports and exports.
    """
    path = Path(path)
    created = [folder for folder in [path.parent, *path.parent.parents] if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            yield file, Path(temporary)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
            for folder in created:  # leave no empty folders behind a failed write either
                with contextlib.suppress(OSError):
                    folder.rmdir()
