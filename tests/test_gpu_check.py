"""`make gpu-check`: it refuses without CUDA and before any write, and each piece runs at smoke size on the CPU."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_notebook(path: Path, *, fails: bool = False) -> Path:
    """A notebook that checks what the chapter's run would get: the budget and the data folder."""
    cells = ["from unet_course.budget import get_budget\nassert get_budget().name == 'smoke', get_budget()",
             "import os, pathlib\nassert (pathlib.Path(os.environ['UNET_COURSE_DATA']) / 'isbi2012').is_dir()"]
    if fails:
        cells.append("assert False, 'a claim that stopped holding'")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code) for code in cells])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


def test_refuses_without_cuda_in_one_line_and_writes_nothing(tmp_path):
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, str(SCRIPT), str(report)], capture_output=True, text=True,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: no CUDA device found") and len(result.stderr.strip().splitlines()) == 1
    assert not report.exists() and list(tmp_path.iterdir()) == []


def test_refuses_to_overwrite_and_other_bad_input_before_any_work(gpu_check, tmp_path, capsys):
    report = tmp_path / "report.json"
    report.write_text("earlier")
    assert gpu_check.main([str(report), "--device", "cpu", "--piece", "precision"]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and report.read_text() == "earlier"
    assert gpu_check.main([str(tmp_path / "missing" / "r.json"), "--device", "cpu", "--piece", "precision"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert gpu_check.main([str(tmp_path / "r.json"), "--device", "cpu", "--piece", "fold",
                           "--data", str(tmp_path)]) == 2
    assert "no ISBI 2012 copy" in capsys.readouterr().err
    assert gpu_check.main([str(tmp_path / "r.json"), "--device", "cpu", "--steps", "0"]) == 2
    assert not (tmp_path / "r.json").exists()


def test_each_piece_runs_at_smoke_size_on_the_cpu(gpu_check, isbi_root, tmp_path):
    report = tmp_path / "report.json"
    notebook = small_notebook(tmp_path / "chapter.ipynb")
    code = gpu_check.main([str(report), "--device", "cpu", "--budget", "smoke", "--steps", "2",
                           "--data", str(isbi_root.parent), "--notebook", str(notebook)])
    written = json.loads(report.read_text())
    assert code == 0, written
    assert written["passed"] and written["device"] == "cpu" and written["budget"] == "smoke"
    pieces = written["pieces"]
    assert list(pieces) == ["precision", "fold", "notebook"] and all(p["passed"] for p in pieces.values())
    rows = pieces["precision"]["rows"]
    assert {(row["precision"], row["channels_last"]) for row in rows} == {("fp32", False), ("bf16", True)}
    assert all(row["images_per_s"] > 0 and row["tflops"] > 0 for row in rows)
    fold = pieces["fold"]["scores"]
    assert fold["index"] == 0 and len(fold["held_out"]) == 6 and fold["steps"] == 2
    assert set(fold["mean"]) >= {"pixel_error", "rand_error"} and 0 <= fold["mean"]["pixel_error"] <= 1
    assert pieces["notebook"]["summary"].startswith("2 passed")
    assert written["seconds"] >= sum(p["seconds"] for p in pieces.values()) * 0.99
    assert written["within_time_limit"] is (written["seconds"] <= 480)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chapter.ipynb", "report.json"]  # fold in a temp dir


def test_a_failing_piece_is_reported_and_fails_the_check(gpu_check, isbi_root, tmp_path, capsys):
    report = tmp_path / "report.json"
    notebook = small_notebook(tmp_path / "chapter.ipynb", fails=True)
    code = gpu_check.main([str(report), "--device", "cpu", "--budget", "smoke", "--piece", "notebook",
                           "--data", str(isbi_root.parent), "--notebook", str(notebook)])
    written = json.loads(report.read_text())
    assert code == 1 and written["passed"] is False
    assert "a claim that stopped holding" in written["pieces"]["notebook"]["error"]
    assert "FAILED" in capsys.readouterr().err
