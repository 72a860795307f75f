"""CamVid tiny: 100 street scenes from Cambridge with 32-class labels, as fastai publishes them.

CamVid (Brostow et al., 2009) is video of driving through Cambridge, labelled per pixel
with 32 classes. fastai hosts a small subset (``camvid_tiny``, 2.3 MB) and publishes its
size and the MD5 of its first MiB; we check both with the same checksummed, atomic
download as ISBI 2012, then unpack it safely (``tarfile``'s ``"data"`` filter) into a
temporary folder that is renamed into place, so a half-extracted data set never exists.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from .download import download_file
from .images import load_image, read_image
from .roads import ROAD_CLASSES

__all__ = ["CamVidTiny", "CAMVID_TINY_URL", "CAMVID_TINY_SIZE_MD5", "CAMVID_TO_ROAD"]

CAMVID_TINY_URL = "https://s3.amazonaws.com/fast-ai-sample/camvid_tiny.tgz"
CAMVID_TINY_SIZE_MD5 = (2314212, "2cf6daf91b7a2083ecfa3e9968e9d915")  # fastai's checks.txt
FOLDER = "camvid_tiny"

# CamVid's class names (from the archive's codes.txt) folded into the five road classes.
# Every name not listed here — buildings, trees, poles, signs, pedestrians, Void — is
# "roadside": everything beside the road that a driver must not drive into.
CAMVID_TO_ROAD = {
    "Sky": "sky",
    "Road": "road",
    "RoadShoulder": "road",
    "LaneMkgsDriv": "lane marking",
    "LaneMkgsNonDriv": "lane marking",
    "Car": "vehicle",
    "SUVPickupTruck": "vehicle",
    "Truck_Bus": "vehicle",
    "Train": "vehicle",
    "OtherMoving": "vehicle",
    "MotorcycleScooter": "vehicle",
}


def _download_and_extract(root: Path) -> None:
    """Fetch the verified archive into ``root`` and unpack it to ``root / camvid_tiny``."""
    archive = download_file(CAMVID_TINY_URL, root / "camvid_tiny.tgz", size_md5=CAMVID_TINY_SIZE_MD5)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=".camvid_tiny."))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(staging, filter="data")  # refuses absolute paths, links out, devices
        if not (staging / FOLDER / "codes.txt").exists():
            raise ValueError(f"{archive} does not hold {FOLDER}/codes.txt: it is not the CamVid tiny archive.")
        os.replace(staging / FOLDER, root / FOLDER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class CamVidTiny(torch.utils.data.Dataset):
    """fastai's CamVid subset as ``(image (3, H, W) float32 in [0, 1], mask (H, W) int64)``.

    Args:
        root: folder that holds (or will hold) ``camvid_tiny/`` with ``codes.txt``,
            ``images/NAME.png`` and ``labels/NAME_P.png``.
        download: fetch and unpack the archive first if ``camvid_tiny/`` is missing. Default False.
        classes: ``"road"`` (default): the five :data:`ROAD_CLASSES` through
            :data:`CAMVID_TO_ROAD`; ``"camvid"``: CamVid's own class ids (the line numbers of ``codes.txt``).

    Raises:
        FileNotFoundError: the data is missing and ``download`` is False.
        DownloadError: ``download=True`` but the archive could not be fetched (offline).
        ChecksumError: the archive fetched is not the published one; nothing is kept.

    Example:
        >>> data = CamVidTiny("data/camvid", download=True)  # doctest: +SKIP
        >>> image, mask = data[0]; image.shape, mask.shape  # doctest: +SKIP
        (torch.Size([3, 96, 128]), torch.Size([96, 128]))

    Taught in chapter 8 (beyond biomedicine).
    """

    def __init__(self, root: str | os.PathLike, *, download: bool = False, classes: str = "road") -> None:
        if classes not in ("road", "camvid"):
            raise ValueError(f"classes must be 'road' (five classes) or 'camvid' (32 classes), got {classes!r}")
        self.root = Path(root)
        folder = self.root / FOLDER
        if not (folder / "codes.txt").exists():
            if not download:
                raise FileNotFoundError(
                    f"CamVid tiny is not in {folder}. Pass download=True to fetch it (2.3 MB), "
                    f"or unpack {CAMVID_TINY_URL} into {self.root}."
                )
            self.root.mkdir(parents=True, exist_ok=True)
            _download_and_extract(self.root)
        self.codes = [line.strip() for line in (folder / "codes.txt").read_text().splitlines() if line.strip()]
        if classes == "road":
            self.classes = ROAD_CLASSES
            road_ids = [ROAD_CLASSES.index(CAMVID_TO_ROAD.get(name, "roadside")) for name in self.codes]
            self.lookup = np.array(road_ids + [ROAD_CLASSES.index("roadside")] * (256 - len(road_ids)), dtype=np.int64)
        else:
            self.classes = tuple(self.codes)
            self.lookup = np.arange(256, dtype=np.int64)
        images = sorted(p for p in (folder / "images").iterdir() if p.suffix.lower() == ".png")
        self.pairs = [(path, folder / "labels" / f"{path.stem}_P{path.suffix}") for path in images]
        missing = [label.name for _, label in self.pairs if not label.exists()]
        if not images or missing:
            raise FileNotFoundError(
                f"{folder} is incomplete: {len(images)} images, labels missing for {missing[:5]}. "
                f"Delete the folder and load again with download=True."
            )

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.pairs[index]
        image = torch.from_numpy(load_image(image_path, channels=3))  # (3, H, W) in 0..1
        mask = self.lookup[read_image(label_path)]
        return image.contiguous(), torch.from_numpy(mask)
