"""Sphinx extension: the files of the in-browser demo (``book/try_in_browser.md``), written into the built site.

After an HTML build it puts into ``_static/demo/``: the published network exported to ONNX by
:func:`unet_course.export.export_run` (from the weights shipped in the package, no training),
a few held-out ISBI 2012 slices (fetched and checksum-checked by :class:`unet_course.data.ISBI2012`),
PyTorch's probabilities for the first of them (the page's self-test compares against these),
the runtime files of ``onnxruntime-web`` from ``node_modules`` (``npm ci``), and ``meta.json``
saying what is there. A part that cannot be made (no npm, offline without the data) is left out
with one line in the build log, and the page says what it needs: the rest of the book builds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)

NETWORK = "isbi2012-cpu"
SAMPLES = (25, 27, 29)  # held out of the network's training (slices 0–24); the first is the self-test's
RUNTIME = "onnxruntime-web"  # its files below are the wasm-only, single-threaded build
# (its MIT licence notice heads ort.wasm.min.js)
RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
NEEDS_NPM = "npm ci (Node.js and npm) before building, to copy onnxruntime-web into the book"


def _copy_runtime(root: Path, out: Path) -> tuple[str, str] | None:
    """Copy the runtime from ``node_modules``: ``(its script in out, its version)``, or None (logged) if absent."""
    package = root / "node_modules" / RUNTIME
    if not all((package / "dist" / name).is_file() for name in RUNTIME_FILES):
        logger.info(f"in-browser demo: no {RUNTIME} in node_modules; the page will say it needs {NEEDS_NPM}")
        return None
    target = out / "ort"
    target.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_FILES:
        shutil.copyfile(package / "dist" / name, target / name)
    version = json.loads((package / "package.json").read_text())["version"]
    return f"ort/{RUNTIME_FILES[0]}", version


def _write_samples(out: Path) -> list[dict]:
    """The held-out slices as PNG files (8-bit grey, as stored); an empty list (logged) when offline without them."""
    from PIL import Image

    from unet_course.data import ISBI2012, DownloadError, data_root

    try:
        data = ISBI2012(data_root() / "isbi2012", download=True, indices=list(SAMPLES))
    except (DownloadError, OSError) as error:
        logger.info(f"in-browser demo: no ISBI 2012 slices ({error}); the page offers only the reader's own image")
        return []
    samples = []
    for image, index in zip(data.images, SAMPLES):
        name = f"isbi2012_{index}.png"
        Image.fromarray(image).save(out / name)
        samples.append({"file": name, "slice": index, "height": int(image.shape[0]), "width": int(image.shape[1])})
    return samples


def _write_reference(model, out: Path, sample: dict) -> dict:
    """PyTorch's probability of class 1 for ``sample``, as ``predict_tiled`` gives it: raw float32, row-major."""
    import numpy as np
    import torch

    from unet_course import predict_tiled
    from unet_course.data.images import load_image

    image = torch.from_numpy(load_image(out / sample["file"], channels=model.in_channels))
    probabilities = predict_tiled(model, image, tta=False)[1].numpy().astype(np.float32)
    name = f"reference_{sample['slice']}.f32"
    (out / name).write_bytes(probabilities.astype("<f4").tobytes())
    return {"file": name, "sample": sample["file"], "height": probabilities.shape[0], "width": probabilities.shape[1]}


def write_demo(root: Path, out: Path) -> dict:
    """Write every file of the demo into ``out`` and return ``meta.json``'s content (also written there)."""
    from unet_course import pretrained
    from unet_course.export import export_run, size_rule
    from unet_course.hub import pretrained_config
    from unet_course.sizes import PAPER_TILE, alignment

    out.mkdir(parents=True, exist_ok=True)
    model, config = pretrained(NETWORK), pretrained_config(NETWORK)
    min_size, step = size_rule(model)
    meta = {"network": NETWORK, "threshold": config["threshold"], "in_channels": model.in_channels,
            "num_classes": model.num_classes, "min_size": min_size, "step": step, "margin": model.margin,
            "alignment": alignment(model), "paper_tile": PAPER_TILE, "model": None, "runtime": None,
            "samples": [], "reference": None, "missing": []}
    try:
        result = export_run(model, config, "onnx", out / "model.onnx")
        (out / "model.onnx").chmod(0o644)  # written privately first (atomic_file); a web server must read it
        meta["model"], meta["model_bytes"] = "model.onnx", result.size_bytes
        meta["onnx_vs_pytorch"] = result.max_abs_difference["onnx"]
    except ValueError as error:  # the export extra is not installed
        logger.info(f"in-browser demo: no ONNX model ({error})")
        meta["missing"].append("the ONNX export: pip install 'unet-course[export]'")
    runtime = _copy_runtime(root, out)
    if runtime:
        meta["runtime"], meta["runtime_version"] = runtime
    else:
        meta["missing"].append(NEEDS_NPM)
    meta["samples"] = _write_samples(out)
    if meta["samples"]:
        meta["reference"] = _write_reference(model, out, meta["samples"][0])
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def _build_finished(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        write_demo(Path(app.srcdir), Path(app.outdir) / "_static" / "demo")


def setup(app):
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
