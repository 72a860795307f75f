"""The patch classifier and convolutionalize, line by line: every refusal word for word, the edges of the sizes.

Written so that changing a comparison, default or message of ``unet_course.models.fcn`` fails a
test (``make mutation`` measures it); the models are taught in chapter 2.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from unet_course.models.fcn import PatchClassifier, convolutionalize, parameter_table, sample_patches


def _refused(message: str, call) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        call()


def test_the_classifier_refuses_a_bad_configuration_word_for_word():
    _refused("expected padding 0 or 1 and at least one conv block, got padding=2, channels=(16, 32, 64)",
             lambda: PatchClassifier(padding=2))
    _refused("expected padding 0 or 1 and at least one conv block, got padding=1, channels=()",
             lambda: PatchClassifier(channels=()))
    _refused("patch_size=33 does not fit 3 blocks of 3×3 conv (padding=1) and 2×2 pool: every map before a pool needs "
             "an even side. Use e.g. patch_size=32 or 40", lambda: PatchClassifier(patch_size=33))
    _refused("patch_size=32 does not fit 3 blocks of 3×3 conv (padding=0) and 2×2 pool: every map before a pool needs "
             "an even side. Use e.g. patch_size=30 or 38", lambda: PatchClassifier(patch_size=32, padding=0))


def test_the_smallest_patch_pools_a_2_px_map_to_one_pixel():
    model = PatchClassifier(patch_size=4, channels=(2,), hidden=3, padding=0)
    assert model.feature_size == 1 and model.classifier[1].in_features == 2
    assert model(torch.zeros(5, 1, 4, 4)).shape == (5, 2)
    _refused("patch_size=3 does not fit 1 blocks of 3×3 conv (padding=0) and 2×2 pool: every map before a pool needs "
             "an even side. Use e.g. patch_size=4 or 6",
             lambda: PatchClassifier(patch_size=3, channels=(2,), padding=0))


@pytest.mark.parametrize("shape, shown", [((1, 1, 16, 17), "1×1×16×17"), ((1, 16, 16), "1×16×16"),
                                          ((1, 2, 16, 16), "1×2×16×16")])
def test_the_classifier_refuses_another_input_word_for_word(shape, shown):
    model = PatchClassifier(patch_size=16, channels=(2,), hidden=3)
    _refused(f"PatchClassifier expects input (N, 1, 16, 16), got {shown}: its first Linear layer has a fixed 128 "
             "inputs, one per feature at each position of a 16×16 patch. Crop the input to 16×16, or call "
             "unet_course.convolutionalize(model) for a fully convolutional network that takes any size.",
             lambda: model(torch.zeros(shape)))


UNSUPPORTED = ("convolutionalize needs a classifier of Linear layers with element-wise layers between them (ReLU, "
               "Dropout, ...); got {}")


@pytest.mark.parametrize("model, message", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.BatchNorm1d(2), nn.Linear(2, 2)),
     UNSUPPORTED.format("['BatchNorm1d', 'Linear'], where BatchNorm1d cannot act on a map of positions. Replace those "
                        "layers, or convolutionalize by hand.")),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.ReLU()),
     UNSUPPORTED.format("['ReLU']. Replace those layers, or convolutionalize by hand.")),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(2, 2)),
     "convolutionalize needs an nn.Sequential with exactly one nn.Flatten between the conv features and the Linear "
     "layers, got 0 Flatten layers"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Flatten(), nn.Linear(2, 2)),
     "convolutionalize needs an nn.Sequential with exactly one nn.Flatten between the conv features and the Linear "
     "layers, got 2 Flatten layers"),
    (nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4, 2)),
     "convolutionalize found no nn.Conv2d in the features; it needs them to know the channel count"),
    (nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(7, 2)),
     "the first Linear has 7 inputs, which is not 3 channels × 1×1 positions; pass feature_size=(height, width) of "
     "the flattened feature map"),
    (nn.Linear(4, 2),
     "convolutionalize supports models with .features and an nn.Sequential .classifier (like PatchClassifier or "
     "torchvision's VGG/AlexNet) or an nn.Sequential with one nn.Flatten; got Linear. Wrap your layers in one of "
     "these layouts."),
])
def test_convolutionalize_refuses_what_it_cannot_rewrite_word_for_word(model, message):
    _refused(message, lambda: convolutionalize(model))


def test_a_feature_size_that_does_not_match_the_first_linear_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(12, 2))
    _refused("the first Linear has 12 inputs, which is not 3 channels × 1×3 positions; pass feature_size=(height, "
             "width) of the flattened feature map", lambda: convolutionalize(model, feature_size=(1, 3)))
    fcn = convolutionalize(model, feature_size=(2, 2))
    assert fcn.head[0].kernel_size == (2, 2)
    assert convolutionalize(model, feature_size=2).head[0].kernel_size == (2, 2)


def test_a_linear_layer_without_bias_becomes_a_convolution_without_bias():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 2 * 3, 4, bias=False), nn.Tanh(),
                          nn.Linear(4, 2)).eval()
    fcn = convolutionalize(model, feature_size=(2, 3))
    assert fcn.head[0].bias is None and fcn.head[2].bias is not None and fcn.head[0].weight.device.type == "cpu"
    x = torch.rand(3, 1, 4, 5)
    assert torch.allclose(fcn(x)[:, :, 0, 0], model(x), atol=1e-6)
    assert not fcn.training


def test_parameter_table_reads_a_shape_from_the_first_parameter_without_a_weight():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale, self.shift = nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, 2))

    model = nn.Sequential(Scaled(), nn.Linear(3, 1))
    assert parameter_table(model) == [("0", "Scaled", (3,), 7), ("1", "Linear", (1, 3), 4)]


def test_sample_patches_takes_the_centre_label_up_to_a_patch_as_large_as_the_image():
    image, mask = np.arange(16.0).reshape(4, 4), np.arange(16).reshape(4, 4)
    patches, labels = sample_patches(image, mask, 3, 4)
    assert patches.shape == (3, 1, 4, 4) and labels.tolist() == [10, 10, 10]  # the centre of a 4-px patch: row 2, col 2
    image, mask = np.arange(20.0).reshape(4, 5), np.arange(20).reshape(4, 5) % 2
    patches, labels = sample_patches(image, mask, 7, 3, seed=2)
    assert torch.equal(patches[:, 0, 1, 1].long() % 2, labels)  # the centre pixel's own class
    assert labels.sum().item() == 3  # balanced: 7 split as 4 of class 0 and 3 of class 1
    assert set(patches[:, 0, 0, 0].tolist()) <= {0.0, 1.0, 2.0, 5.0, 6.0, 7.0}  # every patch inside the image


def test_sample_patches_refuses_a_mismatch_or_a_patch_too_large_word_for_word():
    _refused("expected image and mask of the same (H, W), at least 4 pixels each, got image (8, 8) and mask (8, 9); "
             "pass a smaller patch_size or a larger image", lambda: sample_patches(np.zeros((8, 8)), np.zeros((8, 9)),
                                                                                   2, 4))
    _refused("expected image and mask of the same (H, W), at least 9 pixels each, got image (8, 8) and mask (8, 8); "
             "pass a smaller patch_size or a larger image", lambda: sample_patches(np.zeros((8, 8)), np.zeros((8, 8)),
                                                                                   2, 9))
    _refused("expected image and mask of the same (H, W), at least 9 pixels each, got image (9, 8) and mask (9, 8); "
             "pass a smaller patch_size or a larger image", lambda: sample_patches(np.zeros((9, 8)), np.zeros((9, 8)),
                                                                                   2, 9))


def test_every_layer_that_cannot_act_on_a_map_is_named():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.BatchNorm1d(2), nn.Linear(2, 2), nn.LayerNorm(2))
    _refused(UNSUPPORTED.format("['BatchNorm1d', 'Linear', 'LayerNorm'], where BatchNorm1d, LayerNorm cannot act on a "
                                "map of positions. Replace those layers, or convolutionalize by hand."),
             lambda: convolutionalize(model))


@pytest.mark.parametrize("classifier", [nn.Linear(4, 2), None])
def test_a_model_with_features_needs_a_sequential_classifier(classifier):
    class Half(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3))
            if classifier is not None:
                self.classifier = classifier

    _refused("convolutionalize supports models with .features and an nn.Sequential .classifier (like PatchClassifier "
             "or torchvision's VGG/AlexNet) or an nn.Sequential with one nn.Flatten; got Half. Wrap your layers in one "
             "of these layouts.", lambda: convolutionalize(Half()))


def test_a_non_square_adaptive_pool_sets_the_kernel_of_the_first_linear():
    class Wide(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 3, 3))
            self.avgpool = nn.AdaptiveAvgPool2d((2, 3))
            self.classifier = nn.Sequential(nn.Linear(3 * 2 * 3, 2))

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    torch.manual_seed(0)
    model = Wide().eval()
    fcn = convolutionalize(model)
    assert fcn.head[0].kernel_size == (2, 3)
    x = torch.rand(2, 1, 4, 5)  # features 2×3: the pool is the identity, as at a torchvision model's own input size
    assert torch.allclose(fcn(x)[:, :, 0, 0], model(x), atol=1e-6)


def test_the_converted_layers_share_nothing_with_the_model_not_even_hooks():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    fcn = convolutionalize(model)
    calls = []
    fcn.head[1].register_forward_hook(lambda *_: calls.append("fcn"))
    model(torch.rand(1, 1, 3, 3))
    assert calls == [] and fcn.head[1] is not model[3]


def test_sample_patches_is_the_same_draw_every_time_by_default():
    image, mask = np.arange(400.0).reshape(20, 20), (np.arange(400).reshape(20, 20) // 7) % 2
    first, labels = sample_patches(image, mask, 6, 5)
    again, _ = sample_patches(image, mask, 6, 5)
    seeded, _ = sample_patches(image, mask, 6, 5, seed=0)
    other, _ = sample_patches(image, mask, 6, 5, seed=1)
    assert torch.equal(first, again) and torch.equal(first, seeded) and not torch.equal(first, other)
