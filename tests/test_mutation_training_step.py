"""One training step, checked where it can go quietly wrong: the learning rate it uses."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from unet_course.data import SyntheticMembranes
from unet_course.runs import read_checkpoint
from unet_course.train import fit, scheduled_lr

from conftest import tiny_unet

DATA = SyntheticMembranes(2, 64, seed=0)


def test_each_step_uses_the_scheduled_learning_rate(tmp_path):
    checkpoint = tmp_path / "run.pt"
    fit(tiny_unet(), DATA, steps=3, tile_size=60, lr=0.01, lr_schedule="cosine", checkpoint=checkpoint, progress=False)
    group = read_checkpoint(checkpoint)["optimizer"]["param_groups"][0]
    assert group["lr"] == scheduled_lr(0.01, 2, 3, "cosine") == 0.01 * 0.5 * (1 + math.cos(math.pi * 2 / 3))


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), (False, torch.float32),
                                        (None, torch.float32)])
def test_the_forward_pass_runs_in_the_precision_asked_for(amp, dtype):
    model, seen = tiny_unet(), []
    model.head.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    fit(model, DATA, steps=1, tile_size=60, amp=amp, device="cpu", progress=False)
    assert seen == [dtype]


def test_fp32_training_on_the_cpu_warns_of_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        history = fit(tiny_unet(), DATA, steps=2, tile_size=60, device="cpu", progress=False)
    assert len(history.loss) == 2


def test_channels_last_on_the_cpu_trains_as_the_default_layout_does():
    # no drop-out: its masks are drawn in memory order, so they differ between layouts
    default = fit(tiny_unet(dropout=0.0), DATA, steps=2, tile_size=60, device="cpu", progress=False)
    channels_last = fit(tiny_unet(dropout=0.0), DATA, steps=2, tile_size=60, device="cpu", channels_last=True, progress=False)
    assert channels_last.loss == pytest.approx(default.loss, rel=1e-4)
