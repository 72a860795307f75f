"""Every exercise solution that shows code runs, under the smoke budget, so that none can rot.

Solutions live in dropdown admonitions (`{admonition} Solution`) in the chapters' markdown; their
code is in fenced ``python`` blocks. For each chapter we run only the code cells the solutions
need (found from the names they use, followed back through the cells that define them, in
notebook order) and then every solution block, in one kernel, in an empty folder.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import re
import textwrap
from pathlib import Path

import nbformat
import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```|~~~)python[ \t]*\n(?P<code>.*?)^(?P=indent)(?P=fence)[ \t]*$",
                   re.DOTALL | re.MULTILINE)
INSTALL_MARKER = "# Install the course library"  # the Colab-only install cell never runs here


def solution_blocks(notebook: dict) -> list[str]:
    """The fenced python blocks inside the chapter's solution admonitions."""
    blocks = []
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] != "markdown" or "{admonition} Solution" not in source:
            continue
        for admonition in re.split(r"[`~]{3,4}\{admonition\} Solution", source)[1:]:
            blocks += [textwrap.dedent(match["code"]) for match in FENCE.finditer(admonition)]
    return blocks


def _tree(source: str) -> ast.Module:
    return ast.parse(TransformerManager().transform_cell(source))


def defined_names(source: str) -> set[str]:
    """Names a cell binds at module level (assignments, imports, defs, loop and with targets)."""
    names = set()
    for node in _tree(source).body:
        for inner in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else [node]:
            if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(inner.name)
            elif isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                names.add(inner.id)
            elif isinstance(inner, (ast.Import, ast.ImportFrom)):
                names.update((alias.asname or alias.name).split(".")[0] for alias in inner.names)
    return names


def used_names(source: str) -> set[str]:
    """The names a cell reads and does not bind itself, inside its functions too (they read globals).

    A name the cell binds anywhere counts as its own (a loop variable, an argument, a name set before
    use): treating it as read would drag in whichever later cell last bound it, often a training run.
    """
    nodes = list(ast.walk(_tree(source)))
    read = {node.id for node in nodes if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    bound = {node.id for node in nodes if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load)}
    bound |= {node.arg for node in nodes if isinstance(node, ast.arg)}
    return read - bound - defined_names(source) - set(dir(builtins))


def needed_cells(code_cells: list[str], blocks: list[str]) -> list[int]:
    """Indices of the code cells the solution blocks need, with the cells those need, in order.

    A name read by a cell comes from the last cell before it that binds it, as when a reader runs
    the notebook top to bottom; the solutions run after every cell.
    """
    definitions = [defined_names(source) for source in code_cells]
    wanted = set()  # (name, index of the cell that reads it)
    for k, block in enumerate(blocks):  # what a block reads and no earlier block has set
        earlier = set().union(*(defined_names(previous) for previous in blocks[:k]))
        wanted |= {(name, len(code_cells)) for name in used_names(block) - earlier}
    chosen, seen = set(), set()
    while wanted - seen:
        name, reader = (wanted - seen).pop()
        seen.add((name, reader))
        defining = [index for index in range(reader) if name in definitions[index]]
        if defining and defining[-1] not in chosen:
            chosen.add(defining[-1])
            wanted |= {(used, defining[-1]) for used in used_names(code_cells[defining[-1]])}
    return sorted(chosen)


def _code_cells(notebook: dict) -> list[str]:
    return ["".join(cell["source"]) for cell in notebook["cells"]
            if cell["cell_type"] == "code" and not "".join(cell["source"]).startswith(INSTALL_MARKER)]


CHAPTERS = [path for path in NOTEBOOKS if solution_blocks(json.loads(path.read_text()))]


def test_the_solutions_with_code_are_found():
    assert [path.name[:2] for path in CHAPTERS] == ["01", "02", "04", "05", "06", "07", "08"]
    fake = {"cells": [{"cell_type": "markdown", "source": [
        "````{admonition} Solution\n:class: dropdown\n\n1. Run\n\n   ```python\n   x = 1\n   ```\n````\n"]}]}
    assert solution_blocks(fake) == ["x = 1\n"]


def test_only_the_needed_cells_run():
    cells = ["import numpy as np", "a = np.zeros(3)", "slow = train()", "b = a + 1", "def f():\n    return b"]
    assert needed_cells(cells, ["print(f(), a)"]) == [0, 1, 3, 4]


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.stem)
def test_solutions_run(path, tmp_path, monkeypatch):
    notebook = json.loads(path.read_text())
    code_cells, blocks = _code_cells(notebook), solution_blocks(notebook)
    sources = [code_cells[index] for index in needed_cells(code_cells, blocks)] + blocks
    runnable = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    runnable.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    monkeypatch.setenv("UNET_COURSE_BUDGET", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("UNET_COURSE_DATA", os.path.abspath(os.environ.get("UNET_COURSE_DATA", "data")))
    client = NotebookClient(runnable, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a solution fails
