"""Elastic deformation: image + mask pairs per second, ``unet_course.elastic_deform`` against its peers.

Peers: torchvision's ``v2.ElasticTransform``, albumentations' ``ElasticTransform``, MONAI's
``Rand2DElasticd`` and a scipy.ndimage version of the paper's coarse-grid scheme. The CPU
table runs everything on one thread; with a CUDA device a GPU table follows (ours batched).

    python benchmarks/bench_elastic.py            # 512² pairs → benchmarks/results/elastic_cpu.md
    python benchmarks/bench_elastic.py --smoke    # a few seconds, for CI; writes nothing
"""

from __future__ import annotations

import os

# One thread for every library: must be set before numpy, torch and OpenCV start their pools.
for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import importlib.metadata  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

from unet_course import elastic_deform  # noqa: E402
from unet_course.data import synthetic_membranes  # noqa: E402

from machine import cores, cpu_name, write_report  # noqa: E402

RESULTS = Path(__file__).parent / "results"
Step = Callable[[], object]


def scipy_coarse_grid(
    image: np.ndarray, mask: np.ndarray, rng: np.random.Generator, grid: int = 3, sigma: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's coarse-grid scheme written with scipy.ndimage, the way one would on a CPU.

    A ``grid × grid`` Gaussian displacement, upsampled by a cubic spline with the corner
    nodes on the corner pixels, then one resampling per array with mirrored borders.
    """
    height, width = image.shape
    coarse = rng.normal(0.0, sigma, (2, grid, grid))
    field = ndimage.zoom(coarse, (1, height / grid, width / grid), order=3, mode="mirror", grid_mode=False)
    coords = np.indices((height, width), dtype=np.float32) + field
    return (
        ndimage.map_coordinates(image, coords, order=1, mode="mirror"),
        ndimage.map_coordinates(mask, coords, order=0, mode="mirror"),
    )


def cpu_steps(image: np.ndarray, mask: np.ndarray) -> dict[str, tuple[str, Step | str]]:
    """Each implementation's one-pair call on the CPU, or why it is skipped: name → (settings, step)."""
    images, masks = torch.from_numpy(image)[None, None], torch.from_numpy(mask).long()[None]
    steps: dict[str, tuple[str, Step | str]] = {
        "unet_course.elastic_deform": (
            "3×3 grid, σ = 10 px, bicubic field, bilinear/nearest",
            lambda: elastic_deform(images, masks),
        ),
    }
    rng = np.random.default_rng(0)
    steps["scipy.ndimage (same scheme)"] = (
        "3×3 grid, σ = 10 px, cubic spline field, order 1/0",
        lambda: scipy_coarse_grid(image, mask, rng),
    )
    steps["torchvision v2.ElasticTransform"] = torchvision_step("cpu", image, mask)
    try:
        import albumentations
        import cv2

        cv2.setNumThreads(1)
        for approximate in (False, True):
            transform = albumentations.ElasticTransform(
                p=1.0, approximate=approximate, border_mode=cv2.BORDER_REFLECT_101
            )
            label = "albumentations ElasticTransform" + (" (approximate)" if approximate else "")
            steps[label] = (
                f"defaults (α = 1, σ = 50), approximate={approximate}",
                lambda t=transform: t(image=image, mask=mask),
            )
    except ImportError:
        steps["albumentations ElasticTransform"] = ("", "skipped: albumentations not installed")
    steps["MONAI Rand2DElasticd"] = monai_step("cpu", image, mask)
    return steps


def torchvision_step(device: str, image: np.ndarray, mask: np.ndarray) -> tuple[str, Step]:
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    transform = v2.ElasticTransform()
    pair = (
        tv_tensors.Image(torch.from_numpy(image)[None].to(device)),
        tv_tensors.Mask(torch.from_numpy(mask).to(device)),
    )
    return "defaults (α = 50, σ = 5), dense smoothed field", lambda: transform(*pair)


def monai_step(device: str, image: np.ndarray, mask: np.ndarray) -> tuple[str, Step | str]:
    try:
        from monai.transforms import Rand2DElasticd
    except ImportError:
        return "", "skipped: monai not installed"
    size = image.shape[0]
    # Control points every half image: MONAI's closest setting to a 3×3 grid over the image.
    transform = Rand2DElasticd(
        keys=("image", "mask"),
        spacing=(size / 2, size / 2),
        magnitude_range=(0.0, 10.0),
        prob=1.0,
        mode=("bilinear", "nearest"),
        padding_mode="reflection",
        device=torch.device(device),
    )
    sample = {"image": torch.from_numpy(image)[None].to(device), "mask": torch.from_numpy(mask)[None].to(device)}
    return f"spacing {size // 2} px, magnitude ≤ 10 px, bilinear/nearest", lambda: transform(sample)


def pairs_per_second(
    step: Step, pairs_per_call: int, seconds: float, min_calls: int, sync: Callable[[], None]
) -> float:
    """Pairs per second over at least ``min_calls`` calls and ``seconds`` seconds, after one warm-up call."""
    step()  # warm-up: allocations, caches, lazy imports, CUDA kernels
    sync()
    calls, start = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        step()
        calls += 1
    sync()
    return calls * pairs_per_call / (time.perf_counter() - start)


def table(
    steps: dict[str, tuple[str, Step | str]],
    pairs_per_call: dict[str, int],
    seconds: float,
    min_calls: int,
    sync: Callable[[], None],
) -> tuple[list[str], dict[str, float]]:
    """Time each step; rows with pairs/s, ms per pair and how many times faster ours is."""
    speeds: dict[str, float] = {}
    for name, (_, step) in steps.items():
        if not isinstance(step, str):
            speeds[name] = pairs_per_second(step, pairs_per_call.get(name, 1), seconds, min_calls, sync)
        print(f"  {name}: " + (step if isinstance(step, str) else f"{speeds[name]:.1f} pairs/s"), flush=True)
    ours = max(speed for name, speed in speeds.items() if name.startswith("unet_course"))
    rows = ["| implementation | settings | pairs/s | ms per pair | ours is × faster |", "|---|---|---|---|---|"]
    for name, (settings, step) in steps.items():
        if name not in speeds:
            rows.append(f"| {name} | {settings} | {step} | | |")
            continue
        ratio = "—" if name.startswith("unet_course") else f"{ours / speeds[name]:.1f}×"
        rows.append(f"| {name} | {settings} | {speeds[name]:.1f} | {1e3 / speeds[name]:.2f} | {ratio} |")
    return rows, speeds


def versions() -> str:
    names = ("torch", "torchvision", "numpy", "scipy", "albumentations", "opencv-python-headless", "monai")
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            found.append(f"{name} not installed")
    return ", ".join(found)


def machine() -> str:
    system = f"{platform.system()} {platform.release()}; Python {platform.python_version()}"
    return f"{cpu_name()}, {cores()} cores available (1 used), {system}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="64² pairs, a few calls each, print only (for CI)")
    parser.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each implementation (default 3)")
    parser.add_argument("--batch", type=int, default=64, help="pairs per call of ours on the GPU (default 64)")
    parser.add_argument("--output", type=Path, default=RESULTS / "elastic_cpu.md", help="CPU table to write")
    args = parser.parse_args()
    size, seconds, min_calls, batch = (64, 0.0, 2, 4) if args.smoke else (args.size, args.seconds, 5, args.batch)
    warnings.filterwarnings("ignore")  # peers warn about deprecated defaults; the table is the output
    torch.set_num_threads(1)

    sample = synthetic_membranes(size, seed=0)
    image, mask = sample.image, sample.mask
    print(f"CPU, one thread, {size}×{size} image + mask pairs", flush=True)
    cpu_rows, cpu_speeds = table(cpu_steps(image, mask), {}, seconds, min_calls, sync=lambda: None)
    print("\n".join(cpu_rows))
    best_cpu = max(cpu_speeds.values())

    gpu_rows: list[str] = []
    if torch.cuda.is_available():
        images = torch.from_numpy(image)[None, None].repeat(batch, 1, 1, 1).cuda()
        masks = torch.from_numpy(mask).long()[None].repeat(batch, 1, 1).cuda()
        steps: dict[str, tuple[str, Step | str]] = {
            f"unet_course.elastic_deform, batches of {batch}": (
                "3×3 grid, σ = 10 px",
                lambda: elastic_deform(images, masks),
            ),
            "torchvision v2.ElasticTransform": torchvision_step("cuda", image, mask),
            "MONAI Rand2DElasticd": monai_step("cuda", image, mask),
        }
        print(f"GPU ({torch.cuda.get_device_name(0)}), {size}×{size} pairs", flush=True)
        gpu_rows, gpu_speeds = table(steps, {next(iter(steps)): batch}, seconds, min_calls, sync=torch.cuda.synchronize)
        ours_gpu = max(speed for name, speed in gpu_speeds.items() if name.startswith("unet_course"))
        gpu_rows.append(
            f"\nOurs on the GPU: {ours_gpu / best_cpu:.0f}× the best one-thread CPU figure "
            f"({best_cpu:.0f} pairs/s); goal ≥ 10×."
        )
        print("\n".join(gpu_rows))
    else:
        print("GPU: skipped, no CUDA device")
    if args.smoke:
        return 0

    header = [
        f"Machine: {machine()}. Versions: {versions()}. Measured {date.today().isoformat()} with "
        f"`python benchmarks/bench_elastic.py`: one run, each implementation called for at least {seconds:g} s "
        "after a warm-up call, one thread everywhere (`torch.set_num_threads(1)`, `cv2.setNumThreads(1)`, "
        "OMP/MKL/OpenBLAS at 1).",
        "",
        f"Each call deforms one {size}×{size} float32 image and its uint8 label mask "
        f"(`synthetic_membranes({size}, seed=0)`) with a fresh random deformation, the mask by nearest neighbour. "
        "The peers run with their own default strength, mirrored borders where they offer them.",
        "",
    ]
    write(args.output, "# Elastic deformation on the CPU: image + mask pairs per second", header + cpu_rows)
    if gpu_rows:
        write(
            args.output.with_name("elastic_gpu.md"),
            "# Elastic deformation on the GPU: image + mask pairs per second",
            header[:1] + [f"GPU: {torch.cuda.get_device_name(0)}.", ""] + gpu_rows,
        )
    ours_cpu = cpu_speeds["unet_course.elastic_deform"]
    fastest_peer = max(speed for name, speed in cpu_speeds.items() if not name.startswith("unet_course"))
    if ours_cpu < fastest_peer:
        print(
            f"note: ours ({ours_cpu:.0f} pairs/s) is slower than the fastest peer "
            f"({fastest_peer:.0f} pairs/s) on this CPU"
        )
    return 0


def write(path: Path, title: str, lines: list[str]) -> None:
    write_report(path, "\n".join([title, "", *lines, ""]))


if __name__ == "__main__":
    sys.exit(main())
