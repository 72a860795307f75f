"""Tests of the paper's elastic deformation: statistics, geometry, alignment of image and mask."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy import ndimage
from torchvision import tv_tensors
from torchvision.transforms import v2

from unet_course import Deformed, ElasticDeformation, displacement_field, elastic_deform, random_displacement
from unet_course.augment import orient, undo_orient


def _batch(n: int = 2, height: int = 40, width: int = 56, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, height, width, generator=generator)
    masks = torch.randint(0, 3, (n, height, width), generator=generator)
    weights = torch.rand(n, height, width, generator=generator) * 10
    return images, masks, weights


# --- the displacement grid and its bicubic field ---------------------------------------


def test_random_displacement_has_the_requested_statistics():
    generator = torch.Generator().manual_seed(0)
    coarse = random_displacement(5000, grid=3, elastic_sigma=10.0, generator=generator)
    assert coarse.shape == (5000, 2, 3, 3)
    assert abs(coarse.std().item() - 10.0) < 0.15  # 90 000 draws: the std is known to about 0.5 %
    assert abs(coarse.mean().item()) < 0.15
    # every node and both directions are drawn independently with the same spread
    per_node = coarse.std(dim=0)
    assert torch.all((per_node - 10.0).abs() < 0.6), per_node
    assert abs(torch.corrcoef(coarse[:, :, 1, 1].T)[0, 1].item()) < 0.05
    assert random_displacement(3, grid=5, elastic_sigma=2.0).shape == (3, 2, 5, 5)
    assert random_displacement(7, elastic_sigma=0.0).abs().max() == 0


def test_random_displacement_repeats_with_a_seeded_generator():
    first = random_displacement(4, generator=torch.Generator().manual_seed(3))
    again = random_displacement(4, generator=torch.Generator().manual_seed(3))
    other = random_displacement(4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("size", [(512, 512), (64, 80), (7, 5), (2, 2)])
@pytest.mark.parametrize("nodes", [(3, 3), (5, 4)])
def test_field_equals_torch_bicubic_interpolation(size, nodes):
    coarse = torch.randn(2, 2, *nodes, dtype=torch.float64) * 10
    expected = F.interpolate(coarse, size, mode="bicubic", align_corners=True)
    assert torch.allclose(displacement_field(coarse, size), expected, atol=1e-9)


def test_field_passes_through_the_nodes_at_corners_and_centre():
    coarse = torch.randn(3, 2, 3, 3) * 10
    field = displacement_field(coarse, (101, 61))  # nodes on rows 0, 50, 100 and columns 0, 30, 60
    assert torch.allclose(field[:, :, 0::50, 0::30], coarse, atol=1e-4)
    # smooth in between: neighbouring pixels differ by far less than the node spread
    assert field.diff(dim=-1).abs().max() < coarse.abs().max() / 5


# --- the warp ----------------------------------------------------------------------------


def test_sigma_zero_is_the_identity():
    images, masks, weights = _batch()
    out = elastic_deform(images, masks, weights, elastic_sigma=0.0)
    assert isinstance(out, Deformed)
    assert torch.allclose(out.images, images, atol=1e-5)
    assert torch.equal(out.masks, masks)
    assert torch.allclose(out.weight_maps, weights, atol=1e-4)
    bicubic = elastic_deform(images, elastic_sigma=0.0, interpolation="bicubic")
    assert torch.allclose(bicubic.images, images, atol=1e-5)
    assert bicubic.masks is None and bicubic.weight_maps is None
    large = torch.rand(1, 1, 512, 512)
    assert torch.allclose(elastic_deform(large, elastic_sigma=0.0).images, large, atol=1e-4)  # float32 positions


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_constant_displacement_shifts_and_mirrors(interpolation):
    """Output pixel (y, x) reads input (y + dy, x + dx); channel 0 is dy; borders are mirrored."""
    images, masks, weights = _batch(n=1, height=20, width=30)
    displacement = torch.zeros(1, 2, 3, 3)
    displacement[:, 0], displacement[:, 1] = 3.0, -2.0
    out = elastic_deform(images, masks, weights, displacement=displacement, interpolation=interpolation)
    assert torch.allclose(out.images[..., :-3, 2:], images[..., 3:, :-2], atol=1e-5)
    assert torch.equal(out.masks[..., :-3, 2:], masks[..., 3:, :-2])
    assert torch.allclose(out.weight_maps[..., :-3, 2:], weights[..., 3:, :-2], atol=1e-4)
    # past the bottom border row 19 + 3 reads row 16; left of column 0, column -2 reads column 2
    assert torch.allclose(out.images[0, 0, -1, 2:], images[0, 0, -4, :-2], atol=1e-5)
    assert torch.equal(out.masks[0, :-3, 0], masks[0, 3:, 2])


def test_warp_agrees_with_scipy_map_coordinates():
    """An independent implementation: scipy resampling at (y + dy, x + dx), mirrored borders."""
    images, masks, weights = _batch(n=1, height=24, width=40)
    displacement = random_displacement(1, elastic_sigma=15.0, generator=torch.Generator().manual_seed(1))
    out = elastic_deform(images, masks, weights, displacement=displacement)
    field = displacement_field(displacement.double(), (24, 40))[0].numpy()
    coords = np.indices((24, 40)) + field
    outside = (coords[0] < 0) | (coords[0] > 23) | (coords[1] < 0) | (coords[1] > 39)
    assert outside.sum() > 20  # enough reads fall outside the image for mirroring to be tested
    image = ndimage.map_coordinates(images[0, 0].double().numpy(), coords, order=1, mode="mirror")
    weight = ndimage.map_coordinates(weights[0].double().numpy(), coords, order=1, mode="mirror")
    mask = ndimage.map_coordinates(masks[0].numpy(), coords, order=0, mode="mirror")
    assert np.allclose(out.images[0, 0].numpy(), image, atol=1e-4)
    assert np.allclose(out.weight_maps[0].numpy(), weight, atol=1e-3)
    assert (out.masks[0].numpy() == mask).mean() > 0.99  # only exact half-pixel ties may round apart


def test_label_set_is_preserved_for_every_integer_dtype():
    generator = torch.Generator().manual_seed(2)
    labels = torch.tensor([0, 3, 7, 250])
    picks = torch.randint(0, 4, (3, 48, 48), generator=generator)
    images = torch.rand(3, 2, 48, 48, generator=generator)
    for dtype in (torch.uint8, torch.int32, torch.int64):
        masks = labels[picks].to(dtype)
        out = elastic_deform(images, masks, generator=torch.Generator().manual_seed(5))
        assert out.masks.dtype == dtype
        assert set(out.masks.unique().tolist()) <= {0, 3, 7, 250}
        assert not torch.equal(out.masks, masks)  # it did deform


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(2, 24),
    width=st.integers(2, 24),
    grid=st.integers(2, 5),
    sigma=st.floats(0.0, 30.0),
    num_labels=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_property_masks_keep_their_labels_and_images_their_range(height, width, grid, sigma, num_labels, seed):
    generator = torch.Generator().manual_seed(seed)
    masks = torch.randint(0, num_labels, (2, height, width), generator=generator) * 11
    images = torch.rand(2, 1, height, width, generator=generator)
    out = elastic_deform(images, masks, grid=grid, elastic_sigma=sigma, generator=generator)
    assert set(out.masks.unique().tolist()) <= set(masks.unique().tolist())
    assert out.images.min() >= images.min() - 1e-6 and out.images.max() <= images.max() + 1e-6  # bilinear


def test_deformed_mask_is_the_mask_of_the_deformed_shapes():
    """Warp two discs' mask and image; compare with the discs evaluated at each source point."""
    size = 96
    centres, radii = torch.tensor([[40.0, 35.0], [55.0, 62.0]]), torch.tensor([14.0, 10.0])

    def discs(y: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Label (1, 2 or 0) and distance to the nearest disc edge at points (y, x)."""
        dist = torch.stack(
            [((y - c[0]) ** 2 + (x - c[1]) ** 2).sqrt() - r for c, r in zip(centres, radii, strict=True)]
        )
        label = torch.where(dist[0] < 0, 1, torch.where(dist[1] < 0, 2, 0))
        return label, dist.abs().min(dim=0).values

    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    masks, _ = discs(yy, xx)
    images = (masks > 0).float()[None, None]
    displacement = random_displacement(1, elastic_sigma=10.0, generator=torch.Generator().manual_seed(7))
    out = elastic_deform(images, masks[None], displacement=displacement)

    field = displacement_field(displacement, (size, size))[0]
    expected, margin = discs(yy + field[0], xx + field[1])  # the shapes, deformed analytically
    clear = margin > 1.0  # pixels whose source is not within a pixel of a disc's edge
    assert clear.float().mean() > 0.85
    assert torch.equal(out.masks[0][clear], expected[clear])
    assert torch.equal((out.images[0, 0] > 0.5)[clear], expected[clear] > 0)
    assert (out.masks[0] != masks).sum() > 100  # the shapes did move


def test_batched_equals_single_and_a_shared_grid_broadcasts():
    images, masks, weights = _batch(n=3)
    displacement = random_displacement(3, generator=torch.Generator().manual_seed(0))
    batched = elastic_deform(images, masks, weights, displacement=displacement)
    for i in range(3):
        single = elastic_deform(
            images[i : i + 1], masks[i : i + 1], weights[i : i + 1], displacement=displacement[i : i + 1]
        )
        assert torch.allclose(single.images, batched.images[i : i + 1], atol=1e-6)
        assert torch.equal(single.masks, batched.masks[i : i + 1])
        assert torch.allclose(single.weight_maps, batched.weight_maps[i : i + 1], atol=1e-5)
    shared = elastic_deform(images, masks, displacement=displacement[:1])
    assert torch.allclose(
        shared.images, elastic_deform(images, masks, displacement=displacement[:1].expand(3, -1, -1, -1)).images
    )


def test_seeded_generator_reproduces_the_draw():
    images, masks, _ = _batch()
    first = elastic_deform(images, masks, generator=torch.Generator().manual_seed(11))
    again = elastic_deform(images, masks, generator=torch.Generator().manual_seed(11))
    assert torch.equal(first.images, again.images) and torch.equal(first.masks, again.masks)
    assert not torch.equal(first.images, elastic_deform(images, masks).images)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_explicit_displacement_gives_the_same_result_on_gpu():
    images, masks, weights = _batch(n=4, height=64, width=64)
    displacement = random_displacement(4, generator=torch.Generator().manual_seed(0))
    cpu = elastic_deform(images, masks, weights, displacement=displacement)
    gpu = elastic_deform(images.cuda(), masks.cuda(), weights.cuda(), displacement=displacement.cuda())
    assert torch.allclose(gpu.images.cpu(), cpu.images, atol=1e-4)
    assert (gpu.masks.cpu() == cpu.masks).float().mean() > 0.999
    assert torch.allclose(gpu.weight_maps.cpu(), cpu.weight_maps, atol=1e-3)


def test_user_mistakes_raise_helpful_errors():
    images, masks, weights = _batch()
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        elastic_deform(images[:, 0])
    with pytest.raises(ValueError, match="float"):
        elastic_deform((images * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="masks of shape"):
        elastic_deform(images, masks[:, None])
    with pytest.raises(ValueError, match="integer label masks"):
        elastic_deform(images, masks.float())
    with pytest.raises(ValueError, match="weight_maps of shape"):
        elastic_deform(images, weight_maps=weights[:1])
    with pytest.raises(ValueError, match="displacement of shape"):
        elastic_deform(images, displacement=torch.zeros(2, 3, 3))
    with pytest.raises(ValueError, match="at least 2 nodes"):
        random_displacement(1, grid=1)
    with pytest.raises(ValueError, match="negative"):
        ElasticDeformation(elastic_sigma=-1.0)
    with pytest.raises(ValueError, match="interpolation"):
        elastic_deform(images, interpolation="nearest")


# --- the torchvision transform -------------------------------------------------------------


def test_transform_matches_the_function_and_warps_masks_with_nearest():
    images, masks, _ = _batch(n=1)
    image, mask = tv_tensors.Image(images[0]), tv_tensors.Mask(masks[0] * 5)
    torch.manual_seed(0)
    out_image, out_mask = ElasticDeformation(elastic_sigma=10.0)(image, mask)
    torch.manual_seed(0)
    reference = elastic_deform(images, masks * 5, displacement=random_displacement(1, elastic_sigma=10.0))
    assert type(out_image) is tv_tensors.Image and type(out_mask) is tv_tensors.Mask
    assert torch.allclose(out_image.as_subclass(torch.Tensor), reference.images[0], atol=1e-6)
    assert torch.equal(out_mask.as_subclass(torch.Tensor), reference.masks[0])
    assert set(out_mask.unique().tolist()) <= {0, 5, 10}


def test_transform_drops_into_a_v2_pipeline():
    generator = torch.Generator().manual_seed(0)
    image = tv_tensors.Image(torch.randint(0, 256, (1, 32, 48), dtype=torch.uint8, generator=generator))
    mask = tv_tensors.Mask(torch.randint(0, 2, (32, 48), generator=generator))
    pipeline = v2.Compose(
        [v2.RandomHorizontalFlip(), ElasticDeformation(grid=3, elastic_sigma=5.0), v2.ToDtype(torch.float32, scale=True)]
    )
    out_image, out_mask = pipeline(image, mask)
    assert (
        out_image.dtype == torch.float32
        and out_image.shape == (1, 32, 48)
        and 0 <= out_image.min() <= out_image.max() <= 1
    )
    assert out_mask.shape == (32, 48) and set(out_mask.unique().tolist()) <= {0, 1}
    identity_image, identity_mask = ElasticDeformation(elastic_sigma=0.0)(image, mask)
    assert torch.equal(identity_image, image) and torch.equal(identity_mask, mask)  # uint8 rounds back exactly


def test_transform_refuses_what_it_cannot_warp():
    with pytest.raises(ValueError, match="ToImage"):
        ElasticDeformation()(Image.new("L", (16, 16)))
    boxes = tv_tensors.BoundingBoxes([[1, 1, 5, 5]], format="XYXY", canvas_size=(16, 16))
    with pytest.raises(ValueError, match="BoundingBoxes"):
        ElasticDeformation()(tv_tensors.Image(torch.rand(1, 16, 16)), boxes)
    with pytest.raises(ValueError, match="share one"):
        ElasticDeformation()(tv_tensors.Image(torch.rand(1, 16, 16)), tv_tensors.Mask(torch.zeros(16, 20)))


def test_benchmark_smoke_mode_runs():
    """CI's guard against a rotting benchmark: tiny sizes, peers that are missing are skipped."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_elastic.py"
    result = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| unet_course.elastic_deform |" in result.stdout
    assert "wrote" not in result.stdout  # smoke mode never overwrites the published table


SQUARE = torch.arange(9).reshape(3, 3)  # every entry distinct, so every view can be told apart
# The 8 views of SQUARE, worked out by hand: a counter-clockwise quarter turn (as torch.rot90), then the mirror.
VIEWS = {
    (0, False): [[0, 1, 2], [3, 4, 5], [6, 7, 8]],
    (1, False): [[2, 5, 8], [1, 4, 7], [0, 3, 6]],
    (2, False): [[8, 7, 6], [5, 4, 3], [2, 1, 0]],
    (3, False): [[6, 3, 0], [7, 4, 1], [8, 5, 2]],
    (0, True): [[2, 1, 0], [5, 4, 3], [8, 7, 6]],
    (1, True): [[8, 5, 2], [7, 4, 1], [6, 3, 0]],  # the anti-diagonal mirror
    (2, True): [[6, 7, 8], [3, 4, 5], [0, 1, 2]],  # upside down
    (3, True): [[0, 3, 6], [1, 4, 7], [2, 5, 8]],  # the transpose
}


@pytest.mark.parametrize("quarter_turns, flip", sorted(VIEWS))
def test_each_of_the_8_views_turns_then_mirrors(quarter_turns, flip):
    assert orient(SQUARE, quarter_turns, flip).tolist() == VIEWS[quarter_turns, flip]
    assert torch.equal(orient(SQUARE, quarter_turns + 4, int(flip) + 2), orient(SQUARE, quarter_turns, flip))
    assert torch.equal(undo_orient(orient(SQUARE, quarter_turns, flip), quarter_turns, flip), SQUARE)
    assert torch.equal(orient(undo_orient(SQUARE, quarter_turns, flip), quarter_turns, flip), SQUARE)


def test_undo_orient_inverts_a_batch_of_oblong_images():
    images = torch.rand(2, 3, 5, 7)
    for (quarter_turns, flip) in VIEWS:
        viewed = orient(images, quarter_turns, flip)
        assert viewed.shape == ((2, 3, 7, 5) if quarter_turns % 2 else (2, 3, 5, 7))
        assert torch.equal(undo_orient(viewed, quarter_turns, flip), images)


def test_the_8_views_are_the_dihedral_group_of_the_square():
    views = {key: orient(SQUARE, *key) for key in VIEWS}
    as_key = {tuple(view.flatten().tolist()): key for key, view in views.items()}
    assert len(as_key) == 8  # 8 different symmetries of the square, the identity among them
    assert as_key[tuple(SQUARE.flatten().tolist())] == (0, False)
    for first in VIEWS:  # closed: a view of a view is a view, and so is undoing one
        assert tuple(undo_orient(SQUARE, *first).flatten().tolist()) in as_key
        for second in VIEWS:
            assert tuple(orient(views[first], *second).flatten().tolist()) in as_key
    assert orient(SQUARE, 1, False).flip(-1).tolist() == VIEWS[1, True]  # turn first, then mirror
