import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch

from unet_course.data import synthetic_cells
from unet_course.viz import as_image, overlay, show_grid, show_source


def test_as_image_squeezes_channels():
    assert as_image(torch.zeros(1, 5, 7)).shape == (5, 7)
    assert as_image(np.zeros((5, 7, 1))).shape == (5, 7)
    assert as_image(torch.zeros(3, 5, 7)).shape == (5, 7, 3)


def test_overlay_leaves_background_transparent():
    sample = synthetic_cells(64, seed=0)
    ax = overlay(sample.image, sample.labels, instances=True, title="cells")
    layers = ax.get_images()
    assert len(layers) == 2 and ax.get_title() == "cells"
    colored = layers[1].get_array()
    assert np.array_equal(np.ma.getmaskarray(colored), sample.labels == 0)


def test_show_grid_layout_and_titles():
    fig = show_grid([np.zeros((4, 4))] * 5, titles=list("abcde"), ncols=2)
    assert len(fig.axes) == 6 and [ax.get_title() for ax in fig.axes[:5]] == list("abcde")
    with pytest.raises(ValueError, match="one title per image"):
        show_grid([np.zeros((4, 4))] * 2, titles=["a"])


def test_show_source_is_the_library_code():
    code = show_source(synthetic_cells)
    assert "def synthetic_cells(" in code.data
