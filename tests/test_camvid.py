"""CamVid tiny: checksummed download, safe atomic extraction, pairing and class mapping.

No network: a tiny archive in the real layout is built in a temporary folder and served
through a ``file://`` address in place of fastai's.
"""

from __future__ import annotations

import io
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course.data import ChecksumError, DownloadError, size_and_md5_prefix
from unet_course.data import camvid
from unet_course.data.camvid import CamVidTiny

CODES = ["Animal", "Car", "LaneMkgsDriv", "Road", "Sky", "Tree", "Void"]  # a subset, in codes.txt order


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


@pytest.fixture
def archive(tmp_path, monkeypatch):
    """A two-scene camvid_tiny.tgz served by file:// with its own size and MD5 prefix."""
    rng = np.random.default_rng(0)
    path = tmp_path / "served" / "camvid_tiny.tgz"
    path.parent.mkdir()
    labels = {}
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "camvid_tiny/codes.txt", ("\n".join(CODES) + "\n").encode())
        for name in ("0001TP_006690", "Seq05VD_f00120"):
            image = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
            labels[name] = rng.integers(0, len(CODES), (12, 16), dtype=np.uint8)
            _add(tar, f"camvid_tiny/images/{name}.png", _png(image))
            _add(tar, f"camvid_tiny/labels/{name}_P.png", _png(labels[name]))
    monkeypatch.setattr(camvid, "CAMVID_TINY_URL", path.as_uri())
    monkeypatch.setattr(camvid, "CAMVID_TINY_SIZE_MD5", size_and_md5_prefix(path))
    return labels


def test_download_extracts_pairs_and_maps_classes(tmp_path, archive):
    root = tmp_path / "data"
    data = CamVidTiny(root, download=True)
    assert len(data) == 2 and (root / "camvid_tiny" / "codes.txt").exists()
    assert [p.name for p, _ in data.pairs] == ["0001TP_006690.png", "Seq05VD_f00120.png"]
    assert [l.name for _, l in data.pairs] == ["0001TP_006690_P.png", "Seq05VD_f00120_P.png"]
    image, mask = data[1]
    assert image.shape == (3, 12, 16) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert mask.shape == (12, 16) and mask.dtype == torch.int64
    # Animal, Tree and Void are roadside (4); Car vehicle (3); LaneMkgsDriv marking (2); Road 1; Sky 0
    expected = np.array([4, 3, 2, 1, 0, 4, 4])[archive["Seq05VD_f00120"]]
    np.testing.assert_array_equal(mask.numpy(), expected)
    raw = CamVidTiny(root, classes="camvid")  # already there: no download needed
    np.testing.assert_array_equal(raw[1][1].numpy(), archive["Seq05VD_f00120"])
    assert raw.classes == tuple(CODES)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_checksum_mismatch_keeps_nothing(tmp_path, archive, monkeypatch):
    monkeypatch.setattr(camvid, "CAMVID_TINY_SIZE_MD5", (2314212, "2cf6daf91b7a2083ecfa3e9968e9d915"))
    root = tmp_path / "data"
    with pytest.raises(ChecksumError):
        CamVidTiny(root, download=True)
    assert list(root.iterdir()) == []


def test_offline_raises_download_error_and_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(camvid, "CAMVID_TINY_URL", "http://127.0.0.1:9/camvid_tiny.tgz")
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="127.0.0.1:9"):
        CamVidTiny(root, download=True)
    assert list(root.iterdir()) == []


def test_missing_without_download_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        CamVidTiny(tmp_path)


def test_unsafe_archive_member_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "evil.tgz"
    with tarfile.open(path, "w:gz") as tar:
        _add(tar, "camvid_tiny/codes.txt", b"Road\n")
        _add(tar, "../escaped.txt", b"outside")
    monkeypatch.setattr(camvid, "CAMVID_TINY_URL", path.as_uri())
    monkeypatch.setattr(camvid, "CAMVID_TINY_SIZE_MD5", size_and_md5_prefix(path))
    root = tmp_path / "data"
    with pytest.raises(tarfile.TarError):
        CamVidTiny(root, download=True)
    assert not (tmp_path / "escaped.txt").exists() and not (root / "camvid_tiny").exists()


def test_unknown_classes_option_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'road'"):
        CamVidTiny(tmp_path, classes="cityscapes")
