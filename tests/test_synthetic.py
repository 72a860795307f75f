import numpy as np
import pytest
import torch
from scipy import ndimage

from unet_course.data import SyntheticCells, SyntheticMembranes, synthetic_cells, synthetic_membranes


@pytest.mark.parametrize("generate", [synthetic_cells, synthetic_membranes])
@pytest.mark.parametrize("size", [64, (100, 37), (300, 512)])
def test_shapes_and_ranges(generate, size):
    sample = generate(size, seed=1)
    shape = (size, size) if isinstance(size, int) else size
    assert sample.image.shape == shape and sample.mask.shape == shape
    assert sample.image.dtype == np.float32
    assert 0.0 <= sample.image.min() and sample.image.max() <= 1.0
    assert set(np.unique(sample.mask).tolist()) <= {0, 1}


@pytest.mark.parametrize("generate", [synthetic_cells, synthetic_membranes])
def test_deterministic_by_seed(generate):
    a, b, c = generate(128, seed=5), generate(128, seed=5), generate(128, seed=6)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)


def test_cells_labels_are_sequential_and_match_mask():
    sample = synthetic_cells(256, seed=2)
    ids = np.unique(sample.labels)
    assert ids[0] == 0 and np.array_equal(ids, np.arange(len(ids)))
    assert np.array_equal(sample.labels > 0, sample.mask == 1)


def test_cells_touch():
    """Many cells share an edge with another cell: the case the weight map exists for."""
    labels = synthetic_cells(256, seed=3).labels
    right = (labels[:, :-1] > 0) & (labels[:, 1:] > 0) & (labels[:, :-1] != labels[:, 1:])
    down = (labels[:-1] > 0) & (labels[1:] > 0) & (labels[:-1] != labels[1:])
    touching = set(labels[:, :-1][right]) | set(labels[:-1][down])
    assert len(touching) >= 0.3 * labels.max()
    # semantic connected components merge touching cells
    assert ndimage.label(labels > 0)[1] < labels.max()


def test_cells_are_brighter_than_background():
    sample = synthetic_cells(256, seed=4)
    assert sample.image[sample.mask == 1].mean() > sample.image[sample.mask == 0].mean() + 0.2


def test_membranes_look_like_isbi():
    sample = synthetic_membranes(256, seed=4)
    assert 0.65 < sample.mask.mean() < 0.92  # ISBI 2012 slices: 0.78 cell interior
    assert sample.image[sample.mask == 0].mean() < sample.image[sample.mask == 1].mean() - 0.2
    _, regions = ndimage.label(sample.mask)
    assert regions > 10


def test_bad_size_is_explained():
    with pytest.raises(ValueError, match="at least 8 pixels"):
        synthetic_cells(4)


@pytest.mark.parametrize("dataset_class", [SyntheticCells, SyntheticMembranes])
def test_datasets(dataset_class):
    data = dataset_class(length=3, size=64, seed=10)
    assert len(data) == 3
    image, mask = data[2]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32
    assert mask.shape == (64, 64) and mask.dtype == torch.int64
    with pytest.raises(IndexError):
        data[3]
    loader = torch.utils.data.DataLoader(data, batch_size=3)
    images, masks = next(iter(loader))
    assert images.shape == (3, 1, 64, 64) and masks.shape == (3, 64, 64)


def test_cells_dataset_gives_labels():
    data = SyntheticCells(length=2, size=64, seed=1)
    sample = data.sample(1)
    assert np.array_equal(sample.labels, synthetic_cells(64, seed=2).labels)
