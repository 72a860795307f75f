"""A trained U-Net for other tools: ONNX, TorchScript, and a bioimage.io model package for Fiji/deepImageJ.

Each export is run once against PyTorch on a valid tile and refused if the largest difference
exceeds 1e-4 (fp32). The exported networks take the sizes the PyTorch one takes, no others:
a valid-convolution U-Net's height and width must each be ``min_size + k·step`` (``k >= 0``),
with ``(min_size, step)`` from :func:`size_rule` (``step = model.downsampling_factor``), and its
output loses ``model.margin`` pixels on every side (the halo it crops itself, 92 in the paper).
Pad an image by mirroring to such a size, or use :func:`unet_course.predict_tiled` in PyTorch.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .files import atomic_file
from .models.unet import UNet

__all__ = ["FORMATS", "TOLERANCE", "ExportResult", "TraceableUNet", "size_rule", "export_run"]

FORMATS = ("onnx", "torchscript", "bioimageio")
TOLERANCE = 1e-4  # largest |exported - PyTorch| accepted on the check tile, fp32
EXTRA = "pip install 'unet-course[export]'"


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_run` wrote and how closely it agrees with PyTorch."""

    path: Path
    format: str
    max_abs_difference: dict[str, float]  # per weight format checked (bioimageio: torchscript and onnx)
    size_bytes: int
    validation: str | None = None  # bioimageio: the validator's verdict


class TraceableUNet(nn.Module):
    """:class:`UNet`'s forward pass (eval mode) written so that one trace serves every valid size.

    ``UNet.forward`` crops each skip connection to the size of the up-sampled map, computed in
    Python from the shapes; a trace (TorchScript, ONNX) records those numbers as constants and
    the exported network would then accept only the traced size. In a valid U-Net the number
    of pixels cut per side is the same at every valid input size, so here the crop keeps that
    amount off each end instead, which a trace records correctly. Drop-out is off, as in
    prediction. The weights are the wrapped model's own; the export checks that both agree.
    """

    def __init__(self, model: UNet) -> None:
        super().__init__()
        self.unet = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        model, skips = self.unet, []
        for block in model.contracting:
            x = block(x)  # (N, C, H - 4, W - 4)
            skips.append(x)
            x = model.pool(x)  # (N, C, H/2, W/2)
        x = model.bottom(x)
        for upconv, block, skip in zip(model.upconvs, model.expansive, reversed(skips)):
            x = upconv(x)  # (N, C/2, 2h, 2w)
            cut = (skip.shape[3] - x.shape[3]) // 2  # the same at every valid size
            x = block(torch.cat([skip[:, :, cut:skip.shape[2] - cut, cut:skip.shape[3] - cut], x], dim=1))
        return model.head(x)  # (N, num_classes, H - 2·margin, W - 2·margin) logits


def size_rule(model: UNet) -> tuple[int, int]:
    """``(min_size, step)``: the model takes heights and widths ``min_size + k·step``, k = 0, 1, 2, …"""
    return model.nearest_valid_sizes(1)[1], model.downsampling_factor


def _check_shape(model: UNet) -> tuple[int, int]:
    """A small valid non-square ``(height, width)`` for the checks: both sides must stay free in the export."""
    if not isinstance(model, UNet):
        raise ValueError(f"export_run exports the library's UNet, got {type(model).__name__}")
    smallest, step = size_rule(model)
    return smallest + step, smallest + 2 * step


def _example(model: UNet, shape: tuple[int, int], seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(1, model.in_channels, *shape, generator=generator)  # scaled to 0–1 as the library reads images


def _require(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{what} needs the {module} package, which is not installed; {EXTRA}") from None


def _difference(a: torch.Tensor | np.ndarray, b: torch.Tensor) -> float:
    return float((torch.as_tensor(np.asarray(a)) - b).abs().max())


def _checked(difference: float, format: str) -> float:
    if not difference <= TOLERANCE:
        raise RuntimeError(f"the {format} export differs from PyTorch by {difference:.2e} (more than {TOLERANCE:g}) on "
                           f"a valid tile; it was not kept")
    return difference


@torch.no_grad()
def _write_torchscript(model: UNet, path: Path, shape: tuple[int, int]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shapes (the check below is what counts), deprecations
        torch.jit.save(torch.jit.trace(TraceableUNet(model).eval(), _example(model, shape)), str(path))
        loaded = torch.jit.load(str(path))
    x = _example(model, (shape[1], shape[0]), seed=1)  # another size than the traced one
    return _checked(_difference(loaded(x), model(x)), "torchscript")


@torch.no_grad()
def _write_onnx(model: UNet, path: Path, shape: tuple[int, int]) -> float:
    _require("onnx", "the ONNX export")
    runtime = _require("onnxruntime", "checking the ONNX export")
    axes = {"input": {2: "height", 3: "width"}, "output": {2: "out_height", 3: "out_width"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TraceableUNet(model).eval(), (_example(model, shape),), str(path), input_names=["input"],
                          output_names=["output"], dynamic_axes=axes, dynamo=False)
    x = _example(model, (shape[1], shape[0]), seed=1)
    session = runtime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _checked(_difference(session.run(None, {"input": x.numpy()})[0], model(x)), "ONNX")


def export_run(model: UNet, config: dict, format: str, out: str | os.PathLike) -> ExportResult:
    """Export a trained U-Net to ``out``, checked against PyTorch.

    Args:
        model: a trained :class:`UNet`, e.g. the first item of :func:`unet_course.runs.load_run`.
        config: its ``model.json`` (the training tile and threshold travel with a bioimage.io package).
        format: ``"onnx"`` (dynamic height and width, opset of ``torch.onnx``), ``"torchscript"``
            (traced) or ``"bioimageio"`` (a zip for bioimage.io, Fiji/deepImageJ, ilastik: both of those
            weights, test tensors, cover, citation, and the size rule).
        out: the file to write (replaced if it exists: the command line refuses that without ``--overwrite``).

    Returns:
        An :class:`ExportResult` with the largest absolute difference to PyTorch on a valid tile.

    Raises:
        ValueError: an unknown format, or its optional packages are missing (``pip install
            'unet-course[export]'``). RuntimeError: the export disagrees with PyTorch by more than 1e-4.

    Example:
        >>> model, config = load_run("runs/isbi")  # doctest: +SKIP
        >>> export_run(model, config, "onnx", "unet.onnx").max_abs_difference  # doctest: +SKIP
        {'onnx': 2.4e-06}
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    model = model.float().cpu().eval()
    shape, out = _check_shape(model), Path(out)
    if format == "bioimageio":
        from .bioimageio import write_package

        differences, validation = write_package(model, config, out, shape, _write_torchscript, _write_onnx)
        return ExportResult(out, format, differences, out.stat().st_size, validation)
    writer = _write_onnx if format == "onnx" else _write_torchscript
    with tempfile.TemporaryDirectory() as folder:
        written = Path(folder) / f"model.{format}"
        difference = writer(model, written, shape)
        with atomic_file(out) as (file, _):
            file.write(written.read_bytes())
    return ExportResult(out, format, {format: difference}, out.stat().st_size)
