"""The U-Net's size arithmetic and refusals, word for word, and the small facts of its configuration.

Written so that changing a comparison, default or message of ``unet_course.models.unet`` fails
a test (``make mutation`` measures it); the network itself is taught in chapter 3.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from unet_course import UNet
from unet_course.models.unet import (center_crop, he_init, unet_input_size_for, unet_layer_shapes, unet_margin,
                                     unet_nearest_valid_sizes, unet_num_parameters, unet_output_size,
                                     unet_valid_input_size)

ODD = "an odd size, so 2×2 pooling would drop a pixel and crop-and-concat could no longer line up"


@pytest.mark.parametrize("depth, padding, valid", [
    (1, "valid", {size: size - 16 for size in range(18, 80, 2)}),  # margin 8: 18 → 14 → 7 → 3 → 2
    (2, "valid", {size: size - 40 for size in range(44, 120, 4)}),  # margin 20
    (1, "same", {size: size for size in range(2, 80, 2)}),
    (2, "same", {size: size for size in range(4, 80, 4)}),
])
def test_the_valid_sizes_and_their_outputs(depth, padding, valid):
    for size in range(1, 80):
        if size in valid:
            assert unet_output_size(size, depth, padding) == valid[size], size
        else:
            with pytest.raises(ValueError, match="does not fit"):
                unet_output_size(size, depth, padding)
    assert unet_margin(depth, padding) == (6 * 2**depth - 4 if padding == "valid" else 0)


@pytest.mark.parametrize("size, depth, padding, why", [
    (10, 2, "valid", "too small: the map shrinks to 0 px before max-pool 2"),
    (1, 1, "same", "too small: the map shrinks to 1 px before max-pool 1"),
    (45, 2, "valid", f"the map is 41 px before max-pool 1, {ODD}"),
    (30, 2, "valid", f"the map is 9 px before max-pool 2, {ODD}"),
    (12, 1, "valid", "too small: the map shrinks to 0 px at the bottom of the U"),
    (14, 1, "valid", "too small: the map shrinks to 0 px on level 0 of the expansive path"),
    (36, 2, "valid", "too small: the map shrinks to 0 px on level 1 of the expansive path"),
])
def test_each_misfit_says_why_and_names_the_nearest_sizes(size, depth, padding, why):
    below, above = unet_nearest_valid_sizes(size, depth, padding)
    options = " and ".join(f"{n} (output {unet_output_size(n, depth, padding)})" for n in (below, above) if n)
    message = (f"an input of {size} px does not fit UNet(depth={depth}, padding={padding!r}): {why}. "
               f"Nearest valid input sizes: {options}.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        unet_output_size(size, depth, padding)


def test_the_nearest_sizes_and_the_input_for_an_output():
    assert unet_nearest_valid_sizes(45, 2) == (44, 48) and unet_nearest_valid_sizes(44, 2) == (44, 44)
    assert unet_nearest_valid_sizes(10, 2) == (None, 44) and unet_nearest_valid_sizes(0, 1, "same") == (None, 2)
    assert unet_valid_input_size(45, 2) == 48 and unet_input_size_for(5, 2) == 48 and unet_input_size_for(4, 2) == 44
    model = UNet(base_channels=2, depth=2)
    assert (model.valid_input_size(45), model.nearest_valid_sizes(45), model.input_size_for(5)) == (48, (44, 48), 48)
    assert (model.margin, model.downsampling_factor, model.output_size(48)) == (20, 4, 8)
    assert UNet(base_channels=2, depth=3, padding="same").downsampling_factor == 8


@pytest.mark.parametrize("options, message", [
    ({"padding": "reflect"}, "padding must be 'valid' (the paper) or 'same' (padded convolutions), got 'reflect'"),
    ({"depth": 0}, "depth (the number of 2×2 poolings) must be an integer >= 1, got 0; the paper uses 4"),
    ({"depth": 2.0}, "depth (the number of 2×2 poolings) must be an integer >= 1, got 2.0; the paper uses 4"),
])
def test_a_bad_configuration_is_refused_word_for_word(options, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        UNet(**options)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        unet_margin(**options)


def test_one_pooling_is_allowed():
    model = UNet(base_channels=2, depth=1).eval()
    assert model(torch.zeros(1, 1, 18, 20)).shape == (1, 2, 2, 4)


def test_the_wrong_input_is_refused_word_for_word():
    model = UNet(base_channels=2, depth=2)
    channels = ("UNet expects images (N, 1, H, W), got shape (1, 3, 44, 44); add the missing dimensions (x[None] for "
                "one image) or build UNet(in_channels=3).")
    with pytest.raises(ValueError, match=f"^{re.escape(channels)}$"):
        model(torch.zeros(1, 3, 44, 44))
    flat = ("UNet expects images (N, 1, H, W), got shape (1, 44, 44); add the missing dimensions (x[None] for one "
            "image) or build UNet(in_channels=...).")
    with pytest.raises(ValueError, match=f"^{re.escape(flat)}$"):
        model(torch.zeros(1, 44, 44))
    width = ("the input width of 46 px does not fit UNet(depth=2, padding='valid'): the map is 17 px before max-pool "
             f"2, {ODD}. Nearest valid input sizes: 44 (output 4) and 48 (output 8). Pad or crop the image to one of "
             "them, or predict any size with unet_course.predict_tiled(model, image).")
    with pytest.raises(ValueError, match=f"^{re.escape(width)}$"):
        model(torch.zeros(1, 1, 44, 46))


def test_the_layer_shapes_of_a_one_level_u():
    assert unet_layer_shapes(18, depth=1, base_channels=3, in_channels=2, num_classes=5) == [
        ("input", 2, 18), ("down1.conv1", 3, 16), ("down1.conv2", 3, 14), ("down1.pool", 3, 7),
        ("bottom.conv1", 6, 5), ("bottom.conv2", 6, 3), ("up1.upconv", 3, 6), ("up1.concat", 6, 6),
        ("up1.conv1", 3, 4), ("up1.conv2", 3, 2), ("head", 5, 2)]
    same = unet_layer_shapes(4, depth=1, base_channels=3, padding="same")
    assert [side for _, _, side in same] == [4, 4, 4, 2, 2, 2, 4, 4, 4, 4, 4]
    assert unet_layer_shapes(572)[-1] == ("head", 2, 388) and unet_layer_shapes(572)[1] == ("down1.conv1", 64, 570)
    with pytest.raises(ValueError, match="does not fit"):
        unet_layer_shapes(19, depth=1)


def test_the_parameter_count_defaults_are_the_papers():
    assert unet_num_parameters() == 31_030_658
    assert unet_num_parameters(base_channels=2, depth=1) == 2 * 9 + 2 + 2 * 2 * 9 + 2 + 2 * 2 + 2 + (
        2 * 4 * 9 + 4 + 4 * 4 * 9 + 4) + (4 * 2 * 4 + 2) + (4 * 2 * 9 + 2 + 2 * 2 * 9 + 2)
    assert unet_num_parameters(base_channels=2, depth=1, batch_norm=True) == unet_num_parameters(
        base_channels=2, depth=1) - 4 * 4 // 2 - 2 * 4 + 2 * (2 + 2 + 4 + 4 + 2 + 2)


def test_center_crop_takes_the_whole_input_and_refuses_more_or_nothing():
    features = np.arange(5 * 6).reshape(5, 6)
    assert center_crop(features, (5, 6)) is not None and np.array_equal(center_crop(features, (5, 6)), features)
    assert center_crop(features, 3).tolist() == [[7, 8, 9], [13, 14, 15], [19, 20, 21]]
    assert center_crop(features, (np.int64(1), np.int64(2))).tolist() == [[14, 15]]
    assert np.array_equal(center_crop(features, (4, 5)), features[:4, :5])  # an odd shrink: the extra pixel at the end
    for size in ((6, 6), (5, 7), (0, 2), (2, 0)):
        message = (f"center_crop: cannot cut ({size[0]}, {size[1]}) out of (5, 6); the crop must be positive and no "
                   "larger than the input.")
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            center_crop(features, size)


def test_he_init_gives_zero_biases_and_the_up_convolutions_fan_in_of_their_input_channels():
    torch.manual_seed(0)
    model = UNet(base_channels=64, depth=1)
    up = model.upconvs[0]  # 128 → 64 channels, 2×2 stride 2: each output pixel sees 128 inputs
    assert up.weight.std().item() == pytest.approx((2 / 128) ** 0.5, rel=0.02)
    assert abs(up.weight.mean().item()) < 0.002 and torch.count_nonzero(up.bias) == 0
    assert model.head.weight.std().item() == pytest.approx((2 / 64) ** 0.5, rel=0.15)


def test_center_crop_keeps_a_single_row_or_column():
    features = np.arange(5 * 6).reshape(5, 6)
    assert center_crop(features, (2, 1)).tolist() == [[8], [14]]
    assert center_crop(features, (1, 2)).tolist() == [[14, 15]]


def test_he_init_counts_the_inputs_of_an_up_convolution_whose_kernel_is_larger_than_its_stride():
    torch.manual_seed(0)
    up = torch.nn.ConvTranspose2d(64, 16, kernel_size=4, stride=2)  # each output pixel sees 2×2 positions × 64 inputs
    he_init(up)
    assert up.weight.std().item() == pytest.approx((2 / (64 * 4)) ** 0.5, rel=0.03)


def test_the_layer_shapes_default_to_the_papers_gray_input_in_whole_pixels():
    shapes = unet_layer_shapes(572)
    assert shapes[0] == ("input", 1, 572) and shapes[6] == ("down2.pool", 128, 140)
    assert all(type(side) is int for _, _, side in shapes)  # printed as 284, never 284.0


def test_the_valid_input_size_defaults_to_the_papers_depth():
    assert unet_valid_input_size(520) == 524 and unet_valid_input_size(572) == 572  # depth 5 would give 540


def test_a_misfit_height_is_named_as_the_height():
    with pytest.raises(ValueError, match=r"^the input height of 46 px does not fit UNet\(depth=2, "):
        UNet(base_channels=2, depth=2)(torch.zeros(1, 1, 46, 44))


def test_a_padded_models_sizes_follow_its_padding():
    model = UNet(base_channels=2, depth=2, padding="same")
    assert (model.valid_input_size(30), model.nearest_valid_sizes(30), model.input_size_for(30)) == (32, (28, 32), 32)
