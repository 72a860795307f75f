"""Tests for unet_course.models.fcn: the FC classifier, convolutionalization, parameter counts."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import unet_course
from unet_course import synthetic_cells
from unet_course.models import FullyConvNet, PatchClassifier, convolutionalize, parameter_table, sample_patches


def max_difference(model: nn.Module, fcn: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        scores = fcn(x)
        assert scores.shape[-2:] == (1, 1)
        return (model(x) - scores[:, :, 0, 0]).abs().max().item()


def test_exported_at_top_level():
    assert unet_course.convolutionalize is convolutionalize
    assert unet_course.PatchClassifier is PatchClassifier


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"in_channels": 3, "num_classes": 5, "patch_size": 16, "channels": (8, 8), "hidden": 32},
        {"patch_size": 48, "channels": (4, 8, 8, 16), "hidden": 16, "num_classes": 3},
        {"patch_size": 8, "channels": (6,), "hidden": 10},
    ],
)
def test_same_output_at_training_size_and_score_map_on_larger_input(kwargs):
    torch.manual_seed(0)
    model = PatchClassifier(**kwargs).eval()
    size, blocks = model.patch_size, len(model.features) // 3
    x = torch.randn(6, model.in_channels, size, size)
    fcn = convolutionalize(model)
    assert isinstance(fcn, FullyConvNet)
    assert max_difference(model, fcn, x) <= 1e-5
    with torch.no_grad():
        scores = fcn(torch.randn(2, model.in_channels, 3 * size, 2 * size + 2**blocks))
    num_classes = model.classifier[-1].out_features
    assert scores.shape == (2, num_classes, 2 * size // 2**blocks + 1, size // 2**blocks + 2)


@settings(max_examples=12, deadline=None)
@given(
    in_channels=st.integers(1, 3),
    blocks=st.integers(1, 3),
    feature_size=st.integers(1, 3),
    hidden=st.integers(1, 24),
    num_classes=st.integers(1, 4),
    padding=st.integers(0, 1),
    seed=st.integers(0, 1000),
)
def test_equivalence_for_random_architectures(in_channels, blocks, feature_size, hidden, num_classes, padding, seed):
    torch.manual_seed(seed)
    channels = tuple(4 * (i + 1) for i in range(blocks))
    patch_size = feature_size
    for _ in range(blocks):  # undo pool, then conv
        patch_size = 2 * patch_size + 2 - 2 * padding
    model = PatchClassifier(in_channels, num_classes, patch_size, channels, hidden, padding=padding).eval()
    assert model.feature_size == feature_size
    x = torch.randn(3, in_channels, model.patch_size, model.patch_size)
    assert max_difference(model, convolutionalize(model), x) <= 1e-5


def test_sequential_with_valid_convs_is_an_exact_sliding_window():
    # Unpadded convs and pools that stay aligned: every score equals the classifier on one crop.
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(2, 6, 3), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),  # 14 → 12 → 6
        nn.Conv2d(6, 8, 3), nn.ReLU(),  # 6 → 4
        nn.Flatten(), nn.Linear(8 * 4 * 4, 12), nn.GELU(), nn.Dropout(0.3), nn.Linear(12, 7), nn.Tanh(), nn.Linear(7, 3),
    ).eval()
    fcn = convolutionalize(model)
    image = torch.randn(1, 2, 30, 24)
    with torch.no_grad():
        scores = fcn(image)  # windows 14 pixels wide, 2 pixels apart
        assert scores.shape == (1, 3, 9, 6)
        for i in range(9):
            for j in range(6):
                crop = image[:, :, 2 * i : 2 * i + 14, 2 * j : 2 * j + 14]
                assert (model(crop)[0] - scores[0, :, i, j]).abs().max() <= 1e-5


def test_unpadded_patch_classifier_is_an_exact_sliding_window():
    torch.manual_seed(4)
    model = PatchClassifier(patch_size=22, channels=(4, 8), hidden=16, padding=0).eval()  # 22 → 20 → 10 → 8 → 4
    assert model.feature_size == 4
    image = torch.randn(1, 1, 62, 46)
    with torch.no_grad():
        scores = convolutionalize(model)(image)
        windows = image.unfold(2, 22, 4).unfold(3, 22, 4)  # (1, 1, 11, 7, 22, 22), windows 4 pixels apart
        assert scores.shape == (1, 2, *windows.shape[2:4])
        expected = model(windows.reshape(-1, 1, 22, 22)).T.reshape(scores.shape)
    assert (expected - scores).abs().max() <= 1e-5


def test_padded_patch_classifier_is_not_a_sliding_window():
    torch.manual_seed(4)
    model = PatchClassifier(patch_size=16, channels=(4, 8), hidden=16, padding=1).eval()
    image = torch.randn(1, 1, 48, 48)
    with torch.no_grad():
        scores = convolutionalize(model)(image)
        expected = model(image.unfold(2, 16, 4).unfold(3, 16, 4).reshape(-1, 1, 16, 16)).T.reshape(scores.shape)
    assert (expected - scores).abs().max() > 1e-4  # crops see zero padding where the image has pixels


def test_non_square_feature_map_needs_feature_size():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 3 * 5, 2)).eval()
    with pytest.raises(ValueError, match="feature_size"):
        convolutionalize(model)
    fcn = convolutionalize(model, feature_size=(3, 5))
    assert max_difference(model, fcn, torch.randn(4, 1, 3, 5)) <= 1e-5


class _VGGLike(nn.Module):
    """features → avgpool → flatten → classifier, as torchvision's VGG and AlexNet do."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 8, 3, padding=1), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(8 * 9, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def test_torchvision_layout_with_avgpool():
    torch.manual_seed(3)
    model = _VGGLike().eval()
    fcn = convolutionalize(model)
    assert fcn.head[1].kernel_size == (3, 3)
    assert max_difference(model, fcn, torch.randn(2, 3, 12, 12)) <= 1e-5


def test_identity_avgpool_is_ignored_and_other_pools_refused():
    torch.manual_seed(3)
    model = _VGGLike().eval()
    model.avgpool = nn.Identity()
    assert max_difference(model, convolutionalize(model), torch.randn(2, 3, 12, 12)) <= 1e-5
    model.avgpool = nn.MaxPool2d(1)
    with pytest.raises(ValueError, match="got MaxPool2d"):
        convolutionalize(model)


def test_vgg16_parameter_counts_and_convolutionalization_on_meta_device():
    with torch.device("meta"):  # shapes and counts only: no memory, no download
        vgg = torchvision.models.vgg16(weights=None)
    rows = parameter_table(vgg)
    assert len(rows) == 16 and sum(row.parameters for row in rows) == 138_357_544
    first_fc = next(row for row in rows if row.kind == "Linear")
    assert first_fc.name == "classifier.0" and first_fc.parameters == 102_764_544
    assert sum(row.parameters for row in rows if row.kind == "Conv2d") == 14_714_688
    fcn = convolutionalize(vgg)
    assert isinstance(fcn.head[0], nn.Conv2d) and fcn.head[0].kernel_size == (7, 7)
    assert fcn.head[0].in_channels == 512 and fcn.head[0].out_channels == 4096
    assert sum(p.numel() for p in fcn.parameters()) == 138_357_544
    assert fcn(torch.empty(1, 3, 500, 500, device="meta")).shape == (1, 1000, 9, 9)


def test_convolutionalize_copies_weights_and_keeps_mode():
    model = PatchClassifier(patch_size=16, channels=(4, 8), hidden=8)
    fcn = convolutionalize(model)
    assert fcn.training
    assert not convolutionalize(model.eval()).training
    before = model.classifier[1].weight.clone()
    with torch.no_grad():
        fcn.head[0].weight.add_(1.0)
        fcn.features[0].weight.add_(1.0)
    assert torch.equal(model.classifier[1].weight, before)
    assert not torch.equal(model.features[0].weight, fcn.features[0].weight)
    assert torch.allclose(fcn.head[0].weight - 1.0, before.view(8, 8, 4, 4), atol=1e-6)


def test_wrong_input_size_error_names_the_size_and_the_fix():
    model = PatchClassifier(patch_size=32)
    with pytest.raises(ValueError, match=r"\(N, 1, 32, 32\), got 1×1×64×64") as error:
        model(torch.zeros(1, 1, 64, 64))
    assert "unet_course.convolutionalize(model)" in str(error.value)
    assert "1024 inputs" in str(error.value)
    with pytest.raises(ValueError, match="got 2×3×32×32"):
        model(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="patch_size=32 or 40"):
        PatchClassifier(patch_size=36)
    with pytest.raises(ValueError, match="patch_size=30 or 38"):
        PatchClassifier(patch_size=32, padding=0)


@pytest.mark.parametrize(
    "model, message",
    [
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.BatchNorm1d(2), nn.Linear(2, 2)), "BatchNorm1d"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 2)), "exactly one nn.Flatten"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.ReLU()), "Linear layers"),
        (nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 2)), "no nn.Conv2d"),
        (nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(7, 2)), "not 3 channels"),
        (nn.Linear(4, 2), "got Linear"),
    ],
)
def test_unsupported_layouts_raise_clear_errors(model, message):
    with pytest.raises(ValueError, match=message):
        convolutionalize(model)


def test_parameter_table_counts_and_growth_with_patch_size():
    rows = parameter_table(PatchClassifier())
    assert [(row.name, row.kind, row.parameters) for row in rows] == [
        ("features.0", "Conv2d", 1 * 16 * 9 + 16),
        ("features.3", "Conv2d", 16 * 32 * 9 + 32),
        ("features.6", "Conv2d", 32 * 64 * 9 + 64),
        ("classifier.1", "Linear", 64 * 4 * 4 * 256 + 256),
        ("classifier.4", "Linear", 256 * 2 + 2),
    ]
    assert rows[3].shape == (256, 1024)
    for size in (32, 64, 128):
        model, bigger = PatchClassifier(patch_size=size), PatchClassifier(patch_size=2 * size)
        assert sum(p.numel() for p in model.parameters()) == sum(row.parameters for row in parameter_table(model))
        small_rows, big_rows = parameter_table(model), parameter_table(bigger)
        assert [r.parameters for r in small_rows[:3]] == [r.parameters for r in big_rows[:3]]  # convs: any size
        assert big_rows[3].parameters - 256 == 4 * (small_rows[3].parameters - 256)  # FC: grows with the area


def test_sample_patches_labels_the_centre_pixel():
    sample = synthetic_cells(96, seed=3)
    image = sample.mask.astype(np.float32) + 0.5 * sample.image  # the centre pixel's class is readable from the patch
    patches, labels = sample_patches(image, sample.mask, 200, patch_size=16, seed=1)
    assert patches.shape == (200, 1, 16, 16) and patches.dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.equal((patches[:, 0, 8, 8] >= 1).long(), labels)
    assert labels.sum().item() == 100  # balanced
    unbalanced = sample_patches(image, sample.mask, 2000, patch_size=16, balanced=False, seed=1)[1]
    assert abs(unbalanced.float().mean().item() - sample.mask[8:-7, 8:-7].mean()) < 0.05
    with pytest.raises(ValueError, match="smaller patch_size"):
        sample_patches(image, sample.mask, 4, patch_size=128)


def test_trained_classifier_convolutionalized_localizes_cells():
    torch.manual_seed(0)
    patches, labels = zip(*(sample_patches(s.image, s.mask, 400, seed=i) for i, s in enumerate(synthetic_cells(128, seed=i) for i in range(4))))
    patches, labels = torch.cat(patches), torch.cat(labels)
    model = PatchClassifier(channels=(8, 16, 32), hidden=64)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    for _ in range(150):
        batch = torch.randint(len(patches), (32,))
        loss = F.cross_entropy(model(patches[batch]), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fcn = convolutionalize(model.eval())
    test = synthetic_cells(192, seed=100)
    with torch.no_grad():
        scores = fcn(torch.from_numpy(test.image)[None, None])  # window (i, j) is centred on pixel (8i+16, 8j+16)
    predicted = scores[0].argmax(0).numpy().astype(bool)
    truth = test.mask[16::8, 16::8][: predicted.shape[0], : predicted.shape[1]].astype(bool)
    accuracy = (predicted == truth).mean()
    iou = (predicted & truth).sum() / (predicted | truth).sum()
    chance_accuracy, chance_iou = max(truth.mean(), 1 - truth.mean()), truth.mean()  # all-majority, all-cell
    assert accuracy >= 0.85 and accuracy >= chance_accuracy + 0.25, (accuracy, chance_accuracy)
    assert iou >= 0.75 and iou >= chance_iou + 0.2, (iou, chance_iou)
