"""What each chapter needs on a fresh Colab runtime: its install cell, a GPU where it trains, no repository files."""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess

import pytest
import yaml
from packaging.requirements import Requirement

import setup_cells
from setup_cells import NOTEBOOKS, ROOT, setup_cell

TRAINS = re.compile(r"\bfit\(|optimizer\.step\(\)")


def _notebook(path):
    return json.loads(path.read_text())


def _code(notebook) -> list[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def test_there_are_chapters():
    assert len(NOTEBOOKS) == 8


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_install_cell_is_generated_from_the_config(path):
    notebook = _notebook(path)
    cell = setup_cell(notebook)
    expected = setup_cells.setup_cell_source(setup_cells.chapter_extras(notebook))
    assert "".join(cell["source"]) == expected, f"{path.name}: run `make setup-cells` to regenerate its install cell"
    assert cell["metadata"].get("tags") == ["remove-cell"]


def test_install_line_names_the_configured_repository_and_version():
    import unet_course

    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    requirement = Requirement(setup_cells.requirement(["smp", "widgets"]))
    assert requirement.name == "unet-course" and requirement.extras == {"smp", "widgets"}
    if setup_cells.ON_PACKAGE_INDEX:
        assert str(requirement.specifier) == f"=={unet_course.__version__}"
    else:
        assert requirement.url == f"git+{config['url']}@{config['branch']}"
    assert f"{unet_course.__version__!r}" in setup_cells.setup_cell_source([])  # the version the cell checks for


def test_extras_follow_the_imports():
    extras = {path.stem[:2]: setup_cells.chapter_extras(_notebook(path)) for path in NOTEBOOKS}
    assert extras["03"] == ["smp", "widgets"] and extras["08"] == ["smp"] and extras["01"] == []
    fake = {"cells": [{"cell_type": "code", "source": ["try:\n    import ipywidgets\nexcept ImportError: pass\n"]}]}
    assert setup_cells.chapter_extras(fake) == []  # an optional import is not an extra the chapter needs


@pytest.mark.parametrize("document", ["README.md", "book/intro.md"])
def test_readme_and_intro_show_the_same_install_line(document):
    assert setup_cells.install_command() in (ROOT / document).read_text()


def _run_install_cell(monkeypatch, installed: str | None, pip_returncode: int = 0) -> list[list[str]]:
    """Execute a chapter's install cell with pip and the installed version faked; return pip's calls."""
    calls = []

    def version(name):
        if installed is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return installed

    def run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, pip_returncode, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(subprocess, "run", run)
    exec("".join(setup_cell(_notebook(NOTEBOOKS[0]))["source"]), {})
    return calls


def test_install_cell_skips_when_the_right_version_is_there(monkeypatch):
    import unet_course

    assert _run_install_cell(monkeypatch, installed=unet_course.__version__) == []


def test_install_cell_installs_when_missing_or_stale(monkeypatch):
    for installed in (None, "0.0.1"):
        calls = _run_install_cell(monkeypatch, installed=installed)
        assert len(calls) == 1 and calls[0][1:4] == ["-m", "pip", "install"]
        assert calls[0][-1] == setup_cells.requirement([])


def test_install_cell_stops_loudly_when_pip_fails(monkeypatch):
    with pytest.raises(RuntimeError, match=r"(?s)could not install.*No matching distribution"):
        _run_install_cell(monkeypatch, installed=None, pip_returncode=1)


def _trains(path) -> bool:
    return any(TRAINS.search(source) for source in _code(_notebook(path)))


TRAINING_CHAPTERS = [path for path in NOTEBOOKS if _trains(path)]
EXACT_REPEAT = "only CPU runs repeat bit for bit"  # the one reason a cell may pin the CPU


def test_the_training_chapters_are_the_ones_that_train():
    assert [path.name[:2] for path in TRAINING_CHAPTERS] == ["02", "04", "05", "06", "07", "08"]


@pytest.mark.parametrize("path", TRAINING_CHAPTERS, ids=lambda path: path.stem)
def test_training_chapters_ask_colab_for_a_gpu_and_say_what_they_got(path):
    notebook = _notebook(path)
    code = _code(notebook)
    assert notebook["metadata"].get("accelerator") == "GPU"
    assert notebook["metadata"].get("colab", {}).get("gpuType") == "T4"
    assert "print(describe_runtime(budget))" in code[1], "the setup cell reports device, torch and budget"
    pinned = [source for source in code if re.search(r"""device\s*=\s*["']cpu["']""", source) and TRAINS.search(source)
              and EXACT_REPEAT not in source]
    assert not pinned, f"{path.name} pins training to the CPU"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_chapter_reads_a_file_of_the_repository(path):
    for source in _code(_notebook(path)):
        assert not re.search(r"""["']\.\./|Path\(["']\.\.""", source), f"{path.name} reads outside its folder:\n{source}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.stem)
def test_no_output_is_a_bare_object_address(path):
    """A cell that ends on a call returning an object shows ``<torch._C.Generator at 0x…>``: end it with ``;``."""
    for cell in _notebook(path)["cells"]:
        for output in cell.get("outputs", []):
            shown = "".join(output.get("data", {}).get("text/plain", "")) + "".join(output.get("text", ""))
            assert not re.search(r"<[\w.]+ (object )?at 0x[0-9a-f]+>", shown), f"{path.name} shows {shown[:80]!r}"
