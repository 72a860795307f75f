"""Time one training step of the paper's U-Net beside segmentation_models_pytorch's Unet.

A step is what ``unet_course.fit`` does per iteration: forward, the weighted
cross-entropy, backward and an SGD update with momentum 0.99, on one tile (batch 1,
the paper's choice). Our valid-convolution U-Net at the paper's 572×572 tile (388×388
supervised pixels) is compared with ``smp.Unet`` (ResNet-34 encoder, padded) on a
512×512 tile, and per supervised pixel, since the two tiles supervise different areas.

    python benchmarks/bench_train_step.py            # full table, writes results/train_step.md
    python benchmarks/bench_train_step.py --smoke    # tiny tiles, a few seconds, for CI; writes nothing
"""

from __future__ import annotations

import argparse
import platform
import time
from datetime import date
from pathlib import Path

import torch

from unet_course import UNet, weighted_cross_entropy

RESULTS = Path(__file__).parent / "results"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as file:
            return next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _smp_unet():
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        return None
    return smp.Unet(encoder_name="resnet34", encoder_weights=None, in_channels=1, classes=2)


def time_steps(model: torch.nn.Module, tile: int, device: torch.device, repeats: int) -> tuple[float, int]:
    """Median seconds per training step and the number of supervised output pixels."""
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.99)
    image = torch.rand(1, 1, tile, tile, device=device)
    times, out_pixels = [], 0
    for index in range(repeats + 1):  # the first step warms up allocators and kernels
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        logits = model(image)
        target = torch.randint(0, 2, (1, *logits.shape[-2:]), device=device)
        loss = weighted_cross_entropy(logits, target, torch.ones_like(target, dtype=torch.float32))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if index:
            times.append(time.perf_counter() - began)
        out_pixels = logits.shape[-2] * logits.shape[-1]
    return sorted(times)[len(times) // 2], out_pixels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny tiles and one step each, print only (for CI)")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per model (default 3)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke:
        cases = [("UNet(base_channels=4) valid", UNet(base_channels=4), 188),
                 ("UNet(base_channels=4, padding='same')", UNet(base_channels=4, padding="same"), 64)]
        repeats = 1
    else:
        cases = [("UNet() valid, the paper's", UNet(), 572),
                 ("UNet(base_channels=16) valid", UNet(base_channels=16), 572),
                 ("UNet(padding='same')", UNet(padding="same"), 512)]
        repeats = args.repeats
    smp_model = _smp_unet()
    if smp_model is not None:
        cases.append(("smp.Unet(resnet34)", smp_model, 64 if args.smoke else 512))
    else:
        print("segmentation_models_pytorch not installed: smp.Unet skipped")

    rows = []
    for name, model, tile in cases:
        seconds, pixels = time_steps(model, tile, device, repeats)
        parameters = sum(p.numel() for p in model.parameters())
        rows.append((name, parameters, tile, pixels, seconds))
    reference = rows[0][4] / rows[0][3]
    lines = ["| model | parameters | tile | supervised pixels | s/step | µs per supervised pixel | vs ours |",
             "|---|---|---|---|---|---|---|"]
    for name, parameters, tile, pixels, seconds in rows:
        per_pixel = seconds / pixels
        lines.append(f"| {name} | {parameters:,} | {tile}² | {pixels:,} | {seconds:.3f} | {1e6 * per_pixel:.2f} | "
                     f"{per_pixel / reference:.2f}× |")
    table = "\n".join(lines)
    print(table)
    if args.smoke:
        return
    machine = (f"{_cpu_name()}, {torch.get_num_threads()} threads"
               if device.type == "cpu" else torch.cuda.get_device_name(0))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"train_step_{device.type}.md"
    out.write_text(
        f"# One training step: batch 1, SGD momentum 0.99, weighted cross-entropy\n\n"
        f"Machine: {machine} ({device.type}); Python {platform.python_version()}, torch {torch.__version__}. "
        f"Measured {date.today()} with `python benchmarks/bench_train_step.py`: median of {repeats} steps after "
        f"one warm-up step. 'vs ours' compares time per supervised pixel with the paper's configuration.\n\n"
        f"{table}\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
