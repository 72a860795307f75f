"""The mutation-testing driver (`make mutation`) cannot rot: its targets exist and its report adds up."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "mutation.py"


def _driver():
    spec = importlib.util.spec_from_file_location("mutation_driver", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_target_names_a_module_and_test_files_that_exist():
    driver = _driver()
    assert {target.wing for target in driver.TARGETS} == {"paper", "security"}
    for target in driver.TARGETS:
        assert (ROOT / target.module).is_file(), target.module
        for test in target.tests:
            assert (ROOT / test.split("::")[0]).is_file(), test
        for module, line in driver.EQUIVALENT:
            assert (ROOT / module).is_file() and line.strip() == line and line


def test_every_function_a_target_names_is_in_its_module():
    """A renamed function would drop out of its target without a word: mutmut matches the names as globs."""
    driver = _driver()
    for target in driver.TARGETS:
        tree = ast.parse((ROOT / target.module).read_text())
        names = {f"x_{node.name}" for node in tree.body if isinstance(node, ast.FunctionDef)}
        names |= {f"x\u01c1{node.name}\u01c1{method.name}" for node in tree.body if isinstance(node, ast.ClassDef)
                  for method in node.body if isinstance(method, ast.FunctionDef)}
        prefix = target.module.removesuffix(".py").replace("/", ".") + "."
        for glob in target.functions:
            assert glob.startswith(prefix) and glob.endswith("*"), glob
            assert glob[len(prefix):-1] in names, f"{target.name}: no function {glob[len(prefix):-1]}"


def test_the_report_scores_killed_over_mutants_less_equivalent(tmp_path, monkeypatch):
    driver = _driver()
    monkeypatch.setattr(driver, "RESULTS", tmp_path / "mutation")
    (tmp_path / "mutation").mkdir()
    result = {"target": "sizes", "module": "unet_course/sizes.py", "functions": [], "tests": ["tests/test_x.py"],
              "wing": "paper", "counts": {"killed": 45, "survived": 3, "equivalent": 2}, "killed": 45, "scored": 48,
              "score": 0.9375, "survivors": [{"mutant": "m1", "status": "survived", "diff": "-a\n+b"}],
              "equivalent": [{"mutant": "m2", "diff": "-c\n+d", "reason": "same"}],
              "history": [{"killed": 30, "scored": 48, "tests": []}, {"killed": 45, "scored": 48, "tests": []}]}
    (tmp_path / "mutation" / "sizes.json").write_text(json.dumps(result))
    text = driver.report()
    assert "| sizes | paper | `unet_course/sizes.py` | test_x.py | 50 | 45 | 1 | 2 | 62.5% (30/48) | 93.8% (45/48) |" \
        in text
    assert "- survived: `m1` (survived)" in text and "- equivalent: `m2`: same" in text
    assert (tmp_path / "mutation.md").read_text() == text


def test_an_unknown_target_is_refused_with_the_names():
    result = subprocess.run([sys.executable, str(SCRIPT), "nonesuch"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "error: no target nonesuch; targets: sizes, losses" in result.stderr
