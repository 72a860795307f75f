"""Checksummed, atomic downloads: a file is either complete and verified, or absent.

A download goes to a temporary file beside its destination, is hashed while it is
written, and is renamed into place only when its checksum matches. An interrupted or
corrupted download therefore never leaves a partial file under the final name.

Checksums are SHA-256 of the whole file, or — for archives whose publisher gives only
that — the size plus the MD5 of the first MiB (the scheme of fastai's ``checks.txt``).
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from ..files import atomic_file

__all__ = ["sha256_of", "size_and_md5_prefix", "download_file", "DownloadError", "ChecksumError"]

CHUNK = 1 << 16
MIB = 1 << 20


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


def size_and_md5_prefix(path: str | os.PathLike) -> tuple[int, str]:
    """A file's size in bytes and the hex MD5 of its first MiB (fastai's published check)."""
    with open(path, "rb") as file:
        return os.path.getsize(path), hashlib.md5(file.read(MIB)).hexdigest()


def _verified(path: Path, sha256: str | None, size_md5: tuple[int, str] | None) -> tuple[bool, str]:
    """Whether ``path`` matches the expected checksum, and what it measured."""
    if sha256 is not None:
        found = sha256_of(path)
        return found == sha256, f"SHA-256 {found}, expected {sha256}"
    found_size, found_md5 = size_and_md5_prefix(path)
    return (found_size, found_md5) == tuple(size_md5), f"size {found_size} and MD5 {found_md5}, expected {size_md5}"


def download_file(
    url: str,
    destination: str | os.PathLike,
    sha256: str | None = None,
    *,
    size_md5: tuple[int, str] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Fetch ``url`` to ``destination`` if it is not already there and verified.

    Args:
        url: address to fetch (``https://``, or ``file://`` for local copies).
        destination: final path of the file; parent folders are created.
        sha256: expected hex digest of the whole file; the file is kept only if it matches.
        size_md5: instead of ``sha256``, the expected ``(size in bytes, MD5 of the first MiB)``.
        timeout: seconds to wait for the server. Default 60.

    Returns:
        The destination path.

    Raises:
        DownloadError: the file could not be fetched; the message names the address.
        ChecksumError: the bytes fetched do not match ``sha256``; nothing is kept.
    """
    if (sha256 is None) == (size_md5 is None):
        raise ValueError("give exactly one checksum: sha256='…' or size_md5=(size, 'md5 of first MiB')")
    destination = Path(destination)
    if destination.exists() and _verified(destination, sha256, size_md5)[0]:
        return destination
    with atomic_file(destination) as (out, temporary):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as error:
            raise DownloadError(
                f"Could not download {url} ({error}). Check your network connection, or "
                f"place the file at {destination} yourself and load with download=False."
            ) from error
        out.flush()
        matches, measured = _verified(temporary, sha256, size_md5)
        if not matches:
            raise ChecksumError(
                f"{destination.name} downloaded from {url} has {measured}: the file was "
                f"corrupted or changed, and was not kept. Try again."
            )
    return destination
