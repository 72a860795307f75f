"""Peak memory of ``fit`` on folders of 100 and 2,000 synthetic 512×512 images: streamed, and held in memory.

``fit(..., num_workers=2)`` streams the folder through a DataLoader; the default,
``num_workers=None``, reads every image and its weight map into memory first when they fit in
``unet_course.batches.IN_MEMORY_BYTES`` (1 GiB) and streams otherwise; the in-memory rows lift
that limit, to measure what holding a bigger folder would cost. Each run trains
the same number of steps (batch 16, enough tiles to visit every one of the 2,000 images) in a
fresh interpreter and reports the peak resident set size (``ru_maxrss``) of the training
process, and the peak of the memory it and its workers use together (their proportional set
sizes summed, sampled every 0.1 s: forked workers share the pages of torch, and PSS counts a
shared page once in all). In memory, 2,000 images would need
``2,000 × 16 bytes × 552²`` ≈ 9.8 GB (image, mask and weight map per padded pixel), so that
run is replaced by one on 500 images, which shows the growth.

    python benchmarks/bench_streaming_memory.py            # writes results/streaming_memory.md
    python benchmarks/bench_streaming_memory.py --smoke    # 4 images of 128², 2 steps, prints only (CI)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TILE_SIZE = 60  # small tiles of a small network: the runs measure the data, not the model
sys.path.insert(0, str(Path(__file__).parent))


def _tree_pss_mib(pid: int) -> float:
    """Proportional set size of process ``pid`` and its children, in MiB (Linux ``/proc``)."""
    pids = [pid]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                pids.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
    total = 0
    for child in pids:
        try:
            rollup = Path(f"/proc/{child}/smaps_rollup").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
    return total / 1024


def train_once(folder: str, num_workers: int | None, steps: int, batch_size: int) -> dict:
    """Train a small U-Net on ``folder`` in this process; returns peak memory (MiB) and the run's seconds."""
    import os
    import threading

    import torch

    import unet_course.batches as batches
    from unet_course import ImageMaskFolder, UNet, fit

    if num_workers is None:  # hold every image, however many: the cost the default's limit avoids
        batches.IN_MEMORY_BYTES = float("inf")
    peak, done = [0.0], threading.Event()

    def watch() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], _tree_pss_mib(os.getpid()))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    torch.manual_seed(0)
    began = time.perf_counter()
    fit(UNet(base_channels=4, depth=2), ImageMaskFolder(Path(folder) / "images", Path(folder) / "masks"),
        steps=steps, batch_size=batch_size, tile_size=TILE_SIZE, num_workers=num_workers, device="cpu",
        progress=False)
    wall = time.perf_counter() - began
    done.set()
    watcher.join()
    return {"rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
            "pss_mib": peak[0], "wall_s": wall}


def _run_child(folder: Path, num_workers: int | None, steps: int, batch_size: int) -> dict:
    command = [sys.executable, __file__, "--child", str(folder), str(num_workers), str(steps), str(batch_size)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny folders, prints only (for CI)")
    parser.add_argument("--child", nargs=4, metavar=("FOLDER", "WORKERS", "STEPS", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        folder, workers, steps, batch = args.child
        print(json.dumps(train_once(folder, None if workers == "None" else int(workers), int(steps), int(batch))))
        return

    from synthetic_folder import write_synthetic_folder

    size, batch_size, workers_streaming = (128, 2, 1) if args.smoke else (512, 16, 2)
    streamed_sizes, in_memory_sizes = ((4,), (4,)) if args.smoke else ((100, 2000), (100, 500))
    steps = max(streamed_sizes) // batch_size  # every image of the largest folder once
    rows = []
    with tempfile.TemporaryDirectory() as temporary:
        for count in sorted(set(streamed_sizes) | set(in_memory_sizes)):
            began = time.perf_counter()
            folder = write_synthetic_folder(Path(temporary) / str(count), count, size)
            print(f"wrote {count} images in {time.perf_counter() - began:.0f} s", file=sys.stderr)
            for workers in ([workers_streaming] if count in streamed_sizes else []) + (
                    [None] if count in in_memory_sizes else []):
                figures = _run_child(folder, workers, steps, batch_size)
                rows.append((count, workers, figures))
                print(count, workers, figures, file=sys.stderr)
    lines = ["| images | data | peak RSS, training process | peak PSS, training process + workers |",
             "|---|---|---|---|"]
    for count, workers, figures in rows:
        how = "in memory (`num_workers=None`)" if workers is None else f"streamed (`num_workers={workers}`)"
        lines.append(f"| {count:,} | {how} | {figures['rss_mib']:,.0f} MiB | {figures['pss_mib']:,.0f} MiB |")
    table = "\n".join(lines)
    print(table)
    if args.smoke:
        return
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "streaming_memory.md"
    import torch

    out.write_text(
        f"# Peak memory of `fit`: a folder streamed through a DataLoader, or held in memory\n\n"
        f"Machine: {platform.machine()}, {torch.get_num_threads()} threads; Python {platform.python_version()}, "
        f"torch {torch.__version__}. Measured {date.today()} with `python benchmarks/bench_streaming_memory.py`.\n\n"
        f"Each run trains `UNet(base_channels=4, depth=2)` on tiles of {TILE_SIZE}² for {steps} steps of batch "
        f"{batch_size} ({steps * batch_size:,} tiles: every image of the largest folder once) from a folder of "
        f"distinct synthetic {size}×{size} PNG images (`synthetic_cells`) with their masks, in a fresh interpreter, "
        f"on the CPU. Peak RSS is the training process's `ru_maxrss`; peak PSS is the largest sum of the "
        f"proportional set sizes of the training process and its DataLoader workers, sampled every 0.1 s (the "
        f"forked workers share torch's pages with it, and PSS counts each shared page once in all). Speed is "
        f"measured by `benchmarks/bench_train_step.py --part loading`.\n\n{table}\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
