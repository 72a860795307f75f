"""The metrics line by line: defaults, the cut of floating-point truth, empty inputs and every refusal word for word.

Written so that changing a comparison, default or message of ``unet_course.metrics`` fails a
test (``make mutation`` measures it); the behaviour itself is taught in chapter 7.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from unet_course.metrics import (confusion_matrix, dice, instance_iou, iou, match_instances, pixel_error, rand_error,
                                 rand_scores, topology_preserving_warp, warping_error)

from conftest import label_row


PRED = np.array([[0, 1], [1, 1]])
TRUTH = np.array([[0, 0], [1, 1]])


# --- pixel.py ----------------------------------------------------------------------------------------------------

def test_the_confusion_matrix_has_two_classes_by_default():
    assert confusion_matrix(PRED, TRUTH).tolist() == [[1, 1], [0, 2]]


def test_floating_point_truth_is_cut_at_the_threshold_given():
    probs = np.array([0.2, 0.4, 0.6, 0.9])
    truth = np.array([0.1, 0.35, 0.35, 0.95])  # class 1 above 0.3: [0, 1, 1, 1]; above 0.5: [0, 0, 0, 1]
    assert pixel_error(probs, truth, threshold=0.3) == 0.0
    assert pixel_error(probs, truth) == 0.25
    assert confusion_matrix(probs, truth, threshold=0.3).tolist() == [[1, 0], [0, 3]]
    np.testing.assert_allclose(iou(probs, truth, threshold=0.3), [1.0, 1.0])
    np.testing.assert_allclose(dice(probs, truth, threshold=0.3), [1.0, 1.0])
    np.testing.assert_allclose(iou(probs, truth), [2 / 3, 1 / 2])  # the default cut: 0.6 is a false class 1
    np.testing.assert_allclose(dice(probs, truth), [4 / 5, 2 / 3])


def test_scores_are_float64_fractions_of_integer_counts():
    pred, truth = np.array([0, 1, 1], dtype=np.uint8), np.array([0, 0, 1], dtype=np.uint8)
    assert iou(pred, truth).dtype == np.float64 and dice(pred, truth).dtype == np.float64
    np.testing.assert_allclose(iou(pred, truth), [1 / 2, 1 / 2])
    np.testing.assert_allclose(dice(pred, truth), [2 / 3, 2 / 3])


def test_a_class_absent_from_both_is_nan_without_a_warning():
    nothing = np.zeros((2, 2), dtype=int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(iou(nothing, nothing)[1]) and np.isnan(dice(nothing, nothing)[1])


def test_pixel_error_of_empty_maps_is_nan_without_a_warning_and_of_one_pixel_a_number():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(pixel_error(np.zeros(0), np.zeros(0)))
    assert pixel_error(np.array([1]), np.array([1])) == 0.0
    assert pixel_error(np.array([0.7]), np.array([0])) == 1.0


@pytest.mark.parametrize("pred, truth, message", [
    ([0, 2], [0, 1], "pred must hold class labels in 0..1, got values from 0 to 2. Set num_classes to the number of "
                     "classes."),
    ([0, 1], [-1, 1], "truth must hold class labels in 0..1, got values from -1 to 1. Set num_classes to the number "
                      "of classes."),
])
def test_labels_outside_the_classes_are_refused_word_for_word(pred, truth, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        confusion_matrix(np.array(pred), np.array(truth))


def test_three_classes_refuse_a_label_3_and_name_the_range():
    with pytest.raises(ValueError, match=r"^truth must hold class labels in 0\.\.2, got values from 0 to 3\. "):
        iou(np.array([0, 1]), np.array([0, 3]), num_classes=3)
    assert confusion_matrix(np.array([2, 0]), np.array([2, 2]), num_classes=3).tolist() == [[0, 0, 0], [0, 0, 0],
                                                                                            [1, 0, 1]]


def test_probabilities_with_more_than_two_classes_are_refused_word_for_word():
    message = ("Floating-point pred is read as probabilities of class 1, which needs num_classes=2, got "
               "num_classes=3. Pass class labels instead, e.g. logits.argmax(dim=0).")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        confusion_matrix(np.zeros(2, np.float32), np.zeros(2, int), num_classes=3)


# --- rand.py -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["pred_labels", "true_labels"])
def test_rand_scores_refuse_floating_point_labels_word_for_word(which):
    labels = {"pred_labels": np.ones((2, 2), dtype=int), "true_labels": np.ones((2, 2), dtype=int)}
    labels[which] = labels[which].astype(np.float32)
    message = (f"{which} must be integer object ids, got dtype float32. For probability or binary maps use "
               "rand_error(pred, truth, threshold=...), which labels the cells for you.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        rand_scores(**labels)


def test_rand_error_cuts_floating_point_truth_at_the_threshold_given():
    truth = np.full((3, 5), 0.4)
    truth[:, 2] = 0.1  # two cells above 0.3, none above 0.5
    pred = np.ones((3, 5), dtype=bool)  # one cell: a merge
    assert rand_error(pred, truth, threshold=0.3) == pytest.approx(1 - 2 * 60 / (60 + 132))
    assert np.isnan(rand_error(pred, truth))  # no interior in the truth at the default cut


# --- warping.py --------------------------------------------------------------------------------------------------

def test_the_warp_refuses_a_stack_of_slices_word_for_word():
    message = ("Expected one (H, W) slice, got shape (1, 4, 4). Score slices one at a time, e.g. metric(pred[0], "
               "truth[0]), and average.")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        topology_preserving_warp(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))


def test_the_warping_error_of_an_empty_slice_is_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(warping_error(np.zeros((0, 0)), np.zeros((0, 0))))
    assert warping_error(np.ones((1, 1)), np.zeros((1, 1))) == 1.0  # a cell from nothing costs its area


# --- instances.py (thresholds passed by position) ----------------------------------------------------------------


def test_below_one_half_only_candidate_pairs_are_counted_as_matches():
    """Two predictions inside one cell and one spanning two cells: at most 2 matches, not the 3 an assignment pairs."""
    truth = label_row((1, 0, 20), (2, 30, 34), (3, 36, 40))
    pred = label_row((7, 0, 5), (8, 10, 15), (9, 30, 40))  # IoU 0.25, 0.25 with cell 1; 0.4, 0.4 with cells 2 and 3
    (result,) = match_instances(pred, truth, 0.2)
    assert (result.tp, result.fp, result.fn) == (2, 1, 1)
    assert result.matched_iou == pytest.approx((0.25 + 0.4) / 2)
    assert result.iou_threshold == 0.2 and result.f1 == pytest.approx(2 / 3)


def test_threshold_zero_is_accepted_and_a_scalar_is_one_threshold():
    truth, pred = label_row((1, 0, 4)), label_row((2, 3, 8))  # IoU 1/8
    (at_zero,) = match_instances(pred, truth, 0.0)
    assert (at_zero.tp, at_zero.matched_iou) == (1, 0.125)
    (at_half,) = match_instances(pred, truth, 0.5)
    assert (at_half.tp, at_half.fp, at_half.fn) == (0, 1, 1) and np.isnan(at_half.matched_iou)
    assert at_half.precision == 0.0 and at_half.recall == 0.0 and at_half.f1 == 0.0


@pytest.mark.parametrize("thresholds, shown", [((), "[]"), ((0.5, 1.0), "[0.5, 1.0]"), (-0.1, "[-0.1]")])
def test_thresholds_outside_zero_to_one_are_refused_word_for_word(thresholds, shown):
    message = f"iou_thresholds must be IoU values in [0, 1), got {shown}. The usual one is 0.5."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        match_instances(label_row((1, 0, 4)), label_row((1, 0, 4)), thresholds)


@pytest.mark.parametrize("which", ["pred_labels", "true_labels"])
def test_instance_functions_refuse_floating_point_labels_word_for_word(which):
    labels = {"pred_labels": label_row((1, 0, 4)), "true_labels": label_row((1, 0, 4))}
    labels[which] = labels[which].astype(np.float64)
    message = (f"{which} must be integer object ids (0 = background), got dtype float64. Label a binary mask first, "
               "e.g. skimage.measure.label(mask > 0.5).")
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        match_instances(**labels)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        instance_iou(**labels)


def test_unsigned_labels_are_object_ids():
    truth = label_row((1, 0, 4)).astype(np.uint16)
    (result,) = match_instances(truth, truth)
    assert (result.tp, result.matched_iou) == (1, 1.0)
    ious, pred_ids, true_ids = instance_iou(truth, truth)
    assert ious.tolist() == [[1.0]] and pred_ids.tolist() == true_ids.tolist() == [1]


def test_an_iou_of_exactly_the_threshold_is_not_a_match():
    truth, pred = label_row((1, 0, 2)), label_row((2, 0, 1))  # IoU 1/2
    (at_half,) = match_instances(pred, truth, 0.5)
    (below,) = match_instances(pred, truth, 0.3)
    assert (at_half.tp, at_half.fp, at_half.fn) == (0, 1, 1) and (below.tp, below.fp, below.fn) == (1, 0, 0)


def test_below_one_half_the_matching_takes_the_most_pairs_then_the_largest_total_iou():
    """The matching core on candidate pairs (prediction row, truth column, IoU), cut at 0.1."""
    from unet_course.metrics.instances import _match

    def matched(rows, cols, ious):
        return sorted(_match(np.array(rows), np.array(cols), np.array(ious), 0.1).tolist())

    assert matched([0, 1], [1, 0], [0.3, 0.4]) == [0.3, 0.4]  # only the crossed pairs are candidates
    assert matched([0, 0, 1], [0, 1, 0], [0.45, 0.2, 0.2]) == [0.2, 0.2]  # two pairs beat one of a larger IoU
    assert matched([0, 0, 1, 1], [0, 1, 0, 1], [0.45, 0.2, 0.2, 0.35]) == [0.35, 0.45]  # then the larger total
    assert matched([0, 1], [0, 0], [0.05, 0.3]) == [0.3]  # a pair at or below the cut is no candidate


def test_a_single_pair_below_one_half_is_matched_and_no_match_warns_nothing():
    (result,) = match_instances(label_row((2, 0, 4)), label_row((1, 0, 5)), 0.3)  # one pair, IoU 0.8
    assert (result.tp, result.fp, result.fn) == (1, 0, 0) and result.matched_iou == 4 / 5  # the IoU itself, exactly
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (result,) = match_instances(label_row((2, 10, 14)), label_row((1, 0, 4)), 0.3)  # no overlap at all
    assert result.tp == 0 and np.isnan(result.matched_iou)
