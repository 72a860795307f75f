"""Tests of overlap-tile prediction: mirror padding, seamless stitching, TTA, model modes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from unet_course import UNet, mirror_pad, predict_tiled
from unet_course.arrays import model_device
from unet_course.tiling import dihedral_transforms


@pytest.fixture(scope="module")
def model() -> UNet:
    torch.manual_seed(0)
    return UNet(base_channels=4, depth=2).double()  # margin 20, valid sizes 44, 48, 52, ...


def whole_image(model: nn.Module, images: torch.Tensor, bottom: int = 0, right: int = 0) -> torch.Tensor:
    """The model run once on the mirror-padded image: what tiling must reproduce."""
    m = model.margin
    with torch.no_grad():
        return model.eval()(mirror_pad(images, (m, m + right, m, m + bottom))).softmax(dim=1).float()


def test_mirror_pad_matches_reflect_padding_and_goes_further():
    image = torch.rand(2, 3, 5, 7)
    assert torch.equal(mirror_pad(image, (6, 2, 4, 3)), F.pad(image, (6, 2, 4, 3), mode="reflect"))
    expected = np.pad(image.numpy(), ((0, 0), (0, 0), (13, 9), (20, 17)), mode="reflect")
    assert np.array_equal(mirror_pad(image, (20, 17, 13, 9)).numpy(), expected)  # pads larger than the image
    assert torch.equal(mirror_pad(torch.ones(1, 1, 1, 1), 2), torch.ones(1, 1, 5, 5))


def test_tiled_equals_whole_image(model):
    images = torch.rand(2, 1, 100, 60, dtype=torch.float64)  # 100 + 40 and 60 + 40 are valid sizes
    tiled = predict_tiled(model, images, tile_size=60, batch_size=3)  # 5 × 3 tiles of 20 output px
    assert tiled.shape == (2, 2, 100, 60) and tiled.dtype == torch.float32
    torch.testing.assert_close(tiled, whole_image(model, images), atol=1e-6, rtol=0)
    torch.testing.assert_close(tiled.sum(dim=1), torch.ones(2, 100, 60))


def test_seamless_on_sizes_that_are_not_a_multiple_of_the_tile(model):
    image = torch.rand(1, 123, 77, dtype=torch.float64)
    small, large = predict_tiled(model, image, tile_size=60), predict_tiled(model, image, tile_size=92)
    assert small.shape == large.shape == (2, 123, 77)
    torch.testing.assert_close(small, large, atol=1e-6, rtol=0)
    # 123 + 40 is not valid: extend the mirrored image at the far sides to the next valid size, 164
    reference = whole_image(model, image[None], bottom=1, right=47)[0, :, :123, :77]
    torch.testing.assert_close(small, reference, atol=1e-6, rtol=0)


def test_paper_model_on_a_large_image():
    model = UNet(base_channels=2, depth=2)
    probabilities = predict_tiled(model, np.random.rand(1, 1000, 700).astype(np.float32), batch_size=2)
    assert probabilities.shape == (2, 1000, 700)
    assert torch.allclose(probabilities.sum(dim=0), torch.ones(1000, 700), atol=1e-5)


def test_test_time_augmentation_is_equivariant(model):
    image = torch.rand(1, 1, 48, 48, dtype=torch.float64)  # one 88-px tile (48 + 2·20)
    averaged = predict_tiled(model, image, tta=True)
    # a quarter turn and a mirror generate all 8 symmetries of the square: checking them suffices
    for transform in (lambda x: torch.rot90(x, 1, dims=(-2, -1)), lambda x: x.flip(-1)):
        torch.testing.assert_close(predict_tiled(model, transform(image), tta=True),
                                   transform(averaged), atol=1e-6, rtol=0)
    plain = predict_tiled(model, image)
    assert (averaged - plain).abs().max() > 1e-3  # the model itself is not equivariant; TTA makes it so
    assert len(set(dihedral_transforms())) == 8


def test_restores_train_and_eval_modes_and_needs_no_grad():
    model = UNet(base_channels=4, depth=2, batch_norm=True)
    model.train()
    model.contracting[0].eval()  # e.g. a frozen first block
    before = [m.training for m in model.modules()]
    image = torch.rand(1, 1, 50, 50)
    first, second = predict_tiled(model, image), predict_tiled(model, image)
    assert [m.training for m in model.modules()] == before
    assert torch.equal(first, second)  # dropout and batch statistics were off
    assert not first.requires_grad


def test_logits_and_sigmoid(model):
    image = torch.rand(1, 1, 28, 28, dtype=torch.float64)
    logits = predict_tiled(model, image, activation=None)
    with torch.no_grad():
        expected = model.eval()(mirror_pad(image, 20)).float()
    torch.testing.assert_close(logits, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(predict_tiled(model, image, activation="sigmoid"), expected.sigmoid())
    torch.testing.assert_close(predict_tiled(model, image, activation=None, progress=True), logits)


def test_models_without_size_helpers():
    torch.manual_seed(1)
    unet = UNet(base_channels=4, depth=2).eval()
    wrapped = nn.Sequential(unet)  # no margin attribute: it is measured with one forward pass
    image = torch.rand(1, 1, 60, 100)
    torch.testing.assert_close(predict_tiled(wrapped, image, tile_size=60),
                               predict_tiled(unet, image, tile_size=60), atol=1e-6, rtol=0)


def test_same_size_models():
    model = UNet(base_channels=4, depth=2, padding="same")
    probabilities = predict_tiled(model, torch.rand(1, 150, 90), tile_size=64)
    assert probabilities.shape == (2, 150, 90)
    smp = pytest.importorskip("segmentation_models_pytorch")
    smp_model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8),
                         in_channels=1, classes=3)
    probabilities = predict_tiled(smp_model, torch.rand(2, 1, 70, 45), tile_size=64)
    assert probabilities.shape == (2, 3, 70, 45)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(2, 70, 45), atol=1e-5)


def test_errors(model):
    with pytest.raises(ValueError, match=r"tile_size 50 .*48 \(output 8\) and 52 \(output 12\)"):
        predict_tiled(model, torch.rand(1, 30, 30), tile_size=50)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\) or \(C, H, W\).*image\[None\]"):
        predict_tiled(model, torch.rand(30, 30))
    with pytest.raises(ValueError, match="activation"):
        predict_tiled(model, torch.rand(1, 30, 30), activation="relu")
    with pytest.raises(ValueError, match="larger tile_size"):
        predict_tiled(UNet(base_channels=4, depth=2, padding="same"), torch.rand(1, 30, 30), tile_size=8, context=3)


@pytest.fixture(scope="module")
def same_size_model() -> UNet:
    torch.manual_seed(0)
    return UNet(base_channels=4, depth=2, padding="same").eval()  # alignment 4, theoretical reach 20 px


@pytest.fixture(scope="module")
def membranes() -> torch.Tensor:
    from unet_course.data import synthetic_membranes

    return torch.from_numpy(synthetic_membranes((720, 560), seed=3).image)[None, None]  # larger than a 512 tile


def test_same_size_default_is_close_to_the_whole_image(same_size_model, membranes):
    """Tiles lie inside the image and overlap by the receptive field: the whole-image pass, nearly to the bit."""
    with torch.no_grad():
        whole = same_size_model(membranes).softmax(dim=1)
    tiled = predict_tiled(same_size_model, membranes)  # 2 × 2 tiles of 512 px
    assert tiled.shape == whole.shape
    flipped = (tiled.argmax(1) != whole.argmax(1)).float().mean()
    assert flipped < 1e-4 and (tiled - whole).abs().mean() < 1e-5  # measured: 0 and 1e-9


def test_same_size_deviation_shrinks_as_the_overlap_grows(same_size_model, membranes):
    with torch.no_grad():
        whole = same_size_model(membranes).softmax(dim=1)
    deviations = [float((predict_tiled(same_size_model, membranes, tile_size=128, context=context) - whole).abs()
                        .mean()) for context in (2, 6, 12)]  # overlaps of 4, 12 and 24 px
    assert deviations[0] > 2 * deviations[1] > 4 * deviations[2] > 0  # measured: 0.0070, 0.0021, 0.00025


def test_same_size_image_that_fits_one_tile_is_predicted_whole(same_size_model):
    image = torch.rand(1, 150, 90)  # the model takes multiples of 4: extended by mirroring at the far sides
    with torch.no_grad():
        whole = same_size_model(mirror_pad(image[None], (0, 2, 0, 2))).softmax(dim=1)[0, :, :150, :90]
    torch.testing.assert_close(predict_tiled(same_size_model, image), whole, atol=1e-6, rtol=0)
    averaged = predict_tiled(same_size_model, image[:, :64, :48], tta=True)  # a 64 × 48 tile, turned too
    turned = predict_tiled(same_size_model, torch.rot90(image[:, :64, :48], 1, dims=(-2, -1)), tta=True)
    torch.testing.assert_close(turned, torch.rot90(averaged, 1, dims=(-2, -1)), atol=1e-6, rtol=0)


def test_same_size_blend_weights_sum_to_one():
    from unet_course.tiling import _crossfades, _tile_starts

    for length, tile, overlap in ((1024, 256, 64), (1000, 256, 64), (720, 512, 38), (96, 64, 16)):
        starts = _tile_starts(length, tile, overlap, 8)
        assert starts[0] == 0 and starts[-1] == length - tile and all(s % 8 == 0 for s in starts)
        assert all(a + tile - b >= overlap for a, b in zip(starts, starts[1:]))  # neighbours overlap enough
        total = torch.zeros(length)
        for start, weight in zip(starts, _crossfades(starts, tile, overlap // 2)):
            assert weight[0 if start > 0 else -1] == 0 or start + tile == length  # nothing from an inner edge pixel
            total[start:start + tile] += weight
        torch.testing.assert_close(total, torch.ones(length))


def test_effective_receptive_field():
    from unet_course.tiling import effective_receptive_field

    box = nn.Conv2d(1, 1, 5, padding=2, bias=False)
    nn.init.ones_(box.weight)  # every pixel within 2 px counts the same: rings hold 1, 8 and 16 of 25
    tile = torch.rand(1, 33, 33)
    assert effective_receptive_field(box, tile) == 2
    assert effective_receptive_field(box, tile, mass=0.3) == 1
    assert box.weight.grad is None  # the model's gradients are left alone
    torch.manual_seed(0)
    assert 0 < effective_receptive_field(UNet(base_channels=4, depth=2, padding="same"), tile[:, :32, :32]) <= 20
    with pytest.raises(ValueError, match="same-size model"):
        effective_receptive_field(UNet(base_channels=4, depth=2), torch.rand(1, 44, 44))
    with pytest.raises(ValueError, match="mass"):
        effective_receptive_field(box, tile, mass=0)


def test_the_device_is_the_one_asked_for_else_the_models_else_the_default():
    model = UNet(base_channels=4, depth=2).to("meta")  # a stand-in for a GPU
    assert model_device(model) == torch.device("meta")
    assert model_device(model, "cpu") == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")
    assert model_device(nn.ReLU(), default="meta") == torch.device("meta")
    assert model_device(nn.ReLU(), "cpu", default="meta") == torch.device("cpu")

