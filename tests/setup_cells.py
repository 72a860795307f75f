"""The install line of the course, and each chapter's install cell, made from `_config.yml`.

The repository address and branch live in `_config.yml` only; the version comes from
`unet_course.__version__`. `make setup-cells` (this file run as a script) rewrites the first
code cell of every chapter; `tests/test_notebooks_setup.py` fails when a notebook, the README
or the intro says anything else.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))

# Until unet-course is on PyPI the cells install it from the repository; flip this when it is,
# and every line becomes `unet-course[...]==<version>`.
ON_PACKAGE_INDEX = False

# The module each extra brings, as a chapter imports it: the extras a chapter needs are read
# from its imports, and the install cell checks that these modules are present.
EXTRA_MODULES = {"smp": "segmentation_models_pytorch", "widgets": "ipywidgets"}

MARKER = "# Install the course library"


def repository() -> tuple[str, str]:
    """The repository URL and branch named in `_config.yml`."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]
    return config["url"], config["branch"]


def version() -> str:
    """``unet_course.__version__`` of this checkout."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import unet_course

    return unet_course.__version__


def requirement(extras: list[str] | tuple[str, ...] = ()) -> str:
    """What pip installs: `unet-course[extras] @ git+<url>@<branch>`, or `==<version>` once on PyPI."""
    name = f"unet-course[{','.join(sorted(extras))}]" if extras else "unet-course"
    if ON_PACKAGE_INDEX:
        return f"{name}=={version()}"
    url, branch = repository()
    return f"{name} @ git+{url}@{branch}"


def install_command(extras: list[str] | tuple[str, ...] = ()) -> str:
    """The shell line the README and the intro show."""
    return f'pip install "{requirement(extras)}"'


def chapter_extras(notebook: dict) -> list[str]:
    """The extras whose modules the chapter imports unconditionally (at the start of a line)."""
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    return sorted(extra for extra, module in EXTRA_MODULES.items()
                  if re.search(rf"^(import|from) {module}\b", code, flags=re.MULTILINE))


def setup_cell_source(extras: list[str]) -> str:
    modules = [EXTRA_MODULES[extra] for extra in extras]
    return f'''{MARKER} where it is missing (a fresh Colab runtime), with this chapter's extras.
# Generated from _config.yml by `make setup-cells`.
import importlib.metadata, importlib.util, subprocess, sys


def install_course_library(requirement, version, modules):
    try:
        installed = importlib.metadata.version("unet-course")
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed == version and all(importlib.util.find_spec(name) for name in modules):
        return
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", requirement],
                         capture_output=True, text=True)
    if pip.returncode != 0:  # %pip would go on silently: stop here, with pip's own message
        raise RuntimeError(f"pip could not install {{requirement}}:\\n{{pip.stderr[-3000:]}}")
    importlib.invalidate_caches()


install_course_library({requirement(extras)!r}, {version()!r}, {modules!r})'''


def setup_cell(notebook: dict) -> dict:
    """The chapter's install cell: the first code cell."""
    return next(cell for cell in notebook["cells"] if cell["cell_type"] == "code")


def rewrite(path: Path) -> bool:
    """Rewrite the install cell of one notebook; return whether it changed."""
    notebook = json.loads(path.read_text())
    cell = setup_cell(notebook)
    source = setup_cell_source(chapter_extras(notebook))
    if "".join(cell["source"]) == source:
        return False
    cell["source"] = source.splitlines(keepends=True)
    cell["outputs"] = []
    cell["metadata"]["tags"] = ["remove-cell"]
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    return True


if __name__ == "__main__":
    paths = [Path(name).resolve() for name in sys.argv[1:]] or NOTEBOOKS
    for path in paths:
        print(f"{path.name}: {'rewritten' if rewrite(path) else 'up to date'}")
