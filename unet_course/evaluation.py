"""Score a trained network on a folder of images with masks: the numbers of chapter 7, per image and overall.

Every image is predicted whole by overlap-tile (:func:`unet_course.predict_tiled`) and scored with
the library's metrics: pixel error, IoU and Dice per class; for two-class networks also the Rand
and warping errors of the ISBI 2012 challenge, the F1 score of the objects (connected components
of class 1, matched at IoU 0.5) and a sweep of the threshold. ``unet-course evaluate`` runs it and
:mod:`unet_course.report` writes the result as ``metrics.csv``, ``summary.json`` and ``report.html``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from tqdm.auto import tqdm

from .arrays import THRESHOLD, above_threshold, label_components, model_device
from .calibrate import threshold_sweep
from .data.folder import ImageMaskFolder
from .metrics import dice, iou, match_instances, pixel_error, rand_error, warping_error
from .tiling import predict_tiled

__all__ = ["WARPING_MAX_PIXELS", "Region", "EvaluationReport", "evaluate_folder"]

# The warping error flips one simple pixel at a time; at about a megapixel it already takes
# seconds per image, so larger images are skipped (nan) unless the caller raises the limit.
WARPING_MAX_PIXELS = 1024 * 1024
IOU_MATCH = 0.5  # objects match when their IoU is above this (the usual instance-segmentation cut)


@dataclass(frozen=True)
class Region:
    """A window of one image where the prediction is most wrong, for the report's gallery."""

    name: str  # the image it comes from
    top: int  # its corner in the image, pixels
    left: int
    errors: int  # wrongly labelled pixels inside it
    image: np.ndarray  # (h, w) float, the first channel
    truth: np.ndarray  # (h, w) class indices
    prediction: np.ndarray  # (h, w) predicted class indices


@dataclass
class EvaluationReport:
    """What :func:`evaluate_folder` measured.

    ``rows`` holds one dict per image (``name``, ``height``, ``width``, ``pixel_error``,
    ``iou_<k>``, ``dice_<k>`` for each class, and for two classes ``rand_error``,
    ``warping_error``, ``instance_f1``, ``seconds``) and a last row named ``"all"``:
    the mean over images, except ``instance_f1``, which pools the object counts of every image.
    """

    rows: list[dict]
    num_classes: int
    threshold: float
    tta: bool
    tile_size: int | None
    sweep: dict[str, list[float]] | None = None  # two classes: threshold, pixel and Rand error (means)
    regions: list[Region] = field(default_factory=list)  # worst first

    @property
    def overall(self) -> dict:
        """The ``"all"`` row."""
        return self.rows[-1]

    @property
    def columns(self) -> list[str]:
        return list(self.rows[0])


def _dataset(images, masks, model: nn.Module):
    if masks is None:
        return images  # a dataset of (image (C, H, W), mask (H, W)) pairs
    return ImageMaskFolder(images, masks, grayscale=getattr(model, "in_channels", 1) == 1,
                           num_classes=getattr(model, "num_classes", None))


def _names(data) -> list[str]:
    pairs = getattr(data, "pairs", None)  # ImageMaskFolder: named after the image file
    if pairs:
        return [Path(image).name for image, _ in pairs]
    return [str(index) for index in getattr(data, "indices", range(len(data)))]  # ISBI2012: its slice numbers


def _worst_window(wrong: np.ndarray, size: int) -> tuple[int, int, int]:
    """``(top, left, errors)`` of the ``size × size`` window holding the most wrong pixels."""
    counts = ndimage.uniform_filter(wrong.astype(np.float64), size=size, mode="constant") * size * size
    half = size // 2
    inner = counts[half:wrong.shape[0] - (size - half) + 1, half:wrong.shape[1] - (size - half) + 1]
    top, left = np.unravel_index(np.argmax(inner), inner.shape)
    return int(top), int(left), int(round(inner[top, left]))


def _object_counts(prediction: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """``(tp, fp, fn)`` of the connected components of class 1, matched at IoU above 0.5."""
    match = match_instances(label_components(prediction == 1), label_components(truth == 1),
                            iou_thresholds=IOU_MATCH)[0]
    return match.tp, match.fp, match.fn


def _mean(values: list[float]) -> float:
    """The mean of the values that are not nan (a class absent from an image, a skipped warping error)."""
    values = [value for value in values if not np.isnan(value)]
    return float(np.mean(values)) if values else float("nan")


def _f1(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def evaluate_folder(model: nn.Module, images, masks: str | os.PathLike | None = None, *, threshold: float = THRESHOLD,
                    tta: bool = False, tile_size: int | None = None, device: torch.device | str | None = None,
                    warping_max_pixels: int = WARPING_MAX_PIXELS, regions: int = 6,
                    progress: bool = True) -> EvaluationReport:
    """Predict every image by overlap-tile and score it against its mask.

    Args:
        model: a trained network, e.g. from :func:`unet_course.runs.load_run` or :func:`unet_course.pretrained`.
        images: a folder of images (paired with ``masks`` by file name, read by
            :class:`~unet_course.data.ImageMaskFolder`), or a dataset of ``(image, mask)`` pairs
            such as :class:`~unet_course.data.ISBI2012` (then ``masks`` is None).
        masks: the folder of masks, with the file names of the images. Default None (a dataset).
        threshold: two classes: class 1 where P(class 1) is above it (a run's is
            ``config["threshold"]``). Default 0.5. More classes: the most probable class.
        tta: average the 8 flips/rotations of each tile. Default False.
        tile_size: input tile side, a valid size of the model. Default: :func:`predict_tiled`'s.
        device: where to predict (the model is moved there). Default: where its parameters are.
        warping_max_pixels: the warping error is computed for images up to this many pixels
            and is nan above (it is the slow one); 0 skips it. Default 1024².
        regions: how many worst windows (one per image, worst images first) to keep for the gallery.
        progress: show a progress bar over images. Default True.

    Returns:
        An :class:`EvaluationReport`; the probability maps are kept for the threshold sweep
        until it is done (4 bytes per pixel of the folder).

    Example:
        >>> report = evaluate_folder(UNet(base_channels=4, depth=2), ISBI2012(root, indices=[0]))  # doctest: +SKIP
        >>> report.overall["pixel_error"]  # doctest: +SKIP

    The metrics are taught in chapter 7 (evaluation).
    """
    data = _dataset(images, masks, model)
    if len(data) == 0:
        raise ValueError("there are no images to evaluate; pass a folder (or dataset) holding at least one image")
    num_classes = int(getattr(model, "num_classes", 2))
    two_classes = num_classes == 2
    device = model_device(model, device)
    model.to(device)
    rows, pairs, found, counts = [], [], [], np.zeros(3, dtype=np.int64)
    for index, name in enumerate(tqdm(_names(data), desc="evaluating", unit="image", disable=not progress)):
        image, mask = data[index][:2]
        truth = np.asarray(mask)
        start = time.perf_counter()
        probabilities = predict_tiled(model, image.to(device), tile_size=tile_size, tta=tta)
        seconds = time.perf_counter() - start
        probabilities = probabilities.cpu().numpy()
        # two classes: the metrics cut P(class 1) at the threshold themselves, as predict does
        pred = probabilities[1] if two_classes else probabilities.argmax(0)
        prediction = above_threshold(pred, threshold).astype(np.int64) if two_classes else pred
        row = {"name": name, "height": truth.shape[0], "width": truth.shape[1],
               "pixel_error": pixel_error(pred, truth, threshold=threshold)}
        for what, scores in (("iou", iou(pred, truth, num_classes, threshold=threshold)),
                             ("dice", dice(pred, truth, num_classes, threshold=threshold))):
            row.update({f"{what}_{k}": float(score) for k, score in enumerate(scores)})
        if two_classes:
            row["rand_error"] = rand_error(pred, truth, threshold=threshold)
            small = 0 < truth.size <= warping_max_pixels
            row["warping_error"] = warping_error(pred, truth, threshold=threshold) if small else float("nan")
            tp_fp_fn = _object_counts(prediction, truth)
            counts += tp_fp_fn
            row["instance_f1"] = _f1(*tp_fp_fn)
            pairs.append((pred, truth))
        row["seconds"] = seconds
        rows.append(row)
        size = max(1, min(64, *truth.shape))
        top, left, errors = _worst_window(prediction != truth, size)
        window = (slice(top, top + size), slice(left, left + size))
        found.append(Region(name, top, left, errors, image[0].cpu().numpy()[window], truth[window], prediction[window]))
    overall = {"name": "all", "height": float("nan"), "width": float("nan")}
    for column in rows[0]:
        if column not in overall:
            overall[column] = _mean([row[column] for row in rows])
    sweep = None
    if two_classes:
        overall["instance_f1"] = _f1(*counts)  # pooled: every object of the folder counts once
        sweep = {key: values.tolist() for key, values in threshold_sweep(pairs).items()}
    worst = sorted(found, key=lambda region: -region.errors)[:regions]
    return EvaluationReport(rows + [overall], num_classes, threshold, tta, tile_size, sweep, worst)
