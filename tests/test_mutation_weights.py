"""Every refusal of the weight-map functions, word for word, and the edges of what they accept."""

from __future__ import annotations

import re

import numpy as np
import pytest

from unet_course.weight_map import border_weight_map, class_weight_map, instances_from_mask, unet_weight_map


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
