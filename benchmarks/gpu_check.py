"""Everything GPU-only the course claims, in one command and one JSON report (`make gpu-check`).

On a CUDA device, in one go (under 8 minutes on one H100 is the aim, and the report says):

1. ``precision``: ``bench_train_step.py``'s CUDA half, the paper's U-Net at 572² in fp32 (TF32),
   bf16 and fp16 autocast, channels-last and ``torch.compile``: images/s and FLOP utilisation;
2. ``fold``: one cross-validation fold (NVIDIA's fold 0) trained, calibrated and scored under the
   gpu budget with ``unet_course.crossval.run_fold``, in a temporary folder;
3. ``notebook``: chapter 6 executed under the gpu budget through nbval.

Each piece's result (or its error) and its seconds go into REPORT, rewritten after every piece,
so a run that is cut short still leaves what it measured. Without CUDA the script refuses.

    python benchmarks/gpu_check.py REPORT.json                 # on a GPU machine, data in $UNET_COURSE_DATA
    python benchmarks/gpu_check.py REPORT.json --overwrite     # replace an earlier report
    python benchmarks/gpu_check.py REPORT.json --device cpu --budget smoke --steps 2   # the pieces at smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
PIECES = ("precision", "fold", "notebook")
TIME_LIMIT_S = 8 * 60  # the whole check on one H100
CHAPTER = ROOT / "book" / "06_training.ipynb"


class Refusal(Exception):
    """A reason to stop before any work: said in one line, exit code 2."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="the JSON report to write")
    parser.add_argument("--overwrite", action="store_true", help="replace REPORT if it exists")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to check the script at smoke size")
    parser.add_argument("--budget", default="gpu", choices=("smoke", "cpu", "gpu"),
                        help="the budget of the fold and the chapter (default gpu)")
    parser.add_argument("--steps", type=int, default=None, help="training steps of the fold (default: the budget's)")
    parser.add_argument("--data", type=Path, default=None,
                        help="folder holding isbi2012/ (default $UNET_COURSE_DATA)")
    parser.add_argument("--piece", choices=PIECES, action="append", help="run only this piece (repeatable)")
    parser.add_argument("--notebook", type=Path, default=CHAPTER, help="the chapter to execute (default chapter 6)")
    return parser.parse_args(argv)


def check(args: argparse.Namespace) -> None:
    """Every refusal, before anything is measured or written."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise Refusal("no CUDA device found; the GPU check needs one (to try the script on the CPU: "
                      "--device cpu --budget smoke --steps 2)")
    if args.device not in ("cuda", "cpu") and not args.device.startswith("cuda:"):
        raise Refusal(f"--device must be cuda, cuda:N or cpu; got {args.device!r}")
    if args.report.exists() and not args.overwrite:
        raise Refusal(f"{args.report} exists; pass --overwrite to replace it, or name another report")
    if not args.report.parent.is_dir():
        raise Refusal(f"the folder of {args.report} does not exist; create it or name another report")
    if args.steps is not None and args.steps < 1:
        raise Refusal(f"--steps must be at least 1; got {args.steps}")
    pieces = args.piece or PIECES
    if "fold" in pieces or "notebook" in pieces:
        data = args.data or (Path(os.environ["UNET_COURSE_DATA"]) if os.environ.get("UNET_COURSE_DATA") else None)
        if data is None or not (data / "isbi2012" / "image" / "0.png").exists():
            raise Refusal(f"no ISBI 2012 copy at {data}/isbi2012; pass --data DIR or set UNET_COURSE_DATA "
                          "to a folder holding isbi2012/ (the GPU machine may have no network to fetch it)")
        args.data = data
    if "notebook" in pieces and not args.notebook.exists():
        raise Refusal(f"no notebook at {args.notebook}")


def precision_piece(args: argparse.Namespace, device: torch.device) -> dict:
    from bench_train_step import measure_precision

    return {"rows": measure_precision(device, smoke=device.type != "cuda")}


def fold_piece(args: argparse.Namespace, device: torch.device) -> dict:
    from unet_course.crossval import run_fold

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as out:
        scores = run_fold(Path(out), 0, budget=args.budget, data_root=args.data, device=device, steps=args.steps,
                          progress=False)
    return {"budget": args.budget, "scores": scores}  # scores["seconds"]: the fold's training time


def notebook_piece(args: argparse.Namespace, device: torch.device) -> dict:
    env = {**os.environ, "UNET_COURSE_BUDGET": args.budget, "UNET_COURSE_DATA": str(args.data), "MPLBACKEND": "Agg"}
    if device.type != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""  # --device cpu: the chapter must not find a GPU either
    command = [sys.executable, "-m", "pytest", "--nbval-lax", str(args.notebook), "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise RuntimeError(f"nbval failed (exit {result.returncode}): {output[-2000:]}")
    return {"notebook": str(args.notebook), "budget": args.budget, "summary": output.splitlines()[-1]}


RUNNERS = {"precision": precision_piece, "fold": fold_piece, "notebook": notebook_piece}


def _machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def write(path: Path, report: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(path)


def run(args: argparse.Namespace) -> dict:
    """Run the pieces in turn, rewriting the report after each; returns the report."""
    device = torch.device(args.device)
    report = {"machine": _machine(device), "device": str(device), "torch": torch.__version__,
              "cuda": torch.version.cuda, "python": platform.python_version(), "budget": args.budget,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "time_limit_s": TIME_LIMIT_S,
              "pieces": {}}
    began = time.perf_counter()
    for name in args.piece or PIECES:
        start = time.perf_counter()
        try:
            result = {"passed": True, **RUNNERS[name](args, device)}
        except Exception as error:  # one piece failing must not hide the others' results
            result = {"passed": False, "error": f"{type(error).__name__}: {error}"}
        result["seconds"] = time.perf_counter() - start
        report["pieces"][name] = result
        report["seconds"] = time.perf_counter() - began
        write(args.report, report)
        print(f"{name}: {'passed' if result['passed'] else 'FAILED'} in {result['seconds']:.1f} s", file=sys.stderr)
    report["passed"] = all(piece["passed"] for piece in report["pieces"].values())
    report["within_time_limit"] = report["seconds"] <= TIME_LIMIT_S
    write(args.report, report)
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        check(args)
    except Refusal as refusal:
        print(f"error: {refusal}", file=sys.stderr)
        return 2
    report = run(args)
    print(f"{'passed' if report['passed'] else 'FAILED'} in {report['seconds']:.0f} s "
          f"(limit {TIME_LIMIT_S} s); report: {args.report}", file=sys.stderr)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
