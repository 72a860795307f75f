"""V_Rand and V_Info after border thinning: brute-force pair counts, hand-counted cases, the script's conventions."""

import itertools
import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.segmentation import watershed

from unet_course.data import ISBI2012
from unet_course.metrics import (
    CHALLENGE_THRESHOLDS,
    challenge_sweep,
    rand_scores,
    thin_borders,
    v_info,
    v_info_scores,
    v_rand,
    v_rand_scores,
)
from unet_course.metrics._arrays import label_components
from unet_course.metrics.challenge import ForegroundScores
from unet_course.metrics.thinning import interior_mask


def brute_force_v_rand(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(precision, recall) by visiting every ordered pair of truth-foreground pixels, self-pairs included."""
    pixels = [(t, p) for t, p in zip(truth.ravel(), pred.ravel()) if t != 0]
    same_true = same_pred = both = 0
    for (i, (t1, p1)), (j, (t2, p2)) in itertools.product(enumerate(pixels), repeat=2):
        joined_true = t1 == t2
        joined_pred = i == j or (p1 == p2 and p1 != 0)  # a predicted 0 pixel is joined to itself only
        same_true += joined_true
        same_pred += joined_pred
        both += joined_true and joined_pred
    return both / same_pred, both / same_true


def direct_v_info(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """(I/H(truth), I/H(pred)) from I = Σ p_ij log(p_ij / (p_i p_j)), predicted 0 pixels relabelled one by one."""
    foreground = truth != 0
    t, p = truth[foreground], pred[foreground].astype(np.int64)
    lone = p == 0
    p[lone] = p.max() + 1 + np.arange(lone.sum())  # each its own object
    n = t.size
    joint, pt, pp = {}, {}, {}
    for a, b in zip(t.tolist(), p.tolist()):
        joint[a, b] = joint.get((a, b), 0) + 1
        pt[a] = pt.get(a, 0) + 1
        pp[b] = pp.get(b, 0) + 1
    information = sum(c / n * math.log(c * n / (pt[a] * pp[b])) for (a, b), c in joint.items())
    h_true = -sum(c / n * math.log(c / n) for c in pt.values())
    h_pred = -sum(c / n * math.log(c / n) for c in pp.values())
    return information / h_true, information / h_pred


def f_score(precision, recall):
    return 2 * precision * recall / (precision + recall)


def two_cells(height=4, width=7, membrane=(3,)):
    truth = np.ones((height, width), dtype=bool)
    truth[:, list(membrane)] = False
    return truth


# --- the scores of label images -------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_v_rand_scores_match_brute_force_pair_counting(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, (5, 6))  # 0 = background, ignored
    pred = rng.integers(0, 5, (5, 6))  # 0 = line pixels, singletons
    precision, recall = brute_force_v_rand(pred, truth)
    ours = v_rand_scores(pred, truth)
    assert (ours.precision, ours.recall) == pytest.approx((precision, recall), abs=1e-12)
    assert ours.score == pytest.approx(f_score(precision, recall), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_v_info_scores_match_the_mutual_information(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, (8, 9))
    pred = rng.integers(0, 5, (8, 9))
    precision, recall = direct_v_info(pred, truth)
    ours = v_info_scores(pred, truth)
    assert (ours.precision, ours.recall) == pytest.approx((precision, recall), abs=1e-12)
    assert ours.score == pytest.approx(f_score(precision, recall), abs=1e-12)


def test_pairs_are_counted_n_squared_with_self_pairs():
    """16 ordered pairs of 4 pixels: a split keeps 8 (recall 1/2); distinct pairs would keep 4 of 12 (1/3)."""
    split = v_rand_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 1, 1]]))
    assert (split.precision, split.recall, split.score) == pytest.approx((1.0, 0.5, 2 / 3))
    assert rand_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 1, 1]])).recall == pytest.approx(1 / 3)
    merge = v_rand_scores(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 2, 2]]))
    assert (merge.precision, merge.recall) == pytest.approx((0.5, 1.0))


def test_predicted_line_pixels_are_singletons_and_the_truth_background_is_ignored():
    all_line = v_rand_scores(np.zeros((1, 4), int), np.ones((1, 4), int))  # 4 self-pairs of 16
    assert (all_line.precision, all_line.recall) == pytest.approx((1.0, 0.25))
    truth = np.array([[1, 1, 0, 2, 2]])
    anything_on_background = np.array([[5, 5, 9, 7, 7]])
    assert v_rand_scores(anything_on_background, truth).score == 1.0
    assert v_info_scores(anything_on_background, truth).score == 1.0
    assert v_rand_scores(np.array([[5, 5, 5, 7, 7]]), truth).score == 1.0  # joined only across the background
    nothing = v_rand_scores(np.ones((2, 2), int), np.zeros((2, 2), int))
    assert all(np.isnan([nothing.score, nothing.precision, nothing.recall]))


def test_v_info_edge_cases_follow_the_script():
    one_cell = np.ones((2, 3), int)
    assert v_info_scores(one_cell, one_cell).score == 0.0  # H(truth) = H(pred) = 0: precision 1, recall 0
    assert v_info_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 1, 1]])).score == 0.0  # H(truth) = 0
    merge = v_info_scores(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 2, 2]]))  # H(pred) = 0
    assert (merge.precision, merge.recall, merge.score) == (1.0, 0.0, 0.0)


def test_label_images_must_be_integers():
    with pytest.raises(ValueError, match="integer object ids"):
        v_rand_scores(np.ones((2, 2)) * 0.5, np.ones((2, 2), int))
    with pytest.raises(ValueError, match="same shape"):
        v_info_scores(np.ones((2, 2), int), np.ones((2, 3), int))


# --- border thinning --------------------------------------------------------------------------

def test_thinning_keeps_the_middle_of_an_odd_membrane_and_the_far_side_of_an_even_one():
    assert thin_borders(two_cells(membrane=(2, 3, 4)))[0].tolist() == [1, 1, 1, 0, 2, 2, 2]
    assert thin_borders(two_cells(width=6, membrane=(2, 3)))[0].tolist() == [1, 1, 1, 0, 2, 2]
    rows = np.ones((6, 3), dtype=bool)
    rows[2:4] = False
    assert thin_borders(rows)[:, 0].tolist() == [1, 1, 1, 0, 2, 2]


def test_thinning_never_closes_a_gap_and_an_all_membrane_map_is_one_object():
    leaky = two_cells(membrane=(2, 3, 4))
    leaky[1, 2:5] = True  # a gap through the membrane
    assert np.unique(thin_borders(leaky)).tolist() == [1]  # one cell, no line left
    assert np.unique(thin_borders(np.zeros((4, 5), dtype=bool))).tolist() == [1]
    assert np.unique(thin_borders(np.ones((4, 5), dtype=bool))).tolist() == [1]


@pytest.mark.parametrize("seed", range(4))
def test_thinning_agrees_with_scikit_image_on_odd_membranes(seed):
    """Stripes of cells, membranes 1 or 3 pixels wide: the meeting line is unambiguous, so any watershed agrees."""
    rng = np.random.default_rng(seed)
    interior = np.ones((40, 44), dtype=bool)
    for start in range(3, 40, 7):
        interior[:, start:start + int(rng.choice([1, 3]))] = False
    interior = interior if seed % 2 else np.ascontiguousarray(interior[:, :40].T)  # vertical, then horizontal
    ours = thin_borders(interior)
    markers = label_components(interior, 4)
    theirs = watershed(np.zeros(interior.shape), markers, connectivity=1, watershed_line=True)
    assert np.array_equal(ours == 0, theirs == 0)
    both = ours != 0
    assert len(np.unique(ours[both] * 10_000 + theirs[both])) == len(np.unique(ours[both]))  # same cells


def test_where_membranes_cross_the_line_stays_unbroken():
    """Vincent and Soille: a pixel reached only from line pixels is line (scikit-image gives it to a cell)."""
    interior = np.ones((12, 12), dtype=bool)
    interior[4:7, :] = False
    interior[:, 4:7] = False
    thinned = thin_borders(interior)
    assert (thinned[5] == 0).all() and (thinned[:, 5] == 0).all()
    assert np.unique(thinned).tolist() == [0, 1, 2, 3, 4]
    theirs = watershed(np.zeros(interior.shape), label_components(interior, 4), connectivity=1, watershed_line=True)
    assert theirs[5, 5] != 0


def test_a_line_pixel_joins_the_cell_it_meets_next_as_vincent_and_soille_flag_says():
    """Two one-pixel cells on a diagonal, traced by hand in the script's order (columns, then x-1, y-1, x+1, y+1).

    Pixel (row 1, column 2) first meets the line pixel at (1, 1), so it becomes line with the flag up;
    its next neighbour, above it, has joined the upper cell, and so it joins that cell too. Without the
    flag it would stay line, and the corner (2, 2) would go to the lower cell instead of becoming line.
    """
    interior = np.array([[0, 1, 0],
                         [1, 0, 0],
                         [0, 0, 0]], dtype=bool)
    assert thin_borders(interior).tolist() == [[0, 1, 1],
                                               [2, 0, 1],
                                               [2, 2, 0]]


def test_a_pixel_between_two_cells_stays_line_when_its_first_cell_comes_round_again():
    """Traced by hand in the script's order (x-1, y-1, x+1, y+1): the centre pixel first joins the lower cell
    (left), meets the upper cell (above) and becomes line with the flag down; the lower cell again (right,
    below) must not take it back: the flag is up only for a pixel that became line from a line neighbour."""
    interior = np.array([[0, 1, 0],
                         [1, 0, 1],
                         [1, 1, 1]], dtype=bool)
    assert thin_borders(interior).tolist() == [[0, 1, 0],
                                               [2, 0, 2],
                                               [2, 2, 2]]


def test_thinning_compares_in_double_precision_as_the_script_does():
    """float32 0.3 is 0.30000001...: above the script's third threshold 0.30000000000000004, unlike float32 0.3."""
    pred = np.full((4, 7), 0.3, dtype=np.float32)
    pred[:, 3] = 0.0
    assert np.unique(thin_borders(pred, threshold=CHALLENGE_THRESHOLDS[3])).tolist() == [0, 1, 2]
    assert not (pred > np.float32(CHALLENGE_THRESHOLDS[3])).any()  # what a float32 comparison would say


def test_thinning_refuses_a_stack():
    with pytest.raises(ValueError, match="one slices? at a time|one \\(H, W\\) map"):
        thin_borders(np.ones((2, 4, 4)))


# --- V_Rand and V_Info of maps: hand-counted cases ----------------------------------------------

def test_a_merge_hand_counted():
    truth = two_cells()  # two 4 x 3 cells, 12 pixels each
    merged = np.ones((4, 7))  # the membrane missed
    assert v_rand(merged, truth) == pytest.approx(f_score(288 / 576, 1.0))  # Σa² = 2·144, Σb² = 24²
    assert v_info(merged, truth) == 0.0  # one predicted object


def test_a_split_hand_counted():
    truth = np.ones((4, 7), dtype=bool)  # one cell of 28 pixels
    split = two_cells().astype(float)  # a membrane line through it: 12 + 12 pixels and 4 singletons
    recall = (144 + 144 + 4) / 28**2
    assert v_rand(split, truth) == pytest.approx(f_score(1.0, recall))


def test_a_graded_truth_is_cut_at_the_predictions_threshold_as_the_script_does():
    truth = np.where(two_cells(), 1.0, 0.7)  # the membrane column at 0.7: interior at a cut of 0.5, membrane at 0.8
    assert v_rand(truth, truth, threshold=0.8) == 1.0 and v_info(truth, truth, threshold=0.8) == 1.0
    assert v_rand(truth, truth, threshold=0.5) == 1.0 and v_info(truth, truth, threshold=0.5) == 0.0  # one cell


def test_a_thick_predicted_membrane_is_thinned_and_costs_nothing():
    truth = two_cells()  # membrane 1 pixel wide
    thick = np.where(two_cells(membrane=(2, 3, 4)), 0.9, 0.1)  # predicted 3 wide
    assert v_rand(thick, truth) == 1.0 and v_info(thick, truth) == 1.0
    without_thinning = v_rand_scores(label_components(thick > 0.5, 4), label_components(truth, 4)).score
    assert without_thinning < 0.95  # columns 2 and 4 would be singletons


def test_the_truth_is_not_thinned():
    """Truth: cells 1 and 5 columns wide around a membrane 3 wide; a merge scored on the unthinned truth."""
    truth = np.ones((2, 9), dtype=bool)
    truth[:, 1:4] = False
    merged = np.ones((2, 9))
    unthinned = f_score((2**2 + 10**2) / 12**2, 1.0)
    thinned = f_score((4**2 + 12**2) / 16**2, 1.0)  # what thinning the truth to one column would give
    assert v_rand(merged, truth) == pytest.approx(unthinned)
    assert v_rand(merged, truth) != pytest.approx(thinned)


def test_a_perfect_prediction_scores_1_on_a_real_slice(isbi_root):
    truth = ISBI2012(isbi_root, indices=[4]).masks[0]
    assert v_rand(truth.astype(np.float32), truth) == 1.0
    assert v_info(truth.astype(np.float32), truth) == 1.0
    eroded = ndimage.binary_erosion(truth, iterations=2)  # every membrane 4 pixels thicker
    assert v_rand(eroded, truth) > 0.99 and v_info(eroded, truth) > 0.99


# --- the threshold sweep -----------------------------------------------------------------------

def test_the_challenge_thresholds_are_the_scripts_sums():
    assert len(CHALLENGE_THRESHOLDS) == 11 and CHALLENGE_THRESHOLDS[0] == 0.0
    assert CHALLENGE_THRESHOLDS[3] == 0.1 + 0.1 + 0.1 and CHALLENGE_THRESHOLDS[-1] < 1.0
    certain = np.ones((4, 7))
    certain[:, 3] = 0.0  # probabilities of exactly 1.0 are interior at the last threshold
    assert v_rand(certain, two_cells(), threshold=CHALLENGE_THRESHOLDS[-1]) == 1.0


def test_the_sweep_averages_slices_at_one_threshold_and_keeps_the_best_mean():
    truth = np.stack([two_cells(), two_cells()])
    weak = np.where(two_cells(), 0.9, 0.35)  # its membrane is found at thresholds ≥ 0.35 only
    strong = np.where(two_cells(), 0.3, 0.05)  # its cells are found at thresholds < 0.3 only
    sweep = challenge_sweep(np.stack([weak, strong]), truth)
    for t, threshold in enumerate(CHALLENGE_THRESHOLDS):
        expected = np.mean([v_rand(weak, truth[0], threshold=threshold), v_rand(strong, truth[1], threshold=threshold)])
        assert sweep.v_rand[t] == pytest.approx(expected)
        expected = np.mean([v_info(weak, truth[0], threshold=threshold), v_info(strong, truth[1], threshold=threshold)])
        assert sweep.v_info[t] == pytest.approx(expected)
    assert sweep.best_v_rand == max(sweep.v_rand) < 1.0  # no one threshold is perfect for both slices
    assert sweep.best_v_rand_threshold == CHALLENGE_THRESHOLDS[int(np.argmax(sweep.v_rand))]
    assert sweep.best_v_info == max(sweep.v_info)
    alone = challenge_sweep(weak, truth[0])
    assert alone.best_v_rand == 1.0 and alone.best_v_rand_threshold == CHALLENGE_THRESHOLDS[4]  # the first of ties


def test_the_sweep_takes_given_thresholds_and_refuses_none():
    sweep = challenge_sweep(np.where(two_cells(), 0.9, 0.1), two_cells(), thresholds=[0.5])
    assert sweep.thresholds == (0.5,) and sweep.v_rand == (1.0,)
    with pytest.raises(ValueError, match="thresholds is empty"):
        challenge_sweep(np.ones((4, 7)), two_cells(), thresholds=[])


def test_thinning_keeps_a_boolean_map_as_it_is_and_names_its_argument():
    np.testing.assert_array_equal(interior_mask(np.array([True, False]), 1.0), [True, False])  # no threshold applies
    with pytest.raises(ValueError) as raised:
        thin_borders(np.array([["a"]]))
    assert str(raised.value) == "pred must hold numbers or booleans, got dtype <U1."


def test_the_scripts_thresholds_accumulate_in_floating_point_as_fiji_does():
    expected, threshold = [], 0.0
    while threshold <= 1.0:  # the script's loop: 11 values, the last 0.9999999999999999
        expected.append(threshold)
        threshold += 0.1
    assert CHALLENGE_THRESHOLDS == tuple(expected) and len(expected) == 11


def test_challenge_refusals_and_edge_cases_word_for_word():
    cases = [
        (lambda: v_rand_scores(np.zeros((2, 2)), np.ones((2, 2), dtype=int)), "pred_labels must be integer object ids"),
        (lambda: v_rand_scores(np.ones((2, 2), dtype=int), np.zeros((2, 2))), "true_labels must be integer object ids"),
        (lambda: challenge_sweep(np.zeros(4), np.ones(4)), "Expected (H, W) or (N, H, W) maps, got shape (4,)."),
        (lambda: challenge_sweep(np.zeros((4, 4)), np.ones((4, 4)), thresholds=()),
         "thresholds is empty; pass at least one, e.g. CHALLENGE_THRESHOLDS."),
        (lambda: v_rand(np.zeros((2, 4, 4)), np.ones((2, 4, 4))), "Expected one (H, W) slice, got shape (2, 4, 4)."),
        (lambda: v_info(np.zeros((2, 4, 4)), np.ones((2, 4, 4))), "Expected one (H, W) slice, got shape (2, 4, 4)."),
    ]
    for call, start in cases:
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value).startswith(start), str(raised.value)
    assert str(raised.value).endswith("Score slices one at a time, e.g. metric(pred[0], truth[0]), and average.")
    with pytest.raises(ValueError) as raised:
        v_rand_scores(np.zeros((2, 2)), np.ones((2, 2), dtype=int))
    assert str(raised.value).endswith("got dtype float64. For probability or binary maps use v_rand(pred, truth, "
                                      "threshold=...) or v_info(...), which label and thin for you.")
    # independent labelings share no information: precision and recall 0, the F-score undefined
    independent = v_info_scores(np.array([[1, 2], [1, 2]]), np.array([[1, 1], [2, 2]]))
    assert (independent.precision, independent.recall) == (0.0, 0.0) and math.isnan(independent.score)
    assert v_info_scores(np.array([[1, 2]]), np.array([[1, 1]])) == ForegroundScores(0.0, 0.0, 1.0)  # one true cell
    assert v_info_scores(np.array([[1]]), np.array([[1]])).score == 0.0  # a one-pixel truth still scores
    no_foreground = challenge_sweep(np.full((4, 4), 0.9), np.zeros((4, 4), dtype=int))  # nothing to score anywhere
    assert math.isnan(no_foreground.best_v_rand) and math.isnan(no_foreground.best_v_rand_threshold)
    assert math.isnan(no_foreground.best_v_info) and math.isnan(no_foreground.best_v_info_threshold)
