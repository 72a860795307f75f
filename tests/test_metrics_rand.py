"""Rand error: agreement with scikit-image, known splits and merges, the ISBI conventions."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import adapted_rand_error

from unet_course.data import ISBI2012
from unet_course.metrics import contingency_table, rand_error, rand_scores


def singletons(labels: np.ndarray) -> np.ndarray:
    """Give every 0 pixel a label of its own (the ISBI reading of predicted boundary)."""
    labels = labels.copy()
    zero = labels == 0
    labels[zero] = labels.max() + 1 + np.arange(zero.sum())
    return labels


@pytest.mark.parametrize("seed", range(5))
def test_matches_skimage_on_random_label_images(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 6, (40, 50))  # 0 = background, ignored
    pred = rng.integers(1, 8, (40, 50))  # no 0: nothing to read as boundary
    error, sk_precision, sk_recall = adapted_rand_error(truth, pred)
    ours = rand_scores(pred, truth)
    assert ours.error == pytest.approx(error, abs=1e-12)
    # scikit-image 0.26 returns recall where it documents precision (its issue #6485)
    assert ours.precision == pytest.approx(sk_recall, abs=1e-12)
    assert ours.recall == pytest.approx(sk_precision, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_predicted_zero_pixels_are_singletons(seed):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, (30, 30))
    pred = rng.integers(0, 5, (30, 30))
    error, *_ = adapted_rand_error(truth, singletons(pred))
    assert rand_scores(pred, truth).error == pytest.approx(error, abs=1e-12)
    assert rand_scores(pred, truth).error != pytest.approx(adapted_rand_error(truth, pred)[0], abs=1e-6)


def test_split_lowers_recall_and_merge_lowers_precision():
    one = np.array([[1, 1, 1, 1]])
    two = np.array([[1, 1, 2, 2]])
    split = rand_scores(two, one)  # 12 true pairs, 4 predicted, 4 shared
    assert (split.error, split.precision, split.recall) == pytest.approx((0.5, 1.0, 1 / 3))
    merge = rand_scores(one, two)
    assert (merge.error, merge.precision, merge.recall) == pytest.approx((0.5, 1 / 3, 1.0))
    assert rand_scores(two * 7, two).error == 0.0  # only the grouping matters, not the ids


def test_empty_truth_and_all_boundary_prediction():
    nothing = rand_scores(np.ones((3, 3), int), np.zeros((3, 3), int))
    assert np.isnan(nothing.error) and np.isnan(nothing.precision) and np.isnan(nothing.recall)
    all_boundary = rand_scores(np.zeros((3, 3), int), np.ones((3, 3), int))
    assert all_boundary.error == 1.0 and all_boundary.recall == 0.0 and np.isnan(all_boundary.precision)


def test_contingency_table_counts_pairs():
    a = np.array([1, 1, 2, 2, 2, 0])
    b = np.array([5, 5, 5, 6, 6, 6])
    table = {(int(i), int(j)): int(n) for i, j, n in zip(*contingency_table(a, b))}
    assert table == {(0, 6): 1, (1, 5): 2, (2, 5): 1, (2, 6): 2}
    big = np.arange(10_000) * 1_000_003  # sparse ids: the sorting path
    ids_a, ids_b, counts = contingency_table(big, big[::-1].copy())
    assert counts.sum() == 10_000 and len(counts) == 10_000


def test_membrane_maps_by_hand():
    truth = np.ones((4, 5), dtype=bool)
    truth[:, 2] = False  # two cells of 8 pixels
    assert rand_error(truth, truth) == 0.0
    # a missed membrane merges them: 112 true pairs, 240 predicted, 112 shared
    assert rand_error(np.ones((4, 5)), truth) == pytest.approx(1 - 224 / 352)
    # a diagonal membrane separates 4-connected cells but not 8-connected ones
    diagonal = ~np.eye(4, dtype=bool)
    assert rand_error(diagonal, diagonal, connectivity=8) == 0.0
    assert rand_error(np.ones((4, 4)), diagonal) > 0.0
    assert rand_error(np.ones((4, 4)), diagonal, connectivity=8) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def isbi_truth(isbi_root) -> np.ndarray:
    return ISBI2012(isbi_root, indices=[0]).masks[0].astype(bool)


def blurred(truth: np.ndarray, sigma: float = 2.0, noise: float = 0.15, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(truth.astype(np.float32), sigma) + rng.normal(0, noise, truth.shape)
    return np.clip(ndimage.gaussian_filter(smooth, 1.0), 0, 1).astype(np.float32)


def test_real_slice_matches_skimage_on_the_labelled_cells(isbi_truth):
    probs = blurred(isbi_truth)
    structure = ndimage.generate_binary_structure(2, 1)
    pred_labels = ndimage.label(probs > 0.5, structure)[0]
    true_labels = ndimage.label(isbi_truth, structure)[0]
    error, *_ = adapted_rand_error(true_labels, singletons(pred_labels))
    assert rand_error(probs, isbi_truth) == pytest.approx(error, abs=1e-12)
    assert 0.0 < error < 0.1
    assert rand_error(torch.from_numpy(probs), torch.from_numpy(isbi_truth)) == rand_error(probs, isbi_truth)
    assert rand_error(isbi_truth, isbi_truth) == 0.0


def test_n_squared_normalisation_of_the_fiji_script_differs_by_little(isbi_truth):
    # The challenge script counts each pixel paired with itself: n_ij**2 instead of n_ij(n_ij - 1).
    structure = ndimage.generate_binary_structure(2, 1)
    pred = ndimage.label(blurred(isbi_truth) > 0.5, structure)[0]
    truth = ndimage.label(isbi_truth, structure)[0]
    inside = truth != 0
    t, p, n = contingency_table(truth[inside], pred[inside])
    n = n.astype(float)
    a = np.bincount(np.unique(t, return_inverse=True)[1], weights=n)
    joined = p != 0
    b = np.bincount(np.unique(p[joined], return_inverse=True)[1], weights=n[joined])
    singles = n[~joined].sum()
    fiji = 1 - 2 * ((n[joined] ** 2).sum() + singles) / ((a**2).sum() + (b**2).sum() + singles)
    assert abs(fiji - rand_scores(pred, truth).error) < 1e-4


def test_a_merge_costs_more_than_a_shifted_boundary(isbi_truth):
    truth = isbi_truth
    shifted = np.zeros_like(truth)
    shifted[:, 1:] = truth[:, :-1]  # every membrane one pixel to the right
    shifted[:, 0] = truth[:, 0]
    merged = ndimage.binary_dilation(truth, iterations=2)  # thin membranes vanish: cells merge
    assert rand_error(shifted, truth) < 0.02
    assert rand_error(merged, truth) > 5 * rand_error(shifted, truth)


def test_mistakes_raise_helpful_errors():
    with pytest.raises(ValueError, match="rand_error"):
        rand_scores(np.zeros((3, 3), np.float32), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="one \\(H, W\\) slice"):
        rand_error(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="connectivity"):
        rand_error(np.zeros((3, 3)), np.zeros((3, 3)), connectivity=6)
