"""A bioimage.io model package of a trained U-Net, built and validated with ``bioimageio.spec`` / ``bioimageio.core``.

The zip holds the weights as TorchScript and ONNX, a test input and its expected output, a
cover image, the paper's citation (Ronneberger, Fischer & Brox 2015) and the training data
(ISBI 2012), and the size rule deepImageJ and ilastik need to tile an image: input sides
``min_size + k·step``, output smaller by the halo ``model.margin`` per side (written as the
output size's ``offset``, the spec's way for a halo the network crops itself). Pre-processing
scales 8-bit pixels to 0–1 (÷255), as the library reads images. :func:`unet_course.export.export_run`
calls :func:`write_package`; the extra ``[export]`` installs what it needs.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .files import atomic_file
from .export import size_rule
from .models.unet import UNet
from .runs import run_threshold

__all__ = ["PAPER_DOI", "write_package"]

PAPER_DOI = "10.1007/978-3-319-24574-4_28"
ISBI2012_URL = "https://imagej.net/events/isbi-2012-segmentation-challenge"


def _spec():
    try:
        from bioimageio.spec.model import v0_5
    except ImportError:
        raise ValueError("the bioimageio export needs the bioimageio.spec and bioimageio.core packages, which are "
                         "not installed; pip install 'unet-course[export]'") from None
    return v0_5


def _cover(image: np.ndarray, output: np.ndarray, path: Path) -> None:
    """Input beside P(class 1): the picture the model zoo shows."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(6, 3))
    for axis, picture in zip(axes, (image, output)):
        axis.imshow(picture, cmap="gray")
        axis.axis("off")
    figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(figure)


def _description(v, model: UNet, config: dict, folder: Path, test_shape: tuple[int, int]):
    smallest, step = size_rule(model)
    generator = np.random.default_rng(0)
    pixels = generator.integers(0, 256, (1, model.in_channels, *test_shape)).astype(np.float32)  # 8-bit values
    with torch.no_grad():
        logits = model(torch.from_numpy(pixels / 255)).numpy()
    np.save(folder / "test_input.npy", pixels)
    np.save(folder / "test_output.npy", logits)
    _cover(pixels[0, 0], torch.from_numpy(logits).softmax(1)[0, -1].numpy(), folder / "cover.png")
    margin = model.margin
    (folder / "README.md").write_text(
        f"# U-Net (Ronneberger et al. 2015)\n\nA valid-convolution U-Net trained with `unet-course` "
        f"(base_channels {model.base_channels}, depth {model.depth}), {model.num_classes} classes.\n\n"
        f"- Input: {model.in_channels} channel(s), 8-bit, scaled to 0–1 (÷255). Height and width must each be "
        f"{smallest} + k·{step} pixels (k = 0, 1, 2, …).\n"
        f"- Output: one logit per class; it is {margin} pixels smaller on every side (the halo), so mirror-pad "
        f"the image by {margin} pixels or tile with an overlap of {2 * margin}.\n"
        f"- Class 1 where P(class 1) = softmax(logits)[1] is above {run_threshold(config)}.\n")
    space = {"y": test_shape[0], "x": test_shape[1]}
    input_axes = [v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier(f"channel{c}") for c in
                                                               range(model.in_channels)])]
    input_axes += [v.SpaceInputAxis(id=v.AxisId(axis), size=v.ParameterizedSize(min=smallest, step=step))
                   for axis in space]
    output_axes = [v.BatchAxis(), v.ChannelAxis(channel_names=[v.Identifier(f"class{k}") for k in
                                                                range(model.num_classes)])]
    output_axes += [v.SpaceOutputAxis(id=v.AxisId(axis), size=v.SizeReference(
        tensor_id=v.TensorId("input"), axis_id=v.AxisId(axis), offset=-2 * margin)) for axis in space]
    scale = v.ScaleLinearDescr(kwargs=v.ScaleLinearKwargs(gain=1 / 255, offset=0.0))
    inputs = [v.InputTensorDescr(id=v.TensorId("input"), axes=input_axes,
                                 test_tensor=v.FileDescr(source=folder / "test_input.npy"),
                                 data=v.IntervalOrRatioDataDescr(type="float32", range=(0, 255)),
                                 preprocessing=[scale])]
    outputs = [v.OutputTensorDescr(id=v.TensorId("output"), axes=output_axes,
                                   test_tensor=v.FileDescr(source=folder / "test_output.npy"),
                                   data=v.IntervalOrRatioDataDescr(type="float32"))]
    torch_version = v.Version(torch.__version__.split("+")[0])
    weights = v.WeightsDescr(
        torchscript=v.TorchscriptWeightsDescr(source=folder / "model.torchscript", pytorch_version=torch_version),
        onnx=v.OnnxWeightsDescr(source=folder / "model.onnx", opset_version=_opset(folder / "model.onnx")))
    return v.ModelDescr(
        name="U-Net valid-convolution segmentation",
        description=f"The U-Net of Ronneberger, Fischer & Brox (2015), trained with unet-course on "
                    f"{config.get('data', 'ISBI 2012')}; input sides {smallest} + k·{step}, halo {margin}.",
        covers=[v.FileDescr(source=folder / "cover.png")],
        authors=[v.Author(name="unet-course contributors")],
        cite=[v.CiteEntry(text="Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical "
                               "Image Segmentation. MICCAI 2015.", doi=v.Doi(PAPER_DOI))],
        license=v.LicenseId("MIT"),
        documentation=v.FileDescr(source=folder / "README.md"),
        tags=["unet", "segmentation", "electron-microscopy", "2d"],
        inputs=inputs, outputs=outputs, weights=weights,
        training_data=v.DatasetDescr(name="ISBI 2012 EM segmentation challenge",
                                     description="30 serial-section TEM slices (512×512) of the Drosophila ventral "
                                                 "nerve cord with membrane labels (Arganda-Carreras et al. 2015).",
                                     source=ISBI2012_URL, cite=[v.CiteEntry(text="Arganda-Carreras I. et al. "
                                     "Crowdsourcing the creation of image segmentation algorithms for connectomics. "
                                     "Front. Neuroanat. 2015.", doi=v.Doi("10.3389/fnana.2015.00142"))]),
        config={"unet_course": {"base_channels": model.base_channels, "depth": model.depth, "halo": margin,
                                "min_size": smallest, "step": step, "threshold": run_threshold(config),
                                "tile_size": config.get("tile_size")}},
    )


def _opset(path: Path) -> int:
    import onnx

    return max(entry.version for entry in onnx.load(str(path)).opset_import if entry.domain in ("", "ai.onnx"))


def _reproduced(folder: Path) -> float:
    """The largest difference between the package's test output and what its two weights compute from its test input."""
    import onnxruntime

    scaled = torch.from_numpy(np.load(folder / "test_input.npy") / np.float32(255))  # the package's pre-processing
    expected = torch.from_numpy(np.load(folder / "test_output.npy"))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        torchscript = torch.jit.load(str(folder / "model.torchscript"))(scaled)
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx = torch.from_numpy(session.run(None, {"input": scaled.numpy()})[0])
    return max(float((torchscript - expected).abs().max()), float((onnx - expected).abs().max()))


def _validate(package: Path, folder: Path) -> str:
    """The validator's verdict on the zip, or a ``RuntimeError`` saying what it rejected.

    ``bioimageio.spec`` checks the description and every file in the zip (``perform_io_checks``);
    the test tensors are then reproduced with both weights. ``bioimageio.core.test_model``, which
    runs the same reproduction itself, is not used: its latest release pins an older
    ``bioimageio.spec`` that cannot serialize packages under pydantic 2.14.
    """
    from bioimageio.spec import __version__, load_description

    description = load_description(package, perform_io_checks=True)
    summary = description.validation_summary
    if summary.status not in ("passed", "valid-format"):
        raise RuntimeError(f"the bioimage.io validator rejected the package: {summary.status}")
    difference = _reproduced(folder)
    if not difference <= 1e-4:
        raise RuntimeError(f"the package's weights reproduce its test output only within {difference:.2e}")
    return (f"{summary.status} (bioimageio.spec {__version__}, {len(summary.details)} checks); test output "
            f"reproduced by torchscript and onnx within {difference:.1e}")


def write_package(model: UNet, config: dict, out: Path, shape: tuple[int, int],
                  write_torchscript: Callable, write_onnx: Callable) -> tuple[dict[str, float], str]:
    """Build, validate and write the zip; returns ``({weights format: max |difference|}, verdict)``."""
    v = _spec()
    from bioimageio.spec import save_bioimageio_package

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        differences = {"torchscript": write_torchscript(model, folder / "model.torchscript", shape),
                       "onnx": write_onnx(model, folder / "model.onnx", shape)}
        description = _description(v, model, config, folder, shape)
        package = save_bioimageio_package(description, output_path=folder / "package.zip")
        verdict = _validate(package, folder)
        with atomic_file(out) as (file, _):
            file.write(Path(package).read_bytes())
    return differences, verdict
