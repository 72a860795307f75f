"""Mixed precision fitted to the GPU, and the learning-rate schedule: both through `fit`."""

import math

import pytest
import torch

from unet_course import SyntheticMembranes, UNet, fit
from unet_course.runs import read_checkpoint
from unet_course.train import autocast_dtype, scheduled_lr


@pytest.mark.parametrize("capability, expected", [((7, 5), torch.float16), ((7, 0), torch.float16),
                                                  ((8, 0), torch.bfloat16), ((9, 0), torch.bfloat16)])
def test_cuda_precision_follows_compute_capability(monkeypatch, capability, expected):
    """T4 (7.5) and V100 (7.0) get fp16 with a scaler; A100 (8.0) and H100 (9.0) get bf16."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert autocast_dtype("cuda") is expected
    assert autocast_dtype("cuda", True) is expected
    assert autocast_dtype("cuda", False) is None
    assert autocast_dtype("cuda", "bf16") is torch.bfloat16


def test_cpu_trains_in_fp32_unless_asked():
    assert autocast_dtype("cpu") is None
    assert autocast_dtype("cpu", True) is torch.bfloat16
    assert autocast_dtype("cpu", "fp16") is torch.float16
    with pytest.raises(ValueError, match="amp must be"):
        autocast_dtype("cpu", "fp8")


def _fit(steps, checkpoint, **options):
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2)
    history = fit(model, SyntheticMembranes(2, 64), steps=steps, tile_size=60, device="cpu", progress=False,
                  checkpoint=checkpoint, **options)
    return model, history


def test_fp16_with_gradient_scaling_trains_and_resumes_exactly(tmp_path):
    model, straight = _fit(6, tmp_path / "straight.pt", amp="fp16")
    state = read_checkpoint(tmp_path / "straight.pt")
    assert state["scaler"]["scale"] > 1  # the scaler ran and its state was saved
    assert all(math.isfinite(loss) for loss in straight.loss)
    _fit(3, tmp_path / "resumed.pt", amp="fp16")
    _, resumed = _fit(6, tmp_path / "resumed.pt", amp="fp16", resume=True)
    assert resumed.loss == straight.loss
    assert read_checkpoint(tmp_path / "resumed.pt")["scaler"] == state["scaler"]


def test_fp32_runs_keep_a_disabled_scaler(tmp_path):
    _fit(2, tmp_path / "run.pt")
    assert read_checkpoint(tmp_path / "run.pt")["scaler"] == {}  # GradScaler(enabled=False) has no state


def test_cosine_schedule_falls_from_lr_to_zero():
    assert scheduled_lr(0.01, 0, 100, "cosine") == pytest.approx(0.01)
    assert scheduled_lr(0.01, 50, 100, "cosine") == pytest.approx(0.005)
    assert scheduled_lr(0.01, 99, 100, "cosine") < 1e-5
    assert scheduled_lr(0.01, 99, 100) == 0.01
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        scheduled_lr(0.01, 0, 100, "linear")


def test_fit_applies_the_schedule(tmp_path):
    _fit(4, tmp_path / "run.pt", lr=0.01, lr_schedule="cosine")
    last_lr = read_checkpoint(tmp_path / "run.pt")["optimizer"]["param_groups"][0]["lr"]
    assert last_lr == pytest.approx(scheduled_lr(0.01, 3, 4, "cosine"))
    with pytest.raises(ValueError, match="lr_schedule"):
        _fit(2, None, lr_schedule="step")
