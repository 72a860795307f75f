"""The security paths, line by line: checksums, atomic writes, the published-checkpoint registry, safe loading.

Written so that changing any comparison, default or message of these paths fails a test
(``make mutation`` measures it): a file is kept only when its checksum matches, nothing is
left half-written, and nothing is loaded with code in it.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import urllib.request
from pathlib import Path

import pytest
import torch

from unet_course import UNet
from unet_course.data.download import (CHUNK, MIB, ChecksumError, DownloadError, atomic_file, download_file,
                                       sha256_of, size_and_md5_prefix)
from unet_course.hub import PRETRAINED, pack_run, pretrained, pretrained_config, verify, weights_url
from unet_course.runs import (RunError, load_parameters, load_run, model_from_config, read_checkpoint, weights_sha256,
                              write_checkpoint)

from conftest import PUBLISHED_CONFIG, tiny_unet


# --- atomic writes -----------------------------------------------------------------------------------------------

def test_atomic_file_writes_all_at_once(tmp_path):
    path = tmp_path / "a" / "b" / "file.bin"
    with atomic_file(path) as (file, temporary):
        file.write(b"data")
        assert temporary.parent == path.parent and temporary.name.startswith(".file.bin.")
        assert temporary.name.endswith(".part") and not path.exists()
    assert path.read_bytes() == b"data" and sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]


def test_atomic_file_leaves_the_old_file_and_no_new_folders_when_the_block_fails(tmp_path):
    path = tmp_path / "kept.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyError):
        with atomic_file(path) as (file, _):
            file.write(b"new")
            raise KeyError("stop")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["kept.bin"]
    deep = tmp_path / "x" / "y" / "z.bin"
    with pytest.raises(KeyError):
        with atomic_file(deep) as (file, _):
            raise KeyError("stop")
    assert not (tmp_path / "x").exists()  # the folders it made are gone again
    (tmp_path / "there").mkdir()
    with pytest.raises(KeyError):
        with atomic_file(tmp_path / "there" / "f.bin") as (file, _):
            raise KeyError("stop")
    assert (tmp_path / "there").is_dir()  # a folder that was there stays


# --- checksums ---------------------------------------------------------------------------------------------------

def test_sha256_of_reads_the_whole_file_in_chunks(tmp_path):
    payload = bytes(range(256)) * (3 * CHUNK // 256 + 7)  # more than three chunks, not a whole number of them
    (tmp_path / "f").write_bytes(payload)
    assert sha256_of(tmp_path / "f") == hashlib.sha256(payload).hexdigest()
    assert (CHUNK, MIB) == (1 << 16, 1 << 20)


def test_size_and_md5_prefix_hashes_the_first_mib_only(tmp_path):
    payload = b"a" * MIB + b"tail"
    (tmp_path / "f").write_bytes(payload)
    assert size_and_md5_prefix(tmp_path / "f") == (MIB + 4, hashlib.md5(b"a" * MIB).hexdigest())


def _served(tmp_path: Path, payload: bytes) -> str:
    source = tmp_path / "served.bin"
    source.write_bytes(payload)
    return source.as_uri()


def test_download_needs_exactly_one_checksum(tmp_path):
    url = _served(tmp_path, b"x")
    for kwargs in ({}, {"sha256": "0" * 64, "size_md5": (1, "0")}):
        with pytest.raises(ValueError, match=r"^give exactly one checksum: sha256='…' or size_md5=\(size, 'md5 of "
                                             r"first MiB'\)$"):
            download_file(url, tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


class _Reads:
    """Records the size of every read: files are streamed, never read whole into memory."""

    def __init__(self, payload: bytes, sizes: list):
        self.stream, self.sizes = io.BytesIO(payload), sizes

    def read(self, size=-1):
        self.sizes.append(size)
        return self.stream.read(size)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_downloads_and_hashes_are_streamed_in_chunks(tmp_path, monkeypatch):
    import unet_course.data.download as download

    payload = bytes(range(256)) * (2 * CHUNK // 256 + 1)
    digest = hashlib.sha256(payload).hexdigest()
    fetched, hashed = [], []
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _Reads(payload, fetched))
    monkeypatch.setattr(download, "open", lambda path, mode: _Reads(Path(path).read_bytes(), hashed), raising=False)
    download_file("https://example.invalid/f.bin", tmp_path / "f.bin", digest)
    assert (tmp_path / "f.bin").read_bytes() == payload
    assert fetched and set(fetched) == {CHUNK} and hashed and set(hashed) == {CHUNK}


def test_a_verified_file_is_not_fetched_again_and_a_wrong_one_is(tmp_path, monkeypatch):
    payload = b"payload"
    digest = hashlib.sha256(payload).hexdigest()
    target = tmp_path / "cached.bin"
    target.write_bytes(payload)
    assert download_file((tmp_path / "nowhere").as_uri(), target, digest) == target  # no fetch happened
    size_md5 = (len(payload), hashlib.md5(payload).hexdigest())
    assert download_file((tmp_path / "nowhere").as_uri(), target, size_md5=size_md5) == target
    target.write_bytes(b"tampered")
    assert download_file(_served(tmp_path, payload), target, digest).read_bytes() == payload


def test_a_mismatch_names_what_was_measured_and_keeps_nothing(tmp_path):
    url = _served(tmp_path, b"payload")
    found = hashlib.sha256(b"payload").hexdigest()
    with pytest.raises(ChecksumError) as raised:
        download_file(url, tmp_path / "out" / "f.bin", "0" * 64)
    assert str(raised.value) == (f"f.bin downloaded from {url} has SHA-256 {found}, expected {'0' * 64}: the file was "
                                 f"corrupted or changed, and was not kept. Try again.")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ChecksumError, match=r"has size 7 and MD5 [0-9a-f]{32}, expected \(8, 'abc'\)"):
        download_file(url, tmp_path / "g.bin", size_md5=(8, "abc"))
    assert not (tmp_path / "g.bin").exists()


def test_an_unreachable_address_says_where_to_put_the_file(tmp_path, monkeypatch):
    seen = {}

    def refuse(url, timeout):
        seen.update(url=url, timeout=timeout)
        raise OSError("refused")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DownloadError) as raised:
        download_file("https://example.invalid/f.bin", tmp_path / "f.bin", "0" * 64)
    assert str(raised.value) == ("Could not download https://example.invalid/f.bin (refused). Check your network "
                                 f"connection, or place the file at {tmp_path / 'f.bin'} yourself and load with "
                                 f"download=False.")
    assert seen == {"url": "https://example.invalid/f.bin", "timeout": 60.0}
    assert not (tmp_path / "f.bin").exists()


# --- the registry of published checkpoints -------------------------------------------------------------------------

def test_pack_run_stores_the_description_and_fp16_weights(published):
    model, mirror, digest = published
    assert digest == sha256_of(mirror / "tiny.pt")
    state = torch.load(mirror / "tiny.pt", weights_only=True)
    assert state["format"] == 1 and state["config"] == PUBLISHED_CONFIG
    assert all(value.dtype == torch.float16 for value in state["model"].values())
    assert torch.equal(state["model"]["head.weight"], model.state_dict()["head.weight"].half())


def test_pack_run_keeps_no_fp32_digest_and_no_local_path(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    model = tiny_unet()
    write_checkpoint(run / "checkpoint.pt", model=model.state_dict(), step=3)
    folder = tmp_path / "home" / "someone" / "my-cells"
    config = PUBLISHED_CONFIG | {"data": str(folder), "weights_sha256": weights_sha256(model.state_dict())}
    (run / "model.json").write_text(json.dumps(config))
    pack_run(run, tmp_path / "packed.pt")
    state = torch.load(tmp_path / "packed.pt", weights_only=True)
    assert state["config"] == PUBLISHED_CONFIG | {"data": "my-cells"}
    assert state["model_sha256"] == weights_sha256(state["model"])  # the fp16 weights' own digest
    (run / "model.json").write_text(json.dumps(PUBLISHED_CONFIG | {"data": "isbi2012"}))  # a named set stays
    pack_run(run, tmp_path / "packed.pt", overwrite=True)
    assert torch.load(tmp_path / "packed.pt", weights_only=True)["config"]["data"] == "isbi2012"


def test_the_mirror_address_and_cache_come_from_the_environment(published, tmp_path, monkeypatch):
    _, mirror, _ = published
    assert weights_url("tiny") == mirror.as_uri() + "/tiny.pt"
    monkeypatch.setenv("UNET_COURSE_WEIGHTS_URL", mirror.as_uri() + "/")
    assert weights_url("tiny") == mirror.as_uri() + "/tiny.pt"  # one slash, whatever the variable ends with
    model = pretrained("tiny")
    assert (tmp_path / "cache" / "tiny.pt").is_file() and not model.training
    assert next(model.parameters()).dtype == torch.float32
    assert pretrained_config("tiny") == PUBLISHED_CONFIG
    pretrained_config("tiny")["threshold"] = 0.9  # a copy: the next call is unchanged
    assert pretrained_config("tiny")["threshold"] == 0.65
    monkeypatch.delenv("UNET_COURSE_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    pretrained("tiny")
    assert (tmp_path / "home" / ".cache" / "unet_course" / "tiny.pt").is_file()
    other = tmp_path / "elsewhere"
    pretrained("tiny", cache_dir=other)
    assert (other / "tiny.pt").is_file()


def test_a_failed_download_says_where_to_copy_the_file(published, tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_COURSE_WEIGHTS_URL", (tmp_path / "nowhere").as_uri())
    with pytest.raises(DownloadError, match=r"Offline, download tiny\.pt elsewhere and copy it to .*cache/tiny\.pt, "
                                            r"or use the shipped 'isbi2012-cpu'\.$"):
        pretrained("tiny")
    with pytest.raises(FileNotFoundError, match=r"tiny\.pt is missing; call pretrained\('tiny', download=True\) or "
                                                r"copy .*nowhere/tiny\.pt there"):
        pretrained("tiny", download=False)


def test_a_shipped_checkpoint_is_checked_against_its_sha256(monkeypatch):
    shipped = PRETRAINED["isbi2012-cpu"]
    assert shipped["shipped"] is True
    monkeypatch.setitem(PRETRAINED, "altered", dict(shipped, sha256="0" * 64))
    with pytest.raises(RuntimeError, match=r"the shipped checkpoint unet_isbi2012_cpu\.pt does not match its SHA-256; "
                                           r"reinstall unet-course"):
        pretrained("altered")
    with pytest.raises(ValueError, match=r"^no pretrained model 'nope'; available: altered, isbi2012-cpu$"):
        pretrained("nope")


def test_verify_lists_each_missing_or_changed_file(published, tmp_path):
    _, mirror, digest = published
    assert verify(mirror, ["tiny"]) == []
    (mirror / "tiny.pt").write_bytes(b"changed")
    found = hashlib.sha256(b"changed").hexdigest()
    assert verify(mirror, ["tiny"]) == [f"tiny: {mirror / 'tiny.pt'} has SHA-256 {found}, the registry says {digest}"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert verify(empty, ["tiny"]) == [f"tiny: {empty / 'tiny.pt'} is missing"]
    assert len(verify(empty)) == len(PRETRAINED)  # every registry name by default


def test_pack_run_refuses_to_replace_unless_told(published, tmp_path):
    _, mirror, digest = published
    (mirror / "tiny.pt").write_bytes(b"older")
    with pytest.raises(FileExistsError, match=r"tiny\.pt exists; pass overwrite=True \(--overwrite\) to replace it"):
        pack_run(tmp_path / "run", mirror / "tiny.pt")
    assert (mirror / "tiny.pt").read_bytes() == b"older"
    assert pack_run(tmp_path / "run", mirror / "tiny.pt", overwrite=True) == digest


# --- loading only weights ------------------------------------------------------------------------------------------

def test_load_checkpoint_loads_tensors_and_refuses_code(tmp_path):
    path = tmp_path / "c.pt"
    write_checkpoint(path, model={"w": torch.arange(3.0)}, step=2)
    state = read_checkpoint(path, map_location="cpu")
    assert state["step"] == 2 and torch.equal(state["model"]["w"], torch.arange(3.0))
    buffer = io.BytesIO()
    torch.save({"hook": print}, buffer)
    (tmp_path / "code.pt").write_bytes(buffer.getvalue())
    with pytest.raises(RunError) as raised:
        read_checkpoint(tmp_path / "code.pt")
    assert str(raised.value).startswith(f"the checkpoint {tmp_path / 'code.pt'} holds Python objects besides "
                                        "tensors and numbers")
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    with pytest.raises(FileNotFoundError, match=r"^No checkpoint at .*absent\.pt\. Train with fit\(\.\.\., "
                                                r"checkpoint='.*absent\.pt'\) first\.$"):
        read_checkpoint(tmp_path / "absent.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(RunError, match="the file is damaged or incomplete"):
        read_checkpoint(tmp_path / "empty.pt")
    with open(tmp_path / "pickled.pt", "wb") as file:
        pickle.dump({"step": 1}, file, protocol=2)  # plain pickle, not torch's format
    with pytest.raises(RunError):
        read_checkpoint(tmp_path / "pickled.pt")


def test_run_files_refuse_diverged_or_foreign_weights(tmp_path):
    model = tiny_unet()
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.json").write_text(json.dumps({"base_channels": 4, "depth": 2}))
    broken = model.state_dict()
    broken["head.weight"] = broken["head.weight"].clone()
    broken["head.weight"][0, 0, 0, 0] = float("inf")
    write_checkpoint(run / "checkpoint.pt", model=broken)
    with pytest.raises(RunError, match="holds NaN or infinite weights"):
        load_run(run)
    with pytest.raises(RunError, match=r"does not fit the model in .*model\.json \(.*\); keep each checkpoint"):
        load_parameters(UNet(base_channels=8, depth=2), {"model": model.state_dict()}, run / "checkpoint.pt",
                     run / "model.json")
    load_parameters(fresh := UNet(base_channels=4, depth=2), model.state_dict(), run / "checkpoint.pt", run / "model.json")
    assert torch.equal(fresh.head.weight, model.head.weight)  # a bare state dict loads as well
    torch.save([1, 2], run / "list.pt")
    with pytest.raises(RunError, match=r"holds no state dict: it is not a checkpoint of `unet-course train`"):
        read_checkpoint(run / "list.pt")
    rebuilt = model_from_config({"base_channels": 4, "depth": 2})
    assert (rebuilt.in_channels, rebuilt.num_classes, rebuilt.padding) == (1, 2, "valid")


class _Payload:
    """An object whose unpickling would run code; only a loader without weights_only builds it."""

    def __reduce__(self):
        return (print, ("unpickled",))


def _code_checkpoint(path: Path) -> str:
    torch.save({"format": 1, "config": {"base_channels": 4, "depth": 2}, "model": {}, "hook": _Payload()}, path)
    return sha256_of(path)


def test_read_checkpoint_names_the_file_it_refuses_and_a_stream_as_the_checkpoint(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(RunError) as raised:
        read_checkpoint(tmp_path / "list.pt")
    assert str(raised.value) == (f"the checkpoint {tmp_path / 'list.pt'} holds no state dict: it is not a checkpoint "
                                 "of `unet-course train`; train again")
    write_checkpoint(tmp_path / "c.pt", model={"w": torch.arange(3.0)})
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    state["model"]["w"][0] = 7.0  # the weights change, the digest written with them does not
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(RunError) as raised:
        read_checkpoint(tmp_path / "c.pt")
    assert str(raised.value).startswith(f"the checkpoint {tmp_path / 'c.pt'} is damaged: its weights do not match")
    with pytest.raises(RunError) as raised:
        read_checkpoint(io.BytesIO(b"not a checkpoint"))
    assert str(raised.value).startswith("the checkpoint holds Python objects besides tensors and numbers")
    with pytest.raises(RunError) as raised:
        read_checkpoint(io.BytesIO((tmp_path / "c.pt").read_bytes()[:100]))
    assert str(raised.value).startswith("cannot read the checkpoint: the file is damaged or incomplete")
    buffer = io.BytesIO()
    torch.save([1, 2], buffer)
    buffer.seek(0)
    with pytest.raises(RunError) as raised:
        read_checkpoint(buffer)
    assert str(raised.value).startswith("the checkpoint holds no state dict")


def test_checkpoints_load_weights_only_even_when_the_environment_says_otherwise(tmp_path, monkeypatch, capsys):
    """torch lets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turn off weights_only where a call leaves it out; ours pass it."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path = tmp_path / "code.pt"
    digest = _code_checkpoint(path)
    with pytest.raises(RunError, match="could run code"):
        read_checkpoint(path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "code.pt").write_bytes(path.read_bytes())
    monkeypatch.setitem(PRETRAINED, "code", {"file": "code.pt", "sha256": digest, "shipped": False})
    with pytest.raises(RunError, match="could run code"):
        pretrained("code", cache_dir=cache, download=False)
    assert "unpickled" not in capsys.readouterr().out


def test_load_checkpoint_puts_the_tensors_where_it_is_told(tmp_path):
    path = tmp_path / "c.pt"
    write_checkpoint(path, model={"w": torch.arange(3.0)})
    assert read_checkpoint(path, map_location="meta")["model"]["w"].device.type == "meta"
    assert read_checkpoint(path)["model"]["w"].device.type == "cpu"


def test_pretrained_config_fetches_into_the_cache_it_is_given(published, tmp_path):
    other = tmp_path / "other"
    assert pretrained_config("tiny", cache_dir=other)["threshold"] == 0.65  # downloads by default
    assert (other / "tiny.pt").is_file() and not (tmp_path / "cache" / "tiny.pt").exists()


def test_the_shipped_network_is_the_default_and_loads_offline(monkeypatch):
    monkeypatch.setenv("UNET_COURSE_WEIGHTS_URL", "file:///nonexistent")
    assert pretrained_config() == pretrained_config("isbi2012-cpu")
    model = pretrained()
    assert model.base_channels == pretrained_config()["base_channels"] and not model.training


def test_a_mirror_address_keeps_its_own_letters(monkeypatch):
    monkeypatch.setenv("UNET_COURSE_WEIGHTS_URL", "https://mirror.example/BOX/")
    assert weights_url("isbi2012-cpu") == f"https://mirror.example/BOX/{PRETRAINED['isbi2012-cpu']['file']}"


def test_a_file_where_the_default_cache_belongs_is_named_as_the_default_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("UNET_COURSE_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".cache").write_text("not a folder")
    monkeypatch.setitem(PRETRAINED, "remote", {"file": "remote.pt", "sha256": "0" * 64})  # not shipped: cached
    with pytest.raises(ValueError) as raised:
        pretrained("remote")
    assert str(raised.value) == (f"the default cache: {tmp_path / '.cache'} is a file, not a folder; point "
                                 "UNET_COURSE_CACHE or cache_dir at a folder for downloaded checkpoints")


def test_load_model_takes_a_run_or_a_published_name(tmp_path, monkeypatch):
    from unet_course.hub import load_model

    monkeypatch.chdir(tmp_path)
    model, config = load_model("isbi2012-cpu")  # no such path here: the shipped network
    assert config == pretrained_config("isbi2012-cpu") and model.base_channels == config["base_channels"]
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), pretrained().state_dict().values()))
    run = tmp_path / "isbi2012-cpu"  # a run folder that happens to bear a published name: the folder wins
    run.mkdir()
    tiny = tiny_unet(seed=5)
    write_checkpoint(run / "checkpoint.pt", model=tiny.state_dict())
    (run / "model.json").write_text(json.dumps({"base_channels": 4, "depth": 2}))
    model, config = load_model("isbi2012-cpu")
    assert config == {"base_channels": 4, "depth": 2} and torch.equal(model.head.weight, tiny.head.weight)
    model, config = load_model(run)
    assert config == {"base_channels": 4, "depth": 2} and not model.training
