"""Trained U-Nets anyone can load: a registry of published checkpoints, verified and cached.

    model = unet_course.pretrained("isbi2012-cpu")        # shipped with the package: works offline
    python -m unet_course.publish pack runs/isbi weights/unet_isbi2012_cpu.pt   # what `make weights` runs
    python -m unet_course.publish verify weights/      # before a release attaches them

A published checkpoint is one file: the model's description (``model.json`` of its run, with the
threshold chosen on its training images) and its weights in fp16, loaded with
``weights_only=True``. Small ones ship inside the package; the others are release assets of the
repository, fetched once (atomically, SHA-256 checked) into a cache. Chapter 7 uses them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import torch

from .data.download import DownloadError, download_file, sha256_of
from .models.unet import UNet
from .runs import load_run, model_from_config, read_checkpoint, read_config, run_files, write_checkpoint

__all__ = ["PRETRAINED", "REPOSITORY_URL", "pretrained", "pretrained_config", "load_model", "weights_url", "pack_run",
           "verify"]

# The repository of `_config.yml` (a test keeps the two equal); release assets live under it.
REPOSITORY_URL = "https://github.com/unet-course/unet-course"
URL_VAR = "UNET_COURSE_WEIGHTS_URL"  # a mirror of the release assets, e.g. file:///srv/weights
CACHE_VAR = "UNET_COURSE_CACHE"

PRETRAINED: dict[str, dict] = {
    "isbi2012-cpu": {
        "file": "unet_isbi2012_cpu.pt",
        "sha256": "5b1899630023a18a948d55f9b3dba580847938df3809401bab0757aea1842817",
        "shipped": True,
        "description": "UNet(base_channels=16), ISBI 2012 slices 0–24, the cpu budget of chapter 6",
    },
}


def weights_url(name: str) -> str:
    """Where ``name`` is published: ``$UNET_COURSE_WEIGHTS_URL/<file>``, else this version's release asset."""
    from . import __version__  # the package's version names its release

    base = os.environ.get(URL_VAR, f"{REPOSITORY_URL}/releases/download/v{__version__}")
    return f"{base.rstrip('/')}/{_entry(name)['file']}"


def _entry(name: str) -> dict:
    if name not in PRETRAINED:
        raise ValueError(f"no pretrained model {name!r}; available: {', '.join(sorted(PRETRAINED))}")
    return PRETRAINED[name]


def _cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$UNET_COURSE_CACHE``, else ``~/.cache/unet_course``; refused if a file."""
    if cache_dir is not None:
        folder, named = Path(cache_dir), f"cache_dir={str(cache_dir)!r}"
    elif CACHE_VAR in os.environ:
        folder, named = Path(os.environ[CACHE_VAR]), f"${CACHE_VAR}={os.environ[CACHE_VAR]}"
    else:
        folder, named = Path.home() / ".cache" / "unet_course", "the default cache"
    blocking = next((parent for parent in (folder, *folder.parents) if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise ValueError(f"{named}: {blocking} is a file, not a folder; point {CACHE_VAR} or cache_dir at a folder "
                         f"for downloaded checkpoints")
    return folder


@functools.lru_cache(maxsize=None)
def _shipped(file: str, sha256: str) -> dict:
    """A checkpoint inside the package, read and verified once per process (the package does not change)."""
    data = resources.files(__package__).joinpath("weights", file).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"the shipped checkpoint {file} does not match its SHA-256; reinstall "
                           f"unet-course (pip install --force-reinstall unet-course)")
    return read_checkpoint(io.BytesIO(data))


def _read(name: str, cache_dir: str | os.PathLike | None, download: bool) -> dict:
    """The checkpoint dictionary of ``name``, from the package, the cache or the release assets."""
    entry = _entry(name)
    if entry.get("shipped"):
        return _shipped(entry["file"], entry["sha256"])
    path = _cache_dir(cache_dir) / entry["file"]
    damaged = path.is_file() and sha256_of(path) != entry["sha256"]
    if download:
        try:  # returns at once when the cached file is there and verified
            download_file(weights_url(name), path, entry["sha256"])
        except DownloadError as error:
            if damaged:  # download_file's advice would be to place the file where a damaged one already is
                raise DownloadError(f"the cached {path} failed its SHA-256 check (damaged or incomplete), and a fresh "
                                    f"copy could not be fetched ({error.__cause__ or error}); delete it and try again "
                                    f"online, or download {entry['file']} elsewhere and copy it over the damaged one, "
                                    f"or use the shipped 'isbi2012-cpu'.") from None
            raise DownloadError(f"{error} Offline, download {entry['file']} elsewhere and copy it to {path}, "
                                f"or use the shipped 'isbi2012-cpu'.") from None
        except PermissionError as error:
            raise PermissionError(f"cannot write to the cache folder {path.parent} ({error.strerror}); set "
                                  f"{CACHE_VAR} or pass cache_dir= a folder you can write to") from None
    elif damaged:
        raise FileNotFoundError(f"the cached {path} failed its SHA-256 check (damaged or incomplete); delete it and "
                                f"call pretrained({name!r}, download=True), or copy an intact {weights_url(name)} there")
    elif not path.is_file():
        raise FileNotFoundError(f"{path} is missing; call pretrained({name!r}, download=True) or copy "
                                f"{weights_url(name)} there")
    return read_checkpoint(path)


def pretrained_config(name: str = "isbi2012-cpu", *, cache_dir: str | os.PathLike | None = None,
                      download: bool = True) -> dict:
    """The ``model.json`` of a published checkpoint: its shape, training tile, threshold and held-out figures."""
    return dict(_read(name, cache_dir, download)["config"])


def pretrained(name: str = "isbi2012-cpu", *, cache_dir: str | os.PathLike | None = None,
               download: bool = True) -> UNet:
    """A trained :class:`UNet`, ready in eval mode (fp32, on the CPU).

    Args:
        name: a key of :data:`PRETRAINED`. Default ``"isbi2012-cpu"``, shipped with the package.
        cache_dir: where downloaded checkpoints are kept. Default ``$UNET_COURSE_CACHE`` or
            ``~/.cache/unet_course``.
        download: fetch a missing checkpoint from the release assets. Default True.

    Raises:
        ValueError: unknown ``name``. DownloadError: offline and not cached (the message says
        where to put the file). ChecksumError: the download was corrupted; nothing is kept.

    Example:
        >>> model = pretrained("isbi2012-cpu")
        >>> model(torch.zeros(1, 1, 316, 316)).shape
        torch.Size([1, 2, 132, 132])

    The threshold to cut its probabilities at is ``pretrained_config(name)["threshold"]``.
    Chapter 7 evaluates it.
    """
    state = _read(name, cache_dir, download)
    model = model_from_config(state["config"])
    model.load_state_dict({key: value.float() for key, value in state["model"].items()})
    return model.eval()


def load_model(run: str | os.PathLike) -> tuple[UNet, dict]:
    """The trained :class:`UNet` (eval mode, on the CPU) and ``model.json`` of a run or of a published name.

    ``run`` is a run as :func:`~unet_course.runs.load_run` takes it (the ``--out`` folder of
    ``unet-course train``, or a ``.pt`` file with its ``.json`` beside it), or, where no such
    path exists, a key of :data:`PRETRAINED` such as ``"isbi2012-cpu"``. The command line's
    ``predict``, ``evaluate`` and ``export`` take their RUN through it.
    """
    if str(run) in PRETRAINED and not Path(run).exists():
        return pretrained(str(run)), pretrained_config(str(run))
    return load_run(run)


def pack_run(run: str | os.PathLike, out: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Turn a training run into one fp16 published checkpoint.

    ``run`` is the ``--out`` folder of ``unet-course train`` (``checkpoint.pt`` + ``model.json``)
    or a checkpoint file with its ``.json`` beside it, as chapter 6 writes.

    Writes ``out`` atomically and returns its SHA-256 (to record in :data:`PRETRAINED`). An
    existing ``out`` is replaced only with ``overwrite=True`` (else ``FileExistsError``).
    """
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    checkpoint, config_path = run_files(run)
    config = _published_config(read_config(config_path))
    state = read_checkpoint(checkpoint)
    weights = {key: value.half() for key, value in state["model"].items()}
    write_checkpoint(out, format=1, config=config, model=weights)
    return sha256_of(out)


def _published_config(config: dict) -> dict:
    """What a published checkpoint says of its run: no digest of the fp32 weights, no local paths.

    The fp16 weights carry their own digest (``model_sha256``); a ``data`` folder is kept by its
    name only, so a checkpoint never records where its trainer kept the images.
    """
    published = {key: value for key, value in config.items() if key != "weights_sha256"}
    if isinstance(published.get("data"), str) and Path(published["data"]).name != published["data"]:
        published["data"] = Path(published["data"]).name
    return published


def verify(folder: str | os.PathLike, names: Sequence[str] | None = None) -> list[str]:
    """Problems with the registry's files in ``folder`` (an empty list when all match their SHA-256)."""
    problems = []
    for name in names or sorted(PRETRAINED):
        path = Path(folder) / PRETRAINED[name]["file"]
        if not path.is_file():
            problems.append(f"{name}: {path} is missing")
        elif (found := sha256_of(path)) != PRETRAINED[name]["sha256"]:
            problems.append(f"{name}: {path} has SHA-256 {found}, the registry says {PRETRAINED[name]['sha256']}")
    return problems
