"""Time one training step of the paper's U-Net beside segmentation_models_pytorch's Unet, and fit's data path.

A step is what ``unet_course.fit`` does per iteration: forward, the weighted
cross-entropy, backward and an SGD update with momentum 0.99, on one tile (batch 1,
the paper's choice). Our valid-convolution U-Net at the paper's 572×572 tile (388×388
supervised pixels) is compared with ``smp.Unet`` (ResNet-34 encoder, padded) on a
512×512 tile, and per supervised pixel, since the two tiles supervise different areas.

Two more parts: ``loading`` times whole ``fit`` steps on a folder of 512×512 PNG images,
held in memory (``num_workers=None``) or streamed through a DataLoader with 0, 2 and 4
workers, on the CPU; ``precision`` (CUDA only) gives images/s and model FLOP utilisation
(FLOPs of ``torch.utils.flop_counter`` / step time / the GPU's peak) of the paper's U-Net at
572² in fp32, with bf16 and fp16 autocast, channels-last and ``torch.compile``.

    python benchmarks/bench_train_step.py                  # every part this machine can run, writes results/
    python benchmarks/bench_train_step.py --part loading   # one part: steps, loading or precision
    python benchmarks/bench_train_step.py --smoke          # tiny sizes, a few seconds each, for CI; writes nothing
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from unet_course import ImageMaskFolder, UNet, fit, weighted_cross_entropy
from unet_course.flops import training_step_flops
from unet_course.train import _Trainer  # the step fit takes, with its autocast, scaler and memory format

from machine import cpu_name, write_report

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).parent))
PARTS = ("steps", "loading", "precision")

# Dense (no sparsity) peak tensor throughput from NVIDIA's data sheets, TFLOP/s, matched against
# torch.cuda.get_device_name in this order. "tf32" is what fp32 convolutions run in on Ampere and
# later while torch.backends.cudnn.allow_tf32 is on (PyTorch's default); None: no such tensor cores.
PEAK_TFLOPS = {
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "H100": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
    "L40S": {"fp32": 91.6, "tf32": 183.0, "bf16": 362.1, "fp16": 362.1},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0, "fp16": 121.0},
    "A10": {"fp32": 31.2, "tf32": 62.5, "bf16": 125.0, "fp16": 125.0},
    "V100": {"fp32": 15.7, "tf32": None, "bf16": None, "fp16": 125.0},
    "T4": {"fp32": 8.1, "tf32": None, "bf16": None, "fp16": 65.0},
}


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


def _machine(device: torch.device) -> str:
    return (f"{cpu_name()}, {torch.get_num_threads()} threads" if device.type == "cpu"
            else torch.cuda.get_device_name(device))


def _write(name: str, title: str, description: str, table: str) -> None:
    write_report(RESULTS / name, f"# {title}\n\n{description}\n\n{table}\n")


def steps_part(args, device: torch.device) -> None:
    """Our U-Net beside smp.Unet, per supervised pixel: results/train_step_{cpu,cuda}.md."""
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
    if not args.smoke:
        _write(f"train_step_{device.type}.md", "One training step: batch 1, SGD momentum 0.99, weighted cross-entropy",
               f"Machine: {_machine(device)} ({device.type}); Python {platform.python_version()}, torch "
               f"{torch.__version__}. Measured {date.today()} with `python benchmarks/bench_train_step.py`: median of "
               f"{repeats} steps after one warm-up step. 'vs ours' compares time per supervised pixel with the "
               f"paper's configuration.", table)


def loading_part(args) -> None:
    """Steps/s of fit on a folder, in memory and streamed with 0, 2 and 4 workers: results/data_loading_cpu.md."""
    from synthetic_folder import write_synthetic_folder

    from unet_course.budget import TRAINING_RUNS

    run = TRAINING_RUNS["smoke"]  # the network CI trains: a step short enough for loading to show
    images, size, batch_size = (4, 128, 2) if args.smoke else (32, 512, 4)
    warm_up, timed, rounds = (1, 1, 1) if args.smoke else (3, 15, 3)
    tile = 60 if args.smoke else run["tile_size"]
    cases = [(weights, workers) for weights in (("balanced",) if args.smoke else ("balanced", "unet"))
             for workers in ([None, 2] if args.smoke else [None, 0, 2, 4])]
    best: dict[tuple, tuple[float, float]] = {}  # (loss weights, workers) -> (steps/s, seconds before the first step)
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as temporary:
        folder = write_synthetic_folder(Path(temporary), images, size)
        data = ImageMaskFolder(folder / "images", folder / "masks")
        for _ in range(rounds):  # round-robin, best of the rounds: other work on the machine hits each case alike
            for loss_weights, num_workers in cases:
                torch.manual_seed(0)
                model = UNet(base_channels=run["base_channels"], depth=2 if args.smoke else run["depth"])
                began = time.perf_counter()
                history = fit(model, data, steps=warm_up + timed, batch_size=batch_size, tile_size=tile,
                              loss_weights=loss_weights, num_workers=num_workers, device="cpu", progress=False)
                setup = time.perf_counter() - began - sum(history.seconds_per_step)
                steady = timed / sum(history.seconds_per_step[warm_up:])
                seen = best.get((loss_weights, num_workers), (0.0, float("inf")))
                best[loss_weights, num_workers] = (max(seen[0], steady), min(seen[1], setup))
                load.append(os.getloadavg()[0])
    lines = ["| loss weights | data | steps/s | vs in memory | seconds before the first step |",
             "|---|---|---|---|---|"]
    for (loss_weights, num_workers), (rate, setup) in best.items():
        how = "in memory (`num_workers=None`)" if num_workers is None else f"streamed, `num_workers={num_workers}`"
        lines.append(f"| {loss_weights} | {how} | {rate:.2f} | {rate / best[loss_weights, None][0]:.2f}× | "
                     f"{setup:.1f} |")
    table = "\n".join(lines)
    print(table)
    if not args.smoke:
        device = torch.device("cpu")
        _write("data_loading_cpu.md", "fit's data path: in memory or streamed through a DataLoader",
               f"Machine: {_machine(device)}, {os.cpu_count()} cores; Python {platform.python_version()}, torch "
               f"{torch.__version__}. Measured {date.today()} with `python benchmarks/bench_train_step.py --part "
               f"loading`; the machine's 1-minute load average ran from {min(load):.1f} to {max(load):.1f} during "
               f"the runs.\n\n"
               f"`fit` trains `UNet(base_channels={run['base_channels']}, depth={run['depth']})` (the smoke budget's "
               f"network) on tiles of {tile}², batch {batch_size}, from a folder of {images} synthetic {size}×{size} "
               f"PNG images with masks, on the CPU. Steps/s is the mean over {timed} steps after {warm_up} "
               f"warm-up steps, each step counted from asking for its batch to the end of its update, and the best "
               f"of {rounds} rounds that run every case in turn; the last column is the rest of the run's time (its "
               f"shortest): reading the folder and computing every weight map up front in memory, starting the "
               f"workers when streamed. Workers share the machine's cores with training.", table)


def time_precision(model: torch.nn.Module, tile: int, batch_size: int, device: torch.device, amp: bool | str,
                   channels_last: bool, compile: bool, steps: int, warm_up: int = 3) -> float:
    """Seconds per training step of fit's ``_Trainer`` on one fixed batch (the data path left out)."""
    trainer = _Trainer(model, lr=1e-3, momentum=0.99, device=device, amp=amp, channels_last=channels_last,
                       compile=compile, seed=0, loss=None)
    images = torch.rand(batch_size, model.in_channels, tile, tile, device=device)
    output = model.output_size(tile)
    masks = torch.randint(0, model.num_classes, (batch_size, output, output), device=device)
    batch = (images, masks, torch.ones(masks.shape, device=device))
    for step in range(warm_up):  # the allocator, cuDNN's choice of kernels, compilation
        trainer.step(batch, 1e-3, step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    began = time.perf_counter()
    for step in range(steps):
        trainer.step(batch, 1e-3, step)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - began) / steps


def _peak_tflops(device: torch.device) -> dict | None:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    return next((peaks for key, peaks in PEAK_TFLOPS.items() if key in name), None)


def measure_precision(device: torch.device, *, smoke: bool = False) -> list[dict]:
    """One row per (batch, precision, channels-last, torch.compile) case: step time, images/s, TFLOP/s, utilisation.

    ``smoke``: a tiny U-Net and one step of two cases, to check the code paths (CI, or the CPU).
    """
    tile, model_options = (60, {"base_channels": 4, "depth": 2}) if smoke else (572, {})
    batches, steps = ((1,), 1) if smoke else ((1, 8), 20)
    cases = [("fp32", False, False), ("fp32", True, False), ("bf16", False, False), ("bf16", True, False),
             ("fp16", True, False), ("bf16", True, True)]  # (precision, channels-last, torch.compile)
    if smoke:  # the code paths only: compiling takes minutes, and the CPU has no fp16 worth timing
        cases = [("fp32", False, False), ("bf16", True, False)]
    peaks = _peak_tflops(device)
    tf32 = bool(device.type == "cuda" and torch.backends.cudnn.allow_tf32 and peaks is not None and peaks["tf32"])
    rows = []
    for batch_size in batches:
        flops = training_step_flops(UNet(**model_options), (batch_size, 1, tile, tile))
        for precision, channels_last, compile in cases:
            if peaks is not None and peaks[precision] is None:
                continue  # bf16 on a T4 or V100: emulated, not worth a row
            torch.manual_seed(0)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            amp = False if precision == "fp32" else precision
            seconds = time_precision(UNet(**model_options), tile, batch_size, device, amp, channels_last, compile,
                                     steps, warm_up=1 if smoke else 3)
            achieved = flops / seconds / 1e12
            peak = (peaks["tf32"] if precision == "fp32" and tf32 else peaks[precision]) if peaks else None
            rows.append({"batch": batch_size, "precision": precision, "tf32": tf32 and precision == "fp32",
                         "channels_last": channels_last, "compile": compile, "tile_size": tile,
                         "ms_per_step": 1000 * seconds, "images_per_s": batch_size / seconds, "tflops": achieved,
                         "utilisation": achieved / peak if peak else None,
                         "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
                         if device.type == "cuda" else None})
    return rows


def precision_part(args, device: torch.device) -> None:
    """Images/s and model FLOP utilisation per precision of the paper's U-Net: results/precision_cuda.md."""
    tile, steps = (60, 1) if args.smoke else (572, 20)
    peaks = _peak_tflops(device)
    lines = ["| batch | precision | channels-last | torch.compile | ms/step | images/s | TFLOP/s | model FLOP "
             "utilisation | peak memory |", "|---|---|---|---|---|---|---|---|---|"]
    for row in measure_precision(device, smoke=args.smoke):
        utilisation = f"{100 * row['utilisation']:.1f}%" if row["utilisation"] else "–"
        memory = f"{row['peak_memory_gib']:.1f} GiB" if row["peak_memory_gib"] is not None else "–"
        name = f"{row['precision']} (TF32 convolutions)" if row["tf32"] else row["precision"]
        lines.append(f"| {row['batch']} | {name} | {'yes' if row['channels_last'] else 'no'} | "
                     f"{'yes' if row['compile'] else 'no'} | {row['ms_per_step']:.1f} | {row['images_per_s']:.1f} "
                     f"| {row['tflops']:.1f} | {utilisation} | {memory} |")
    table = "\n".join(lines)
    print(table)
    if not args.smoke:
        listed = ", ".join(f"{kind} {value}" for kind, value in (peaks or {}).items() if value)
        peak_note = (f"the peak is NVIDIA's dense figure for this GPU ({listed} TFLOP/s)" if peaks
                     else "no peak is listed for this GPU in PEAK_TFLOPS, so no utilisation")
        _write(f"precision_{device.type}.md", "The paper's U-Net at 572²: images/s and model FLOP utilisation",
               f"Machine: {_machine(device)}; Python {platform.python_version()}, torch {torch.__version__}. "
               f"Measured {date.today()} with `python benchmarks/bench_train_step.py --part precision`.\n\n"
               f"`UNet()` (31 M parameters, valid convolutions) trains on random {tile}² tiles with fit's own step "
               f"(autocast, a gradient scaler for fp16, weighted cross-entropy, SGD momentum 0.99), the data path "
               f"left out: the mean of {steps} steps after 3 warm-up steps. Training FLOPs are counted by "
               f"`torch.utils.flop_counter` (convolutions and matrix products, forward and backward: "
               f"{training_step_flops(UNet(), (1, 1, tile, tile)) / 1e9:,.0f} GFLOP per tile); utilisation is "
               f"FLOPs / step time / peak, where {peak_note}.", table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and few steps, print only (for CI)")
    parser.add_argument("--part", choices=PARTS, action="append",
                        help="run only this part (repeatable); default: every part this machine can run")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps per model in the steps part (default 3)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    parts = args.part or [part for part in PARTS if part != "precision" or device.type == "cuda" or args.smoke]
    if "precision" in parts and device.type != "cuda" and not args.smoke:
        raise SystemExit("the precision part needs a CUDA device; run --smoke to check the script on the CPU")
    for part in parts:
        print(f"## {part}")
        if part == "steps":
            steps_part(args, device)
        elif part == "loading":
            loading_part(args)
        else:
            precision_part(args, device)


if __name__ == "__main__":
    main()
