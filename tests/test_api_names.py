"""The naming table of the API page holds: one name per meaning in code, command line, budgets and notebooks."""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest

import unet_course
from unet_course.budget import TRAINING_RUNS
from unet_course.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["unet_course", "unet_course.train", "unet_course.weights", "unet_course.augment", "unet_course.tiling",
           "unet_course.sizes", "unet_course.losses", "unet_course.calibrate", "unet_course.models.unet",
           "unet_course.metrics", "unet_course.budget", "unet_course.runs", "unet_course.hub", "unet_course.arrays",
           "unet_course.evaluation", "unet_course.report", "unet_course.export", "unet_course.streaming",
           "unet_course.distributed", "unet_course.batches", "unet_course.files"]
# Names that once meant two things each; none may return as a parameter of a public function.
RETIRED = {"weights": "weight_map or loss_weights", "weight": "weight_map", "sigma": "border_sigma or elastic_sigma",
           "tile": "tile_size", "rng": "seed or generator"}


def _table() -> dict[str, list[str]]:
    """name → the functions its row of book/api.md lists."""
    text = (ROOT / "book" / "api.md").read_text()
    section = text.split("## One name, one meaning", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`"):
            for name in re.findall(r"`(\w+)`", cells[0]):  # `height`, `width`: one row, two names
                rows[name] = re.findall(r"`(\w+)`", cells[2])
    return rows


def _public_callables():
    seen = {}
    for name in MODULES:
        module = importlib.import_module(name)
        for attribute in getattr(module, "__all__", []):
            target = getattr(module, attribute)
            if callable(target):
                seen[f"{name}.{attribute}"] = target
    return seen


def _parameters(target) -> dict:
    try:
        return dict(inspect.signature(target).parameters)
    except (TypeError, ValueError):
        return {}


def _find(function_name: str):
    for module in MODULES:
        found = getattr(importlib.import_module(module), function_name, None)
        if found is not None:
            return found
    raise AssertionError(f"the naming table lists {function_name}, which no public module defines")


def test_the_table_has_the_rows_the_code_relies_on():
    assert {"weight_map", "loss_weights", "width", "border_sigma", "elastic_sigma", "connectivity", "tile_size",
            "base_channels", "seed", "generator", "device", "threshold", "run", "labels"} <= set(_table())


@pytest.mark.parametrize("name, functions", sorted(_table().items()))
def test_every_function_of_a_row_takes_that_name(name, functions):
    assert functions, f"the row of {name} lists no function"
    for function_name in functions:
        parameters = _parameters(_find(function_name))
        fields = getattr(_find(function_name), "_fields", ())  # named tuples such as Deformed
        plural = name + "s"  # weight_maps beside images and masks
        assert name in parameters or plural in parameters or name in fields or plural in fields, \
            f"{function_name}{tuple(parameters)} does not take {name}, as the API page says"


def test_no_public_function_uses_a_retired_name():
    offenders = [f"{where}({name}) → {RETIRED[name]}" for where, target in _public_callables().items()
                 for name in _parameters(target) if name in RETIRED]
    assert not offenders, offenders


def test_run_files_are_read_and_written_and_networks_loaded():
    """One verb per meaning: no public ``load_checkpoint``, ``save_checkpoint`` or ``load_weights`` comes back."""
    names = {where.rsplit(".", 1)[1] for where in _public_callables()}
    assert {"read_checkpoint", "write_checkpoint", "read_config", "write_config", "load_run", "load_parameters"} <= names
    assert not names & {"load_checkpoint", "save_checkpoint", "load_weights", "save_config", "load_config"}
    subcommands = build_parser()._subparsers._group_actions[0].choices
    metavars = {name: [action.metavar for action in subcommands[name]._actions if not action.option_strings]
                for name in ("predict", "evaluate", "export")}
    assert all(found[0] == "RUN" and "CHECKPOINT" not in found for found in metavars.values()), metavars


def test_connectivity_is_4_or_8_everywhere():
    for where, target in _public_callables().items():
        parameter = _parameters(target).get("connectivity")
        if parameter is not None:
            assert parameter.default in (4, 8), f"{where} defaults connectivity to {parameter.default}"


def test_the_command_line_budgets_and_model_json_use_the_library_names():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    train_options = {option for action in subcommands["train"]._actions for option in action.option_strings}
    predict_options = {option for action in subcommands["predict"]._actions for option in action.option_strings}
    assert {"--tile-size", "--base-channels", "--loss-weights"} <= train_options
    assert "--tile-size" in predict_options
    assert not {"--tile", "--width", "--weights"} & (train_options | predict_options)
    fit_and_model = set(_parameters(unet_course.fit)) | set(_parameters(unet_course.UNet))
    for budget, run in TRAINING_RUNS.items():
        assert set(run) <= fit_and_model, f"budget {budget} has keys {set(run) - fit_and_model} fit and UNet lack"


def test_a_written_model_json_uses_the_library_names(tmp_path):
    from unet_course.cli import main

    out = tmp_path / "run"
    assert main(["train", "--base-channels", "4", "--depth", "2", "--tile-size", "60", "--steps", "1", "--images",
                 "2", "--image-size", "64", "--held-out", "0", "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "model.json").read_text())
    assert {"base_channels", "tile_size", "loss_weights"} <= set(config)
    assert not set(RETIRED) & set(config)


def _notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")


PRIVATE_IMPORT = re.compile(r"from\s+unet_course[\w.]*\s+import\s+(\([^)]*\)|[^\n]*)")
PRIVATE_ATTRIBUTE = re.compile(r"\b(?:unet_course|tiling|train|weights|losses|augment|sizes|hub)\.(_\w+)")


def _private_names(code: str) -> list[str]:
    found = [name for names in PRIVATE_IMPORT.findall(code) for name in re.findall(r"\b\w+", names)
             if name.startswith("_") and name != "__version__"]
    return found + PRIVATE_ATTRIBUTE.findall(code)


@pytest.mark.parametrize("notebook", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda path: path.name)
def test_no_notebook_reaches_into_a_private_name(notebook):
    assert _private_names(_notebook_code(notebook)) == []


def test_the_private_name_check_catches_what_it_should():
    assert _private_names("from unet_course.weights import _border_term, border_weight_map") == ["_border_term"]
    assert _private_names("from unet_course.tiling import (\n_predict)") == ["_predict"]
    assert _private_names("x = unet_course.tiling._predict(model)") == ["_predict"]
    assert _private_names("from unet_course import UNet, fit") == []
