"""Checksummed, atomic downloads: a file is either complete and verified, or absent.

A download goes to a temporary file beside its destination, is hashed while it is
written, and is renamed into place only when its SHA-256 matches. An interrupted or
corrupted download therefore never leaves a partial file under the final name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["sha256_of", "download_file", "DownloadError", "ChecksumError"]

CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A file could not be fetched (offline, missing, refused)."""


class ChecksumError(RuntimeError):
    """A file's SHA-256 differs from the expected one."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for chunk in iter(lambda: file.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url: str, destination: str | os.PathLike, sha256: str, *, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``destination`` if it is not already there and verified.

    Args:
        url: address to fetch (``https://``, or ``file://`` for local copies).
        destination: final path of the file; parent folders are created.
        sha256: expected hex digest; the file is kept only if it matches.
        timeout: seconds to wait for the server. Default 60.

    Returns:
        The destination path.

    Raises:
        DownloadError: the file could not be fetched; the message names the address.
        ChecksumError: the bytes fetched do not match ``sha256``; nothing is kept.
    """
    destination = Path(destination)
    if destination.exists() and sha256_of(destination) == sha256:
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        digest.update(chunk)
                        out.write(chunk)
            except (urllib.error.URLError, OSError, ValueError) as error:
                raise DownloadError(
                    f"Could not download {url} ({error}). Check your network connection, or "
                    f"place the file at {destination} yourself and load with download=False."
                ) from error
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != sha256:
            raise ChecksumError(
                f"{destination.name} downloaded from {url} has SHA-256 {digest.hexdigest()}, "
                f"expected {sha256}: the file was corrupted or changed, and was not kept. Try again."
            )
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return destination
