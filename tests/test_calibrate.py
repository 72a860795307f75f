"""The threshold stored with a run: chosen on training images, keeping both the pixel and the Rand error near their best."""

import numpy as np
import pytest
import torch
from torch import nn

from unet_course import UNet, choose_threshold
from unet_course.calibrate import THRESHOLDS, foreground_probabilities, pick_threshold, threshold_sweep
from unet_course.metrics import pixel_error, rand_error


class ProbabilityIsTheImage(nn.Module):
    """Logits whose softmax gives P(class 1) = the input's pixel value."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), torch.logit(x.clamp(1e-6, 1 - 1e-6))], dim=1)


def _two_cells_with_a_faint_membrane():
    truth = np.ones((64, 64), dtype=np.int64)
    truth[:, 31:33] = 0  # a membrane two pixels wide splits two cells
    probability = np.where(truth == 1, 0.9, 0.6).astype(np.float32)  # the membrane only faintly seen
    return [(torch.from_numpy(probability)[None], torch.from_numpy(truth))]


def test_the_cut_that_separates_the_cells_is_chosen_not_half():
    data = _two_cells_with_a_faint_membrane()
    model = ProbabilityIsTheImage()
    assert rand_error(data[0][0][0].numpy(), data[0][1].numpy(), threshold=0.5) > 0.3  # at 0.5 the two cells merge into one
    assert choose_threshold(model, data) == 0.6  # the first cut above the membrane's 0.6, nearest 0.5


# a sweep shaped like a class-balanced network's on ISBI slices: the pixel error is best at a low cut,
# the Rand error at a higher one
SWEEP = {"threshold": np.array([0.3, 0.4, 0.5, 0.6]), "pixel": np.array([0.080, 0.110, 0.160, 0.200]),
         "rand": np.array([0.200, 0.180, 0.150, 0.160])}


def test_each_metric_picks_its_own_best_cut():
    assert pick_threshold(SWEEP, "pixel") == 0.3
    assert pick_threshold(SWEEP, "rand") == 0.5


def test_both_picks_the_cut_where_neither_error_is_far_from_its_best():
    # excess over each error's best: pixel (0, .03, .08, .12), Rand (.05, .03, 0, .01); the larger is smallest
    # at 0.4, where neither error is best; the plain sum of the two errors would pick 0.3
    assert pick_threshold(SWEEP) == 0.4
    assert pick_threshold(SWEEP, "both") == 0.4


def test_an_unknown_metric_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="both, rand, pixel"):
        pick_threshold(SWEEP, "dice")
    with pytest.raises(ValueError, match="both, rand, pixel"):
        choose_threshold(ProbabilityIsTheImage(), _two_cells_with_a_faint_membrane(), metric="iou")


def test_sweep_equals_the_metrics_at_each_threshold():
    pairs = foreground_probabilities(ProbabilityIsTheImage(), _two_cells_with_a_faint_membrane())
    probability, truth = pairs[0]
    assert probability.shape == truth.shape == (64, 64)
    sweep = threshold_sweep(pairs)
    assert list(sweep["threshold"]) == list(THRESHOLDS)
    for k, cut in enumerate(THRESHOLDS):
        assert sweep["pixel"][k] == pytest.approx(pixel_error(probability, truth, threshold=cut))
        assert sweep["rand"][k] == pytest.approx(rand_error(probability, truth, threshold=cut))


def test_threshold_needs_two_classes_and_data():
    with pytest.raises(ValueError, match="two-class"):
        foreground_probabilities(UNet(num_classes=3, base_channels=4, depth=2), [])
    with pytest.raises(ValueError, match="at least one"):
        threshold_sweep([])
