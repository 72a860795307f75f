"""Every refusal of the elastic deformation, word for word, and the edges of what it accepts.

The messages tell a reader of chapter 4 what shape was expected and how to get it; each is
pinned whole so that a changed number or a loosened check shows.
"""

from __future__ import annotations

import re

import PIL.Image
import pytest
import torch
from torchvision import tv_tensors

from unet_course.augment import (ElasticDeformation, displacement_field, elastic_deform, orient, random_displacement,
                                  undo_orient)

IMAGES = "Add a batch or channel axis with images[None] or images[:, None], and convert with .float()."
GRID = "Expected a displacement grid of shape (N, 2, grid_h, grid_w) with at least 2 nodes per side, got {}. " \
       "Draw one with random_displacement(n, grid)."
DISPLACEMENT = "Expected a displacement of shape (2 or 1, 2, grid_h, grid_w) in pixels, got {}."


def _z(*shape, dtype=torch.float32):
    return torch.zeros(*shape, dtype=dtype)


CASES = [
    ("grid 1", lambda: random_displacement(1, grid=1),
     "grid must be at least 2 nodes per side (one at each border), got 1"),
    ("negative sigma", lambda: random_displacement(1, elastic_sigma=-1.0),
     "elastic_sigma is a standard deviation in pixels and cannot be negative, got -1.0"),
    ("field channels", lambda: displacement_field(_z(1, 3, 3, 3), (8, 8)), GRID.format("(1, 3, 3, 3)")),
    ("field rows", lambda: displacement_field(_z(1, 2, 1, 3), (8, 8)), GRID.format("(1, 2, 1, 3)")),
    ("field columns", lambda: displacement_field(_z(1, 2, 3, 1), (8, 8)), GRID.format("(1, 2, 3, 1)")),
    ("field 3-D", lambda: displacement_field(_z(2, 3, 3), (8, 8)), GRID.format("(2, 3, 3)")),
    ("field height 1", lambda: displacement_field(_z(1, 2, 3, 3), (1, 8)),
     "Expected images of at least 2×2 pixels, got size (1, 8)"),
    ("field width 1", lambda: displacement_field(_z(1, 2, 3, 3), (8, 1)),
     "Expected images of at least 2×2 pixels, got size (8, 1)"),
    ("images 3-D", lambda: elastic_deform(_z(1, 8, 8)),
     f"Expected float images of shape (N, C, H, W), got torch.float32 of shape (1, 8, 8). {IMAGES}"),
    ("images integer", lambda: elastic_deform(_z(1, 1, 8, 8, dtype=torch.long)),
     f"Expected float images of shape (N, C, H, W), got torch.int64 of shape (1, 1, 8, 8). {IMAGES}"),
    ("interpolation", lambda: elastic_deform(_z(1, 1, 8, 8), interpolation="nearest"),
     "interpolation must be one of ('bilinear', 'bicubic'), got 'nearest'"),
    ("masks with a channel", lambda: elastic_deform(_z(1, 1, 8, 8), _z(1, 1, 8, 8, dtype=torch.long)),
     "Expected masks of shape (1, 8, 8) to match the images, got (1, 1, 8, 8). Masks carry no channel axis: use "
     "masks[:, 0]."),
    ("float masks", lambda: elastic_deform(_z(1, 1, 8, 8), _z(1, 8, 8)),
     "Expected integer label masks, got torch.float32: pass float maps as weight_maps."),
    ("weight maps", lambda: elastic_deform(_z(1, 1, 8, 8), weight_maps=_z(2, 8, 8)),
     "Expected weight_maps of shape (1, 8, 8) to match the images, got (2, 8, 8). Weight maps carry no channel axis."),
    ("displacement batch", lambda: elastic_deform(_z(2, 1, 8, 8), displacement=_z(3, 2, 3, 3)),
     DISPLACEMENT.format("(3, 2, 3, 3)")),
    ("displacement channels", lambda: elastic_deform(_z(2, 1, 8, 8), displacement=_z(1, 3, 3, 3)),
     DISPLACEMENT.format("(1, 3, 3, 3)")),
    ("displacement 3-D", lambda: elastic_deform(_z(2, 1, 8, 8), displacement=_z(2, 3, 3)),
     DISPLACEMENT.format("(2, 3, 3)")),
    ("transform interpolation", lambda: ElasticDeformation(interpolation="nearest"),
     "interpolation must be one of ('bilinear', 'bicubic'), got 'nearest'"),
    ("transform grid", lambda: ElasticDeformation(grid=1),
     "grid must be at least 2 nodes per side (one at each border), got 1"),
    ("transform sigma", lambda: ElasticDeformation(elastic_sigma=-0.5),
     "elastic_sigma is a standard deviation in pixels and cannot be negative, got -0.5"),
    ("transform boxes", lambda: ElasticDeformation()(
        tv_tensors.BoundingBoxes(_z(1, 4), format="XYXY", canvas_size=(8, 8))),
     "ElasticDeformation warps pixels only, got BoundingBoxes; drop them first."),
    ("transform PIL", lambda: ElasticDeformation()(PIL.Image.new("L", (8, 8))),
     "ElasticDeformation takes tensors, got a PIL image: put v2.ToImage() before it."),
    ("transform sizes", lambda: ElasticDeformation()(_z(1, 8, 8), _z(1, 8, 9)),
     "Expected all inputs to share one (H, W), got [(8, 8), (8, 9)]: resize or crop them first."),
]


@pytest.mark.parametrize("call, message", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_refusal(call, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


def test_the_smallest_accepted_values():
    assert random_displacement(1, grid=2).shape == (1, 2, 2, 2)
    assert ElasticDeformation(grid=2, elastic_sigma=0.0).elastic_sigma == 0.0
    assert displacement_field(_z(1, 2, 2, 2), (2, 2)).shape == (1, 2, 2, 2)
    images = torch.rand(2, 1, 8, 8)
    shared = elastic_deform(images, displacement=_z(1, 2, 3, 3))  # one grid for the whole batch
    assert torch.allclose(shared.images, images, atol=1e-5)
    assert elastic_deform(images, displacement=_z(2, 2, 3, 3)).images.shape == (2, 1, 8, 8)


def test_a_transform_with_nothing_to_warp_passes_it_through():
    label = "a caption"
    assert ElasticDeformation()(label) == label
    image = tv_tensors.Image(torch.rand(1, 8, 8))
    out, text = ElasticDeformation(elastic_sigma=0.0)(image, label)
    assert text == label and isinstance(out, tv_tensors.Image) and torch.allclose(out, image, atol=1e-5)


def test_the_transform_deforms_every_channel_alike():
    rgb = tv_tensors.Image(torch.rand(3, 24, 24))
    torch.manual_seed(1)
    out = ElasticDeformation()(rgb)
    assert out.shape == (3, 24, 24) and isinstance(out, tv_tensors.Image)
    torch.manual_seed(1)
    grey = ElasticDeformation()(tv_tensors.Image(rgb[1:2].clone()))
    assert torch.allclose(out[1:2], grey, atol=1e-6)


def test_float64_images_are_warped_in_float64():
    """An integer shift of float64 images is exact: the field and the sampling grid stay in float64."""
    images = torch.rand(1, 1, 20, 24, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    shift = torch.zeros(1, 2, 3, 3)  # float32 node displacements, as random_displacement draws them
    shift[:, 1] = 3.0  # every pixel reads 3 columns to the right
    out = elastic_deform(images, displacement=shift).images
    assert out.dtype == torch.float64
    assert torch.allclose(out[..., :-3], images[..., 3:], rtol=0, atol=1e-12)


def test_integer_images_are_rounded_and_clamped_to_their_range():
    image = torch.zeros(1, 24, 24, dtype=torch.uint8)
    image[..., 12:] = 255  # a sharp edge
    image = tv_tensors.Image(image)
    torch.manual_seed(3)
    out = ElasticDeformation(interpolation="bicubic")(image)
    torch.manual_seed(3)
    smooth = ElasticDeformation(interpolation="bicubic")(image.float())
    assert smooth.min() < 0 and smooth.max() > 255  # bicubic overshoots a sharp edge
    assert out.dtype == torch.uint8 and torch.equal(out, smooth.round().clamp(0, 255).to(torch.uint8))


def test_boolean_masks_stay_boolean():
    mask = tv_tensors.Mask(torch.rand(24, 24) > 0.5)
    out = ElasticDeformation()(mask)
    assert out.dtype == torch.bool and isinstance(out, tv_tensors.Mask)


def test_an_integer_grid_gives_the_field_of_the_same_float_grid():
    coarse = torch.randint(-5, 6, (1, 2, 3, 3))
    assert torch.equal(displacement_field(coarse, (9, 7)), displacement_field(coarse.float(), (9, 7)))


def test_random_displacement_lands_on_the_device_asked_for():
    assert random_displacement(2, device="meta").device.type == "meta"
    generator = torch.Generator().manual_seed(0)
    drawn = random_displacement(2, generator=generator, device="meta")
    assert drawn.device.type == "meta"  # drawn on the generator's CPU, then moved


def test_float64_images_with_masks_and_weight_maps_share_one_grid():
    images = torch.rand(1, 1, 20, 24, dtype=torch.float64)
    masks, weights = torch.randint(0, 3, (1, 20, 24)), torch.rand(1, 20, 24)
    out = elastic_deform(images, masks, weights, generator=torch.Generator().manual_seed(0))
    assert (out.images.dtype, out.masks.dtype, out.weight_maps.dtype) == (torch.float64, torch.int64, torch.float32)
    assert set(out.masks.unique().tolist()) <= {0, 1, 2}


def test_undo_orient_undoes_every_view_an_integer_draw_names():
    x = torch.arange(12.0).reshape(1, 3, 4)
    for turns in range(-1, 6):
        for flip in range(4):  # flip counts when odd: 0 and 2 keep, 1 and 3 mirror
            assert torch.equal(undo_orient(orient(x, turns, flip), turns, flip), x), (turns, flip)
