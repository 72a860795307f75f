"""Where to cut a two-class probability map: the threshold, chosen on the training images.

A network trained with class-balancing weights (chapter 5) learns odds scaled by the
inverse class frequencies, so 0.5 is not where its unweighted errors are smallest
(chapter 7 derives this). :func:`choose_threshold` sweeps the cut on images the network
trained on — never on held-out ones — and returns the one with the smallest Rand error;
``unet-course train`` stores it in the run's ``model.json`` and ``predict`` uses it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .metrics import pixel_error, rand_error
from .tiling import predict_tiled

__all__ = ["THRESHOLDS", "foreground_probabilities", "threshold_sweep", "choose_threshold"]

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 0.96, 0.05), 2))


@torch.no_grad()
def foreground_probabilities(model: nn.Module, data, *, device: torch.device | str | None = None,
                             tta: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(P(class 1) (H, W), mask (H, W))`` for every item of ``data``, each predicted whole by overlap-tile."""
    if getattr(model, "num_classes", 2) != 2:
        raise ValueError(f"a threshold applies to two-class models; this one has {model.num_classes} classes")
    parameter = next(model.parameters(), None)
    device = torch.device(device) if device is not None else (parameter.device if parameter is not None else "cpu")
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


def choose_threshold(model: nn.Module, data, *, device: torch.device | str | None = None,
                     thresholds: tuple[float, ...] = THRESHOLDS) -> float:
    """The cut on P(class 1) with the smallest mean Rand error on ``data`` (the training images).

    Ties go to the threshold nearest 0.5. Chapter 7 shows the sweep and why the Rand error
    is the one to pick by: it counts the merges and splits that a membrane map exists to avoid.
    """
    sweep = threshold_sweep(foreground_probabilities(model, data, device=device), thresholds)
    order = np.lexsort((np.abs(sweep["threshold"] - 0.5), np.round(sweep["rand"], 6)))
    return float(sweep["threshold"][order[0]])
