"""Exports of a trained run: each one computes what PyTorch computes, at every valid size, and is written safely."""

from __future__ import annotations

import shutil
import zipfile

import numpy as np
import pytest
import torch
import yaml

from unet_course.cli import main
from unet_course.export import TOLERANCE, TraceableUNet, export_run, size_rule
from unet_course.runs import load_run


@pytest.fixture(scope="module")
def run(tiny_run):
    return load_run(tiny_run)


def _image(model, height: int, width: int) -> torch.Tensor:
    return torch.rand(1, model.in_channels, height, width, generator=torch.Generator().manual_seed(3))


def test_the_size_rule_is_the_models():
    from unet_course import UNet

    model = UNet(base_channels=2, depth=4)
    smallest, step = size_rule(model)
    # the paper's depth: 188 → 4 px out is the smallest tile (172 would leave nothing), then every 16 px
    assert (smallest, step) == (188, 16) and model.output_size(188) == 4
    assert size_rule(UNet(base_channels=2, depth=2)) == (44, 4)
    assert all(model.valid_input_size(smallest + k * step) == smallest + k * step for k in range(4))
    assert model.valid_input_size(smallest + 1) == smallest + step


def test_the_traceable_forward_equals_the_models(run):
    model, _ = run
    smallest, step = size_rule(model)
    with torch.no_grad():
        for height, width in ((smallest, smallest), (smallest + step, smallest + 3 * step)):
            x = _image(model, height, width)
            assert torch.equal(TraceableUNet(model).eval()(x), model(x))


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("format", ["onnx", "torchscript"])
def test_export_round_trips_at_other_valid_sizes(run, format, tmp_path):
    model, config = run
    result = export_run(model, config, format, tmp_path / f"unet.{format}")
    assert result.max_abs_difference[format] <= TOLERANCE and result.size_bytes == result.path.stat().st_size
    smallest, step = size_rule(model)
    x = _image(model, smallest + 3 * step, smallest)  # neither the traced size nor the checked one
    with torch.no_grad():
        expected = model(x).numpy()
        if format == "onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
            got = session.run(None, {"input": x.numpy()})[0]
        else:
            got = torch.jit.load(str(result.path))(x).numpy()
    assert got.shape == expected.shape and np.abs(got - expected).max() <= TOLERANCE


def test_bioimageio_package_passes_the_validator(run, tmp_path):
    model, config = run
    result = export_run(model, config, "bioimageio", tmp_path / "unet.zip")
    assert result.validation.startswith("valid-format") and max(result.max_abs_difference.values()) <= TOLERANCE
    with zipfile.ZipFile(result.path) as package:
        names = set(package.namelist())
        description = yaml.safe_load(package.read("rdf.yaml"))
    assert {"model.onnx", "model.torchscript", "test_input.npy", "test_output.npy", "cover.png", "rdf.yaml"} <= names
    assert description["cite"][0]["doi"] == "10.1007/978-3-319-24574-4_28"
    assert config["data"] == "synthetic-membranes"  # the run's own data, not the paper's
    assert description["training_data"]["name"] == "unet-course synthetic-membranes"
    assert "trained with unet-course on synthetic images of membrane" in description["description"]
    smallest, step = size_rule(model)
    space = [axis for axis in description["inputs"][0]["axes"] if axis.get("type") == "space"]
    assert all(axis["size"] == {"min": smallest, "step": step} for axis in space)
    out_space = [axis for axis in description["outputs"][0]["axes"] if axis.get("type") == "space"]
    assert all(axis["size"]["offset"] == -2 * model.margin for axis in out_space)
    assert description["config"]["unet_course"]["halo"] == model.margin


def test_a_package_describes_the_data_of_its_run_and_no_local_path(run, tmp_path):
    from bioimageio.spec.model import v0_5

    from unet_course.bioimageio import _training_data

    model, config = run
    folder = tmp_path / "private-lab-share" / "cells"
    result = export_run(model, config | {"data": str(folder)}, "bioimageio", tmp_path / "unet.zip")
    with zipfile.ZipFile(result.path) as package:
        texts = {name: package.read(name).decode() for name in package.namelist() if name.endswith((".yaml", ".md"))}
    description = yaml.safe_load(texts["rdf.yaml"])
    assert description.get("training_data") is None and "ISBI" not in texts["rdf.yaml"]
    assert "the publisher's own images" in description["description"]
    assert not [name for name, text in texts.items() if "private-lab-share" in text or str(tmp_path) in text]
    words, isbi = _training_data(v0_5, {"data": "isbi2012"})
    assert words == "ISBI 2012" and str(isbi.cite[0].doi) == "10.3389/fnana.2015.00142"


def _status(argv, capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    return status, lines[-1]


def test_cli_export_and_its_refusals(tiny_run, tmp_path, capsys):
    out = tmp_path / "unet.pt"
    status, line = _status(["export", str(tiny_run), "--format", "torchscript", "--out", str(out)], capsys)
    assert status == 0 and "largest difference to PyTorch: torchscript" in line
    before = out.read_bytes()
    status, line = _status(["export", str(tiny_run), "--format", "torchscript", "--out", str(out)], capsys)
    assert status == 2 and "already exists; pass --overwrite" in line and out.read_bytes() == before
    assert main(["export", str(tiny_run), "--format", "torchscript", "--out", str(out), "--overwrite"]) == 0
    status, line = _status(["export", str(tmp_path / "none"), "--format", "onnx", "--out", str(tmp_path / "a")], capsys)
    assert status == 2 and line.startswith("unet-course export: error: no checkpoint at")
    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_run, damaged)
    (damaged / "model.json").write_text('{"base_channels": "four", "depth": 2}')
    status, line = _status(["export", str(damaged), "--format", "onnx", "--out", str(tmp_path / "a")], capsys)
    assert status == 1 and "incomplete or damaged (a bad base_channels)" in line
    assert not (tmp_path / "a").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(tiny_run), "--format", "keras", "--out", str(tmp_path / "a")])
    assert exit_.value.code == 2


def test_a_package_of_an_isbi_run_carries_the_cross_validation_of_its_recipe(run, tmp_path):
    from unet_course.crossval import published_summary

    model, config = run
    result = export_run(model, config | {"data": "isbi2012", "budget": "cpu"}, "bioimageio", tmp_path / "unet.zip")
    assert result.validation.startswith("valid-format")
    with zipfile.ZipFile(result.path) as package:
        card = yaml.safe_load(package.read("rdf.yaml"))["config"]["bioimageio"]
    summary = published_summary("cpu")
    (evaluation,) = card["evaluations"]
    row = evaluation["results"][evaluation["metrics"].index("nvidia_dice_388")]
    assert row[-2:] == [round(summary["mean"]["nvidia_dice_388"], 4), round(summary["std"]["nvidia_dice_388"], 4)]
    assert evaluation["evaluation_factors"][:2] == ["fold 0", "fold 1"] and evaluation["dataset_role"] == "unknown"
    assert "cross-validation" in evaluation["results_summary"] and "NVIDIA" in evaluation["results_summary"]
    assert card["training"]["optimizer_kwargs"] == {"lr": config["lr"], "momentum": 0.99}


def test_a_package_of_a_synthetic_run_claims_no_held_out_figures(run, tmp_path):
    model, config = run
    result = export_run(model, config, "bioimageio", tmp_path / "unet.zip")
    with zipfile.ZipFile(result.path) as package:
        card = yaml.safe_load(package.read("rdf.yaml"))["config"]["bioimageio"]
    assert not card.get("evaluations") and card["training"]["training_batch_size"] == 1
