"""Pixel error, IoU and Dice: hand-computed cases, empty classes, tensors, user mistakes."""

import numpy as np
import pytest
import torch

from unet_course.metrics import confusion_matrix, dice, iou, pixel_error

PRED = np.array([[0, 1], [1, 1]])
TRUTH = np.array([[0, 0], [1, 1]])


def test_iou_and_dice_on_a_hand_computed_case():
    # class 0: pred {a}, truth {a, b}: 1 shared of 2 -> IoU 1/2, Dice 2/3
    # class 1: pred {b, c, d}, truth {c, d}: 2 shared of 3 -> IoU 2/3, Dice 4/5
    np.testing.assert_allclose(iou(PRED, TRUTH), [1 / 2, 2 / 3])
    np.testing.assert_allclose(dice(PRED, TRUTH), [2 / 3, 4 / 5])


def test_three_classes_by_hand():
    pred = np.array([0, 1, 2, 2, 2, 1])
    truth = np.array([0, 1, 1, 2, 2, 0])
    # class 0: pred{0} truth{0,5}; class 1: pred{1,5} truth{1,2}; class 2: pred{2,3,4} truth{3,4}
    np.testing.assert_allclose(iou(pred, truth, num_classes=3), [1 / 2, 1 / 3, 2 / 3])
    np.testing.assert_allclose(dice(pred, truth, num_classes=3), [2 / 3, 1 / 2, 4 / 5])
    assert confusion_matrix(pred, truth, num_classes=3).tolist() == [[1, 1, 0], [0, 1, 1], [0, 0, 2]]


def test_iou_and_dice_match_a_naive_loop_on_random_maps():
    rng = np.random.default_rng(0)
    pred, truth = rng.integers(0, 4, (2, 37, 41))
    for c, (ours_iou, ours_dice) in enumerate(zip(iou(pred, truth, 4), dice(pred, truth, 4))):
        p, t = pred == c, truth == c
        assert ours_iou == pytest.approx((p & t).sum() / (p | t).sum())
        assert ours_dice == pytest.approx(2 * (p & t).sum() / (p.sum() + t.sum()))


def test_pixel_error_thresholds_probabilities():
    probs = np.array([[0.2, 0.9], [0.4, 0.8]])
    truth = np.array([[0, 1], [1, 1]])
    assert pixel_error(probs, truth) == 0.25  # 0.4 falls on the wrong side
    assert pixel_error(probs, truth, threshold=0.3) == 0.0
    assert pixel_error(probs, truth, threshold=0.85) == 0.5
    assert pixel_error(truth, truth) == 0.0
    assert pixel_error(np.array([0.5, 0.51]), np.array([0, 1])) == 0.0  # strictly above is class 1


def test_class_absent_from_both_is_nan_and_absent_from_one_is_zero():
    all_zero = np.zeros((3, 3), dtype=int)
    scores = iou(all_zero, all_zero)
    assert scores[0] == 1.0 and np.isnan(scores[1])
    assert np.isnan(dice(all_zero, all_zero)[1])
    np.testing.assert_array_equal(iou(all_zero, np.ones((3, 3), dtype=int)), [0.0, 0.0])
    assert np.nanmean(iou(all_zero, all_zero)) == 1.0  # the documented way to average present classes


def test_tensors_and_numpy_agree():
    rng = np.random.default_rng(1)
    probs = rng.random((16, 16)).astype(np.float32)
    truth = rng.integers(0, 2, (16, 16))
    probs_t = torch.from_numpy(probs).requires_grad_()
    truth_t = torch.from_numpy(truth)
    assert pixel_error(probs_t, truth_t) == pixel_error(probs, truth)
    np.testing.assert_array_equal(iou(probs_t, truth_t), iou(probs, truth))
    np.testing.assert_array_equal(dice(probs_t > 0.5, truth_t.bool()), dice(probs, truth))


def test_mistakes_raise_helpful_errors():
    with pytest.raises(ValueError, match="same shape"):
        iou(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="num_classes"):
        iou(np.array([0, 3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="argmax"):
        dice(np.zeros((2, 2), np.float32), np.zeros((2, 2), int), num_classes=3)
