"""ISBI 2012 loader, checksummed downloads and the image/mask folder dataset."""

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course.data import ISBI2012, ChecksumError, DownloadError, ImageMaskFolder, download_file, sha256_of
from unet_course.data import isbi as isbi_module


def test_isbi_loads_the_real_slices(isbi_root):
    data = ISBI2012(isbi_root)
    assert len(data) == 30
    image, mask = data[0]
    assert image.shape == (1, 512, 512) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert mask.shape == (512, 512) and set(mask.unique().tolist()) == {0, 1}
    assert 0.7 < data.masks.mean() < 0.85  # mostly cell interior, thin membranes


def test_isbi_subset(isbi_root):
    held_out = ISBI2012(isbi_root, indices=range(25, 30))
    assert len(held_out) == 5
    assert np.array_equal(held_out.images[0], ISBI2012(isbi_root, indices=[25]).images[0])
    with pytest.raises(ValueError, match="slices 0..29"):
        ISBI2012(isbi_root, indices=[30])


def test_isbi_rejects_a_corrupted_copy(isbi_root, tmp_path):
    copy = tmp_path / "isbi2012"
    shutil.copytree(isbi_root, copy)
    with open(copy / "label" / "7.png", "r+b") as file:
        file.seek(100)
        file.write(b"\x00\x01\x02")
    with pytest.raises(ChecksumError, match=r"label/7\.png.*corrupted"):
        ISBI2012(copy)


def test_isbi_missing_file_says_how_to_fix(isbi_root, tmp_path):
    copy = tmp_path / "isbi2012"
    shutil.copytree(isbi_root, copy)
    (copy / "image" / "3.png").unlink()
    with pytest.raises(FileNotFoundError, match="download=True"):
        ISBI2012(copy)


def test_isbi_download_from_a_mirror(isbi_root, tmp_path, monkeypatch):
    """download=True fetches every file through the checksummed path (here from a local mirror)."""
    monkeypatch.delenv("UNET_COURSE_DATA_MIRROR", raising=False)
    monkeypatch.setattr(isbi_module, "ISBI2012_URL", isbi_root.as_uri() + "/{path}")
    data = ISBI2012(tmp_path / "fresh", download=True, indices=[0, 1])
    assert len(data) == 2
    assert sha256_of(tmp_path / "fresh" / "image" / "1.png") == sha256_of(isbi_root / "image" / "1.png")


def test_isbi_download_fetches_every_missing_slice(isbi_root, tmp_path, monkeypatch):
    """A folder holding some slices is completed, whichever indices the first load keeps."""
    monkeypatch.setenv("UNET_COURSE_DATA_MIRROR", isbi_root.parent.as_uri())
    partial = tmp_path / "isbi2012"
    shutil.copytree(isbi_root, partial)
    for i in range(20, 30):
        (partial / "image" / f"{i}.png").unlink()
    (partial / "label" / "3.png").write_bytes(b"truncated")
    train = ISBI2012(partial, download=True, indices=range(25))
    held_out = ISBI2012(partial, indices=range(25, 30))  # no download: the first load fetched these too
    assert len(train) == 25 and len(held_out) == 5
    assert sha256_of(partial / "label" / "3.png") == sha256_of(isbi_root / "label" / "3.png")


def test_isbi_mirror_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("UNET_COURSE_DATA_MIRROR", raising=False)
    assert isbi_module.isbi2012_url("image/4.png") == isbi_module.ISBI2012_URL.format(path="image/4.png")
    assert isbi_module.isbi2012_url("image/4.png").startswith("https://raw.githubusercontent.com/")
    monkeypatch.setenv("UNET_COURSE_DATA_MIRROR", "file:///srv/data/")
    assert isbi_module.isbi2012_url("label/4.png") == "file:///srv/data/isbi2012/label/4.png"


def test_isbi_offline_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("UNET_COURSE_DATA_MIRROR", raising=False)
    monkeypatch.setattr(isbi_module, "ISBI2012_URL", "http://127.0.0.1:9/{path}")
    with pytest.raises(DownloadError, match="needs the network once") as raised:
        ISBI2012(tmp_path / "isbi", download=True, indices=[0])
    assert not (tmp_path / "isbi").exists()  # nothing partial left, not even empty folders
    message = str(raised.value)  # what to do: the whole folder, fetched in one command elsewhere, or a mirror
    assert "60 files" in message and "image/0.png" in message and str(tmp_path / "isbi") in message
    assert "ISBI2012('isbi2012', download=True)" in message and "UNET_COURSE_DATA_MIRROR" in message
    assert "127.0.0.1:9" in message  # the address that failed


def test_checksums_in_the_library_match_the_files(isbi_root):
    listed = dict(reversed(line.split()) for line in (isbi_root / "SHA256SUMS").read_text().splitlines())
    assert listed == isbi_module.ISBI2012_SHA256


def _serve(tmp_path: Path, payload: bytes) -> tuple[str, str]:
    source = tmp_path / "source.bin"
    source.write_bytes(payload)
    return source.as_uri(), hashlib.sha256(payload).hexdigest()


def test_download_writes_and_verifies(tmp_path):
    url, digest = _serve(tmp_path, b"x" * 200_000)
    target = download_file(url, tmp_path / "out" / "file.bin", digest)
    assert target.read_bytes() == b"x" * 200_000
    assert list((tmp_path / "out").iterdir()) == [target]  # no temporary left behind


def test_download_rejects_a_wrong_checksum_and_keeps_nothing(tmp_path):
    url, _ = _serve(tmp_path, b"corrupted bytes")
    with pytest.raises(ChecksumError, match="file.bin.*was not kept"):
        download_file(url, tmp_path / "out" / "file.bin", "0" * 64)
    assert not (tmp_path / "out").exists()  # neither the file nor the folder made for it


def test_download_replaces_a_corrupted_existing_file(tmp_path):
    url, digest = _serve(tmp_path, b"good bytes")
    target = tmp_path / "file.bin"
    target.write_bytes(b"bad")
    download_file(url, target, digest)
    assert target.read_bytes() == b"good bytes"


def test_download_of_a_missing_address(tmp_path):
    with pytest.raises(DownloadError, match="missing.bin"):
        download_file((tmp_path / "missing.bin").as_uri(), tmp_path / "out.bin", "0" * 64)
    assert not (tmp_path / "out.bin").exists()


def _write_pairs(tmp_path: Path, names, size=(20, 16), mask_size=None) -> tuple[Path, Path]:
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(exist_ok=True)
    masks.mkdir(exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        Image.fromarray(rng.integers(0, 256, size[::-1], dtype=np.uint8)).save(images / f"{name}.png")
        mask = (rng.random((mask_size or size)[::-1]) > 0.5).astype(np.uint8) * 255
        Image.fromarray(mask).save(masks / f"{name}.tif")
    return images, masks


def test_folder_pairs_by_name(tmp_path):
    images, masks = _write_pairs(tmp_path, ["b", "a"])
    data = ImageMaskFolder(images, masks)
    assert [p[0].stem for p in data.pairs] == ["a", "b"]
    image, mask = data[0]
    assert image.shape == (1, 16, 20) and mask.shape == (16, 20)
    assert set(mask.unique().tolist()) <= {0, 1}  # 0/255 masks become 0/1


def test_folder_rgb(tmp_path):
    images, masks = _write_pairs(tmp_path, ["a"])
    assert ImageMaskFolder(images, masks, grayscale=False)[0][0].shape == (3, 16, 20)


def test_folder_unmatched_names(tmp_path):
    images, masks = _write_pairs(tmp_path, ["a", "b"])
    (masks / "b.tif").unlink()
    with pytest.raises(ValueError, match="no partner: b"):
        ImageMaskFolder(images, masks)


def test_folder_size_mismatch(tmp_path):
    images, masks = _write_pairs(tmp_path, ["a"], mask_size=(10, 10))
    with pytest.raises(ValueError, match="must be the same size"):
        ImageMaskFolder(images, masks)[0]


def test_folder_unreadable_image(tmp_path):
    images, masks = _write_pairs(tmp_path, ["a"])
    (images / "a.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="Cannot read .*a.png"):
        ImageMaskFolder(images, masks)[0]


def test_folder_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        ImageMaskFolder(tmp_path / "nope", tmp_path)


def test_download_with_size_and_md5_of_the_first_mib(tmp_path):
    payload = bytes(range(256)) * 5000  # 1.28 MB: the check reads only the first MiB
    url, _ = _serve(tmp_path, payload)
    expected = (len(payload), hashlib.md5(payload[: 1 << 20]).hexdigest())
    assert download_file(url, tmp_path / "a.tgz", size_md5=expected).read_bytes() == payload
    with pytest.raises(ChecksumError, match="size 1280000"):
        download_file(url, tmp_path / "b.tgz", size_md5=(len(payload) + 1, expected[1]))
    assert not (tmp_path / "b.tgz").exists()
    with pytest.raises(ValueError, match="exactly one checksum"):
        download_file(url, tmp_path / "c.tgz")
