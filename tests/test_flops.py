import pytest
import torch
from torch import nn

from unet_course import UNet
from unet_course.flops import STEP_OVERHEAD_S, T4_FLOPS_PER_SECOND, TrainingCost, training_cost, training_step_flops


def test_step_flops_of_one_convolution_by_hand():
    # (2, 1, 10, 10) → (2, 4, 8, 8): 512 outputs × 9 multiply-adds × 2 FLOPs, forward; the same again for the
    # weight gradient (the input needs none)
    conv = nn.Conv2d(1, 4, kernel_size=3)
    assert training_step_flops(conv, (2, 1, 10, 10)) == 2 * (512 * 9 * 2)


def test_second_layer_also_passes_its_gradient_back():
    model = nn.Sequential(nn.Conv2d(1, 1, 3, bias=False), nn.Conv2d(1, 1, 3, bias=False))
    first, second = 8 * 8 * 9 * 2, 6 * 6 * 9 * 2  # forward FLOPs of each layer on (1, 1, 10, 10)
    assert training_step_flops(model, (1, 1, 10, 10)) == 2 * first + 3 * second


def test_counting_leaves_the_model_alone():
    model = UNet(base_channels=4, depth=2)
    before = [p.clone() for p in model.parameters()]
    flops = training_step_flops(model, (1, 1, 124, 124))
    assert flops > 0
    assert all(p.device.type == "cpu" and torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_paper_unet_step():
    # 572 → 388 with 64 channels: about 300 GFLOPs forward, three times that for a training step
    flops = training_step_flops(UNet(), (1, 1, 572, 572))
    assert 850e9 < flops < 950e9


def test_t4_minutes():
    cost = TrainingCost(step_flops=10**12, steps=600, precision="fp32")
    assert cost.flops == 6 * 10**14
    assert cost.t4_minutes == pytest.approx((6e14 / T4_FLOPS_PER_SECOND["fp32"] + 600 * STEP_OVERHEAD_S) / 60)
    assert TrainingCost(10**12, 600).t4_minutes < cost.t4_minutes  # mixed precision is faster
    assert "600 steps" in str(cost) and "T4" in str(cost)
    with pytest.raises(ValueError, match="fp16"):
        TrainingCost(1, 1, precision="bf16")
    assert training_cost(nn.Conv2d(1, 4, 3), (2, 1, 10, 10), 10).step_flops == 2 * 512 * 9 * 2
