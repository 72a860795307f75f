"""Data for the course: synthetic images (the offline default), ISBI 2012, your own folders."""

import os
from pathlib import Path

from .download import ChecksumError, DownloadError, download_file, sha256_of, size_and_md5_prefix
from .folder import ImageMaskFolder, read_image
from .isbi import ISBI2012
from .camvid import CAMVID_TO_ROAD, CamVidTiny
from .roads import ROAD_CLASSES, ROAD_COLORS, RoadSample, SyntheticRoads, synthetic_roads
from .synthetic import (
    CellsSample,
    MembranesSample,
    SyntheticCells,
    SyntheticMembranes,
    synthetic_cells,
    synthetic_membranes,
)



def data_root() -> Path:
    """Where data sets live: ``$UNET_COURSE_DATA`` if set, else ``./data``."""
    return Path(os.environ.get("UNET_COURSE_DATA", "data"))


__all__ = [
    "data_root",
    "ChecksumError",
    "DownloadError",
    "download_file",
    "sha256_of",
    "size_and_md5_prefix",
    "ImageMaskFolder",
    "read_image",
    "ISBI2012",
    "CamVidTiny",
    "CAMVID_TO_ROAD",
    "ROAD_CLASSES",
    "ROAD_COLORS",
    "RoadSample",
    "SyntheticRoads",
    "synthetic_roads",
    "CellsSample",
    "MembranesSample",
    "SyntheticCells",
    "SyntheticMembranes",
    "synthetic_cells",
    "synthetic_membranes",
]
