"""One training step, checked where it can go quietly wrong: the learning rate it uses."""

from __future__ import annotations

import math

import torch

from unet_course import UNet
from unet_course.data import SyntheticMembranes
from unet_course.train import fit, load_checkpoint, scheduled_lr

DATA = SyntheticMembranes(2, 64, seed=0)


def _model() -> UNet:
    torch.manual_seed(0)
    return UNet(base_channels=4, depth=2)


def test_each_step_uses_the_scheduled_learning_rate(tmp_path):
    checkpoint = tmp_path / "run.pt"
    fit(_model(), DATA, steps=3, tile_size=60, lr=0.01, lr_schedule="cosine", checkpoint=checkpoint, progress=False)
    group = load_checkpoint(checkpoint)["optimizer"]["param_groups"][0]
    assert group["lr"] == scheduled_lr(0.01, 2, 3, "cosine") == 0.01 * 0.5 * (1 + math.cos(math.pi * 2 / 3))
