"""Where to cut a two-class probability map: the threshold, chosen on the training images.

A network trained with class-balancing weights (chapter 5) learns odds scaled by the
inverse class frequencies, so 0.5 is not where its unweighted errors are smallest
(chapter 7 derives this). :func:`choose_threshold` sweeps the cut on images the network
trained on — never on held-out ones — and returns the one where neither the pixel error nor
the Rand error is far from its own best; ``unet-course train`` stores it in the run's
``model.json`` and ``predict`` uses it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .arrays import model_device
from .metrics import pixel_error, rand_error
from .tiling import predict_tiled

__all__ = ["THRESHOLDS", "METRICS", "foreground_probabilities", "threshold_sweep", "pick_threshold", "choose_threshold"]

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 0.96, 0.05), 2))
METRICS = ("both", "rand", "pixel")


@torch.no_grad()
def foreground_probabilities(model: nn.Module, data, *, device: torch.device | str | None = None,
                             tta: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(P(class 1) (H, W), mask (H, W))`` for every item of ``data``, each predicted whole by overlap-tile."""
    if getattr(model, "num_classes", 2) != 2:
        raise ValueError(f"a threshold applies to two-class models; this one has {model.num_classes} classes")
    device = model_device(model, device)
    pairs = []
    for index in range(len(data)):
        image, mask = data[index][:2]
        probabilities = predict_tiled(model, image.to(device), tta=tta, batch_size=1)
        pairs.append((probabilities[1].cpu().numpy(), np.asarray(mask)))
    return pairs


def threshold_sweep(pairs: list[tuple[np.ndarray, np.ndarray]],
                    thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, np.ndarray]:
    """Mean pixel error and Rand error over ``pairs`` at each threshold.

    Returns ``{"threshold": (T,), "pixel": (T,), "rand": (T,)}``; a pixel counts as class 1
    where its probability is strictly above the threshold, as in :func:`pixel_error`.
    """
    if not pairs:
        raise ValueError("threshold_sweep needs at least one (probabilities, mask) pair")
    pixel = [np.mean([pixel_error(p, t, threshold=cut) for p, t in pairs]) for cut in thresholds]
    rand = [np.mean([rand_error(p, t, threshold=cut) for p, t in pairs]) for cut in thresholds]
    return {"threshold": np.asarray(thresholds), "pixel": np.asarray(pixel), "rand": np.asarray(rand)}


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")


def pick_threshold(sweep: dict[str, np.ndarray], metric: str = "both") -> float:
    """The threshold of a :func:`threshold_sweep` that ``metric`` prefers.

    ``"rand"`` or ``"pixel"``: the smallest mean error of that kind. ``"both"`` (the default): the
    cut where the larger of the two excesses, each error minus its own best over the sweep, is
    smallest, so that neither error pays much for the other. The Rand error alone prefers thick
    membranes and gives up pixel error for it; the pixel error alone prefers thin ones that leak
    (chapter 7 shows the sweep). Ties go to the threshold nearest 0.5.
    """
    _check_metric(metric)
    pixel, rand = np.asarray(sweep["pixel"]), np.asarray(sweep["rand"])
    if metric == "both":
        score = np.maximum(pixel - pixel.min(), rand - rand.min())
    else:
        score = rand if metric == "rand" else pixel
    thresholds = np.asarray(sweep["threshold"])
    order = np.lexsort((np.abs(thresholds - 0.5), np.round(score, 6)))
    return float(thresholds[order[0]])


def choose_threshold(model: nn.Module, data, *, device: torch.device | str | None = None,
                     thresholds: tuple[float, ...] = THRESHOLDS, metric: str = "both") -> float:
    """The cut on P(class 1) that ``metric`` prefers on ``data`` (the training images).

    See :func:`pick_threshold` for ``metric``; the default keeps both the pixel and the Rand
    error near their best. Chapter 7 shows the sweep on the training and the held-out slices.
    """
    _check_metric(metric)  # before the predictions, which take the time
    return pick_threshold(threshold_sweep(foreground_probabilities(model, data, device=device), thresholds), metric)
