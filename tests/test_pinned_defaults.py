"""The paper's numbers are the defaults of every public function that uses them, not only of ``fit``.

Section 3.1: a 3×3 grid of displacements with 10 px standard deviation; eq. (2): w0 = 10 and
σ ≈ 5 px; section 3: momentum 0.99. Each test compares a call that is told nothing with one
told the paper's value, and checks that another value would have shown.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from unet_course import UNet, unet_weight_map
from unet_course.augment import ElasticDeformation, elastic_deform, random_displacement
from unet_course.gray_values import GrayValues, random_gray_values
from unet_course.batches import paper_augmentation
from unet_course.data import SyntheticMembranes
from unet_course.streaming import TileStream
from unet_course.runs import read_checkpoint
from unet_course.train import fit

from conftest import tiny_unet


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_random_displacement_defaults_are_a_3x3_grid_of_10_px():
    coarse = random_displacement(2, generator=_seeded())
    assert coarse.shape == (2, 2, 3, 3)
    assert torch.equal(coarse, torch.randn(2, 2, 3, 3, generator=_seeded()) * 10.0)
    assert random_displacement(20000, generator=_seeded(1)).std().item() == pytest.approx(10.0, rel=0.02)


def test_elastic_deform_defaults_are_the_papers():
    """σ = 10 px and a 3×3 grid when told nothing: the same warp as the explicit call, not the σ = 5 one."""
    images = torch.rand(2, 1, 48, 48, generator=_seeded(3))
    masks = (images[:, 0] > 0.5).long()
    default = elastic_deform(images, masks, generator=_seeded())
    paper = elastic_deform(images, masks, grid=3, elastic_sigma=10.0, generator=_seeded())
    assert torch.equal(default.images, paper.images) and torch.equal(default.masks, paper.masks)
    drawn = elastic_deform(images, masks, displacement=random_displacement(2, 3, 10.0, generator=_seeded()))
    assert torch.equal(default.images, drawn.images)
    for other in (dict(elastic_sigma=5.0), dict(grid=4)):
        assert not torch.equal(elastic_deform(images, generator=_seeded(), **other).images, default.images)


def test_the_elastic_transform_defaults_are_the_papers():
    transform = ElasticDeformation()
    assert (transform.grid, transform.elastic_sigma, transform.interpolation) == (3, 10.0, "bilinear")
    image = tv_tensors.Image(torch.rand(1, 48, 48, generator=_seeded(4)))
    torch.manual_seed(5)
    default = transform(image)
    torch.manual_seed(5)  # the transform draws from torch's global generator, as every v2 transform does
    grid = random_displacement(1, 3, 10.0)
    paper = elastic_deform(image[None].as_subclass(torch.Tensor), displacement=grid).images[0]
    assert torch.equal(default.as_subclass(torch.Tensor), paper)
    torch.manual_seed(5)
    assert not torch.equal(ElasticDeformation(elastic_sigma=5.0)(image), default)


def test_the_tile_stream_draws_the_papers_grid():
    image, mask = torch.rand(1, 64, 64, generator=_seeded(6)), torch.zeros(64, 64, dtype=torch.long)

    def prepare(index):
        return image, mask, torch.ones(64, 64)

    default = TileStream(prepare, 40, seed=1)
    assert (default.grid, default.elastic_sigma, default.augment) == (3, 10.0, True)
    displacement = default[2, 0][4]
    assert displacement.shape == (2, 3, 3)
    assert torch.equal(displacement, TileStream(prepare, 40, seed=1, grid=3, elastic_sigma=10.0)[2, 0][4])
    assert not torch.equal(displacement, TileStream(prepare, 40, seed=1, elastic_sigma=5.0)[2, 0][4])


def test_unet_weight_map_defaults_are_w0_10_and_sigma_5_px():
    labels = np.zeros((24, 24), dtype=np.int32)
    labels[4:20, 2:11] = 1
    labels[4:20, 12:22] = 2  # two cells, one background column (11) between them: d1 = d2 = 1 px there
    default = unet_weight_map(labels)
    assert np.array_equal(default, unet_weight_map(labels, w0=10.0, border_sigma=5.0))
    border = default - unet_weight_map(labels, w0=0.0)  # the class weights are the same in both
    assert border[12, 11] == pytest.approx(10 * np.exp(-(1 + 1) ** 2 / (2 * 5**2)), rel=1e-6)  # eq. (2), by hand
    assert border[12, 11] == pytest.approx(border.max())
    assert not np.array_equal(default, unet_weight_map(labels, w0=5.0))
    assert not np.array_equal(default, unet_weight_map(labels, border_sigma=3.0))


def test_fit_trains_with_momentum_0_99_and_records_it(tmp_path):
    checkpoint = tmp_path / "run.pt"
    fit(tiny_unet(), SyntheticMembranes(2, 64, seed=0), steps=1, tile_size=60,
        checkpoint=checkpoint, progress=False)
    state = read_checkpoint(checkpoint)
    assert state["optimizer"]["param_groups"][0]["momentum"] == 0.99
    assert state["settings"]["momentum"] == 0.99 and state["settings"]["batch_size"] == 1
    assert (state["settings"]["w0"], state["settings"]["border_sigma"]) == (10.0, 5.0)


def test_gray_values_are_off_unless_asked_and_0_2_each_when_asked():
    """The paper names gray-value variations without a recipe: off by default, so earlier runs repeat."""
    assert GrayValues() == (0.2, 0.2, 0.2)
    images = torch.rand(2, 1, 48, 48, generator=_seeded(7))
    masks, weights = (images[:, 0] > 0.5).long(), torch.ones(2, 48, 48)
    default = paper_augmentation()(images, masks, weights, _seeded())
    off = paper_augmentation(gray_values=None)(images, masks, weights, _seeded())
    on = paper_augmentation(gray_values=GrayValues())(images, masks, weights, _seeded())
    assert torch.equal(default[0], off[0]) and not torch.equal(default[0], on[0])
    told = random_gray_values(3, GrayValues(brightness=0.2, contrast=0.2, gamma=0.2), generator=_seeded())
    assert torch.equal(random_gray_values(3, generator=_seeded()), told)
    assert not torch.equal(random_gray_values(3, GrayValues(gamma=0.3), generator=_seeded()), told)
