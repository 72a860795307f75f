"""Every refusal of :func:`weighted_cross_entropy`, word for word, and the edges of its value checks.

A user who passes a wrong tensor reads these messages; a changed number in them (``N = 2``
for ``N = 1``) or a loosened check (``>`` for ``>=``) misleads them, so each is pinned here.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from unet_course.losses import weighted_cross_entropy


def _logits(n: int = 1, k: int = 3, size: int = 4) -> torch.Tensor:
    return torch.randn(n, k, size, size, generator=torch.Generator().manual_seed(0))


def _refused(message: str, *args, **kwargs) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        weighted_cross_entropy(*args, **kwargs)


def test_shapes_and_types_are_refused_with_what_to_do():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    _refused('reduction must be "mean", "sum" or "none", got \'avg\'', _logits(), target, reduction="avg")
    _refused("logits must be (N, K, h, w) with K >= 2 classes, got shape (1, 1, 4, 4). For a binary problem give "
             "the model 2 output channels (background, cell).", _logits(k=1), target)
    _refused("logits must be (N, K, h, w) with K >= 2 classes, got shape (3, 4, 4). For a binary problem give "
             "the model 2 output channels (background, cell).", _logits()[0], target)
    _refused("target must be (N, H, W) with N = 2 like the logits, got shape (1, 4, 4). For a (N, 1, H, W) mask "
             "pass target[:, 0].", _logits(n=2), target)
    _refused("target must be (N, H, W) with N = 1 like the logits, got shape (1, 1, 4, 4). For a (N, 1, H, W) mask "
             "pass target[:, 0].", _logits(), target[:, None])
    _refused("target must hold class indices (an integer dtype), got torch.float32. Use target.long().",
             _logits(), target.float())
    _refused("target must hold class indices (an integer dtype), got torch.bool. Use target.long().",
             _logits(), target.bool())
    _refused("weight_map must have the target's shape (1, 4, 4), got (1, 4, 5).", _logits(), target,
             torch.ones(1, 4, 5))


def test_size_mismatches_say_how_to_crop():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    _refused("logits (1, 3, 4, 4) and target (1, 8, 8) differ in size. A valid-convolution U-Net predicts only the "
             "centre of its input: pass crop=True to center-crop target and weight map to the logits, or use padded "
             "convolutions.", _logits(), target)
    _refused("logits (1, 3, 4, 4) are larger than target (1, 2, 8): crop=True can only cut the target down. Check "
             "the model's output size.", _logits(), torch.zeros(1, 2, 8, dtype=torch.long), crop=True)
    _refused("logits (1, 3, 4, 4) are larger than target (1, 8, 2): crop=True can only cut the target down. Check "
             "the model's output size.", _logits(), torch.zeros(1, 8, 2, dtype=torch.long), crop=True)
    weights = torch.rand(1, 8, 8)
    cropped = weighted_cross_entropy(_logits(), target, weights, crop=True, reduction="none")
    assert torch.allclose(cropped, weighted_cross_entropy(_logits(), target[:, 2:6, 2:6], weights[:, 2:6, 2:6],
                                                          reduction="none"))
    assert torch.equal(weighted_cross_entropy(_logits(), target, crop=True),
                       weighted_cross_entropy(_logits(), target[:, 2:6, 2:6]))


def test_targets_outside_the_classes_are_listed_and_refused():
    logits = _logits(k=3)
    at_k = torch.zeros(1, 4, 4, dtype=torch.long)
    at_k[0, 0, 0] = 3  # == K: not a class
    _refused("target holds values outside the 3 classes 0..2: [3]; map them to class indices, or pass "
             "ignore_index=<value> to leave those pixels out", logits, at_k)
    below = torch.zeros(1, 4, 4, dtype=torch.long)
    below[0, 1, 1] = -1
    _refused("target holds values outside the 3 classes 0..2: [-1]; map them to class indices, or pass "
             "ignore_index=<value> to leave those pixels out", logits, below)
    many = -torch.arange(1, 17).reshape(1, 4, 4)  # 16 values outside: the first 8 are named
    _refused("target holds values outside the 3 classes 0..2: [-16, -15, -14, -13, -12, -11, -10, -9]; map them to "
             "class indices, or pass ignore_index=<value> to leave those pixels out", logits, many)
    top = torch.full((1, 4, 4), 2)
    assert torch.isfinite(weighted_cross_entropy(logits, top))  # K - 1 is a class
    # ignore_index lets its own value through, and only that one
    assert torch.isfinite(weighted_cross_entropy(logits, below, ignore_index=-1))
    both = below.clone()
    both[0, 2, 2] = 7
    _refused("target holds values outside the 3 classes 0..2: [7]; map them to class indices, or pass "
             "ignore_index=<value> to leave those pixels out", logits, both, ignore_index=-1)


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_a_weight_that_is_negative_or_not_finite_is_refused(bad):
    weights = torch.ones(1, 4, 4)
    weights[0, 3, 3] = bad
    _refused("weight_map holds negative, NaN or infinite values; per-pixel weights must be finite and >= 0 "
             "(check w0, border_sigma and class weights)", _logits(), torch.zeros(1, 4, 4, dtype=torch.long), weights)


def test_zero_weights_are_allowed_and_the_reductions_agree():
    logits, target = _logits(n=2), torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(1))
    weights = torch.rand(2, 4, 4, dtype=torch.float64)
    weights[0, 0, 0] = 0.0
    plain = F.cross_entropy(logits, target, reduction="none")
    expected = plain * weights.float()
    per_pixel = weighted_cross_entropy(logits, target, weights, reduction="none")
    assert per_pixel.dtype == torch.float32 and torch.allclose(per_pixel, expected)
    assert torch.allclose(weighted_cross_entropy(logits, target, weights, reduction="sum"), expected.sum())
    assert torch.allclose(weighted_cross_entropy(logits, target, weights), expected.sum() / 32)
    assert torch.allclose(weighted_cross_entropy(logits, target.to(torch.uint8), weights), expected.sum() / 32)


def test_ignored_pixels_are_not_counted_and_all_ignored_gives_zero():
    logits = _logits(k=2)
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, :2] = 255  # half the pixels ignored
    plain = F.cross_entropy(logits, torch.zeros(1, 4, 4, dtype=torch.long), reduction="none")
    assert torch.allclose(weighted_cross_entropy(logits, target, ignore_index=255), plain[0, 2:].sum() / 8)
    assert torch.allclose(weighted_cross_entropy(logits, target, ignore_index=255, reduction="sum"),
                          plain[0, 2:].sum())
    assert weighted_cross_entropy(logits, torch.full((1, 4, 4), 255), ignore_index=255).item() == 0.0


def test_without_ignore_index_every_class_counts_even_class_100():
    logits = torch.randn(1, 101, 2, 2, generator=torch.Generator().manual_seed(2))
    target = torch.full((1, 2, 2), 100)  # a class, not PyTorch's default ignore value
    assert torch.allclose(weighted_cross_entropy(logits, target), F.cross_entropy(logits, target))


def test_one_counted_pixel_is_its_own_mean():
    logits = _logits(k=2)
    target = torch.full((1, 4, 4), 255)
    target[0, 1, 2] = 1
    plain = F.cross_entropy(logits, torch.ones(1, 4, 4, dtype=torch.long), reduction="none")
    assert torch.allclose(weighted_cross_entropy(logits, target, ignore_index=255), plain[0, 1, 2])


def test_crop_cuts_one_side_when_only_that_side_differs():
    logits = _logits()
    for shape, window in (((1, 4, 8), (slice(None), slice(None), slice(2, 6))),
                          ((1, 8, 4), (slice(None), slice(2, 6), slice(None)))):
        target = torch.randint(0, 3, shape, generator=torch.Generator().manual_seed(3))
        assert torch.allclose(weighted_cross_entropy(logits, target, crop=True),
                              weighted_cross_entropy(logits, target[window]))


def test_crop_compares_each_side_with_its_own():
    logits = torch.randn(1, 2, 4, 6, generator=torch.Generator().manual_seed(4))  # wider than the target is high
    target = torch.randint(0, 2, (1, 5, 8), generator=torch.Generator().manual_seed(5))
    assert torch.allclose(weighted_cross_entropy(logits, target, crop=True),
                          weighted_cross_entropy(logits, target[:, :4, 1:7]))
