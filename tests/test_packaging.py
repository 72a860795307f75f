"""The package's promises about itself: dependencies in sync, no network at import."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_mirrors_pyproject():
    project = _pyproject()["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(item["pip"] for item in environment["dependencies"] if isinstance(item, dict))
    listed = {requirement for requirement in pip_section if not requirement.startswith("-e")}
    # a package two extras bound differently (ipywidgets: 7.6 for Colab, 8 for the book) is listed once
    missing = {_name(requirement) for requirement in wanted} - {_name(requirement) for requirement in listed}
    assert listed <= wanted and not missing, f"only in pyproject: {missing}; only in environment.yml: {listed - wanted}"
    assert len(listed) == len({_name(requirement) for requirement in listed}), "a package listed twice"
    python = next(item for item in environment["dependencies"] if isinstance(item, str) and item.startswith("python"))
    assert python.removeprefix("python") == project["requires-python"]


def test_runtime_dependencies_have_lower_bounds_only():
    """Colab's preinstalled torch/numpy/matplotlib must satisfy them: no upper caps, no pins."""
    for requirement in _pyproject()["project"]["dependencies"]:
        assert ">=" in requirement and "<" not in requirement and "==" not in requirement, requirement


def test_constraints_pin_every_dependency():
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pinned[name.lower().replace("_", "-")] = version
    project = _pyproject()["project"]
    for requirement in project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]:
        assert _name(requirement) in pinned, f"{requirement} has no pinned version in constraints.txt"


def test_import_needs_no_network():
    """Importing the package opens no socket (checked in a fresh interpreter)."""
    code = (
        "import socket\n"
        "def refuse(*args, **kwargs): raise AssertionError('network used at import time')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "import unet_course, unet_course.viz\n"
        "print(len(unet_course.__all__))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 5


def test_public_names_exist():
    import unet_course

    missing = [name for name in unet_course.__all__ if not hasattr(unet_course, name)]
    assert not missing
    assert len(set(unet_course.__all__)) == len(unet_course.__all__)  # each name listed once


def test_license_is_an_spdx_expression_with_its_file():
    project = _pyproject()["project"]
    assert project["license"] == "MIT"
    assert all((ROOT / name).is_file() for name in project["license-files"])


def test_widgets_extra_keeps_colabs_ipywidgets_7():
    """Colab preinstalls ipywidgets 7.7; the chapters use only interact and core controls, which 7 has."""
    from packaging.requirements import Requirement

    widgets = [Requirement(r) for r in _pyproject()["project"]["optional-dependencies"]["widgets"]]
    assert [r.name for r in widgets] == ["ipywidgets"]
    assert widgets[0].specifier.contains("7.7.1") and widgets[0].specifier.contains("8.1.9")


def _house_map() -> set[str]:
    """The modules CONTRIBUTING.md's map names (first column; a cell may name several)."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## A map of the house", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split("|") for line in section.splitlines() if line.startswith("| `")]
    return {name for cells in rows for name in re.findall(r"`([\w/]+\.py)`", cells[0])}


def test_the_map_of_the_house_lists_every_module_and_no_other():
    modules = {str(path.relative_to(ROOT / "unet_course")) for path in (ROOT / "unet_course").rglob("*.py")
               if path.name != "__main__.py"}
    listed = _house_map()
    assert not modules - listed, f"add these modules to CONTRIBUTING.md's map: {sorted(modules - listed)}"
    assert not listed - modules, f"CONTRIBUTING.md's map names modules that do not exist: {sorted(listed - modules)}"
