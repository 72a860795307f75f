"""V_Rand and V_Info after border thinning: the ISBI 2012 challenge's later scores.

After the challenge, its organisers (Arganda-Carreras et al., 2015, Frontiers in
Neuroanatomy) ranked entries by two foreground-restricted F-scores computed by the Fiji
script of the challenge (``RandError.getMaximalVRandAfterThinning`` and
``VariationOfInformation.getMaximalVInfoAfterThinning`` of Trainable Weka Segmentation):

1. both maps are cut at a threshold (values strictly above it are cell interior);
2. the true cells are the 4-connected components of the truth's interior;
3. the predicted membrane is *thinned* to lines one pixel wide by a watershed flooding
   (Vincent and Soille, 1991, 4-connected) from the predicted cells (``thinning.py``), so
   that a thick membrane costs nothing while a gap in it still merges two cells;
4. pixels outside the true cells are ignored; predicted line pixels inside true cells
   are singletons (each its own object);
5. V_Rand is the F-score of Rand precision and recall with pairs counted as ``n²``
   (each pixel also paired with itself); V_Info the F-score of the two normalised mutual
   informations ``I/H(truth)`` and ``I/H(prediction)``;
6. each score is averaged over slices at every threshold of 0.0, 0.1, ..., 1.0, and the
   best of these means is the entry's score. Higher is better; 1 is perfect.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..arrays import THRESHOLD
from ._arrays import ArrayLike, label_components, pair
from .rand import contingency_table
from .thinning import interior_mask, thin_borders

__all__ = ["CHALLENGE_THRESHOLDS", "ForegroundScores", "ThresholdSweep", "v_rand_scores", "v_info_scores", "v_rand",
           "v_info", "challenge_sweep"]


def _fiji_thresholds() -> tuple[float, ...]:
    # The script steps `for (th = 0.0; th <= 1.0; th += 0.1)` in doubles, so its thresholds carry the
    # rounding of repeated addition (0.30000000000000004, ..., 0.9999999999999999): kept as they are,
    # since a probability of exactly 1.0 counts as interior at the last one and would not at 1.0.
    thresholds, threshold = [], 0.0
    while threshold <= 1.0:
        thresholds.append(threshold)
        threshold += 0.1
    return tuple(thresholds)


CHALLENGE_THRESHOLDS = _fiji_thresholds()  # the 11 thresholds of the challenge's script, 0.0 to ~1.0

@dataclass(frozen=True)
class ForegroundScores:
    """A foreground-restricted F-score with its precision (merges lower it) and recall (splits lower it)."""

    score: float  # 2 precision recall / (precision + recall); 1 is perfect
    precision: float
    recall: float


NO_FOREGROUND = ForegroundScores(float("nan"), float("nan"), float("nan"))  # a truth without foreground scores nothing


@dataclass(frozen=True)
class ThresholdSweep:
    """V_Rand and V_Info of a probability map at each threshold (means over slices), and the best of each."""

    thresholds: tuple[float, ...]
    v_rand: tuple[float, ...]  # mean over slices at each threshold
    v_info: tuple[float, ...]
    best_v_rand: float  # max over thresholds (nan only if every mean is nan)
    best_v_rand_threshold: float  # the lowest threshold that reaches it
    best_v_info: float
    best_v_info_threshold: float


def _table(pred_labels: ArrayLike, true_labels: ArrayLike):
    """Pixel counts within the truth's foreground: per true object, per predicted object, per pair, and at 0."""
    pred, truth = pair(pred_labels, true_labels)
    for name, labels in (("pred_labels", pred), ("true_labels", truth)):
        if labels.dtype.kind not in "biu":
            raise ValueError(
                f"{name} must be integer object ids, got dtype {labels.dtype}. For probability or binary "
                "maps use v_rand(pred, truth, threshold=...) or v_info(...), which label and thin for you."
            )
    foreground = truth != 0
    true_ids, pred_ids, counts = contingency_table(truth[foreground].astype(np.int64),
                                                   pred[foreground].astype(np.int64))
    counts = counts.astype(np.int64)
    _, true_index = np.unique(true_ids, return_inverse=True)
    true_sizes = np.bincount(true_index, weights=counts).astype(np.int64) if counts.size else counts
    joined = pred_ids != 0
    _, pred_index = np.unique(pred_ids[joined], return_inverse=True)
    pred_sizes = np.bincount(pred_index, weights=counts[joined]).astype(np.int64) if joined.any() else counts[:0]
    singletons = int(counts[~joined].sum())  # truth-foreground pixels on a predicted line
    return int(foreground.sum()), true_sizes, pred_sizes, counts[joined], singletons


def _f_score(precision: float, recall: float) -> float:
    total = precision + recall
    return 2.0 * precision * recall / total if total else float("nan")


def v_rand_scores(pred_labels: ArrayLike, true_labels: ArrayLike) -> ForegroundScores:
    """Foreground-restricted Rand F-score of two label images, as the challenge scored it (``n²`` pairs).

    Only pixels with ``true_labels != 0`` take part. With ``n_ij`` of them in true object
    ``i`` and predicted object ``j ≠ 0``, ``a_i`` and ``b_j`` the sums, and ``c`` of them
    predicted 0 (each a singleton)::

        precision = (Σ n_ij² + c) / (Σ b_j² + c),   recall = (Σ n_ij² + c) / Σ a_i²

    Each pixel counts as paired with itself (``n²`` ordered pairs); :func:`rand_scores`
    counts distinct pairs (``n(n-1)``), as the 2012 Rand error did.

    Args:
        pred_labels: predicted object ids, 0 = line/membrane (singletons).
        true_labels: true object ids, 0 = background (ignored), same shape.

    Shape:
        Any shape, the same for both. Returns :class:`ForegroundScores`, all nan when the
        truth has no foreground.

    Example:
        >>> v_rand_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 1, 1]]))  # a split: 8 of 16 pairs kept
        ForegroundScores(score=0.6666666666666666, precision=1.0, recall=0.5)

    Taught in chapter 7 (evaluation).
    """
    n, true_sizes, pred_sizes, counts, singletons = _table(pred_labels, true_labels)
    if n == 0:
        return NO_FOREGROUND
    both = int(np.sum(counts * counts)) + singletons
    precision = both / (int(np.sum(pred_sizes * pred_sizes)) + singletons)
    recall = both / int(np.sum(true_sizes * true_sizes))
    return ForegroundScores(_f_score(precision, recall), precision, recall)


def _entropy_sum(sizes: np.ndarray, n: int) -> float:
    """Σ p log p over objects of ``sizes`` pixels, p = size / n."""
    p = sizes[sizes > 0] / n
    return float(np.sum(p * np.log(p)))


def v_info_scores(pred_labels: ArrayLike, true_labels: ArrayLike) -> ForegroundScores:
    """Foreground-restricted information-theoretic F-score of two label images, as the challenge scored it.

    On the truth's foreground, with ``A`` the true and ``B`` the predicted objects (each
    predicted 0 pixel a singleton) and ``I`` their mutual information::

        precision = I / H(A),   recall = I / H(B),   score = F-score of the two

    A merge lowers the precision, a split the recall. The script's edge cases are kept:
    a truth of one object (``H(A) = 0``) gives precision 0 and recall 1, a prediction of
    one object (``H(B) = 0``) precision 1 and recall 0, so the score is 0 in both cases,
    even for a perfect prediction of a single cell. Arguments and shapes as :func:`v_rand_scores`.

    Example:
        >>> v_info_scores(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 2, 2]])).score  # two cells, found
        1.0

    Taught in chapter 7 (evaluation).
    """
    n, true_sizes, pred_sizes, counts, singletons = _table(pred_labels, true_labels)
    if n == 0:
        return NO_FOREGROUND
    lone = singletons / n * float(np.log(n))  # c singletons of probability 1/n: Σ p log p = -(c/n) log n
    sum_a = _entropy_sum(true_sizes, n)
    sum_b = _entropy_sum(pred_sizes, n) - lone
    sum_ab = _entropy_sum(counts, n) - lone
    h_a, h_b = -sum_a, -sum_b
    information = h_a - (sum_b - sum_ab)  # H(A) - H(A|B), = H(B) - H(B|A)
    if h_b == 0:  # the script tests H(B) last, so it wins when both are 0
        precision, recall = 1.0, 0.0
    elif h_a == 0:
        precision, recall = 0.0, 1.0
    else:
        precision, recall = information / h_a, information / h_b
    return ForegroundScores(_f_score(precision, recall), precision, recall)


def _true_cells(truth: np.ndarray, threshold: float) -> np.ndarray:
    return label_components(interior_mask(truth, threshold), 4)


def v_rand(pred: ArrayLike, truth: ArrayLike, *, threshold: float = THRESHOLD) -> float:
    """V_Rand after border thinning of one slice at one threshold (the per-threshold form).

    Cuts both maps at ``threshold``, labels the true cells (4-connected), thins the
    predicted membranes with :func:`thin_borders` and returns :func:`v_rand_scores`'s
    score. The challenge's figure is the best mean over slices across
    :data:`CHALLENGE_THRESHOLDS`: see :func:`challenge_sweep`.

    Args:
        pred: probabilities of cell interior, or a binary map.
        truth: binary map (1 or True = cell interior), same shape; cut at ``threshold`` too,
            as the script does.
        threshold: values strictly above it are interior. Default 0.5.

    Shape:
        ``pred`` and ``truth``: ``(H, W)``. Returns a float in [0, 1], 1 perfect (nan if
        the truth has no interior).

    Example:
        >>> truth = np.ones((4, 7), dtype=bool); truth[:, 3] = False  # two cells
        >>> thick = np.ones((4, 7)); thick[:, 2:5] = 0.0  # the membrane predicted 3 pixels wide
        >>> v_rand(thick, truth)  # thinned back to one pixel: perfect
        1.0

    Taught in chapter 7 (evaluation).
    """
    pred, truth = pair(pred, truth, two_d=True)
    return v_rand_scores(thin_borders(pred, threshold=threshold), _true_cells(truth, threshold)).score


def v_info(pred: ArrayLike, truth: ArrayLike, *, threshold: float = THRESHOLD) -> float:
    """V_Info after border thinning of one slice at one threshold (the per-threshold form).

    As :func:`v_rand`, scored with :func:`v_info_scores`.

    Args:
        pred: probabilities of cell interior, or a binary map.
        truth: binary map (1 or True = cell interior), same shape; cut at ``threshold`` too.
        threshold: values strictly above it are interior. Default 0.5.

    Shape:
        ``pred`` and ``truth``: ``(H, W)``. Returns a float in [0, 1], 1 perfect (nan if
        the truth has no interior; 0 if it has one cell only).

    Example:
        >>> truth = np.ones((4, 7), dtype=bool); truth[:, 3] = False
        >>> v_info(np.ones((4, 7)), truth)  # the membrane missed: both cells merged
        0.0

    Taught in chapter 7 (evaluation).
    """
    pred, truth = pair(pred, truth, two_d=True)
    return v_info_scores(thin_borders(pred, threshold=threshold), _true_cells(truth, threshold)).score


def _best(means: np.ndarray, thresholds: tuple[float, ...]) -> tuple[float, float]:
    if np.all(np.isnan(means)):
        return float("nan"), float("nan")
    index = int(np.nanargmax(means))  # the first of equal maxima, as the script's strict `>` keeps
    return float(means[index]), thresholds[index]


def challenge_sweep(pred: ArrayLike, truth: ArrayLike,
                    thresholds: Sequence[float] = CHALLENGE_THRESHOLDS) -> ThresholdSweep:
    """V_Rand and V_Info after thinning at every threshold, averaged over slices, and the best of each.

    The challenge's form: at each threshold, the score of every slice, averaged over the
    slices (one threshold for the whole stack, not the best per slice); the best of these
    means is the reported V_Rand (resp. V_Info). Each slice is thinned once per threshold
    and scored both ways.

    Args:
        pred: probabilities of cell interior, ``(H, W)`` or a stack ``(N, H, W)``.
        truth: binary maps (1 = cell interior), same shape.
        thresholds: the thresholds to try. Default :data:`CHALLENGE_THRESHOLDS`, the script's
            0.0, 0.1, ..., 1.0.

    Shape:
        ``pred`` and ``truth``: ``(H, W)`` or ``(N, H, W)``. Returns a :class:`ThresholdSweep`.

    Example:
        >>> truth = np.ones((4, 7), dtype=bool); truth[:, 3] = False
        >>> sweep = challenge_sweep(np.where(truth, 0.8, 0.1), truth)
        >>> sweep.best_v_rand, round(sweep.best_v_rand_threshold, 1)
        (1.0, 0.1)

    Taught in chapter 7 (evaluation).
    """
    pred, truth = pair(pred, truth)
    if pred.ndim == 2:
        pred, truth = pred[None], truth[None]
    if pred.ndim != 3:
        raise ValueError(f"Expected (H, W) or (N, H, W) maps, got shape {tuple(pred.shape)}.")
    thresholds = tuple(float(t) for t in thresholds)
    if not thresholds:
        raise ValueError("thresholds is empty; pass at least one, e.g. CHALLENGE_THRESHOLDS.")
    scores = np.empty((2, len(thresholds), len(pred)))
    for t, threshold in enumerate(thresholds):
        for s, (slice_pred, slice_truth) in enumerate(zip(pred, truth)):
            cells, true_cells = thin_borders(slice_pred, threshold=threshold), _true_cells(slice_truth, threshold)
            scores[0, t, s] = v_rand_scores(cells, true_cells).score
            scores[1, t, s] = v_info_scores(cells, true_cells).score
    rand_means, info_means = scores.mean(axis=2)  # a nan slice makes its threshold's mean nan, as in the script
    return ThresholdSweep(thresholds, tuple(rand_means.tolist()), tuple(info_means.tolist()),
                          *_best(rand_means, thresholds), *_best(info_means, thresholds))
