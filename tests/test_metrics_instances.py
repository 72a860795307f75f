"""Instance matching: hand-counted cases, optimal matching below IoU 0.5, empty images."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from unet_course.data import synthetic_cells
from unet_course.metrics import instance_iou, match_instances

from conftest import label_row


def test_counts_by_hand():
    truth = label_row((1, 0, 4), (2, 10, 14))
    pred = label_row((7, 0, 3), (8, 13, 14), (9, 20, 25))  # IoU 3/4 with 1, 1/4 with 2, a false positive
    strict, loose = match_instances(pred, truth, iou_thresholds=(0.5, 0.2))
    assert (strict.tp, strict.fp, strict.fn) == (1, 2, 1)
    assert strict.precision == pytest.approx(1 / 3) and strict.recall == 0.5 and strict.f1 == pytest.approx(0.4)
    assert strict.matched_iou == 0.75
    assert (loose.tp, loose.fp, loose.fn) == (2, 1, 0)
    assert loose.matched_iou == pytest.approx(0.5)


def test_below_one_half_the_matching_is_optimal_not_greedy():
    truth = label_row((1, 0, 10), (2, 10, 20))
    pred = label_row((3, 0, 3), (4, 3, 15))  # 4 overlaps 1 (7/15) and 2 (5/17); 3 overlaps only 1 (3/10)
    # greedy by IoU would pair 4 with 1 and leave 3 unmatched; the best pairs 4-2 and 3-1
    (result,) = match_instances(pred, truth, iou_thresholds=0.25)
    assert result.tp == 2 and result.matched_iou == pytest.approx((5 / 17 + 3 / 10) / 2)


def test_instance_iou_matches_a_naive_loop():
    truth = synthetic_cells(96, seed=3).labels
    pred = ndimage.grey_erosion(np.roll(truth, 2, axis=1), size=3)  # shifted, shrunk cells
    ious, pred_ids, true_ids = instance_iou(pred, truth)
    assert ious.shape == (len(pred_ids), len(true_ids))
    for i, p in enumerate(pred_ids):
        for j, t in enumerate(true_ids):
            a, b = pred == p, truth == t
            assert ious[i, j] == pytest.approx((a & b).sum() / (a | b).sum())


def test_pairs_above_one_half_agree_with_an_optimal_matching():
    truth = synthetic_cells(128, seed=5).labels
    pred = ndimage.grey_dilation(np.roll(truth, (2, -1), axis=(0, 1)), size=3)
    ious, _, _ = instance_iou(pred, truth)
    for iou_threshold in (0.5, 0.7, 0.8, 0.9):
        gain = np.where(ious > iou_threshold, 1.0, 0.0)
        rows, cols = linear_sum_assignment(gain, maximize=True)
        (result,) = match_instances(pred, truth, iou_thresholds=iou_threshold)
        assert result.tp == int(gain[rows, cols].sum())
    at_half, at_08 = match_instances(pred, truth, iou_thresholds=(0.5, 0.8))
    assert 0 < at_08.tp < at_half.tp  # a stricter threshold counts fewer detections


def test_identical_up_to_ids_is_perfect():
    truth = synthetic_cells(64, seed=1).labels
    renamed = np.where(truth > 0, truth * 3 + 100, 0)
    (result,) = match_instances(torch.from_numpy(renamed), torch.from_numpy(truth))
    assert (result.fp, result.fn, result.f1, result.matched_iou) == (0, 0, 1.0, 1.0)
    assert result.tp == len(np.unique(truth)) - 1


def test_empty_images():
    empty = np.zeros((5, 5), dtype=int)
    one = empty.copy()
    one[1:3, 1:3] = 1
    (nothing,) = match_instances(empty, empty)
    assert nothing.tp == nothing.fp == nothing.fn == 0
    assert np.isnan(nothing.precision) and np.isnan(nothing.recall) and np.isnan(nothing.f1)
    (missed,) = match_instances(empty, one)
    assert (missed.fn, missed.recall, missed.f1) == (1, 0.0, 0.0) and np.isnan(missed.precision)


def test_mistakes_raise_helpful_errors():
    with pytest.raises(ValueError, match="skimage.measure.label"):
        match_instances(np.zeros((3, 3), np.float32), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="iou_thresholds must be IoU values in \\[0, 1\\)"):
        match_instances(np.zeros((3, 3), int), np.zeros((3, 3), int), iou_thresholds=(0.5, 1.0))
