"""Every refusal of overlap-tile prediction, word for word, and the edges of what it accepts."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from unet_course import UNet
from unet_course.tiling import _tile_starts, effective_receptive_field, mirror_pad, predict_tiled

MODEL = UNet(base_channels=2, depth=2)


class Lopsided(nn.Module):
    """Loses a column more than a row: not a centred crop."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(x)[..., :, 1:]


class Misdeclared(nn.Module):
    """Says it loses 2 px per side and loses 1.5."""

    margin = 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(x)[..., 1:, 1:]


def _z(*shape):
    return torch.zeros(*shape)


CASES = [
    ("negative pad", lambda: mirror_pad(_z(1, 4, 4), -1), "pad widths must be >= 0 pixels, got -1"),
    ("one negative side", lambda: mirror_pad(_z(1, 4, 4), (0, 0, 0, -2)),
     "pad widths must be >= 0 pixels, got (0, 0, 0, -2)"),
    ("(H, W) image", lambda: predict_tiled(MODEL, _z(8, 8)),
     "image must be (N, C, H, W) or (C, H, W), got shape (8, 8); for a grayscale (H, W) image pass image[None]."),
    ("activation", lambda: predict_tiled(MODEL, _z(1, 8, 8), activation="relu"),
     "activation must be 'softmax', 'sigmoid' or None (logits), got 'relu'"),
    ("no rows", lambda: predict_tiled(MODEL, _z(1, 0, 8)),
     "image is empty (shape (1, 0, 8)); pass an image at least 1 pixel high and wide"),
    ("no columns", lambda: predict_tiled(MODEL, _z(1, 8, 0)),
     "image is empty (shape (1, 8, 0)); pass an image at least 1 pixel high and wide"),
    ("tile 0", lambda: predict_tiled(MODEL, _z(1, 8, 8), tile_size=0),
     "tile_size must be a positive number of pixels, got 0; leave it out for the model's default"),
    ("batch 0", lambda: predict_tiled(MODEL, _z(1, 8, 8), batch_size=0),
     "batch_size must be at least 1 tile per forward pass, got 0"),
    ("infinite pixel", lambda: predict_tiled(MODEL, torch.full((1, 8, 8), float("inf"))),
     "image holds NaN or infinite values, which would blank every tile they reach; replace them with finite "
     "numbers first"),
    ("context eats the tile", lambda: predict_tiled(MODEL, _z(1, 8, 8), tile_size=44, context=4),
     "tile_size=44 leaves -4 output pixels per tile after cutting 24 px of context per side, fewer than the model's "
     "alignment of 4 px; use a larger tile_size."),
    ("lopsided model", lambda: predict_tiled(Lopsided(), _z(1, 8, 8), tile_size=16),
     "predict_tiled needs a model whose output is the input cropped equally on every side; a 16×16 tile gave a "
     "14×13 output."),
    ("misdeclared margin", lambda: predict_tiled(Misdeclared(), _z(1, 8, 8), tile_size=16),
     "the model mapped a 16-px tile to (13, 13), expected 12 px per side (margin 2)."),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_refusal(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


def test_the_smallest_accepted_values():
    assert mirror_pad(torch.arange(4.0).reshape(1, 2, 2), 0).equal(torch.arange(4.0).reshape(1, 2, 2))
    out = predict_tiled(MODEL, torch.rand(1, 1, 1), tile_size=44, batch_size=1)  # one pixel, the smallest tile
    assert out.shape == (2, 1, 1) and torch.allclose(out.sum(0), torch.ones(1, 1))
    integers = predict_tiled(MODEL, torch.ones(1, 5, 5, dtype=torch.uint8))  # not float: nothing to check for NaN
    assert integers.dtype == torch.float32 and integers.shape == (2, 5, 5)


def test_a_model_without_margin_is_measured_by_one_forward_pass():
    class Valid(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 5)  # loses 2 px per side

        def forward(self, x):
            return self.conv(x)

    torch.manual_seed(0)
    model = Valid()
    image = torch.rand(1, 1, 10, 12)
    whole = model(mirror_pad(image, 2)).softmax(1)
    assert torch.allclose(predict_tiled(model, image, tile_size=8), whole, atol=1e-6)


class Narrower(nn.Module):
    """Declares the 1-px margin of its 3×3 convolution, then drops one more column."""

    margin = 1

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.conv(x)[..., :, 1:]


def test_an_output_wrong_in_one_side_only_is_refused():
    with pytest.raises(ValueError, match=r"^the model mapped a 16-px tile to \(14, 13\), expected 14 px per side "
                                         r"\(margin 1\)\.$"):
        predict_tiled(Narrower(), _z(1, 8, 8), tile_size=16)


@pytest.mark.parametrize("pad", [(-1, 0, 0, 0), (0, -1, 0, 0), (0, 0, -1, 0)])
def test_every_side_of_the_padding_is_checked(pad):
    with pytest.raises(ValueError, match=re.escape(f"pad widths must be >= 0 pixels, got {pad}")):
        mirror_pad(_z(1, 4, 4), pad)


def test_mirror_pad_of_a_channel_first_image_that_is_not_square():
    image = torch.arange(24.0).reshape(1, 4, 6)
    expected = torch.nn.functional.pad(image[None], (2, 1, 3, 2), mode="reflect")[0]
    assert torch.equal(mirror_pad(image, (2, 1, 3, 2)), expected)


class Counting(nn.Module):
    """A same-size 1×1 convolution that counts the tiles it is shown."""

    margin = 0

    def __init__(self):
        super().__init__()
        self.conv, self.tiles = nn.Conv2d(1, 2, 1), 0

    def forward(self, x):
        self.tiles += x.shape[0]
        return self.conv(x)


@pytest.mark.parametrize("height, width, tiles", [(20, 20, 1), (21, 20, 2), (40, 41, 6), (1, 1, 1)])
def test_just_enough_tiles_cover_the_image(height, width, tiles):
    valid = UNet(base_channels=2, depth=2)  # a 60-px tile predicts 20 × 20
    seen = []
    handle = valid.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[0]))
    predict_tiled(valid, torch.rand(1, height, width), tile_size=60)
    handle.remove()
    assert sum(seen) == tiles


def test_a_same_size_image_that_fits_one_tile_is_predicted_in_one_pass():
    model = Counting()
    image = torch.rand(1, 3, 3)
    out = predict_tiled(model, image, tile_size=3, context=1)
    with torch.no_grad():
        whole = model.conv(image[None]).softmax(1)[0]
    assert model.tiles == 1 and torch.allclose(out, whole, atol=1e-6)


def test_a_one_pixel_tile_is_allowed_for_a_same_size_model():
    model = Counting()
    image = torch.rand(1, 2, 3)
    out = predict_tiled(model, image, tile_size=1)
    with torch.no_grad():
        whole = model.conv(image[None]).softmax(1)[0]
    assert out.shape == (2, 2, 3) and model.tiles >= 6  # one pixel a tile: at least a tile per pixel
    assert torch.allclose(out, whole, atol=1e-6)


def test_a_model_that_loses_an_odd_number_of_pixels_is_refused():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 2)  # loses one pixel in all: not the same on every side

        def forward(self, x):
            return self.conv(x)

    with pytest.raises(ValueError, match=r"cropped equally on every side; a 16×16 tile gave a 15×15 output\.$"):
        predict_tiled(Odd(), _z(1, 8, 8), tile_size=16)


def test_a_float64_model_without_a_margin_is_measured_in_float64():
    class Valid(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 5)

        def forward(self, x):
            return self.conv(x)

    torch.manual_seed(0)
    model = Valid().double()
    image = torch.rand(1, 10, 12, dtype=torch.float64)
    with torch.no_grad():
        whole = model(mirror_pad(image, 2)[None]).softmax(1)[0].float()
    assert torch.allclose(predict_tiled(model, image, tile_size=8), whole, atol=1e-6)


# --- the same-size path and its effective receptive field -----------------------------------------------------------

def _box(kernel: int = 3, padding: int = 1) -> nn.Conv2d:
    """A same-size 1-channel convolution whose every weight is 1: each output pixel sums a kernel² box."""
    conv = nn.Conv2d(1, 1, kernel, padding=padding, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def test_the_effective_receptive_field_of_a_box_filter_counted_by_rings():
    image = torch.rand(1, 9, 9)
    # a 3×3 box: one ninth of the gradient at the centre (ring 0), the rest on ring 1, so all of it within radius 1
    assert effective_receptive_field(_box(), image, mass=1.0) == 1
    assert effective_receptive_field(_box(), image[None], mass=1.0) == 1  # (1, C, S, S) as well as (C, S, S)
    assert effective_receptive_field(_box(1, 0), image, mass=1.0) == 0  # a 1×1 kernel looks at its pixel only
    cross = _box()
    with torch.no_grad():  # half the gradient at the centre, an eighth on each edge neighbour: a sum of exactly 1
        cross.weight.copy_(torch.tensor([[0.0, 0.125, 0.0], [0.125, 0.5, 0.125], [0.0, 0.125, 0.0]]))
    assert effective_receptive_field(cross, image, mass=1.0) == 1
    ignores = nn.Conv2d(1, 1, 3, padding=1)
    nn.init.zeros_(ignores.weight)
    assert effective_receptive_field(ignores, image) == 0  # no gradient reaches the input at all


def test_the_effective_receptive_field_refuses_word_for_word():
    cases = [
        (dict(image=torch.rand(2, 1, 9, 9)), "image must be one square, (C, S, S) or (1, C, S, S); got (2, 1, 9, 9); "
                                             "cut a square crop"),
        (dict(image=torch.rand(1, 1, 9, 8)), "image must be one square, (C, S, S) or (1, C, S, S); got (1, 1, 9, 8); "
                                             "cut a square crop"),
        (dict(image=torch.rand(1, 9, 9), mass=1.5), "mass must be a fraction of the gradient in (0, 1], got 1.5"),
        (dict(image=torch.rand(1, 9, 9), model=_box(3, 0)),
         "effective_receptive_field needs a same-size model; a 9-px tile gave (7, 7)"),
    ]
    for arguments, message in cases:
        model = arguments.pop("model", _box())
        with pytest.raises(ValueError) as raised:
            effective_receptive_field(model, **arguments)
        assert str(raised.value) == message


def test_same_size_context_is_checked_word_for_word():
    model, image = UNet(base_channels=4, depth=2, padding="same").eval(), torch.rand(1, 1, 40, 40)
    with pytest.raises(ValueError) as raised:
        predict_tiled(model, image, tile_size=16, context=-1)
    assert str(raised.value) == "context must be >= 0 pixels, got -1"
    with pytest.raises(ValueError) as raised:
        predict_tiled(model, image, tile_size=16, context=7)
    assert str(raised.value) == ("tile_size=16 leaves fewer than the model's alignment of 4 px between overlaps of "
                                 "2·context = 14 px; use a larger tile_size or a smaller context.")
    whole = predict_tiled(model, image, tile_size=40)
    for context in (0, 5):  # no context, and the most a 16-px tile allows (16 - 2·5 = 6 px ≥ the alignment 4)
        assert predict_tiled(model, image, tile_size=16, context=context).shape == whole.shape


def test_the_progress_bar_shows_only_when_asked(capsys):
    model, image = UNet(base_channels=4, depth=2, padding="same").eval(), torch.rand(1, 1, 40, 40)
    predict_tiled(model, image, tile_size=16, context=2, progress=False)
    assert capsys.readouterr().err == ""
    predict_tiled(model, image, tile_size=16, context=2, progress=True)
    assert re.search(r"(^|\r)tiles: 100%", capsys.readouterr().err)  # the bar is called "tiles"
    predict_tiled(MODEL, image, tile_size=60, progress=True)  # the valid path's bar as well
    assert re.search(r"(^|\r)tiles: 100%", capsys.readouterr().err)


def test_the_default_same_size_layout_measures_the_centre_and_tiles_flush_with_the_edges(monkeypatch):
    """Defaults: the context is measured on the central 128² crop of the first image, tiles are 512², the first at 0
    and the last flush with the far edge, and an image that fits one tile is predicted in one pass."""
    import unet_course.tiling as tiling

    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2, padding="same").eval()
    measured, seen = [], []
    real = tiling.effective_receptive_field
    monkeypatch.setattr(tiling, "effective_receptive_field",
                        lambda m, crop, **kw: measured.append(crop) or real(m, crop, **kw))
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    image = torch.rand(1, 1, 600, 560)
    predict_tiled(model, image)
    assert len(measured) == 1 and torch.equal(measured[0], image[0, :, 236:364, 216:344])  # (600-128)/2, (560-128)/2
    tiles = seen[1]  # after the 128² probe
    assert len(seen) == 2 and tiles.shape == (4, 1, 512, 512)
    expected = [image[0, :, top:top + 512, left:left + 512] for top in (0, 88) for left in (0, 48)]
    assert all(torch.equal(tile, crop) for tile, crop in zip(tiles, expected))
    seen.clear()
    measured.clear()
    small = torch.rand(1, 1, 512, 480)
    predict_tiled(model, small)
    assert not measured and len(seen) == 1 and torch.equal(seen[0], small)  # one tile: the whole image


def test_a_valid_model_without_pooling_may_predict_one_pixel_per_tile():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 3)  # margin 1, alignment 1: a 3-px tile gives one output pixel, a step of 1
    image = torch.rand(1, 1, 6, 6)
    torch.testing.assert_close(predict_tiled(conv, image, tile_size=3), predict_tiled(conv, image, tile_size=8))


def test_a_same_size_model_gives_logits_when_asked_and_its_size_is_checked():
    model = Counting()
    image = torch.rand(1, 3, 3)
    with torch.no_grad():
        assert torch.allclose(predict_tiled(model, image, tile_size=3, activation=None), model.conv(image[None])[0],
                              atol=1e-6)

    class Squaring(nn.Module):  # keeps a square's size, cuts any other tile to a square
        def forward(self, x):
            side = min(x.shape[-2:])
            return torch.cat([x, -x], 1)[..., :side, :side]

    with pytest.raises(ValueError) as raised:
        predict_tiled(Squaring(), torch.rand(1, 6, 9), tile_size=16)
    assert str(raised.value) == "the model mapped a (6, 9) tile to (6, 6); a same-size model must keep the size"


def test_a_one_pixel_high_image_is_predicted_as_it_is_not_mirrored():
    model, image = _box(), torch.rand(1, 1, 20)  # a 3×3 box sees zeros above and below the single row
    with torch.no_grad():
        whole = model(image[None])[0]
    torch.testing.assert_close(predict_tiled(model, image, tile_size=32, activation=None), whole)


def test_a_small_tile_caps_the_measured_context_at_an_eighth_of_its_side():
    model, image = _box(31, 15), torch.rand(1, 1, 200, 200)  # measured context 15 px; a 60-px tile allows 60 // 8 = 7
    capped = predict_tiled(model, image, tile_size=60, activation=None)
    torch.testing.assert_close(capped, predict_tiled(model, image, tile_size=60, context=7, activation=None))
    assert not torch.allclose(capped, predict_tiled(model, image, tile_size=60, context=6, activation=None))


def test_a_tile_that_spans_one_side_needs_no_room_for_overlaps_along_it():
    model, image = _box(), torch.rand(1, 1, 40, 200)  # 40 px high: one tile spans the height, 2·20 px = 40 of context
    with torch.no_grad():
        whole = model(image)
    torch.testing.assert_close(predict_tiled(model, image, tile_size=48, context=20, activation=None), whole)


def test_tile_starts_lie_on_the_step_overlap_enough_and_end_flush():
    for step in (1, 4, 8):
        for tile in (16, 24, 40, 64):
            for overlap in range(0, tile - step + 1, 3):
                for length in range(tile, 4 * tile + 1, step):
                    starts = _tile_starts(length, tile, overlap, step)
                    assert starts[0] == 0 and starts[-1] == length - tile and all(s % step == 0 for s in starts)
                    assert all(0 < b - a <= tile - overlap for a, b in zip(starts, starts[1:])), (length, tile, overlap)


def test_a_model_aligned_to_more_than_the_probe_gets_a_tile_of_eight_contexts():
    """A padded U-Net of depth 8 takes multiples of 256 px: its context is measured on a 256² crop, comes to more
    than 64 px (125 here), and the default tile grows from 512 to hold 8 × context: 1,024 px."""
    torch.manual_seed(0)
    model = UNet(base_channels=1, depth=8, padding="same").eval()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    predict_tiled(model, torch.rand(1, 1, 1100, 1100))
    assert seen == [(1, 1, 256, 256), (4, 1, 1024, 1024)]
