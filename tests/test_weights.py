"""Tests of the weight map against a direct per-cell distance-transform reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from unet_course import (
    border_weight_map,
    class_weight_map,
    instances_from_mask,
    semantic_target,
    separation_border,
    unet_weight_map,
)
from unet_course.data import ISBI2012, synthetic_cells, synthetic_membranes

# ---------------------------------------------------------------------------------------
# The direct reference: neighbour comparisons for the border, one full Euclidean distance
# transform per cell for d1 and d2. Written independently of the library's code.


def reference_separation_border(labels: np.ndarray) -> np.ndarray:
    height, width = labels.shape
    padded = np.pad(labels, 1, mode="edge")
    border = np.zeros(labels.shape, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            neighbour = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            border |= (labels > 0) & (neighbour > 0) & (neighbour != labels)
    return border


def reference_parts(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0, class_weights="balanced"):
    """(w_c, border term) for one (H, W) label image."""
    target = ((labels > 0) & ~reference_separation_border(labels)).astype(int)
    cells = np.where(target == 1, labels, 0)
    class_part = np.ones(labels.shape)
    if class_weights == "balanced":
        present = [k for k in (0, 1) if np.any(target == k)]
        for k in present:
            class_part[target == k] = target.size / (len(present) * np.sum(target == k))
    elif class_weights is not None:
        class_part = np.asarray(class_weights, dtype=float)[target]
    ids = [i for i in np.unique(cells) if i != 0]
    if len(ids) < 2:
        return class_part, np.zeros(labels.shape)
    distances = np.sort(np.stack([ndimage.distance_transform_edt(cells != i) for i in ids]), axis=0)
    term = w0 * np.exp(-((distances[0] + distances[1]) ** 2) / (2 * sigma**2))
    return class_part, np.where(target == 0, term, 0.0)


def reference_weight_map(labels, w0=10.0, sigma=5.0, class_weights="balanced") -> np.ndarray:
    class_part, border_part = reference_parts(labels, w0, sigma, class_weights)
    return class_part + border_part


# ---------------------------------------------------------------------------------------
# Random label images: rectangles and discs painted over each other, so cells touch.


@st.composite
def label_images(draw, min_side: int = 6, max_side: int = 40, max_cells: int = 8) -> np.ndarray:
    height = draw(st.integers(min_side, max_side))
    width = draw(st.integers(min_side, max_side))
    labels = np.zeros((height, width), dtype=np.int32)
    yy, xx = np.indices(labels.shape)
    for _ in range(draw(st.integers(0, max_cells))):
        cell = draw(st.integers(1, 500))  # ids need not be 1..K
        row, col = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        size = draw(st.integers(1, 10))
        if draw(st.booleans()):
            labels[(yy - row) ** 2 + (xx - col) ** 2 <= size**2] = cell
        else:
            labels[row : row + size, col : col + draw(st.integers(1, 10))] = cell
    return labels


DIHEDRAL = [
    lambda a: a[..., ::-1, :],
    lambda a: a[..., :, ::-1],
    lambda a: np.rot90(a, 1, axes=(-2, -1)),
    lambda a: np.rot90(a, 2, axes=(-2, -1)),
    lambda a: np.rot90(a, 3, axes=(-2, -1)),
    lambda a: np.swapaxes(a, -2, -1),
    lambda a: np.rot90(a, 1, axes=(-2, -1))[..., ::-1, :],
]


# ---------------------------------------------------------------------------------------
# Exactness


@settings(max_examples=150, deadline=None)
@given(
    labels=label_images(),
    w0=st.floats(0.0, 30.0),
    sigma=st.floats(0.5, 10.0),
    class_weights=st.sampled_from(["balanced", None, (0.3, 2.5)]),
)
def test_matches_direct_reference(labels, w0, sigma, class_weights):
    ours = unet_weight_map(labels, w0=w0, border_sigma=sigma, class_weights=class_weights)
    expected = reference_weight_map(labels, w0, sigma, class_weights)
    assert ours.dtype == np.float32 and ours.shape == labels.shape
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_direct_reference_on_touching_cells(seed):
    labels = synthetic_cells(160, seed=seed).labels
    assert labels.max() > 10 and separation_border(labels).any()  # many cells, some touching
    np.testing.assert_allclose(unet_weight_map(labels), reference_weight_map(labels), rtol=0, atol=1e-4)


def test_parts_add_up_to_the_map():
    labels = synthetic_cells(96, seed=3).labels
    class_part, border_part = reference_parts(labels)
    np.testing.assert_allclose(class_weight_map(semantic_target(labels)), class_part, atol=1e-6)
    np.testing.assert_allclose(border_weight_map(labels), border_part, atol=1e-4)
    np.testing.assert_allclose(unet_weight_map(labels), class_part + border_part, atol=1e-4)


def test_border_value_between_two_touching_cells_by_hand():
    labels = np.zeros((20, 20), dtype=np.int32)
    labels[5:15, 2:10] = 1
    labels[5:15, 10:18] = 2
    border = border_weight_map(labels)
    # Column 9 is cell 1's border pixel: 1 px from what is left of cell 1 (column 8),
    # 2 px from what is left of cell 2 (column 11). The paper's term: 10·exp(−3²/50).
    np.testing.assert_allclose(border[10, 9], 10 * np.exp(-9 / 50), rtol=1e-6)
    np.testing.assert_allclose(border[10, 10], 10 * np.exp(-9 / 50), rtol=1e-6)
    assert np.all(border[6:14, 3:8] == 0)  # no border term inside a cell


# ---------------------------------------------------------------------------------------
# Properties


@settings(max_examples=80, deadline=None)
@given(labels=label_images(), class_weights=st.sampled_from(["balanced", None, (0.5, 3.0)]))
def test_map_is_at_least_class_weights(labels, class_weights):
    weight = unet_weight_map(labels, class_weights=class_weights)
    class_part = class_weight_map(semantic_target(labels), class_weights)
    assert np.all(weight >= class_part - 1e-6)
    assert np.all(weight <= class_part + 10.0 + 1e-5)  # the border term never exceeds w0
    on_cells = semantic_target(labels) == 1
    np.testing.assert_allclose(weight[on_cells], class_part[on_cells], atol=1e-6)


@settings(max_examples=80, deadline=None)
@given(labels=label_images(), sigma=st.floats(1.0, 8.0))
def test_border_term_vanishes_away_from_a_second_cell(labels, sigma):
    # Every pixel is at least `gap` away from its two cells together, with `gap` the
    # smallest distance between two different cells, so the term is bounded by it.
    target = semantic_target(labels)
    cells = np.where(target == 1, labels, 0)
    ids = [i for i in np.unique(cells) if i != 0]
    bound = 0.0  # fewer than two cells: no border term at all
    if len(ids) > 1:
        gap = min(ndimage.distance_transform_edt(cells != i)[(cells != 0) & (cells != i)].min() for i in ids)
        bound = 10.0 * np.exp(-(gap**2) / (2 * sigma**2))
    assert border_weight_map(labels, border_sigma=sigma).max() <= bound + 1e-5


def test_border_term_is_zero_between_far_apart_cells():
    labels = np.zeros((64, 128), dtype=np.int32)
    yy, xx = np.indices(labels.shape)
    labels[(yy - 32) ** 2 + (xx - 20) ** 2 <= 100] = 1
    labels[(yy - 32) ** 2 + (xx - 108) ** 2 <= 100] = 2  # 68 px apart
    assert border_weight_map(labels).max() == 0.0
    labels[(yy - 32) ** 2 + (xx - 50) ** 2 <= 100] = 3  # 10 px from cell 1: now it matters
    assert border_weight_map(labels)[32, 35] > 1.0


@settings(max_examples=50, deadline=None)
@given(labels=label_images(), transform=st.sampled_from(DIHEDRAL))
def test_invariant_under_flips_and_rotations(labels, transform):
    moved = np.ascontiguousarray(transform(labels))
    np.testing.assert_allclose(unet_weight_map(moved), transform(unet_weight_map(labels)), atol=1e-5)
    np.testing.assert_array_equal(semantic_target(moved), transform(semantic_target(labels)))


@settings(max_examples=80, deadline=None)
@given(labels=label_images())
def test_target_keeps_touching_cells_apart(labels):
    target = semantic_target(labels)
    assert set(np.unique(target)) <= {0, 1}
    np.testing.assert_array_equal(separation_border(labels), reference_separation_border(labels))
    # No target pixel of one cell is among the 8 neighbours of a target pixel of another.
    kept = np.where(target == 1, labels, 0)
    np.testing.assert_array_equal(reference_separation_border(kept), np.zeros(labels.shape, dtype=bool))


@settings(max_examples=80, deadline=None)
@given(target=st.integers(6, 30).flatmap(lambda n: st.lists(st.integers(0, 2), min_size=n, max_size=n)))
def test_balanced_class_weights_have_mean_one(target):
    target = np.asarray(target).reshape(1, -1)
    weight = class_weight_map(target)
    np.testing.assert_allclose(weight.mean(), 1.0, rtol=1e-6)
    counts = {k: np.sum(target == k) for k in np.unique(target)}
    rarest, commonest = min(counts, key=counts.get), max(counts, key=counts.get)
    assert weight[target == rarest][0] >= weight[target == commonest][0]


# ---------------------------------------------------------------------------------------
# Edge cases


def test_empty_image():
    labels = np.zeros((16, 24), dtype=np.int32)
    np.testing.assert_array_equal(unet_weight_map(labels), np.ones((16, 24), dtype=np.float32))
    np.testing.assert_array_equal(unet_weight_map(labels, class_weights=(0.25, 4.0)), np.full((16, 24), 0.25))
    assert border_weight_map(labels).max() == 0
    assert semantic_target(labels).max() == 0 and separation_border(labels).sum() == 0


def test_single_cell_gets_class_weights_only():
    labels = np.zeros((30, 30), dtype=np.int32)
    labels[10:16, 8:20] = 7  # 72 cell pixels, 828 background pixels
    weight = unet_weight_map(labels)
    assert border_weight_map(labels).max() == 0
    np.testing.assert_allclose(weight[12, 12], 900 / (2 * 72), rtol=1e-6)
    np.testing.assert_allclose(weight[0, 0], 900 / (2 * 828), rtol=1e-6)
    np.testing.assert_allclose(weight.mean(), 1.0, rtol=1e-6)


def test_image_full_of_cells_with_huge_ids():
    labels = np.zeros((20, 20), dtype=np.int64)
    labels[:, :10], labels[:, 10:] = 2**40, 5  # no background at all, ids far beyond the pixel count
    sequential = np.where(labels == 5, 1, 2)
    np.testing.assert_allclose(unet_weight_map(labels), unet_weight_map(sequential), atol=1e-6)
    np.testing.assert_allclose(unet_weight_map(labels), reference_weight_map(sequential), atol=1e-4)


def test_w0_zero_leaves_class_weights():
    labels = synthetic_cells(64, seed=4).labels
    np.testing.assert_allclose(unet_weight_map(labels, w0=0.0), class_weight_map(semantic_target(labels)))


def test_batch_and_tensors():
    batch = np.stack([synthetic_cells(64, seed=seed).labels for seed in range(3)])
    batch[2] = 0
    maps = unet_weight_map(batch)
    assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
    for labels, weight in zip(batch, maps):
        np.testing.assert_allclose(weight, unet_weight_map(labels), atol=1e-6)
    as_tensor = unet_weight_map(torch.from_numpy(batch))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
    np.testing.assert_allclose(as_tensor.numpy(), maps, atol=1e-6)
    target = semantic_target(torch.from_numpy(batch))
    assert target.dtype == torch.int64 and target.shape == (3, 64, 64)
    assert separation_border(torch.from_numpy(batch)).dtype == torch.bool


def test_instances_from_membrane_mask():
    mask = synthetic_membranes(96, seed=0).mask
    labels = instances_from_mask(mask)
    assert labels.dtype == np.int32 and labels.shape == mask.shape
    assert np.array_equal(labels > 0, mask > 0)
    assert labels.max() == ndimage.label(mask)[1] > 3
    assert not separation_border(labels).any()  # membranes keep every pair of cells apart
    assert border_weight_map(labels)[mask == 0].max() > 1.0  # the term sits on the membranes


def test_instances_from_mask_batch_and_connectivity():
    diagonal = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    assert instances_from_mask(diagonal).max() == 2
    assert instances_from_mask(diagonal, connectivity=8).max() == 1
    batch = torch.from_numpy(np.stack([diagonal, diagonal]))
    labels = instances_from_mask(batch)
    assert labels.dtype == torch.int64 and labels[1].max() == 2  # each image counts from 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: unet_weight_map(np.zeros((4, 4), dtype=np.float32)), "integers"),
        (lambda: unet_weight_map(np.zeros((4, 4), dtype=bool)), "instances_from_mask"),
        (lambda: unet_weight_map(np.zeros((1, 1, 4, 4), dtype=np.int32)), r"\(N, H, W\)"),
        (lambda: unet_weight_map(-np.ones((4, 4), dtype=np.int32)), ">= 0"),
        (lambda: unet_weight_map(np.zeros((4, 4), dtype=np.int32), border_sigma=0.0), "border_sigma"),
        (lambda: unet_weight_map(np.zeros((4, 4), dtype=np.int32), w0=-1.0), "w0"),
        (lambda: unet_weight_map(np.ones((4, 4), dtype=np.int32), class_weights="inverse"), "balanced"),
        (lambda: unet_weight_map(np.ones((4, 4), dtype=np.int32), class_weights=(1.0,)), "one weight per class"),
        (lambda: instances_from_mask(np.ones((4, 4)), connectivity=2), "connectivity must be 4 or 8"),
    ],
)
def test_mistakes_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_real_isbi_membranes(isbi_root):
    _, mask = ISBI2012(isbi_root)[0]  # (512, 512) int64, 1 = interior, 0 = membrane
    labels = instances_from_mask(mask)
    assert isinstance(labels, torch.Tensor) and int(labels.max()) > 50
    crop = labels[:160, :160].numpy()
    np.testing.assert_allclose(unet_weight_map(crop), reference_weight_map(crop), rtol=0, atol=1e-4)
    weight = unet_weight_map(labels)
    assert weight.shape == (512, 512) and weight[mask == 0].mean() > weight[mask == 1].mean()
