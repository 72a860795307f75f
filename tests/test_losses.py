"""Tests of the weighted pixel-wise cross-entropy and the centre crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from unet_course import center_crop, semantic_target, unet_weight_map, weighted_cross_entropy
from unet_course.data import synthetic_cells
from unet_course.losses import takes_weight_map


def random_batch(n=2, k=3, height=10, width=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, k, height, width, generator=generator)
    target = torch.randint(0, k, (n, height, width), generator=generator)
    weight = torch.rand(n, height, width, generator=generator) * 5
    return logits, target, weight


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_unit_weights_give_plain_cross_entropy(reduction):
    logits, target, _ = random_batch()
    expected = F.cross_entropy(logits, target, reduction=reduction)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, reduction=reduction), expected)
    ones = torch.ones(target.shape)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, ones, reduction=reduction), expected)


def test_ignore_index_matches_plain_cross_entropy():
    logits, target, _ = random_batch(k=2)
    target[:, :3] = 255
    expected = F.cross_entropy(logits, target, ignore_index=255)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, ignore_index=255), expected)
    assert weighted_cross_entropy(logits, torch.full_like(target, 255), ignore_index=255) == 0


def test_mean_divides_by_pixels_not_by_weights():
    logits, target, weight = random_batch()
    picked = -torch.log_softmax(logits, dim=1).gather(1, target[:, None])[:, 0]  # (N, H, W)
    expected = (weight * picked).sum() / target.numel()
    torch.testing.assert_close(weighted_cross_entropy(logits, target, weight), expected)
    doubled = weighted_cross_entropy(logits, target, 2 * weight)
    torch.testing.assert_close(doubled, 2 * expected)


def test_zero_weight_pixel_gets_no_gradient():
    logits, target, weight = random_batch()
    weight[0, 4, 5] = 0
    logits.requires_grad_(True)
    weighted_cross_entropy(logits, target, weight).backward()
    assert torch.all(logits.grad[0, :, 4, 5] == 0)
    assert torch.all(logits.grad[0, :, 4, 6] != 0)


def test_crop_for_valid_convolution_outputs():
    logits, _, _ = random_batch(n=1, k=2, height=8, width=6)
    _, target, weight = random_batch(n=1, k=2, height=14, width=10, seed=1)
    expected = weighted_cross_entropy(logits, target[:, 3:11, 2:8], weight[:, 3:11, 2:8])
    torch.testing.assert_close(weighted_cross_entropy(logits, target, weight, crop=True), expected)
    with pytest.raises(ValueError, match=r"\(1, 2, 8, 6\).*\(1, 14, 10\).*crop=True"):
        weighted_cross_entropy(logits, target, weight)
    with pytest.raises(ValueError, match="larger than target"):
        weighted_cross_entropy(torch.randn(1, 2, 16, 16), target, weight, crop=True)


@pytest.mark.parametrize(
    "args, message",
    [
        ((torch.randn(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long)), "K >= 2"),
        ((torch.randn(1, 2, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long)), r"target\[:, 0\]"),
        ((torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4)), "integer dtype"),
        ((torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), torch.ones(4, 4)), "target's shape"),
    ],
)
def test_mistakes_raise_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        weighted_cross_entropy(*args)
    with pytest.raises(ValueError, match="reduction"):
        weighted_cross_entropy(torch.randn(1, 2, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), reduction="avg")


def test_integer_targets_of_any_dtype():
    logits, target, weight = random_batch(k=2)
    expected = weighted_cross_entropy(logits, target, weight)
    for dtype in (torch.uint8, torch.int32):
        torch.testing.assert_close(weighted_cross_entropy(logits, target.to(dtype), weight), expected)


def test_center_crop():
    array = np.arange(7 * 6).reshape(1, 7, 6)
    cropped = center_crop(array, (4, 3))
    np.testing.assert_array_equal(cropped, array[:, 1:5, 1:4])  # odd leftovers go bottom/right
    assert np.shares_memory(cropped, array)
    assert center_crop(torch.zeros(2, 3, 572, 572), 388).shape == (2, 3, 388, 388)
    assert center_crop(torch.zeros(5, 5), 5).shape == (5, 5)
    with pytest.raises(ValueError, match="no larger than the input"):
        center_crop(array, 8)


def test_with_a_same_size_smp_model():
    smp = pytest.importorskip("segmentation_models_pytorch")
    torch.manual_seed(0)
    model = smp.Unet("resnet18", encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8),
                     in_channels=1, classes=2)
    sample = synthetic_cells(64, seed=0)
    images = torch.from_numpy(sample.image)[None, None]
    labels = torch.from_numpy(sample.labels)[None]
    target, weight = semantic_target(labels), unet_weight_map(labels)
    logits = model(images)
    assert logits.shape == (1, 2, 64, 64)
    loss = weighted_cross_entropy(logits, target, weight)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert model.segmentation_head[0].weight.grad.abs().sum() > 0


def test_takes_weight_map_reads_the_losss_positional_arguments():
    class Dice(torch.nn.Module):
        def forward(self, logits, target):
            return logits.mean()

    assert takes_weight_map(weighted_cross_entropy)
    assert takes_weight_map(lambda logits, target, weight_map: logits.mean())
    assert takes_weight_map(lambda *tensors: tensors[0].mean())
    assert not takes_weight_map(lambda logits, target: logits.mean())
    assert not takes_weight_map(lambda logits, target, *, weight_map=None: logits.mean())  # keyword only: not passed
    assert not takes_weight_map(Dice()) and not takes_weight_map(torch.nn.CrossEntropyLoss())
    assert not takes_weight_map(max)  # a builtin without a signature to read: given logits and target only
