"""The size rules of :mod:`unet_course.sizes`, each number checked against the arithmetic of chapter 3.

A depth-2 valid U-Net has a 20-px margin and takes 44 + 4k px; a depth-4 one, the paper's,
takes 188 + 16k px (572 → 388). Same-size models take every multiple of their downsampling.
"""

from __future__ import annotations

import pytest
from torch import nn

import unet_course.sizes as sizes
from unet_course import UNet
from unet_course.models.unet import unet_num_parameters
from unet_course.sizes import (PAPER_TILE, SAME_SIZE_TILE, alignment, check_image_fits, check_model_size,
                               check_tile_size, prediction_tile_size, training_tile_size, whole_image_tile_size)

VALID = UNet(base_channels=2, depth=2)  # margin 20, sizes 44 + 4k
SAME = UNet(base_channels=2, depth=2, padding="same")  # sizes 4k


class Plain(nn.Module):
    """A model with no size rule at all."""

    def forward(self, x):
        return x


class Encoded(nn.Module):
    """Shaped like a segmentation_models_pytorch model: its stride is its encoder's."""

    def __init__(self, stride: int):
        super().__init__()
        self.encoder = nn.Identity()
        self.encoder.output_stride = stride


def test_the_constants_are_the_papers_tile_and_a_same_size_tile():
    assert (PAPER_TILE, SAME_SIZE_TILE) == (572, 512)


def test_alignment_is_the_downsampling_factor():
    assert alignment(VALID) == 4 and alignment(UNet(base_channels=2, depth=4)) == 16
    assert alignment(Encoded(32)) == 32 and isinstance(alignment(Encoded(32)), int)
    assert alignment(Plain()) == 1


def test_check_tile_size_returns_a_valid_size_and_names_the_nearest_otherwise():
    assert check_tile_size(572, 4) == 572 and check_tile_size(48, VALID) == 48 and check_tile_size(7, Plain()) == 7
    with pytest.raises(ValueError) as raised:
        check_tile_size(570, 4)
    assert str(raised.value) == ("tile_size 570 is not a valid input size for a U-Net of depth 4; nearest valid sizes: "
                                 "556 (output 372) and 572 (output 388)")
    with pytest.raises(ValueError) as raised:
        check_tile_size(10, VALID, name="--tile-size")
    assert str(raised.value) == ("--tile-size 10 is not a valid input size for UNet(depth=2, padding='valid'); "
                                 "nearest valid sizes: 44 (output 4) (none is smaller)")
    with pytest.raises(ValueError) as raised:
        check_tile_size(10, SAME)
    assert str(raised.value).endswith("UNet(depth=2, padding='same'); nearest valid sizes: 8 (output 8) and 12 "
                                      "(output 12)")


def test_check_tile_size_refuses_what_is_not_a_whole_positive_number():
    for bad in (0, -4, 1.0 * 48, True, "48", None):
        with pytest.raises(ValueError, match=f"tile_size must be a positive whole number of pixels, got {bad!r}"):
            check_tile_size(bad, VALID)
    assert check_tile_size(1, Plain()) == 1  # 1 px is positive


def test_a_model_of_another_kind_is_named_in_the_message():
    class Rule(nn.Module):
        def valid_input_size(self, size):
            return size + size % 2

        def nearest_valid_sizes(self, size):
            return size - 1, size + 1

    with pytest.raises(ValueError, match=r"for this Rule; nearest valid sizes: 4 and 6$"):
        check_tile_size(5, Rule())


def test_training_tile_size_is_the_papers_tile_where_the_images_allow():
    paper = UNet(base_channels=2, depth=4)
    assert training_tile_size(paper, 5000) == 572 and training_tile_size(paper, 572) == 572
    assert training_tile_size(paper, 571) == 556  # the next valid size down
    assert training_tile_size(Plain(), 5000) == 572 and training_tile_size(Plain(), 300) == 300
    with pytest.raises(ValueError, match=r"^images of 100 px \(after mirror padding\) are smaller than the smallest "
                                         r"tile UNet\(depth=4, padding='valid'\) takes \(188 px\); use larger images "
                                         r"or a shallower model$"):
        training_tile_size(paper, 100)


def test_whole_image_tile_size_covers_the_image_and_its_margins():
    assert whole_image_tile_size(VALID, 30, 50) == 92  # 50 + 2·20 = 90, up to 44 + 4k
    assert whole_image_tile_size(VALID, 50, 30) == 92  # the larger side decides
    assert whole_image_tile_size(VALID, 30, 50, context=3) == 96  # 50 + 2·23 = 96
    assert whole_image_tile_size(SAME, 30, 50) == 52 and whole_image_tile_size(SAME, 30, 50, context=2) == 56
    assert whole_image_tile_size(Encoded(32), 30, 50) == 64  # up to a multiple of the stride
    assert whole_image_tile_size(Encoded(32), 30, 64) == 64 and whole_image_tile_size(Encoded(32), 30, 65) == 96
    assert whole_image_tile_size(Plain(), 30, 51) == 51


def test_prediction_tile_size_is_572_or_what_covers_a_small_image_and_512_for_same_size_models():
    paper = UNet(base_channels=2, depth=4)
    assert prediction_tile_size(paper, 1000, 1000) == 572
    assert prediction_tile_size(paper, 100, 90) == 284  # 100 + 2·92 = 284 = 188 + 6·16: one tile covers it
    assert prediction_tile_size(VALID, 30, 50) == 92 and prediction_tile_size(VALID, 30, 50, context=3) == 96
    assert prediction_tile_size(VALID, 2000, 10) == 572  # 572 = 44 + 4·132 is valid at depth 2 too
    assert prediction_tile_size(SAME, 10, 10) == 512 and prediction_tile_size(Plain(), 10, 10) == 512
    assert prediction_tile_size(UNet(base_channels=2, depth=3, padding="same"), 10, 10) == 512


def test_the_size_rules_take_the_model_or_its_depth_alike():
    for size in (44, 48, 188, 572):
        model_says = _accepts(size, UNet(base_channels=2, depth=2))
        assert _accepts(size, 2) == model_says
    assert _accepts(47, 2) is False and _accepts(48, 2) is True


def _accepts(size: int, rule) -> bool:
    try:
        return check_tile_size(size, rule) == size
    except ValueError:
        return False


class Coarse(nn.Module):
    """A model whose valid sides are the multiples of 96, with a margin of ``margin`` px."""

    def __init__(self, margin: int):
        super().__init__()
        self.margin = margin

    def valid_input_size(self, size):
        return -(-size // 96) * 96

    def nearest_valid_sizes(self, size):
        return (size // 96 * 96 or None), self.valid_input_size(size)


def test_the_default_tiles_are_the_models_valid_sizes_nearest_572_and_512():
    assert prediction_tile_size(Coarse(margin=0), 10, 10) == 576  # 512 is not one of its sizes
    assert prediction_tile_size(Coarse(margin=8), 2000, 2000) == 576  # nor is 572
    assert prediction_tile_size(Coarse(margin=8), 60, 60) == 96  # a small image: one tile covers it


def test_a_depth_given_as_a_number_is_that_depth():
    with pytest.raises(ValueError) as raised:
        check_tile_size(10, 2)
    assert str(raised.value) == ("tile_size 10 is not a valid input size for a U-Net of depth 2; nearest valid sizes: "
                                 "44 (output 4) (none is smaller)")
    with pytest.raises(ValueError, match=r"depth 3; nearest valid sizes: 92 \(output 4\) and 100 \(output 12\)$"):
        check_tile_size(96, 3)


def test_a_same_size_models_tile_holds_eight_contexts():
    assert prediction_tile_size(SAME, 10, 10, context=100) == 800 and prediction_tile_size(SAME, 10, 10, 63) == 512
    assert prediction_tile_size(Plain(), 10, 10, context=101) == 808  # any size a plain model takes


def test_an_image_fits_a_tile_once_mirror_padded_by_the_margin():
    check_image_fits(60, 40, 30, 15)  # 30 + 2·15 = 60: just enough
    with pytest.raises(ValueError) as raised:
        check_image_fits(60, 40, 29, 15)
    assert str(raised.value) == ("an image is 29×40 pixels, too small for tile_size 60 even with 15 mirrored pixels "
                                 "per side; pass a smaller tile_size")
    with pytest.raises(ValueError) as raised:
        check_image_fits(60, 29, 40, 15, name="--tile-size", image="slice 3")
    assert str(raised.value) == ("slice 3 is 40×29 pixels, too small for --tile-size 60 even with 15 mirrored pixels "
                                 "per side; pass a smaller --tile-size")


# --- the memory a model needs ----------------------------------------------------------------------------------------

class _Limit:
    """Stands for pathlib.Path in unet_course.sizes: only the cgroup's memory limit exists, holding ``text``."""

    def __init__(self, text: str | None):
        self.text = text

    def __call__(self, path: str):
        limit = self

        class _File:
            def read_text(self):
                if path != "/sys/fs/cgroup/memory.max" or limit.text is None:
                    raise FileNotFoundError(path)
                return limit.text

        return _File()


@pytest.mark.parametrize("limit, expected", [
    (None, 4096 * 1000), ("max\n", 4096 * 1000), ("2048000\n", 2048000), ("8192000", 4096 * 1000),
])
def test_the_memory_is_the_machines_or_its_containers_limit_where_lower(monkeypatch, limit, expected):
    monkeypatch.setattr(sizes.os, "sysconf", lambda name: {"SC_PHYS_PAGES": 1000, "SC_PAGE_SIZE": 4096}[name])
    monkeypatch.setattr(sizes, "Path", _Limit(limit))
    assert sizes._memory_bytes() == expected


def test_the_memory_is_unknown_where_the_system_does_not_say(monkeypatch):
    def unknown(name):
        raise ValueError(name)

    monkeypatch.setattr(sizes.os, "sysconf", unknown)
    assert sizes._memory_bytes() is None


def test_a_model_is_refused_only_when_four_float32_copies_of_it_exceed_the_memory(monkeypatch):
    config = {"base_channels": 2, "depth": 1, "in_channels": 3, "num_classes": 4, "batch_norm": True}
    count = unet_num_parameters(in_channels=3, num_classes=4, base_channels=2, depth=1, batch_norm=True)
    monkeypatch.setattr(sizes, "_memory_bytes", lambda: 16 * count)  # exactly enough
    assert check_model_size(config) == count
    monkeypatch.setattr(sizes, "_memory_bytes", lambda: None)  # unknown: nothing refused
    assert check_model_size({"base_channels": 10**6, "depth": 4}) == unet_num_parameters(base_channels=10**6)
    monkeypatch.setattr(sizes, "_memory_bytes", lambda: 16 * count - 1)
    with pytest.raises(ValueError) as raised:
        check_model_size(config)
    assert str(raised.value) == (
        f"the model: UNet(base_channels=2, depth=1) has {count:.3g} parameters, about {16 * count / 1e9:.3g} GB to "
        f"train or {4 * count / 1e9:.3g} GB to load, more than this machine's {(16 * count - 1) / 1e9:.3g} GB; use a "
        f"smaller base_channels or depth (the paper: 64 and 4)")
    monkeypatch.setattr(sizes, "_memory_bytes", lambda: 24 * 2**30)
    with pytest.raises(ValueError) as raised:
        check_model_size({"base_channels": 1024, "depth": 4}, what="run/model.json")
    assert str(raised.value) == (
        "run/model.json: UNet(base_channels=1024, depth=4) has 7.94e+09 parameters, about 127 GB to train or 31.8 GB "
        "to load, more than this machine's 25.8 GB; use a smaller base_channels or depth (the paper: 64 and 4)")


def test_the_gigabytes_are_decimal_and_rounded_to_three_digits(monkeypatch):
    """Counts and a memory chosen at rounding edges, where a slightly different divisor would show."""
    monkeypatch.setattr(sizes, "unet_num_parameters", lambda **options: 78_375_000)  # 0.3135 GB as float32
    monkeypatch.setattr(sizes, "_memory_bytes", lambda: 1_235_000_000)
    with pytest.raises(ValueError, match=r"about 1\.25 GB to train or 0\.314 GB to load, more than this machine's "
                                         r"1\.24 GB;"):
        check_model_size({"base_channels": 64, "depth": 4})
    monkeypatch.setattr(sizes, "unet_num_parameters", lambda **options: 77_187_500)  # 1.235 GB to train
    monkeypatch.setattr(sizes, "_memory_bytes", lambda: 10**9)
    with pytest.raises(ValueError, match=r"about 1\.24 GB to train or 0\.309 GB to load, more than this machine's "
                                         r"1 GB;"):
        check_model_size({"base_channels": 64, "depth": 4})
