"""Warping error: the simple-point table, known answers, topology kept, a real slice."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from unet_course.data import ISBI2012
from unet_course.metrics import pixel_error, simple_point_table, topology_preserving_warp, warping_error
from unet_course.metrics.warping import _topological_number

# The 8 neighbours in counter-clockwise order from the east, as raster-order bit positions.
RING = [5, 2, 1, 0, 3, 6, 7, 8]


def yokoi_simple(code: int, connectivity: int) -> bool:
    """Yokoi's connectivity number equals 1: an independent closed form for simple points."""
    x = [(code >> bit) & 1 for bit in RING]
    if connectivity == 8:  # the 8-connected number is the 4-connected one of the complement
        x = [1 - v for v in x]
    x = x + x[:2]
    return sum(x[k] - x[k] * x[k + 1] * x[k + 2] for k in (0, 2, 4, 6)) == 1


@pytest.mark.parametrize("connectivity", [4, 8])
def test_simple_point_table_matches_yokoi(connectivity):
    table = simple_point_table(connectivity)
    assert table.shape == (512,) and table.dtype == bool
    assert all(table[code] == yokoi_simple(code, connectivity) for code in range(512))


def code_of(patch: str) -> int:
    bits = [c == "#" for c in patch.replace(" ", "")]
    return sum(1 << k for k, bit in enumerate(bits) if bit)


def test_simple_points_by_hand():
    table = simple_point_table(4)
    assert not table[code_of("... .#. ...")]  # isolated pixel: deleting it deletes an object
    assert not table[code_of("### ### ###")]  # interior pixel: deleting it opens a hole
    assert table[code_of("... ##. ...")]  # end of a line
    assert not table[code_of("... ### ...")]  # middle of a line: deleting it splits
    assert not table[code_of("#.. .#. ...")]  # only a diagonal neighbour: not 4-connected to it
    assert simple_point_table(8)[code_of("#.. .#. ...")]  # ... but 8-connected


def test_topological_numbers_by_hand():
    two_arms = np.array([[0, 1, 0], [0, 1, 0], [0, 1, 0]], dtype=bool)
    assert _topological_number(two_arms, 4) == 2 and _topological_number(~two_arms, 8) == 2


def two_cells(height: int = 20, width: int = 24, membrane: int = 12) -> np.ndarray:
    cells = np.zeros((height, width), dtype=bool)
    cells[3:17, 3:21] = True
    cells[:, membrane] = False
    return cells


def test_identical_maps_cost_nothing():
    assert warping_error(two_cells(), two_cells()) == 0.0


def test_a_boundary_shifted_by_one_pixel_costs_nothing():
    truth = two_cells(membrane=12)
    shifted = two_cells(membrane=11)
    assert pixel_error(shifted, truth) > 0
    assert warping_error(shifted, truth) == 0.0
    disk = np.hypot(*np.mgrid[-10:10, -12:12]) < 6
    moved = np.roll(disk, (1, 1), axis=(0, 1))
    assert pixel_error(moved, disk) > 0 and warping_error(moved, disk) == 0.0


def test_a_split_costs_one_pixel():
    truth = two_cells()
    truth[:, 12] = truth[:, 11]  # one cell
    split = two_cells()  # a membrane cuts it in two
    assert warping_error(split, truth) * truth.size == 1


def test_a_merge_costs_one_pixel():
    truth = two_cells()
    merged = truth.copy()
    merged[10, 12] = True  # a one-pixel gap in the membrane joins the cells
    assert warping_error(merged, truth) * truth.size == 1
    assert pixel_error(merged, truth) * truth.size == 1  # the same single pixel, here


def test_extra_objects_and_holes_cost_their_area_missing_ones_a_pixel():
    empty = np.zeros((12, 12), dtype=bool)
    extra = empty.copy()
    extra[2:5, 2:5] = True
    assert warping_error(extra, empty) * empty.size == 9  # the truth cannot grow from nothing
    assert warping_error(empty, extra) * empty.size == 1  # it shrinks to one pixel, never zero
    cell = ~empty
    holed = cell.copy()
    holed[5:7, 5:7] = False
    assert warping_error(holed, cell) * cell.size == 4


def count_topology(mask: np.ndarray, connectivity: int = 4) -> tuple[int, int]:
    """Foreground and background components, with the outside as background."""
    framed = np.pad(mask, 1)
    four, eight = ndimage.generate_binary_structure(2, 1), ndimage.generate_binary_structure(2, 2)
    fg, bg = (four, eight) if connectivity == 4 else (eight, four)
    return ndimage.label(framed, fg)[1], ndimage.label(~framed, bg)[1]


def is_fixed_point(warped: np.ndarray, target: np.ndarray, connectivity: int) -> bool:
    """No pixel left in disagreement is simple: one at a time, as a naive loop would check."""
    table = simple_point_table(connectivity)
    framed = np.pad(warped, 1)
    for r, c in zip(*np.nonzero(warped != target)):
        patch = framed[r : r + 3, c : c + 3].ravel()
        if table[int(np.sum(patch << np.arange(9)))]:
            return False
    return True


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), connectivity=st.sampled_from([4, 8]))
def test_warp_keeps_topology_and_leaves_only_topological_errors(seed, connectivity):
    rng = np.random.default_rng(seed)
    source = ndimage.gaussian_filter(rng.random((24, 28)), 1.5) > 0.5
    target = ndimage.gaussian_filter(rng.random((24, 28)), 1.5) > 0.5
    warped = topology_preserving_warp(source, target, connectivity=connectivity)
    assert count_topology(warped, connectivity) == count_topology(source, connectivity)
    assert np.sum(warped != target) <= np.sum(source != target)
    assert is_fixed_point(warped, target, connectivity)
    assert np.array_equal(topology_preserving_warp(warped, target, connectivity=connectivity), warped)


def test_real_slice(isbi_root):
    truth = ISBI2012(isbi_root, indices=[0]).masks[0].astype(bool)
    rng = np.random.default_rng(0)
    smooth = ndimage.gaussian_filter(truth.astype(np.float32), 4.0) + rng.normal(0, 0.3, truth.shape)
    probs = ndimage.gaussian_filter(smooth, 1.0).astype(np.float32)
    warped = topology_preserving_warp(truth, probs > 0.5)
    assert count_topology(warped) == count_topology(truth)
    error = warping_error(probs, truth)
    assert error == np.mean(warped != (probs > 0.5))
    assert 0 < error < pixel_error(probs, truth) / 5  # most disagreement is only boundary placement
    assert warping_error(truth, truth) == 0.0


def test_mistakes_raise_helpful_errors():
    with pytest.raises(ValueError, match="one \\(H, W\\) slice"):
        warping_error(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="connectivity"):
        warping_error(np.zeros((4, 4)), np.zeros((4, 4)), connectivity=6)
