"""Published checkpoints: packed from a run, fetched through a mirror, verified, cached, shipped."""

import shutil

import pytest
import torch
import yaml

import unet_course
from unet_course.data import ChecksumError, DownloadError
from unet_course.hub import PRETRAINED, REPOSITORY_URL, pack_run, pretrained, pretrained_config, weights_url
from unet_course.publish import main

from conftest import ROOT


def test_download_through_a_mirror_gives_the_packed_model(published, tmp_path):
    model, mirror, _ = published
    loaded = pretrained("tiny")
    assert (tmp_path / "cache" / "tiny.pt").is_file()
    assert not loaded.training
    image = torch.rand(1, 1, 60, 60)
    # fp16 storage: the weights are rounded to 11 significant bits, the outputs agree closely
    assert torch.allclose(loaded(image), model.eval()(image), atol=1e-2)
    assert pretrained_config("tiny")["threshold"] == 0.65
    (mirror / "tiny.pt").unlink()  # the cache answers now: no second download
    assert torch.equal(pretrained("tiny").contracting[0][0].weight, loaded.contracting[0][0].weight)


def test_a_corrupted_download_is_not_kept(published, tmp_path):
    _, mirror, _ = published
    (mirror / "tiny.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ChecksumError, match="not kept"):
        pretrained("tiny")
    assert not (tmp_path / "cache" / "tiny.pt").exists()


def test_offline_says_where_to_put_the_file(published, tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_COURSE_WEIGHTS_URL", (tmp_path / "nowhere").as_uri())
    with pytest.raises(DownloadError, match="copy it to .*tiny.pt"):
        pretrained("tiny")
    with pytest.raises(FileNotFoundError, match="download=True"):
        pretrained("tiny", download=False)
    with pytest.raises(ValueError, match="available: .*isbi2012-cpu"):
        pretrained("no-such-model")


def test_release_address_is_built_from_the_book_config(monkeypatch):
    monkeypatch.delenv("UNET_COURSE_WEIGHTS_URL", raising=False)
    repository = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert REPOSITORY_URL == repository
    assert weights_url("isbi2012-cpu") == (f"{repository}/releases/download/v{unet_course.__version__}/"
                                           f"{PRETRAINED['isbi2012-cpu']['file']}")


def test_verify_checks_every_registry_file(published, tmp_path, capsys):
    _, mirror, _ = published
    folder = tmp_path / "assets"
    folder.mkdir()
    assert main(["verify", str(folder)]) == 1
    assert "missing" in capsys.readouterr().err
    for name, entry in PRETRAINED.items():
        source = mirror / entry["file"] if name == "tiny" else ROOT / "unet_course" / "weights" / entry["file"]
        shutil.copy(source, folder / entry["file"])
    assert main(["verify", str(folder)]) == 0
    (folder / "tiny.pt").write_bytes(b"changed")
    assert main(["verify", str(folder)]) == 1
    assert "SHA-256" in capsys.readouterr().err


def test_the_shipped_checkpoint_loads_offline_and_segments_isbi(isbi_root, monkeypatch):
    """No address is reachable, yet the cpu-budget model loads and beats the all-interior answer."""
    from unet_course import ISBI2012, predict_tiled
    from unet_course.metrics import pixel_error, rand_error

    monkeypatch.setenv("UNET_COURSE_WEIGHTS_URL", "file:///nonexistent")
    model = pretrained("isbi2012-cpu")
    config = pretrained_config("isbi2012-cpu")
    assert 0 < config["threshold"] < 1 and config["base_channels"] == model.base_channels
    image, mask = ISBI2012(isbi_root, indices=[29])[0]
    probability = predict_tiled(model, image)[1]
    all_interior = pixel_error(torch.ones_like(mask), mask)
    assert pixel_error(probability, mask, threshold=config["threshold"]) < 0.75 * all_interior
    assert rand_error(probability, mask, threshold=config["threshold"]) < 0.5  # the all-interior answer: about 0.9


def test_the_use_page_example_segments_a_slice_offline(isbi_root, monkeypatch):
    import re

    page = (ROOT / "book" / "use_in_your_project.md").read_text()
    code = re.search(r"```python\n(.*?)```", page.split("## Use a trained network", 1)[1], re.S).group(1)
    assert '"data/isbi2012"' in code
    monkeypatch.setenv("UNET_COURSE_WEIGHTS_URL", "file:///nonexistent")
    namespace: dict = {}
    exec(compile(code.replace('"data/isbi2012"', repr(str(isbi_root))), "use_in_your_project.md", "exec"), namespace)
    interior = namespace["interior"]
    assert interior.shape == (512, 512) and interior.dtype == torch.bool
    assert 0.5 < interior.float().mean() < 0.95  # mostly cell interior, as ISBI slices are


def test_pack_replaces_a_checkpoint_only_when_asked(published, tmp_path, capsys):
    _, mirror, digest = published
    run = tmp_path / "run"
    assert main(["pack", str(run), str(mirror / "tiny.pt")]) == 2
    assert "exists; pass overwrite=True (--overwrite)" in capsys.readouterr().err
    (mirror / "tiny.pt").write_bytes(b"an older file")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        pack_run(run, mirror / "tiny.pt")
    assert (mirror / "tiny.pt").read_bytes() == b"an older file"
    assert main(["pack", str(run), str(mirror / "tiny.pt"), "--overwrite"]) == 0
    assert (mirror / "tiny.pt").read_bytes() != b"an older file" and digest in capsys.readouterr().out


def test_the_cache_messages_name_the_file_the_setting_and_the_fix(published, tmp_path, monkeypatch):
    import unet_course.files

    pretrained("tiny")
    cached = tmp_path / "cache" / "tiny.pt"
    cached.write_bytes(cached.read_bytes()[:-10])  # a damaged copy where the file belongs
    with pytest.raises(FileNotFoundError, match=r"the cached .*tiny\.pt failed its SHA-256 check \(damaged or "
                                                r"incomplete\); delete it and call pretrained\('tiny', download=True\)"):
        pretrained("tiny", download=False)
    monkeypatch.setenv("UNET_COURSE_WEIGHTS_URL", (tmp_path / "offline").as_uri())
    with pytest.raises(DownloadError, match=r"^the cached .*tiny\.pt failed its SHA-256 check \(damaged or "
                                            r"incomplete\), and a fresh copy could not be fetched \(<urlopen error "
                                            r".*\); delete it .*copy it over the damaged one"):
        pretrained("tiny")  # the reason shown is the network's, not the whole advice of download_file
    cached.unlink()
    with pytest.raises(FileNotFoundError, match=r"tiny\.pt is missing; call pretrained\('tiny', download=True\)"):
        pretrained("tiny", download=False)

    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("UNET_COURSE_CACHE", str(tmp_path / "a-file"))
    with pytest.raises(ValueError, match=r"^\$UNET_COURSE_CACHE=.*a-file: .*a-file is a file, not a folder; point "
                                         r"UNET_COURSE_CACHE or cache_dir at a folder"):
        pretrained("tiny")
    with pytest.raises(ValueError, match=r"^cache_dir='.*a-file/sub': .*a-file is a file"):
        pretrained("tiny", cache_dir=tmp_path / "a-file" / "sub")

    def read_only(*args, **kwargs):  # what a cache folder without write permission does (tests may run as root)
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro" / ".tiny.pt.x.part"))

    monkeypatch.setattr(unet_course.files.tempfile, "mkstemp", read_only)
    with pytest.raises(PermissionError, match=r"^cannot write to the cache folder .*ro \(Permission denied\); set "
                                              r"UNET_COURSE_CACHE or pass cache_dir= a folder you can write to$"):
        pretrained("tiny", cache_dir=tmp_path / "ro")


def test_a_model_too_large_for_the_machine_is_refused_before_it_is_built():
    from unet_course.runs import model_from_config
    from unet_course.sizes import check_model_size

    assert check_model_size({"base_channels": 64, "depth": 4}) == 31_030_658
    with pytest.raises(ValueError, match=r"^model.json: UNet\(base_channels=1000000, depth=2\) has 4\.\d+e\+14 "
                                         r"parameters, .*more than this machine's"):
        check_model_size({"base_channels": 1_000_000, "depth": 2}, what="model.json")
    with pytest.raises(ValueError, match=r"UNet\(base_channels=64, depth=40\)"):
        model_from_config({"base_channels": 64, "depth": 40})
