"""Synthetic driving scenes: determinism, classes, shapes and the dataset wrapper."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from unet_course.data import ROAD_CLASSES, ROAD_COLORS, SyntheticRoads, synthetic_roads

SIZE = (96, 128)


def test_same_seed_same_scene_other_seed_other_scene():
    first, again, other = (synthetic_roads(SIZE, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(first.image, again.image)
    np.testing.assert_array_equal(first.labels, again.labels)
    assert not np.array_equal(first.labels, other.labels)


@pytest.mark.parametrize("seed, labels_sha256, image_sum, sampled_sum", [
    (0, "60b8ede6583fe482", 18586.624785551452, 54.13921269774437),
    (7, "2099fb53d466c138", 20286.63546806574, 59.988167479634285),
])
def test_a_seed_gives_the_scene_it_always_gave(seed, labels_sha256, image_sum, sampled_sum):
    """Pinned from the generator as chapter 8 ran it: a refactoring must not move a single draw."""
    scene = synthetic_roads(SIZE, seed=seed)
    assert hashlib.sha256(scene.labels.tobytes()).hexdigest()[:16] == labels_sha256
    assert scene.image.astype(np.float64).sum() == pytest.approx(image_sum, rel=1e-9)
    assert scene.image[::17, ::23].astype(np.float64).sum() == pytest.approx(sampled_sum, rel=1e-9)


def test_shapes_dtypes_and_range():
    scene = synthetic_roads((80, 112), seed=0)
    assert scene.image.shape == (80, 112, 3) and scene.image.dtype == np.float32
    assert scene.labels.shape == (80, 112) and scene.labels.dtype == np.uint8
    assert scene.image.min() >= 0.0 and scene.image.max() <= 1.0
    assert len(ROAD_CLASSES) == 5 == len(ROAD_COLORS)


def test_labels_only_hold_the_five_classes_and_each_shows_up_in_most_scenes():
    present = np.zeros(len(ROAD_CLASSES))
    for seed in range(40):
        labels = synthetic_roads(SIZE, seed=seed).labels
        assert set(np.unique(labels).tolist()) <= set(range(len(ROAD_CLASSES)))
        present += np.bincount(labels.ravel(), minlength=len(ROAD_CLASSES)) > 0
    assert present.min() / 40 > 0.6, dict(zip(ROAD_CLASSES, present))


def test_geometry_sky_on_top_road_at_the_bottom_vehicles_stand_on_the_road():
    sky, road, marking, vehicle, roadside = range(5)
    for seed in range(10):
        labels = synthetic_roads(SIZE, seed=seed).labels
        assert (labels[0] != road).all() and (labels[-1] != sky).all()
        assert (labels[-1] == road).mean() + (labels[-1] == marking).mean() > 0.3
        rows = np.nonzero((labels == vehicle).any(axis=1))[0]
        if len(rows):  # the lowest vehicle row has road or its shadow just below it
            bottom = rows.max()
            assert bottom + 1 == SIZE[0] or (labels[bottom + 1] == road).any()


def test_lane_marking_is_a_small_share_and_the_image_differs_by_class():
    scene = synthetic_roads((192, 256), seed=7)
    share = (scene.labels == 2).mean()
    assert 0.002 < share < 0.1
    means = [scene.image[scene.labels == k].mean(axis=0) for k in (0, 1, 2)]
    assert np.abs(means[0] - means[1]).sum() > 0.1 and np.abs(means[1] - means[2]).sum() > 0.3


def test_dataset_items_match_the_generator():
    data = SyntheticRoads(3, SIZE, seed=10)
    image, mask = data[2]
    assert len(data) == 3
    assert image.shape == (3, *SIZE) and image.dtype == torch.float32
    assert mask.shape == SIZE and mask.dtype == torch.int64
    scene = synthetic_roads(SIZE, seed=12)
    np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), scene.image)
    np.testing.assert_array_equal(mask.numpy(), scene.labels)
    with pytest.raises(IndexError):
        data[3]


@pytest.mark.parametrize("size", [(16, 64), (20, 20, 3), 8])
def test_too_small_or_malformed_size_is_refused(size):
    with pytest.raises(ValueError, match="at least 32"):
        synthetic_roads(size)
