"""Every refusal of the weight-map functions, word for word, and the edges of what they accept."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from unet_course.weight_map import (border_term, border_weight_map, class_weight_map, instances_from_mask,
                                    semantic_target, separation_border, unet_weight_map)


def _z(*shape, dtype=np.int32):
    return np.zeros(shape, dtype=dtype)


SHAPE = "labels must be (H, W) or (N, H, W), got shape {}. Drop channel axes first, e.g. labels[:, 0] for (N, 1, H, W)."
SIGMA = "border_sigma must be finite and > 0 pixels (the paper uses about 5), got {}"
W0 = "w0 must be finite and >= 0 (the paper uses 10), got {}"
CASES = [
    ("float labels", lambda: unet_weight_map(_z(4, 4, dtype=np.float32)),
     "labels must hold integers, got dtype float32. Convert with .astype(np.int32)."),
    ("boolean labels", lambda: unet_weight_map(_z(4, 4, dtype=bool)),
     "labels must be an instance label image (0 = background, 1..K = cells), got a boolean mask. Turn a binary mask "
     "into instances with instances_from_mask(mask) first."),
    ("4-D labels", lambda: unet_weight_map(_z(1, 1, 4, 4)), SHAPE.format("(1, 1, 4, 4)")),
    ("1-D labels", lambda: unet_weight_map(_z(4)), SHAPE.format("(4,)")),
    ("negative labels", lambda: unet_weight_map(-np.ones((4, 4), dtype=np.int32)),
     "labels must be >= 0 (0 = background), got a minimum of -1."),
    ("border_sigma 0", lambda: unet_weight_map(_z(4, 4), border_sigma=0.0), SIGMA.format("0.0")),
    ("border_sigma inf", lambda: border_weight_map(_z(4, 4), border_sigma=float("inf")), SIGMA.format("inf")),
    ("w0 negative", lambda: unet_weight_map(_z(4, 4), w0=-1.0), W0.format("-1.0")),
    ("w0 NaN", lambda: border_weight_map(_z(4, 4), w0=float("nan")), W0.format("nan")),
    ("class weights by name", lambda: unet_weight_map(np.ones((4, 4), dtype=np.int32), class_weights="inverse"),
     "class_weights must be \"balanced\", a sequence of floats or None, got 'inverse'"),
    ("too few class weights", lambda: unet_weight_map(np.ones((4, 4), dtype=np.int32), class_weights=(1.0,)),
     "class_weights must give one weight per class (at least 2), got (1.0,)"),
    ("negative class weight", lambda: class_weight_map(np.array([[0, 1]]), [1.0, -1.0]),
     "class_weights must be finite and >= 0, got [1.0, -1.0]"),
    ("negative class", lambda: class_weight_map(np.array([[0, -1]])),
     "target must be >= 0 (class indices), got a minimum of -1."),
    ("float target", lambda: class_weight_map(np.zeros((2, 2))),
     "target must hold integers, got dtype float64. Convert with .astype(np.int32)."),
    ("connectivity", lambda: instances_from_mask(np.ones((4, 4)), connectivity=2),
     "connectivity must be 4 or 8 (pixel neighbours in 2D), got 2"),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_refusal(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


def test_the_smallest_accepted_values():
    labels = _z(6, 6)
    labels[1:3, 1:5], labels[4:6, 1:5] = 1, 2
    assert np.array_equal(unet_weight_map(labels, w0=0.0), unet_weight_map(labels, w0=0.0, border_sigma=1e-9))
    assert border_weight_map(labels, w0=0.0).max() == 0.0  # w0 = 0 is allowed: no border term
    assert class_weight_map(np.array([[0, 1]]), [0.0, 1.0]).tolist() == [[0.0, 1.0]]  # a zero weight is allowed
    assert class_weight_map(np.array([[0, 1]]), [2.0, 3.0, 4.0]).tolist() == [[2.0, 3.0]]  # extra weights are unused
    assert unet_weight_map(_z(4, 4), class_weights=None).tolist() == np.ones((4, 4)).tolist()


# --- what the first mutation run of weight_map.py let through -----------------------------------------------------

def _two_touching_cells() -> np.ndarray:
    cells = np.zeros((12, 12), dtype=np.int64)
    cells[2:10, 1:6], cells[2:10, 7:11] = 1, 2  # a one-pixel gap at column 6
    return cells


def test_border_term_defaults_are_the_papers():
    cells = _two_touching_cells()
    np.testing.assert_array_equal(border_term(cells), border_term(cells, 10.0, 5.0))  # w0 = 10, σ = 5 px
    assert border_term(cells).max() > border_term(cells, 10.0, 4.0).max()  # σ matters at the gap


def test_border_term_of_huge_ids_without_background_is_zero():
    """Ids larger than the image are renumbered; with no background pixel there is no border term at all."""
    cells = np.repeat(np.repeat(np.array([[1000, 2000, 3000, 4000]]), 4, axis=0), 2, axis=1)  # four columns of cells
    np.testing.assert_array_equal(border_term(cells), np.zeros((4, 8)))
    with_background = np.where(_two_touching_cells() == 1, 5000, np.where(_two_touching_cells() == 2, 7000, 0))
    np.testing.assert_allclose(border_term(with_background), border_term(_two_touching_cells()))


def test_separation_borders_never_look_across_the_images_of_a_batch():
    first = np.zeros((6, 6), dtype=np.int64)
    first[:, :3] = 1
    second = np.zeros((6, 6), dtype=np.int64)
    second[:, 3:] = 2  # alone in its image, beside where the first image's cell is
    batch = separation_border(np.stack([first, second]))
    np.testing.assert_array_equal(batch, np.stack([separation_border(first), separation_border(second)]))


def test_tensors_in_give_tensors_out_and_refusals_name_the_argument():
    labels = torch.from_numpy(_two_touching_cells())
    for result in (border_weight_map(labels), class_weight_map(semantic_target(labels)), unet_weight_map(labels)):
        assert isinstance(result, torch.Tensor) and result.dtype == torch.float32
    with pytest.raises(ValueError) as raised:
        instances_from_mask(np.ones((1, 1, 4, 4)))
    assert str(raised.value) == ("mask must be (H, W) or (N, H, W), got shape (1, 1, 4, 4). Drop channel axes first, "
                                 "e.g. labels[:, 0] for (N, 1, H, W).")


def test_one_class_weight_is_enough_for_an_all_background_target():
    np.testing.assert_array_equal(class_weight_map(np.zeros((2, 2), dtype=np.int64), [2.0]), np.full((2, 2), 2.0))
    with pytest.raises(ValueError) as raised:
        class_weight_map(np.zeros((2, 2), dtype=np.int64), [])
    assert str(raised.value) == "class_weights must give one weight per class (at least 1), got []"
