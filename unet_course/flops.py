"""How long a training run takes on Colab's T4, from the arithmetic it does.

A chapter states the time of its gpu-budget training from FLOPs, not from a timing on
whatever machine executed the book: ``torch.utils.flop_counter`` counts the FLOPs of one
training step (forward and backward) on the meta device, where nothing is computed, and
the total is divided by the throughput a T4 sustains.

The throughputs are NVIDIA's published ResNet-50 v1.5 numbers for the T4 (DeepLearningExamples,
``PyTorch/Classification/ConvNets/resnet50v1.5``: 428 images/s in FP32 and 1,190 images/s
in mixed precision, at batch 64) times the 8.18 GFLOPs of one ResNet-50 image counted the
same way: 3.5 and 9.7 TFLOP/s. Small networks keep a GPU less busy than ResNet-50 does, so
every step is also charged :data:`STEP_OVERHEAD_S` for kernel launches and the Python
around them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["T4_FLOPS_PER_SECOND", "STEP_OVERHEAD_S", "TrainingCost", "training_step_flops", "training_cost"]

# Sustained FLOP/s of a T4 (see above): "fp16" is mixed precision with fp16 autocast, which
# is what `fit` runs on a T4; "fp32" is a plain training loop.
T4_FLOPS_PER_SECOND = {"fp32": 3.5e12, "fp16": 9.7e12}
# A step of a small U-Net launches a few hundred kernels of ~10 µs each, and the loop around it
# samples tiles: 5 ms is our allowance for that, whatever the FLOPs.
STEP_OVERHEAD_S = 0.005


def training_step_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one training step: forward and backward on a batch of ``input_shape``.

    Counted by ``torch.utils.flop_counter`` on a copy of ``model`` on the meta device, so
    nothing is computed and ``model`` is untouched. Convolutions and matrix products are
    counted (2 FLOPs per multiply-add); element-wise work, the loss and the optimizer are not.

    Args:
        model: any module taking one ``(N, C, H, W)`` tensor.
        input_shape: the batch, e.g. ``(1, 1, 572, 572)`` for the paper's tile.

    Example:
        >>> from unet_course import UNet
        >>> training_step_flops(UNet(base_channels=8, depth=2), (1, 1, 124, 124)) > 0
        True
    """
    probe = copy.deepcopy(model).to("meta").train()
    with FlopCounterMode(display=False) as counter:
        output = probe(torch.zeros(input_shape, device="meta"))
        output = output if isinstance(output, torch.Tensor) else output[0]
        output.float().sum().backward()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class TrainingCost:
    """A run of ``steps`` training steps of ``step_flops`` each, and its time on a T4.

    Example:
        >>> cost = TrainingCost(step_flops=902_000_000_000, steps=1000)
        >>> round(cost.t4_minutes, 1)
        1.6
    """

    step_flops: int
    steps: int
    precision: str = "fp16"  # "fp16": fit's mixed precision on a T4; "fp32": a plain loop

    def __post_init__(self) -> None:
        if self.precision not in T4_FLOPS_PER_SECOND:
            raise ValueError(f"precision must be one of {', '.join(T4_FLOPS_PER_SECOND)}, got {self.precision!r}")

    @property
    def flops(self) -> int:
        return self.step_flops * self.steps

    @property
    def t4_minutes(self) -> float:
        seconds = self.flops / T4_FLOPS_PER_SECOND[self.precision] + self.steps * STEP_OVERHEAD_S
        return seconds / 60

    def __str__(self) -> str:
        return (f"{self.steps:,} steps × {self.step_flops / 1e9:,.1f} GFLOP = {self.flops / 1e12:,.1f} TFLOP: "
                f"about {self.t4_minutes:.1f} min on a T4 ({self.precision})")


def training_cost(model: nn.Module, input_shape: tuple[int, ...], steps: int, *, precision: str = "fp16") -> TrainingCost:
    """The :class:`TrainingCost` of ``steps`` steps of ``model`` on batches of ``input_shape``."""
    return TrainingCost(training_step_flops(model, input_shape), steps, precision)
