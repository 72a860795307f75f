"""Every exercise solution that shows code runs, under the smoke budget, and states what its code gives.

Solutions live in dropdown admonitions (`{admonition} Solution`) in the chapters' markdown; their
code is in fenced ``python`` blocks. For each chapter we run only the code cells the solutions
need (found from the names they use, followed back through the cells that define them, in
notebook order) and then every solution block, in one kernel, in an empty folder.

Each figure a solution states is registered below with how it is checked: against what the
solution's own code prints under the smoke budget (figures that do not depend on the budget), against
an expression evaluated in the same kernel, or against the results file it quotes. Figures from runs
under the cpu budget, which the smoke budget cannot reproduce, are listed with their source and only
checked to be stated as listed; a new figure in a solution fails until it is registered.
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

from conftest import stored_outputs

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


# Nodes with a scope of their own: what they bind stays inside (a comprehension's loop variable too).
_OWN_SCOPE = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.ListComp, ast.SetComp,
              ast.DictComp, ast.GeneratorExp)


def _module_scope(node: ast.AST):
    """``node`` and the nodes under it that bind in its scope: no descent into functions or comprehensions."""
    yield node
    if not isinstance(node, _OWN_SCOPE):
        for child in ast.iter_child_nodes(node):
            yield from _module_scope(child)


def defined_names(source: str) -> set[str]:
    """Names a cell binds at module level (assignments, imports, defs, loop and with targets)."""
    names = set()
    for inner in _module_scope(_tree(source)):
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


def solution_prose(notebook: dict, inline_code: bool = False) -> str:
    """The solutions' text outside code blocks, whitespace collapsed; inline code dropped unless ``inline_code``."""
    texts = []
    for cell in notebook["cells"]:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and "{admonition} Solution" in source:
            texts += re.split(r"[`~]{3,4}\{admonition\} Solution", source)[1:]
    prose = FENCE.sub(" ", "\n".join(texts))
    prose = re.sub(r"^[ \t]*(?P<fence>[`~]{3,})python\n.*?^[ \t]*(?P=fence)[ \t]*$", " ", prose, flags=re.DOTALL | re.MULTILINE)
    prose = re.sub(r"^[ \t]*[`~]{3,}.*$", " ", prose, flags=re.MULTILINE)  # the admonitions' own fences
    prose = re.sub(r"`([^`\n]*)`", r"\1" if inline_code else " ", prose)
    return " ".join(prose.split())


# A figure: a number with two or more decimals, with thousands separators, a percentage, a square.
FIGURE = re.compile(r"(?<![\w.])(?:\d{1,3}(?:,\d{3})+|\d+\.\d{2,}|\d+(?:\.\d+)?%|\d+²(?: = [\d,]+)?|\d+ cells)")

# What each solution states, and what its code must print for it: (block, stated text, pattern on the
# block's output, expected numbers, tolerance). The pattern's groups are read as numbers.
PRINTED = {
    "01_segmentation_tasks": [
        (0, "125 cells in 37 regions at radius 10", r"radius 10: (\d+) cells in (\d+)", (125, 37), 0),
        (0, "13 cells in 6 regions at radius 30", r"radius 30: (\d+) cells in (\d+)", (13, 6), 0),
    ],
    "02_fully_convolutional": [
        (0, "4096 × 256 + 256 = 1,048,832", r"^(\d+)$", (1048832,), 0),
        (1, "becomes a 6×6 convolution, so the scores form a 9×9 map",
         r"kernel_size=\((\d+), (\d+)\)[\s\S]*\[1, 1000, (\d+), (\d+)\]", (6, 6, 9, 9), 0),
    ],
    "04_augmentation": [
        (1, "about 0.90, 0.67 and 0.15", r"^3 ([\d.]+)\n5 ([\d.]+)\n9 ([\d.]+)", (0.90, 0.67, 0.15), 0.08),
        (2, "(about 7.6 px)", r"displacement std ([\d.]+) px", (7.6,), 1.0),
    ],
    "05_energy_function": [
        (1, "The share grows from 38% with $w_0 = 0$ to 62% with $w_0 = 10$",
         r"w0 =  0: .* carries (\d+)% of the loss\nw0 = 10: .* carries (\d+)%", (38, 62), 1),
        (1, "2% of pixels where cells touch", r"border \(([\d.]+)% of the pixels\)", (2,), 0.5),
    ],
    "06_training": [
        (1, "they come out only about 26 times smaller (width 16, the 252-pixel tile above, seed 0)",
         r"logits: ([\d.]+) times smaller", (26.5,), 1.0),
        (1, "the factor even falls again, from about 56 to 26",
         r"ReLU by ReLU: \[(?:[\d.]+, ){11}([\d.]+)", (55.6,), 1.0),
        (1, "1.4, 2.0, 2.8, … and 32 = 2⁵", r"ReLU by ReLU: \[([\d.]+), ([\d.]+), ([\d.]+)", (1.4, 2.0, 2.8), 0.05),
        (2, "four 188 tiles give 4 · 4² = 64 output pixels", r"4 × 188: (\d+) supervised pixels", (64,), 0),
    ],
    "07_evaluation": [
        (1, "slice 25 from 0.457 to 0.469", r"slice 25: .*Rand error ([\d.]+) → ([\d.]+)", (0.457, 0.469), 0.005),
        (1, "26 from 0.109 to 0.138", r"slice 26: .*Rand error ([\d.]+) → ([\d.]+)", (0.109, 0.138), 0.005),
        (1, "28 from 0.053 to 0.084", r"slice 28: .*Rand error ([\d.]+) → ([\d.]+)", (0.053, 0.084), 0.005),
        (1, "29 from 0.132 to 0.164", r"slice 29: .*Rand error ([\d.]+) → ([\d.]+)", (0.132, 0.164), 0.005),
        (1, "Only slice 27, where TTA had opened a gap that merged two large cells, gains: 0.283 to 0.155",
         r"slice 27: .*Rand error ([\d.]+) → ([\d.]+)", (0.283, 0.155), 0.005),
    ],
}

# Figures checked by an expression evaluated after the solutions: (stated text, expression, expected, tolerance).
EVALUATED = {
    "06_training": [
        ("132² = 17,424 for the cpu budget's 316-pixel tile", "model.output_size(316) ** 2", 17424, 0),
        ("388² = 150,544 for the gpu budget's 572", "model.output_size(572) ** 2", 150544, 0),
        ("2¹¹·⁵ ≈ 2,900", "round(2 ** 11.5, -2)", 2900, 0),
    ],
    "07_evaluation": [  # the pixel error rises by 0.02 to 0.04 on every slice
        ("the pixel error rises on every slice, by 0.02 to 0.04",
         "all(0.015 < pixel_error(ndimage.binary_erosion(q > threshold), t) - pixel_error(q, t, threshold=threshold) < 0.045"
         " for q, t in zip(tta, truths))", True, 0),
    ],
}

# Figures quoted from a results file of the repository: (stated text, file, the unrounded figures it must hold).
QUOTED = {
    "06_training": [
        ("ended with a held-out Rand error of 0.23 against 0.15 for the cosine run", "benchmarks/results/cpu_budget_sweep.md",
         ("0.2266", "0.1519")),
        ("at about the same pixel error (0.094 and 0.095)", "benchmarks/results/cpu_budget_sweep.md", ("0.0941", "0.0952")),
    ],
}

# Figures quoted from the chapter's own stored outputs (its tables, under the budget it was run with):
# (stated text, the texts its outputs must hold).
FROM_CHAPTER = {
    "04_augmentation": [
        ("against 0.662 without augmentation and 0.671", ("0.662 (0.657–0.666)", "0.671 (0.660–0.684)")),
    ],
    "05_energy_function": [
        ("0.045 ± 0.004 of the touching cells, about as many as $w = 1$ (0.048 ± 0.008)",
         ("| w_c | 0.204 ± 0.047 | 0.045 ± 0.004 |", "| w = 1 | 0.207 ± 0.052 | 0.048 ± 0.008 |")),
        ("0.001 ± 0.000 of the contact pixels background", ("| 0.045 ± 0.004 | 0.001 ± 0.000 |",)),
        ("0.261 ± 0.112 and 0.461 ± 0.115", ("| w_c + border | 0.475 ± 0.083 | 0.261 ± 0.112 | 0.461 ± 0.115 |",)),
        ("the class weights are 0.936 (background) and 1.073 (cells)", ("w_c: background 0.936, cells 1.073",)),
        ("(0.143 to 0.412 of the touching cells", ("separated 0.143, 0.412, 0.227",)),
        ("called 0.461 ± 0.115 of the contact pixels", ("| 0.261 ± 0.112 | 0.461 ± 0.115 |",)),
    ],
}

# Figures from runs under the cpu budget that the chapter does not store, which the smoke budget cannot
# reproduce; each is stated as listed here, with where it comes from.
FROM_LONGER_RUNS = {
    "02_fully_convolutional": ["right on 98.4% of the crops, its score map on only 85.6%", "agreed on 85.6%"],  # 1000 steps
    "04_augmentation": ["0.705, 0.723 and 0.695 (0.708 on average)",
                        "0.683–0.704 on the deformed images"],  # flips and turns added: cpu budget, 3,000 steps, three seeds
    "06_training": ["0.632 with β = 0.99, 0.619 with 0.9 at the same rate and 0.646"],  # cpu budget, 500 steps each
}

# Numbers in the solutions' prose that are settings, not results.
SETTINGS = {
    "04_augmentation": ["3,000"],
    "06_training": ["0.99", "0.003", "4,000", "5,000"],
    "08_beyond_biomedicine": ["0.99"],
}


def _stated(stem: str) -> list[str]:
    return ([entry[1] for entry in PRINTED.get(stem, [])] + [entry[0] for entry in EVALUATED.get(stem, [])]
            + [entry[0] for entry in QUOTED.get(stem, [])] + [entry[0] for entry in FROM_CHAPTER.get(stem, [])]
            + FROM_LONGER_RUNS.get(stem, []))


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.stem)
def test_every_figure_a_solution_states_is_registered(path):
    """Each registered text is in the solutions as written, and every figure there is registered or a setting."""
    notebook = json.loads(path.read_text())
    prose, text_with_code = solution_prose(notebook), solution_prose(notebook, inline_code=True)
    stated = [_flat(text) for text in _stated(path.stem)]
    assert [text for text in stated if text not in text_with_code] == []
    covered = " ".join(stated)
    unregistered = [figure for figure in FIGURE.findall(prose)
                    if figure not in covered and figure not in SETTINGS.get(path.stem, [])]
    assert unregistered == [], f"{path.stem}: figures stated in a solution but not checked here: {unregistered}"
    for text, file, figures in QUOTED.get(path.stem, []):
        assert all(figure in (ROOT / file).read_text() for figure in figures), (text, file)
    outputs = stored_outputs(notebook)
    for text, figures in FROM_CHAPTER.get(path.stem, []):
        assert [figure for figure in figures if figure not in outputs] == [], (text, path.stem)


def test_the_registry_catches_a_new_figure():
    fake = {"cells": [{"cell_type": "markdown", "source": [
        "````{admonition} Solution\n:class: dropdown\n\nIt gives 0.731 (`lr=0.003`).\n\n```python\nx = 0.25\n```\n````\n"]}]}
    assert FIGURE.findall(solution_prose(fake)) == ["0.731"]


def _output_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def test_the_solutions_with_code_are_found():
    assert [path.name[:2] for path in CHAPTERS] == ["01", "02", "04", "05", "06", "07", "08"]
    fake = {"cells": [{"cell_type": "markdown", "source": [
        "````{admonition} Solution\n:class: dropdown\n\n1. Run\n\n   ```python\n   x = 1\n   ```\n````\n"]}]}
    assert solution_blocks(fake) == ["x = 1\n"]


def test_only_the_needed_cells_run():
    cells = ["import numpy as np", "a = np.zeros(3)", "slow = train()", "b = a + 1", "def f():\n    return b"]
    assert needed_cells(cells, ["print(f(), a)"]) == [0, 1, 3, 4]
    # a comprehension's loop variable is its own: the cell that reads a trained run does not bind `a`
    assert needed_cells(cells + ["firsts = [a[0] for a in slow]"], ["print(a)"]) == [0, 1]


@pytest.mark.slow
@pytest.mark.parametrize("path", CHAPTERS, ids=lambda path: path.stem)
def test_solutions_run(path, tmp_path, monkeypatch):
    notebook = json.loads(path.read_text())
    code_cells, blocks = _code_cells(notebook), solution_blocks(notebook)
    evaluated = EVALUATED.get(path.stem, [])
    sources = ([code_cells[index] for index in needed_cells(code_cells, blocks)] + blocks
               + [expression for _, expression, _, _ in evaluated])
    runnable = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])
    runnable.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    monkeypatch.setenv("UNET_COURSE_BUDGET", "smoke")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("UNET_COURSE_DATA", os.path.abspath(os.environ.get("UNET_COURSE_DATA", "data")))
    client = NotebookClient(runnable, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a solution fails
    cells = runnable.cells
    printed = [_output_text(cell) for cell in cells[len(cells) - len(evaluated) - len(blocks):len(cells) - len(evaluated)]]
    for block, stated, pattern, expected, tolerance in PRINTED.get(path.stem, []):
        match = re.search(pattern, printed[block], re.MULTILINE)
        assert match, f"{path.stem}, solution block {block}: no {pattern!r} in its output:\n{printed[block]}"
        measured = tuple(float(group) for group in match.groups())
        assert all(abs(m - e) <= tolerance for m, e in zip(measured, expected, strict=True)), (
            f"{path.stem}: the solution states {stated!r}; its code gives {measured}")
    for (stated, expression, expected, tolerance), cell in zip(evaluated, cells[len(cells) - len(evaluated):]):
        value = ast.literal_eval(_output_text(cell).strip())
        assert abs(value - expected) <= tolerance, f"{path.stem}: the solution states {stated!r}; {expression} = {value}"
