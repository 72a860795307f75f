"""NVIDIA's evaluation Dice and resize: an independent computation, hand values, the definition's details."""

import numpy as np
import pytest
import torch

from unet_course.metrics import NVIDIA_EPS, NVIDIA_SIZE, dice, nvidia_dice, nvidia_resize


def direct_nvidia_dice(probabilities: np.ndarray, truth: np.ndarray, eps: float = 1e-6) -> float:
    """One image and one class at a time, with one-hot channels as NVIDIA's TensorFlow code builds them."""
    per_class = {0: [], 1: []}
    for p1, t1 in zip(probabilities, truth):
        softmax = np.stack([1 - p1, p1], axis=-1).reshape(-1, 2)  # (pixels, classes)
        one_hot = np.eye(2)[t1.astype(int)].reshape(-1, 2)
        for c in (0, 1):
            p, t = softmax[:, c], one_hot[:, c]
            per_class[c].append((2 * np.sum(p * t) + eps) / (np.sum(p * p + t * t) + eps))
    return float(1 - np.mean([1 - np.mean(per_class[c]) for c in (0, 1)]))  # 1 - their Dice loss


@pytest.mark.parametrize("seed", range(4))
def test_matches_a_direct_computation(seed):
    rng = np.random.default_rng(seed)
    truth = rng.random((3, 12, 10)) > 0.4
    probabilities = np.clip(truth + rng.normal(0, 0.4, truth.shape), 0, 1)
    assert nvidia_dice(probabilities, truth) == pytest.approx(direct_nvidia_dice(probabilities, truth), abs=1e-12)
    assert nvidia_dice(torch.from_numpy(probabilities).float(), torch.from_numpy(truth)) == pytest.approx(
        direct_nvidia_dice(probabilities, truth), abs=1e-6)


def test_hand_counted_values():
    truth = np.array([[0, 1], [1, 1]])
    # class 1: 2·2.5 / (2.25 + 3); class 0: 2·1 / (1.25 + 1)
    assert nvidia_dice(np.array([[0.0, 1.0], [1.0, 0.5]]), truth) == pytest.approx((5 / 5.25 + 2 / 2.25) / 2)
    assert nvidia_dice(truth.astype(float), truth) == pytest.approx(1.0)
    assert nvidia_dice(1.0 - truth, truth) == pytest.approx(0.0, abs=1e-6)


def test_the_denominator_squares_the_probabilities():
    """p = 0.5 everywhere on a half-interior image: Σp² + Σt² gives 2/3 per class; Σp + Σt would give 1/2."""
    truth = np.zeros((4, 4), int)
    truth[:, :2] = 1
    assert nvidia_dice(np.full((4, 4), 0.5), truth) == pytest.approx(2 / 3)


def test_binary_probabilities_give_the_hard_dice_per_image_averaged():
    rng = np.random.default_rng(0)
    truth = rng.random((4, 16, 16)) > 0.5
    pred = rng.random((4, 16, 16)) > 0.3
    expected = np.mean([np.mean(dice(p, t)) for p, t in zip(pred, truth)])
    assert nvidia_dice(pred.astype(float), truth, eps=0.0) == pytest.approx(expected, abs=1e-12)
    assert nvidia_dice(pred.astype(float), truth) == pytest.approx(expected, abs=1e-7)  # ε moves it a little


def test_images_are_scored_one_by_one_then_averaged_not_pooled():
    truth = np.zeros((2, 2, 4), int)
    truth[0, :, :3] = 1  # 6 interior pixels in the first image
    truth[1, 0, 0] = 1  # 1 in the second
    pred = truth.astype(float)
    pred[1] = 0.0  # the second image's only cell missed
    per_image = nvidia_dice(pred, truth)
    pooled = nvidia_dice(pred.transpose(1, 0, 2).reshape(1, 2, 8), truth.transpose(1, 0, 2).reshape(1, 2, 8))
    assert per_image == pytest.approx(((1 + 0) / 2 + (1 + 14 / 15) / 2) / 2, abs=1e-6)  # class 1, class 0
    assert per_image < pooled - 0.1


def test_eps_makes_an_absent_class_score_1():
    """No interior in truth or prediction: class 1 scores (0 + ε) / (0 + ε) = 1, as in NVIDIA's code."""
    assert NVIDIA_EPS == 1e-6
    assert nvidia_dice(np.zeros((3, 3)), np.zeros((3, 3), int)) == 1.0
    assert np.isnan(nvidia_dice(np.zeros((3, 3)), np.zeros((3, 3), int), eps=0.0))  # 0/0 without it


def test_refuses_logits_and_255_labels():
    with pytest.raises(ValueError, match="in \\[0, 1\\].*not logits"):
        nvidia_dice(np.array([[2.3, -1.0]]), np.array([[1, 0]]))
    with pytest.raises(ValueError, match="binary map.*255"):
        nvidia_dice(np.array([[0.9, 0.1]]), np.array([[255, 0]]))
    with pytest.raises(ValueError, match="same shape"):
        nvidia_dice(np.zeros((2, 2)), np.zeros((3, 3), int))


def half_pixel_bilinear(x: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow 2's bilinear resize written out: sample at (i + 0.5)·scale - 0.5, edges clamped."""
    def weights(n_in, n_out):
        source = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        low = np.floor(source)
        frac = source - low
        low_i, high_i = np.clip(low, 0, n_in - 1).astype(int), np.clip(low + 1, 0, n_in - 1).astype(int)
        matrix = np.zeros((n_out, n_in))
        np.add.at(matrix, (np.arange(n_out), low_i), 1 - frac)
        np.add.at(matrix, (np.arange(n_out), high_i), frac)
        return matrix
    return weights(x.shape[0], size) @ x @ weights(x.shape[1], size).T


def test_resize_is_tensorflow_bilinear_and_cuts_labels_at_half():
    rng = np.random.default_rng(1)
    probabilities = rng.random((13, 13))
    truth = rng.random((13, 13)) > 0.5
    resized, labels = nvidia_resize(probabilities, truth, size=10)
    assert resized.shape == labels.shape == (10, 10) and labels.dtype == np.uint8
    assert resized == pytest.approx(half_pixel_bilinear(probabilities, 10), abs=1e-6)
    assert np.array_equal(labels, half_pixel_bilinear(truth.astype(float), 10) >= 0.5 - 1e-7)
    halves = np.array([[0, 1, 1, 1]] * 4)  # halving averages pixel pairs: 0.5 and 1.0
    assert nvidia_resize(halves * 1.0, halves, size=2)[1].tolist() == [[1, 1], [1, 1]]  # 0.5 counts as interior


def test_resize_defaults_to_388_and_keeps_the_stack():
    resized, labels = nvidia_resize(np.full((2, 512, 512), 0.25), np.ones((2, 512, 512), int))
    assert NVIDIA_SIZE == 388 and resized.shape == labels.shape == (2, 388, 388)
    assert resized == pytest.approx(0.25) and (labels == 1).all()
    with pytest.raises(ValueError, match="size must be a positive int"):
        nvidia_resize(np.zeros((4, 4)), np.zeros((4, 4), int), size=0)


def test_refusals_word_for_word():
    truth = np.ones((4, 4))
    cases = [
        (lambda: nvidia_dice(np.full((4, 4), 1.5), truth),
         "probabilities must lie in [0, 1], got values from 1.5 to 1.5. Pass P(cell interior), e.g. "
         "logits.softmax(dim=1)[:, 1], not logits."),
        (lambda: nvidia_dice(np.full((4, 4), 0.5), np.arange(16).reshape(4, 4)),
         "truth must be a binary map (0 = membrane, 1 = cell interior), got values [0.0, 1.0, 2.0, 3.0, 4.0]. "
         "Divide 0/255 labels by 255."),
        (lambda: nvidia_dice(np.full(4, 0.5), np.ones(4)), "Expected (H, W) or (N, H, W) maps with N ≥ 1, got shape (4,)."),
        (lambda: nvidia_dice(np.zeros((0, 4, 4)), np.zeros((0, 4, 4))),
         "Expected (H, W) or (N, H, W) maps with N ≥ 1, got shape (0, 4, 4)."),
        (lambda: nvidia_resize(np.full(4, 0.5), np.ones(4)), "Expected (H, W) or (N, H, W) maps, got shape (4,)."),
        (lambda: nvidia_resize(np.full((4, 4), 0.5), truth, size=True),
         f"size must be a positive int (NVIDIA's: {NVIDIA_SIZE}), got True."),
    ]
    for call, message in cases:
        with pytest.raises(ValueError) as raised:
            call()
        assert str(raised.value) == message


def test_a_one_pixel_resize_and_an_empty_class_without_warnings():
    probabilities, labels = nvidia_resize(np.full((4, 4), 0.5), np.ones((4, 4)), size=1)
    assert probabilities.shape == (1, 1) and labels.tolist() == [[1]]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # eps = 0 and no membrane anywhere: 0/0 for that class, nan, and no warning
        assert np.isnan(nvidia_dice(np.ones((2, 2)), np.ones((2, 2)), eps=0.0))
