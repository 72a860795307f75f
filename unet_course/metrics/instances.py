"""Instance matching: which predicted objects found which true objects, at IoU thresholds.

A predicted object and a true object match when their intersection over union exceeds
a threshold, each object matching at most once; matched pairs are true positives,
unmatched predictions false positives, unmatched truths false negatives. This is how
cell-tracking and instance-segmentation benchmarks count detections (e.g. the
panoptic quality of Kirillov et al., 2019, matches at IoU > 0.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._arrays import ArrayLike, pair
from .rand import contingency_table

__all__ = ["InstanceMatch", "instance_iou", "match_instances"]


@dataclass(frozen=True)
class InstanceMatch:
    """Detection counts and scores at one IoU threshold."""

    iou_threshold: float  # a pair matches when its IoU is strictly above this (an IoU, not a probability)
    tp: int  # matched pairs
    fp: int  # predicted objects left unmatched
    fn: int  # true objects left unmatched
    precision: float  # tp / (tp + fp); nan without predicted objects
    recall: float  # tp / (tp + fn); nan without true objects
    f1: float  # 2 tp / (2 tp + fp + fn); nan without any object
    matched_iou: float  # mean IoU of the matched pairs; nan without matches


def _overlaps(pred: np.ndarray, truth: np.ndarray):
    """Ids and sizes of all objects, and the IoU of every overlapping pair (sparse)."""
    pred_ids, pred_sizes = np.unique(pred[pred != 0], return_counts=True)
    true_ids, true_sizes = np.unique(truth[truth != 0], return_counts=True)
    both = (pred != 0) & (truth != 0)
    pair_pred, pair_true, intersection = contingency_table(pred[both], truth[both])
    rows = np.searchsorted(pred_ids, pair_pred)  # index of each pair's objects
    cols = np.searchsorted(true_ids, pair_true)
    union = pred_sizes[rows] + true_sizes[cols] - intersection
    return pred_ids, true_ids, rows, cols, intersection / union


def _check_labels(pred: np.ndarray, truth: np.ndarray) -> None:
    for name, labels in (("pred_labels", pred), ("true_labels", truth)):
        if labels.dtype.kind not in "iu":
            raise ValueError(
                f"{name} must be integer object ids (0 = background), got dtype {labels.dtype}. "
                "Label a binary mask first, e.g. skimage.measure.label(mask > 0.5)."
            )


def instance_iou(pred_labels: ArrayLike, true_labels: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The IoU of every predicted object with every true object, as a dense matrix.

    Built from the sparse contingency table (one pass over the pixels, not one per
    object); pairs that do not overlap get 0. Label 0 is background in both.

    Args:
        pred_labels: predicted object ids, 0 = background.
        true_labels: true object ids, 0 = background, same shape.

    Shape:
        Any shape, the same for both. Returns ``(iou, pred_ids, true_ids)`` with
        ``iou`` of shape ``(P, T)`` for the ``P`` predicted and ``T`` true ids.

    Example:
        >>> iou, pred_ids, true_ids = instance_iou(np.array([[1, 1, 2, 0]]), np.array([[3, 3, 3, 3]]))
        >>> iou.shape, iou.round(2).tolist()
        ((2, 1), [[0.5], [0.25]])

    Taught in chapter 7 (evaluation).
    """
    pred, truth = pair(pred_labels, true_labels)
    _check_labels(pred, truth)
    pred_ids, true_ids, rows, cols, ious = _overlaps(pred, truth)
    matrix = np.zeros((len(pred_ids), len(true_ids)))
    matrix[rows, cols] = ious
    return matrix, pred_ids, true_ids


def _match(rows: np.ndarray, cols: np.ndarray, ious: np.ndarray, iou_threshold: float) -> np.ndarray:
    """IoUs of the matched pairs among the overlapping pairs ``(rows, cols, ious)``."""
    above = ious > iou_threshold
    if iou_threshold >= 0.5:
        # IoU > 0.5 needs more than half of both objects, so no object can have two
        # such partners: the pairs above the threshold are the matching, no search needed.
        return ious[above]
    row_ids, rows = np.unique(rows[above], return_inverse=True)
    col_ids, cols = np.unique(cols[above], return_inverse=True)
    table = np.zeros((len(row_ids), len(col_ids)))  # the IoU of each candidate pair, else 0
    table[rows, cols] = ious[above]
    # Maximise the number of matches first (each is worth more than all IoUs together),
    # then the total IoU among matchings of that size; non-candidates are worth 0.
    bonus = min(table.shape) + 1.0
    chosen = linear_sum_assignment(np.where(table > 0, bonus + table, 0.0), maximize=True)
    matched = table[chosen]
    return matched[matched > 0]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def match_instances(
    pred_labels: ArrayLike,
    true_labels: ArrayLike,
    iou_thresholds: float | Sequence[float] = (0.5,),
) -> list[InstanceMatch]:
    """Match predicted to true objects one-to-one at each IoU threshold and count the results.

    At thresholds of 0.5 and above, the pairs with IoU above the threshold already
    form a one-to-one matching. Below 0.5 an object may have several candidates, and
    the matching with the most pairs (then the largest total IoU) is found with
    ``scipy.optimize.linear_sum_assignment``.

    Args:
        pred_labels: predicted object ids, 0 = background (label a binary mask first,
            e.g. with ``skimage.measure.label``).
        true_labels: true object ids, 0 = background, same shape.
        iou_thresholds: one IoU threshold or several, each in [0, 1); a pair matches when
            its IoU is strictly above it. Default ``(0.5,)``. (An IoU cut, never the
            probability ``threshold`` of the pixel metrics.)

    Shape:
        Any shape, the same for both, e.g. ``(H, W)``. Returns one :class:`InstanceMatch`
        per threshold, in the order given.

    Example:
        >>> truth = np.array([[1, 1, 0, 2, 2]])
        >>> pred = np.array([[5, 5, 5, 0, 0]])  # finds object 1, misses object 2
        >>> [(m.tp, m.fp, m.fn) for m in match_instances(pred, truth, iou_thresholds=(0.5, 0.7))]
        [(1, 0, 1), (0, 1, 2)]

    Taught in chapter 7 (evaluation).
    """
    pred, truth = pair(pred_labels, true_labels)
    _check_labels(pred, truth)
    cuts = [float(iou_thresholds)] if np.isscalar(iou_thresholds) else [float(t) for t in iou_thresholds]
    if not cuts or not all(0.0 <= t < 1.0 for t in cuts):
        raise ValueError(f"iou_thresholds must be IoU values in [0, 1), got {cuts}. The usual one is 0.5.")
    pred_ids, true_ids, rows, cols, ious = _overlaps(pred, truth)
    results = []
    for cut in cuts:
        matched = _match(rows, cols, ious, cut)
        tp = int(matched.size)
        fp, fn = len(pred_ids) - tp, len(true_ids) - tp
        results.append(
            InstanceMatch(
                iou_threshold=cut,
                tp=tp,
                fp=fp,
                fn=fn,
                precision=_ratio(tp, tp + fp),
                recall=_ratio(tp, tp + fn),
                f1=_ratio(2 * tp, 2 * tp + fp + fn),
                matched_iou=float(matched.mean()) if tp else float("nan"),
            )
        )
    return results
