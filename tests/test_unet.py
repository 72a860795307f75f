"""Tests of the paper's U-Net: configuration, size arithmetic, error messages, initialisation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from unet_course import UNet
from unet_course.models.unet import (
    center_crop,
    unet_input_size_for,
    unet_layer_shapes,
    unet_margin,
    unet_nearest_valid_sizes,
    unet_num_parameters,
    unet_output_size,
    unet_valid_input_size,
)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_paper_configuration():
    model = UNet()
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert count_parameters(model) == 31_030_658
    assert len(convs) == 23
    assert (model.in_channels, model.num_classes, model.margin) == (1, 2, 92)
    model.eval()
    with torch.no_grad():
        logits = model(torch.rand(1, 1, 572, 572))
    assert logits.shape == (1, 2, 388, 388)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_num_parameters_without_a_model(depth, batch_norm):
    model = UNet(in_channels=3, num_classes=5, base_channels=6, depth=depth, batch_norm=batch_norm)
    assert count_parameters(model) == unet_num_parameters(3, 5, 6, depth, batch_norm)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_output_shapes_over_sizes_and_depths(depth, padding):
    model = UNet(in_channels=2, num_classes=3, base_channels=2, depth=depth, padding=padding).eval()
    first = unet_valid_input_size(1, depth, padding)
    sizes = [first + k * 2**depth for k in range(4)]
    with torch.no_grad():
        for height, width in zip(sizes, reversed(sizes)):
            logits = model(torch.rand(1, 2, height, width))
            expected = (model.output_size(height), model.output_size(width))
            assert logits.shape == (1, 3) + expected
            assert height - expected[0] == width - expected[1] == 2 * model.margin
    if padding == "same":
        assert model.margin == 0 and model.output_size(sizes[1]) == sizes[1]


def test_paper_sizes():
    assert unet_output_size(572) == 388
    assert unet_input_size_for(388) == 572
    assert unet_margin() == 92 and unet_margin(4, "same") == 0
    assert unet_nearest_valid_sizes(500) == (492, 508)
    assert unet_valid_input_size(500) == 508 and unet_valid_input_size(572) == 572
    assert unet_nearest_valid_sizes(10, depth=4) == (None, 188)  # the smallest valid tile


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 700), depth=st.integers(1, 4), padding=st.sampled_from(["valid", "same"]))
def test_size_arithmetic_is_consistent(size, depth, padding):
    below, above = unet_nearest_valid_sizes(size, depth, padding)
    assert above >= size and (below is None or below <= size)
    for n in range(size + 1 if below is None else below + 1, above):
        with pytest.raises(ValueError):  # no valid size hides between the nearest two
            unet_output_size(n, depth, padding)
    output = unet_output_size(above, depth, padding)
    assert above - output == 2 * unet_margin(depth, padding)
    assert below is None or above - below in (0, 2**depth)  # valid sizes recur every 2**depth px
    wanted = max(1, size // 2)
    smallest = unet_input_size_for(wanted, depth, padding)
    assert unet_output_size(smallest, depth, padding) >= wanted
    smaller = unet_nearest_valid_sizes(smallest - 1, depth, padding)[0] if smallest > 1 else None
    assert smaller is None or unet_output_size(smaller, depth, padding) < wanted


def test_layer_shapes_match_the_model():
    model = UNet(in_channels=1, num_classes=2, base_channels=4, depth=4).eval()
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append((o.shape[1], o.shape[-1])))
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d))]
    with torch.no_grad():
        model(torch.rand(1, 1, 572, 572))
    for hook in hooks:
        hook.remove()
    table = unet_layer_shapes(572, depth=4, base_channels=4)
    assert seen == [(c, n) for name, c, n in table if name not in ("input",) and not name.endswith("concat")]
    sides = [n for _, _, n in table]
    assert sides[:4] == [572, 570, 568, 284] and sides[-1] == 388 and min(sides) == 28


def test_invalid_size_gives_a_helpful_error():
    model = UNet(base_channels=4)
    with pytest.raises(ValueError) as info:
        model(torch.rand(1, 1, 500, 572))
    message = str(info.value)
    assert "height" in message and "500" in message
    assert "492 (output 308)" in message and "508 (output 324)" in message
    assert "predict_tiled" in message
    with pytest.raises(ValueError, match=r"width of 100 px.*96 \(output 96\) and 112"):
        UNet(base_channels=4, padding="same")(torch.rand(1, 1, 96, 100))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\).*got shape \(1, 3, 572, 572\)"):
        model(torch.rand(1, 3, 572, 572))
    with pytest.raises(ValueError, match=r"x\[None\]"):
        model(torch.rand(1, 572, 572))
    with pytest.raises(ValueError, match="padding"):
        UNet(padding="reflect")
    with pytest.raises(ValueError, match="depth"):
        UNet(depth=0)


def test_he_initialisation():
    torch.manual_seed(0)
    model = UNet(base_channels=32, depth=3)
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            fan_in = module.in_channels  # each output pixel sees one input pixel per channel
        elif isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        else:
            continue
        weights, expected = module.weight.detach(), math.sqrt(2.0 / fan_in)
        if weights.numel() >= 2000:
            assert weights.std().item() == pytest.approx(expected, rel=0.06)
            assert abs(weights.mean().item()) < 5 * expected / math.sqrt(weights.numel())
        assert torch.count_nonzero(module.bias) == 0


def test_dropout_at_the_end_of_the_contracting_path():
    model = UNet(base_channels=4, depth=2, dropout=0.5)
    x = torch.rand(1, 1, 60, 60)
    with torch.no_grad():
        assert not torch.equal(model.train()(x), model(x))  # a fresh mask each call
        assert torch.equal(model.eval()(x), model(x))
    assert model.dropout.p == 0.5


def test_two_dropout_layers_as_in_the_released_network():
    """Drop-out on the last contracting level (skip and pooling) and on the bottom, ratio 0.5 each."""
    model = UNet(base_channels=4, depth=2)
    shapes = []
    model.dropout.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape)))
    model.train()(torch.rand(1, 1, 60, 60))
    assert shapes == [(1, 8, 24, 24), (1, 16, 8, 8)]  # level 2 (before pooling), then the bottom
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in UNet(base_channels=4, depth=2,
                                                                                      dropout=0.0).parameters())


def test_batch_norm_option():
    model = UNet(base_channels=4, depth=2, batch_norm=True)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 4 * 2 + 2  # two per conv block, 2·depth + 1 blocks
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))
    assert model(torch.rand(2, 1, 60, 60)).shape == (2, 2, 20, 20)


def test_center_crop():
    features = torch.arange(8 * 8.0).reshape(1, 1, 8, 8)
    crop = center_crop(features, (4, 2))
    assert crop.shape == (1, 1, 4, 2) and crop[0, 0, 0, 0] == 2 * 8 + 3
