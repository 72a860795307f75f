"""How far each smoke-budget assert of the chapters clears its threshold, over threads and seeds.

CI executes every notebook under the ``smoke`` budget on machines we do not choose. An assert
such as ``final_iou > baseline + 0.15`` holds there only if its margin is larger than the
run-to-run noise. This script measures both: it runs each notebook under smoke with every
combination of ``OMP_NUM_THREADS`` and a seed offset, and records, for every comparison inside
every ``assert`` (``a > b``, ``a <= b``, chains, ``and``, ``all(... for ...)``), the two sides.
It prints, per comparison, the threshold, the worst value and the worst margin (positive: it
held in every run), with the spread of the margin across runs beside it.

How it works, without touching the chapters: a copy of each notebook gets one cell first that
offsets every seed (``seed_everything``, ``torch.manual_seed`` and ``fit(seed=...)`` add the
run's offset), and every ``assert`` is rewritten to record its comparisons and never stop the
run. The copy is executed by nbval, as CI executes the chapters.

    python benchmarks/smoke_margins.py book/06_training.ipynb book/08_beyond_biomedicine.ipynb
    python benchmarks/smoke_margins.py book/*.ipynb --threads 1 2 --seeds 0 1 2 --out benchmarks/results/smoke_margins.md
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ORDER_OPS = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<="}
FLIPPED = {">": "<", ">=": "<=", "<": ">", "<=": ">="}

PRELUDE = '''\
import json as _margin_json, os as _margin_os
_margin_file = _margin_os.environ["SMOKE_MARGINS_FILE"]
_margin_offset = int(_margin_os.environ.get("SMOKE_MARGINS_SEED", "0"))


def _margin_write(cell, line, text, left, op, right):
    def number(value):
        try:
            return float(value)
        except (TypeError, ValueError):
            return None
    record = {"cell": cell, "line": line, "text": text, "op": op, "left": number(left), "right": number(right)}
    if op == "bool":
        record["held"] = bool(left)
    elif record["left"] is None or record["right"] is None:
        record["held"] = bool({">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op])
    else:
        a, b = record["left"], record["right"]
        record["margin"] = a - b if op in (">", ">=") else b - a
        record["held"] = bool({">": a > b, ">=": a >= b, "<": a < b, "<=": a <= b}[op])
    with open(_margin_file, "a") as stream:
        stream.write(_margin_json.dumps(record) + "\\n")


def _margin_all(cell, line, text, pairs, op):
    for left, right in pairs:
        _margin_write(cell, line, text, left, op, right)


import random as _margin_random
import numpy as _margin_np
import torch as _margin_torch
import unet_course as _margin_uc
import unet_course.budget as _margin_budget
import unet_course.train as _margin_train

_margin_manual_seed = _margin_torch.manual_seed
_margin_torch.manual_seed = lambda seed: _margin_manual_seed(seed + _margin_offset)
_margin_seed_everything = _margin_budget.seed_everything


def _margin_seeded(seed=0):
    return _margin_seed_everything(seed + _margin_offset)


_margin_fit = _margin_train.fit


def _margin_offset_fit(*args, seed=0, **kwargs):
    return _margin_fit(*args, seed=seed + _margin_offset, **kwargs)


_margin_uc.seed_everything = _margin_budget.seed_everything = _margin_seeded
_margin_uc.fit = _margin_train.fit = _margin_offset_fit
_margin_seeded(0)
'''


class _Recorder(ast.NodeTransformer):
    """Rewrites ``assert test`` into calls that record each comparison of ``test`` (never raising)."""

    def __init__(self, cell: int, source: str):
        self.cell, self.source = cell, source

    def _text(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or ast.unparse(node)

    def _call(self, name: str, *args: ast.expr) -> ast.stmt:
        return ast.Expr(ast.Call(ast.Name(name, ast.Load()), list(args), []))

    def _records(self, test: ast.expr, line: int) -> list[ast.stmt]:
        if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
            return [statement for value in test.values for statement in self._records(value, line)]
        if isinstance(test, ast.Compare) and all(type(op) in ORDER_OPS for op in test.ops):
            sides = [test.left, *test.comparators]
            records = []
            for left, op, right in zip(sides, test.ops, sides[1:]):
                text, symbol = f"{self._text(left)} {ORDER_OPS[type(op)]} {self._text(right)}", ORDER_OPS[type(op)]
                if isinstance(left, ast.Constant) and not isinstance(right, ast.Constant):  # `0 < x`: x is the value
                    left, right, symbol = right, left, FLIPPED[symbol]
                records.append(self._call("_margin_write", ast.Constant(self.cell), ast.Constant(line),
                                          ast.Constant(text), left, ast.Constant(symbol), right))
            return records
        if (isinstance(test, ast.Call) and isinstance(test.func, ast.Name) and test.func.id == "all"
                and len(test.args) == 1 and isinstance(test.args[0], ast.GeneratorExp)
                and isinstance(test.args[0].elt, ast.Compare) and len(test.args[0].elt.ops) == 1
                and type(test.args[0].elt.ops[0]) in ORDER_OPS):
            generator = test.args[0]
            pairs = ast.ListComp(ast.Tuple([generator.elt.left, generator.elt.comparators[0]], ast.Load()),
                                 generator.generators)
            return [self._call("_margin_all", ast.Constant(self.cell), ast.Constant(line), ast.Constant(self._text(test)),
                               pairs, ast.Constant(ORDER_OPS[type(generator.elt.ops[0])]))]
        return [self._call("_margin_write", ast.Constant(self.cell), ast.Constant(line), ast.Constant(self._text(test)),
                           test, ast.Constant("bool"), ast.Constant(None))]

    def visit_Assert(self, node: ast.Assert):
        return self._records(node.test, node.lineno) or ast.Pass()


def instrument(source: str, cell: int) -> str | None:
    """The cell's code with its asserts recorded instead of raised; ``None`` if it has none (or is not plain Python)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: left as they are
        return None
    if not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        return None
    tree = ast.fix_missing_locations(_Recorder(cell, source).visit(tree))
    return ast.unparse(tree)


def prepared(notebook: dict) -> dict:
    """A copy of the notebook: the seed-offset prelude after the install cell, asserts recorded."""
    cells = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] == "code":
            lines = cell["source"] if isinstance(cell["source"], list) else cell["source"].splitlines(True)
            source = "".join(line for line in lines if "NBVAL_CHECK_OUTPUT" not in line)
            cell = dict(cell, source=source, outputs=[], execution_count=None)
            changed = instrument(source, index)
            if changed is not None:
                cell["source"] = changed
        cells.append(cell)
    first_code = next(i for i, cell in enumerate(cells) if cell["cell_type"] == "code")
    prelude = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": PRELUDE}
    cells.insert(first_code + 1, prelude)
    return dict(notebook, cells=cells)


def run_once(notebook: Path, threads: int, seed: int, folder: Path) -> list[dict]:
    """Execute one instrumented copy under smoke; the recorded comparisons."""
    copy = folder / f"{notebook.stem}-t{threads}-s{seed}.ipynb"
    copy.write_text(json.dumps(prepared(json.loads(notebook.read_text()))))
    records = copy.with_suffix(".jsonl")
    env = dict(os.environ, CI="true", UNET_COURSE_BUDGET="smoke", OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), SMOKE_MARGINS_FILE=str(records), SMOKE_MARGINS_SEED=str(seed),
               MPLBACKEND="Agg")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `make test`: waiting threads sleep instead of spinning
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider",
                             "--nbval-cell-timeout=1200", "--rootdir", str(folder), copy.name],
                            cwd=folder, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        print(f"  {copy.name}: a cell failed (its comparisons so far are kept)\n{result.stdout[-1500:]}", flush=True)
    if not records.exists():
        return []
    return [json.loads(line) for line in records.read_text().splitlines()]


def summarise(runs: dict[tuple[str, int, int], list[dict]]) -> list[dict]:
    """One row per comparison: the worst value and margin over runs, and the margin's spread."""
    grouped: dict[tuple, list[tuple[tuple, dict]]] = defaultdict(list)
    for key, records in runs.items():
        for record in records:
            grouped[(key[0], record["cell"], record["line"], record["text"])].append((key, record))
    rows = []
    for (notebook, cell, line, text), found in grouped.items():
        margins = [record["margin"] for _, record in found if record.get("margin") is not None]
        worst_key, worst = min(found, key=lambda pair: (pair[1]["held"], pair[1].get("margin", math.inf)))
        per_run = defaultdict(list)  # a comparison in a loop is recorded several times per run: its worst counts
        for key, record in found:
            per_run[key].append(record.get("margin", math.inf))
        run_worst = [min(values) for values in per_run.values() if min(values) != math.inf]
        rows.append({
            "notebook": notebook, "cell": cell, "line": line, "text": text, "op": worst["op"],
            "threshold": worst.get("right"), "worst value": worst.get("left"),
            "worst margin": min(margins) if margins else None,
            "spread": (max(run_worst) - min(run_worst)) if len(run_worst) > 1 else 0.0,
            "held in every run": all(record["held"] for _, record in found),
            "worst run": f"threads {worst_key[1]}, seed +{worst_key[2]}", "runs": len(per_run),
        })
    return sorted(rows, key=lambda row: (row["notebook"], row["cell"], row["line"]))


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def table(rows: list[dict]) -> str:
    lines = ["| notebook | cell | comparison | threshold | worst value | worst margin | spread of margin | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        margin, spread = row["worst margin"], row["spread"]
        if not row["held in every run"]:
            verdict = f"**fails** ({row['worst run']})"
        elif margin is not None and spread > 0 and margin < spread:
            verdict = "holds, margin below its spread"
        else:
            verdict = "holds"
        text = row["text"].replace("|", "\\|")
        lines.append(f"| {row['notebook']} | {row['cell']} | `{text}` | {_number(row['threshold'])} | "
                     f"{_number(row['worst value'])} | {_number(margin)} | {_number(spread)} | {verdict} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="offsets added to every seed")
    parser.add_argument("--out", type=Path, help="write the table (Markdown) and the raw records (.jsonl) here")
    args = parser.parse_args()
    if args.out is not None and args.out.exists():
        parser.error(f"{args.out} exists; choose another --out or remove it")
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        for notebook, threads, seed in itertools.product(args.notebooks, args.threads, args.seeds):
            started = time.perf_counter()
            runs[(notebook.name, threads, seed)] = run_once(notebook.resolve(), threads, seed, Path(folder))
            print(f"{notebook.name}, threads {threads}, seed +{seed}: {len(runs[(notebook.name, threads, seed)])} "
                  f"comparisons, {time.perf_counter() - started:.0f} s", flush=True)
    text = table(summarise(runs))
    print(text)
    if args.out is not None:
        header = (f"# Smoke-budget assert margins\n\n`python benchmarks/smoke_margins.py "
                  f"{' '.join(str(n) for n in args.notebooks)} --threads {' '.join(map(str, args.threads))} "
                  f"--seeds {' '.join(map(str, args.seeds))}` on {os.cpu_count()} cores. Margin: how far the worst run "
                  f"cleared the threshold (negative: it failed); spread: the margin's range over the runs.\n\n")
        args.out.write_text(header + text + "\n")
        args.out.with_suffix(".jsonl").write_text("".join(
            json.dumps({"notebook": key[0], "threads": key[1], "seed": key[2], **record}) + "\n"
            for key, records in runs.items() for record in records))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
