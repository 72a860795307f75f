"""Plausible one-line bugs in the training and use wings, each caught by the test named after what it breaks.

Each test here fails when the line it guards is changed in the way its docstring says; they
run through public functions so that they keep guarding the rule when the code moves.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from unet_course import UNet
from unet_course.calibrate import pick_threshold
from unet_course.data import SyntheticMembranes
from unet_course.export import TOLERANCE, TraceableUNet, export_run
from unet_course.hub import PRETRAINED, pack_run, pretrained
from unet_course.sizes import training_tile_size
from unet_course.streaming import TileStream
from unet_course.runs import write_checkpoint
from unet_course.train import TrainingDiverged, fit

from conftest import tiny_unet


def test_pick_threshold_breaks_ties_towards_half_not_the_lowest_cut():
    """Two cuts with the same error: the one nearest 0.5 wins, whichever comes first in the sweep."""
    sweep = {"threshold": np.array([0.2, 0.3, 0.45, 0.6, 0.8]), "pixel": np.array([0.1, 0.1, 0.3, 0.1, 0.1]),
             "rand": np.array([0.2, 0.2, 0.4, 0.2, 0.2])}
    assert pick_threshold(sweep, "pixel") == 0.6  # 0.2, 0.3, 0.6, 0.8 tie; 0.6 is nearest 0.5
    assert pick_threshold(sweep, "rand") == 0.6
    assert pick_threshold(sweep, "both") == 0.6
    # differences below the sweep's rounding (1e-6) are ties too; larger ones are not
    nearly = {"threshold": np.array([0.3, 0.5]), "pixel": np.array([0.1, 0.1 + 1e-9]), "rand": np.array([0.2, 0.2])}
    assert pick_threshold(nearly, "pixel") == 0.5
    apart = {"threshold": np.array([0.3, 0.5]), "pixel": np.array([0.1, 0.1 + 1e-4]), "rand": np.array([0.2, 0.2])}
    assert pick_threshold(apart, "pixel") == 0.3


def test_training_tile_size_takes_a_tile_as_large_as_the_image():
    """A depth-2 U-Net takes 64-px tiles: a 64-px image (after padding) trains on all of itself."""
    model = UNet(base_channels=2, depth=2)
    assert model.valid_input_size(64) == 64
    assert training_tile_size(model, 64) == 64
    assert training_tile_size(model, 63) == 60  # one pixel less: the next valid size down
    assert training_tile_size(model, 44) == 44  # the smallest valid tile, exactly
    with pytest.raises(ValueError, match=r"images of 43 px .* smaller than the smallest tile .* \(44 px\)"):
        training_tile_size(model, 43)
    assert training_tile_size(UNet(base_channels=2, depth=4), 2000) == 572  # the paper's tile where images allow


def test_tile_stream_draws_each_tile_from_its_own_number():
    """An item gets another crop and augmentation at every tile number (every epoch), the same at the same one."""
    image, mask = torch.rand(1, 96, 96), torch.zeros(96, 96, dtype=torch.long)
    stream = TileStream(lambda index: (image, mask, torch.ones(96, 96)), 40, seed=7)
    draws = [stream[tile, 0] for tile in range(6)]
    displacements = [draw[4] for draw in draws]
    assert all(not torch.equal(a, b) for k, a in enumerate(displacements) for b in displacements[k + 1:])
    assert len({tuple(draw[0][0, 0, :3].tolist()) for draw in draws}) > 1  # the crops move too
    again = stream[3, 0]
    assert all(torch.equal(a, b) for a, b in zip(again, draws[3]))
    assert not torch.equal(TileStream(stream.prepare, 40, seed=8)[3, 0][4], again[4])  # and the run's seed counts


class _OffByMoreThanTheTolerance(TraceableUNet):
    def forward(self, x):
        return super().forward(x) + 10 * TOLERANCE


def test_export_refuses_a_difference_above_the_tolerance_and_a_nan_one(tmp_path, monkeypatch):
    """The check is ``not difference <= TOLERANCE``: a NaN difference (NaN weights) is refused as well."""
    import unet_course.export as export

    torch.manual_seed(0)
    model = UNet(base_channels=2, depth=2)
    out = tmp_path / "unet.pt"
    assert export_run(model, {}, "torchscript", out).max_abs_difference["torchscript"] <= TOLERANCE
    out.unlink()
    with monkeypatch.context() as patch:
        patch.setattr(export, "TraceableUNet", _OffByMoreThanTheTolerance)
        with pytest.raises(RuntimeError, match=r"differs from PyTorch by 1\.00e-03 \(more than 0\.0001\)"):
            export_run(model, {}, "torchscript", out)
    assert not out.exists()
    with torch.no_grad():
        model.head.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(RuntimeError, match="differs from PyTorch by nan"):
        export_run(model, {}, "torchscript", out)
    assert not out.exists()


def test_pretrained_without_download_refuses_a_tampered_cached_file(tmp_path, monkeypatch):
    """``download=False`` checks the cached file's SHA-256 too: another checkpoint under the name is not loaded."""
    def pack(seed: int, name: str) -> str:
        run = tmp_path / name
        run.mkdir()
        write_checkpoint(run / "checkpoint.pt", model=tiny_unet(seed).state_dict(), step=1)
        (run / "model.json").write_text(json.dumps({"base_channels": 4, "depth": 2}))
        return pack_run(run, tmp_path / f"{name}.pt")

    digest = pack(0, "genuine")
    pack(1, "tampered")
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setitem(PRETRAINED, "tiny", {"file": "tiny.pt", "sha256": digest, "shipped": False})
    (cache / "tiny.pt").write_bytes((tmp_path / "tampered.pt").read_bytes())
    with pytest.raises(FileNotFoundError, match=r"cached .*tiny\.pt failed its SHA-256 check .*pretrained\('tiny', "):
        pretrained("tiny", cache_dir=cache, download=False)
    (cache / "tiny.pt").write_bytes((tmp_path / "genuine.pt").read_bytes())
    loaded = pretrained("tiny", cache_dir=cache, download=False)
    assert torch.allclose(loaded.head.weight, tiny_unet(0).head.weight.half().float())


def test_an_infinite_loss_stops_training_before_the_update():
    """``not isfinite(loss)``, not ``isnan``: +inf stops at step 1 and leaves the weights as they were."""
    model = tiny_unet()
    before = {key: value.clone() for key, value in model.state_dict().items()}

    def infinite(logits, target):
        return (logits.mean().abs() + 1) * float("inf")

    with pytest.raises(TrainingDiverged, match=r"diverged at step 1 \(loss inf\)") as raised:
        fit(model, SyntheticMembranes(2, 64, seed=0), steps=3, tile_size=60, loss=infinite, progress=False)
    assert raised.value.step == 1
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
