"""Tests of the gray-value variation: its ranges, the identity at zero strength, reproducibility, masks untouched."""

from __future__ import annotations

import pytest
import torch

from unet_course import GrayValues, fit, paper_augmentation, random_gray_values, vary_gray_values
from unet_course.data import SyntheticMembranes
from unet_course.models.unet import UNet


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 4, seed: int = 0) -> torch.Tensor:
    return 0.2 + 0.6 * torch.rand(n, 1, 32, 40, generator=_seeded(seed))  # values in [0.2, 0.8]


def test_the_draws_stay_in_the_documented_ranges():
    variation = random_gray_values(20000, GrayValues(brightness=0.1, contrast=0.2, gamma=0.3), generator=_seeded())
    shift, factor, exponent = variation.unbind(1)
    for values, low, high in ((shift, -0.1, 0.1), (factor, 0.8, 1.2), (exponent, 0.7, 1.3)):
        assert low <= values.min() < low + 0.01 and high - 0.01 < values.max() <= high  # the whole range, no more
    assert abs(shift.mean()) < 0.005 and abs(factor.mean() - 1) < 0.01  # centred on no change


def test_each_part_does_what_its_docstring_says():
    images = _images()
    low, high = images.amin(dim=(1, 2, 3)), images.amax(dim=(1, 2, 3))
    span, mean = (high - low)[:, None, None, None], images.mean(dim=(1, 2, 3), keepdim=True)
    ones = torch.ones(4)
    gamma = vary_gray_values(images, torch.stack([0 * ones, ones, torch.tensor([0.7, 0.9, 1.1, 1.3])], 1))
    torch.testing.assert_close(gamma.amin(dim=(1, 2, 3)), low)  # gamma keeps each image's range
    torch.testing.assert_close(gamma.amax(dim=(1, 2, 3)), high)
    unit = (images - low[:, None, None, None]) / span
    assert (gamma[0] > images[0])[(unit[0] > 0) & (unit[0] < 1)].all()  # exponent < 1 brightens the mid-tones
    assert (gamma[3] < images[3])[(unit[3] > 0) & (unit[3] < 1)].all()
    contrast = vary_gray_values(images, torch.stack([0 * ones, torch.tensor([0.8, 0.9, 1.1, 1.2]), ones], 1))
    expected = mean + torch.tensor([0.8, 0.9, 1.1, 1.2])[:, None, None, None] * (images - mean)
    torch.testing.assert_close(contrast, expected)
    brightness = vary_gray_values(images, torch.stack([torch.tensor([-0.2, -0.1, 0.1, 0.2]), ones, ones], 1))
    torch.testing.assert_close(brightness - images, torch.tensor([-0.2, -0.1, 0.1, 0.2])[:, None, None, None] * span
                               .expand_as(images))


def test_zero_strength_is_the_identity_bit_for_bit():
    images = _images()
    assert torch.equal(vary_gray_values(images, random_gray_values(4, GrayValues(0, 0, 0), generator=_seeded())),
                       images)
    assert not torch.equal(vary_gray_values(images, random_gray_values(4, generator=_seeded())), images)


def test_a_constant_image_stays_finite():
    flat = torch.full((1, 1, 8, 8), 0.5)
    out = vary_gray_values(flat, torch.tensor([[0.1, 1.2, 0.8]]))
    assert torch.isfinite(out).all() and torch.equal(out, flat)  # its value range is 0: nothing to scale


def test_the_same_generator_seed_gives_the_same_variation():
    first = random_gray_values(6, generator=_seeded(3))
    assert torch.equal(first, random_gray_values(6, generator=_seeded(3)))
    assert not torch.equal(first, random_gray_values(6, generator=_seeded(4)))


@pytest.mark.parametrize("gray_values", [GrayValues(brightness=-0.1), GrayValues(contrast=1.0), GrayValues(gamma=1.5)])
def test_strengths_out_of_range_are_refused(gray_values):
    with pytest.raises(ValueError, match="must be at least 0 and below"):
        random_gray_values(2, gray_values)
    with pytest.raises(ValueError, match="must be at least 0 and below"):
        paper_augmentation(gray_values=gray_values)


def test_bad_inputs_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="float images"):
        vary_gray_values(torch.zeros(2, 1, 8, 8, dtype=torch.uint8), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="random_gray_values"):
        vary_gray_values(_images(2), torch.tensor([[0.0, 1.0, 1.0]]))  # one row for two images
    with pytest.raises(ValueError, match="positive factors"):
        vary_gray_values(_images(1), torch.tensor([[0.0, -1.0, 1.0]]))


def test_the_augmentation_varies_images_only_and_repeats_the_geometry():
    images = _images(2)
    masks = (images[:, 0] > 0.5).long()
    weights = torch.rand(2, 32, 40, generator=_seeded(1))
    plain = paper_augmentation()(images, masks, weights, _seeded(5))
    gray = paper_augmentation(gray_values=GrayValues())(images, masks, weights, _seeded(5))
    assert torch.equal(gray[1], plain[1]) and torch.equal(gray[2], plain[2])  # masks and weight maps untouched
    assert not torch.equal(gray[0], plain[0])
    # the gray values are drawn after the geometry: the plain run's draws come first, unchanged
    generator = _seeded(5)
    paper_augmentation()(images, masks, weights, generator)
    torch.testing.assert_close(gray[0], vary_gray_values(plain[0], random_gray_values(2, generator=generator)))


def test_fit_trains_with_gray_values_in_memory_and_streamed():
    data = SyntheticMembranes(2, 64, seed=0)
    augment = paper_augmentation(gray_values=GrayValues())
    losses = {}
    for workers in (None, 0):
        torch.manual_seed(0)
        history = fit(UNet(base_channels=4, depth=2), data, steps=2, tile_size=60, augment=augment,
                      num_workers=workers, progress=False)
        losses[workers] = history.loss
        torch.manual_seed(0)
        plain = fit(UNet(base_channels=4, depth=2), data, steps=2, tile_size=60, num_workers=workers, progress=False)
        assert history.loss[0] != plain.loss[0]  # the first tile's gray values changed what the network saw
    assert all(len(run) == 2 for run in losses.values())


def test_refusals_say_what_was_wrong_word_for_word():
    with pytest.raises(ValueError) as raised:
        random_gray_values(2, GrayValues(contrast=1.0))
    assert str(raised.value) == ("GrayValues.contrast must be at least 0 and below 1.0, got 1.0: 0 leaves that part "
                                 "out, 0.1-0.3 is a usual strength")
    images = torch.rand(2, 3, 4, 4)  # N = 2 images of C = 3 channels: the message counts images
    with pytest.raises(ValueError) as raised:
        vary_gray_values(images, random_gray_values(3))
    assert str(raised.value) == ("Expected a variation of shape (2, 3) with positive factors, got (3, 3); draw one "
                                 "with random_gray_values(len(images)).")
    with pytest.raises(ValueError, match="with positive factors"):  # a contrast factor of 0 flattens the image
        vary_gray_values(images, torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))


def test_half_precision_images_stay_half_precision():
    images = torch.rand(2, 1, 8, 8).half()
    varied = vary_gray_values(images, random_gray_values(2, generator=torch.Generator().manual_seed(0)))
    assert varied.dtype == torch.float16 and varied.shape == images.shape
