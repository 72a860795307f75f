"""The naming table of the API page holds: one name per meaning in code, command line, budgets and notebooks."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import subprocess
from pathlib import Path

import pytest

import unet_course
from unet_course.budget import TRAINING_RUNS
from unet_course.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["unet_course", "unet_course.train", "unet_course.weight_map", "unet_course.augment", "unet_course.tiling",
           "unet_course.sizes", "unet_course.losses", "unet_course.calibrate", "unet_course.models.unet",
           "unet_course.metrics", "unet_course.budget", "unet_course.runs", "unet_course.hub", "unet_course.arrays",
           "unet_course.evaluation", "unet_course.report", "unet_course.export", "unet_course.streaming",
           "unet_course.distributed", "unet_course.batches", "unet_course.files"]
# Names that once meant two things each; none may return as a parameter of a public function.
RETIRED = {"weights": "weight_map or loss_weights", "weight": "weight_map", "sigma": "border_sigma or elastic_sigma",
           "tile": "tile_size", "rng": "seed or generator"}


def _naming_rows(header: str) -> list[list[str]]:
    """The cells of each row of the table headed ``header`` in the naming section of book/api.md."""
    text = (ROOT / "book" / "api.md").read_text()
    lines = text.split("## One name, one meaning", 1)[1].split("\n## ", 1)[0].splitlines()
    start = lines.index(header) + 2  # below the header and its |---| line
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines[start:end]]


def _table() -> dict[str, list[str]]:
    """name → the functions its row of book/api.md lists."""
    rows = {}
    for cells in _naming_rows("| name | meaning | where |"):
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
            "base_channels", "seed", "generator", "device", "threshold", "run", "labels",
            "iou_thresholds"} <= set(_table())


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
PRIVATE_ATTRIBUTE = re.compile(r"\b(?:unet_course|tiling|train|weight_map|losses|augment|sizes|hub)\.(_\w+)")


def _private_names(code: str) -> list[str]:
    found = [name for names in PRIVATE_IMPORT.findall(code) for name in re.findall(r"\b\w+", names)
             if name.startswith("_") and name != "__version__"]
    return found + PRIVATE_ATTRIBUTE.findall(code)


@pytest.mark.parametrize("notebook", sorted((ROOT / "book").glob("*.ipynb")), ids=lambda path: path.name)
def test_no_notebook_reaches_into_a_private_name(notebook):
    assert _private_names(_notebook_code(notebook)) == []


def test_the_private_name_check_catches_what_it_should():
    assert _private_names("from unet_course.weight_map import _border_term, border_weight_map") == ["_border_term"]
    assert _private_names("from unet_course.tiling import (\n_predict)") == ["_predict"]
    assert _private_names("x = unet_course.tiling._predict(model)") == ["_predict"]
    assert _private_names("from unet_course import UNet, fit") == []


# Words that once meant two things each, found in text: a call or import of the training-time
# `evaluate` (now `validate`; `unet-course evaluate` and `evaluate_folder` keep the word), the IoU
# cut `thresholds=` of `match_instances` (now `iou_thresholds`; `threshold` is a probability), and
# the loss-weight module `weights` (now `weight_map`; the folder `weights/` holds network parameters).
RENAMED = {
    "evaluate → validate": re.compile(r"(?<![\w.\-])evaluate\(|\b(?:unet_course|train)\.evaluate\b"),
    "match_instances(thresholds=) → iou_thresholds=":
        re.compile(r"match_instances\((?:[^()]|\([^()]*\))*?\bthresholds="),
    "weights module → weight_map":
        re.compile(r"\bunet_course\.weights\b|\bfrom\s+\.+weights\s+import\b|\bweights\.py\b"),
}
IMPORT = re.compile(r"from\s+(unet_course[\w.]*|\.[\w.]*)\s+import\s+(\([^)]*\)|[^\n]*)")
# Text that may name the old words: this file (it must), the changelog (history), recorded benchmark
# results, vendored JavaScript and the generated Colab copies (checked against the chapters elsewhere).
NOT_SCANNED = ("tests/test_api_names.py", "CHANGELOG.md", "benchmarks/results/", "book/_static/", "colab/")


def _renamed_words(text: str) -> list[str]:
    """Which retired words ``text`` (code, Markdown or a notebook's sources) still uses."""
    found = [word for word, pattern in RENAMED.items() if pattern.search(text)]
    for module, names in IMPORT.findall(text):
        names = set(re.findall(r"\b\w+", names))
        if "evaluate" in names and (module in ("unet_course", "unet_course.train") or module.endswith(".train")):
            found.append("evaluate → validate (imported)")
        if "weights" in names and module in ("unet_course", "."):
            found.append("weights module → weight_map (imported)")
    return found


def _scanned_texts():
    listed = subprocess.run(["git", "ls-files", "*.py", "*.md", "*.ipynb", "Makefile"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.split()
    for name in listed:
        if name.startswith(NOT_SCANNED) or not (ROOT / name).is_file():
            continue
        text = (ROOT / name).read_text(encoding="utf-8")
        if name.endswith(".ipynb"):  # every cell's source, code and Markdown; outputs are what ran
            text = "\n".join("".join(cell["source"]) for cell in json.loads(text)["cells"])
        yield name, text


def test_the_retired_words_are_gone_from_code_docs_and_notebooks():
    offenders = {name: found for name, text in _scanned_texts() if (found := _renamed_words(text))}
    assert not offenders, offenders


def test_the_renamed_names_are_the_only_ones():
    from dataclasses import fields

    assert unet_course.validate is unet_course.train.validate
    assert not hasattr(unet_course, "evaluate") and not hasattr(unet_course.train, "evaluate")
    parameters = _parameters(unet_course.match_instances)
    assert "iou_thresholds" in parameters and "thresholds" not in parameters
    match_fields = {field.name for field in fields(unet_course.InstanceMatch)}
    assert "iou_threshold" in match_fields and "threshold" not in match_fields
    assert importlib.util.find_spec("unet_course.weight_map") is not None
    assert not (ROOT / "unet_course" / "weights.py").exists()
    assert not list((ROOT / "unet_course" / "weights").glob("*.py")), "unet_course/weights/ holds network files only"


def test_the_retired_word_check_catches_what_it_should():
    assert _renamed_words("from unet_course.train import autocast_dtype, evaluate, fit") == \
        ["evaluate → validate (imported)"]
    assert _renamed_words("from unet_course import (\n    UNet,\n    evaluate,\n)") == \
        ["evaluate → validate (imported)"]
    assert _renamed_words('print(evaluate(model, held_out)["iou"])') == ["evaluate → validate"]
    assert _renamed_words("match_instances(a, b,\n    thresholds=(0.5,))") == \
        ["match_instances(thresholds=) → iou_thresholds="]
    assert _renamed_words("from unet_course.weights import border_term") == ["weights module → weight_map"]
    assert _renamed_words("from .weights import check_border_args") == ["weights module → weight_map"]
    assert _renamed_words('Target("weight map", "unet_course/weights.py")') == ["weights module → weight_map"]
    assert _renamed_words("unet-course evaluate RUN IMAGES MASKS; evaluate_folder(model, images, masks)") == []
    assert _renamed_words("from . import evaluate, export, predict, train") == []  # the command's own module
    assert _renamed_words("requirement.marker.evaluate({'extra': extra})") == []
    assert _renamed_words("match_instances(a, b, iou_thresholds=(0.5,))\n"
                          "choose_threshold(model, data, thresholds=(0.4,))") == []  # probability cuts
    assert _renamed_words("cp unet_course/weights/*.pt weights/ && make weights") == []
