"""Choose the cpu budget of chapter 6 by measurement: train, calibrate, score held-out ISBI slices.

    UNET_COURSE_DATA=... python benchmarks/sweep_cpu_budget.py --base-channels 16 --tile-size 316 --steps 3000 \
        --lr 0.003 --lr-schedule cosine --loss-weights balanced --threads 1

Each run trains on ISBI 2012 slices 0–24 (as chapter 6), picks the threshold on the training
slices (``choose_threshold``), then scores the held-out slices 25–29 at that threshold and at the
best threshold over a sweep. One JSON line per run is appended to ``--out``; the table of the
runs behind the cpu budget is ``results/cpu_budget_sweep.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from unet_course import ISBI2012, UNet, fit
from unet_course.calibrate import METRICS, choose_threshold, foreground_probabilities, threshold_sweep
from unet_course.data import data_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-channels", type=int, default=16)
    parser.add_argument("--tile-size", type=int, default=316)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--lr-schedule", default="constant")
    parser.add_argument("--loss-weights", default="balanced")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold-metric", default="both", choices=METRICS,
                        help="how choose_threshold picks the cut on the training slices (default: both)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cpu_budget_sweep.jsonl")
    parser.add_argument("--save", type=Path, default=None, help="also save the trained state dict here")
    parser.add_argument("--smoke", action="store_true", help="2 steps of a tiny model on 3 slices, prints only (CI)")
    args = parser.parse_args()
    if args.smoke:
        args.base_channels, args.tile_size, args.steps, args.out = 4, 188, 2, None
    if args.threads:
        torch.set_num_threads(args.threads)

    root = data_root() / "isbi2012"
    train_slices, held_out_slices = ([0, 1], [29]) if args.smoke else (range(25), range(25, 30))
    train, held_out = ISBI2012(root, indices=train_slices), ISBI2012(root, indices=held_out_slices)
    torch.manual_seed(args.seed)
    model = UNet(base_channels=args.base_channels)
    began = time.perf_counter()
    history = fit(model, train, steps=args.steps, tile_size=args.tile_size, lr=args.lr, lr_schedule=args.lr_schedule,
                  loss_weights=None if args.loss_weights == "none" else args.loss_weights, batch_size=args.batch_size,
                  seed=args.seed, device="cpu", progress=False)
    minutes = (time.perf_counter() - began) / 60
    threshold = choose_threshold(model, train, metric=args.threshold_metric)
    sweep = threshold_sweep(foreground_probabilities(model, held_out))
    at = int(np.argmin(np.abs(sweep["threshold"] - threshold)))
    half = int(np.argmin(np.abs(sweep["threshold"] - 0.5)))
    row = {**{k: v for k, v in vars(args).items() if k not in ("out", "save", "smoke")}, "threads": torch.get_num_threads(),
           "minutes": round(minutes, 2), "ms_per_step": round(1000 * float(np.median(history.seconds_per_step)), 1),
           "final_loss": round(float(history.smoothed_loss(100)[-1]), 4), "threshold": threshold,
           "pixel_at_threshold": round(float(sweep["pixel"][at]), 4), "rand_at_threshold": round(float(sweep["rand"][at]), 4),
           "pixel_at_0.5": round(float(sweep["pixel"][half]), 4), "rand_at_0.5": round(float(sweep["rand"][half]), 4),
           "best_pixel": round(float(sweep["pixel"].min()), 4), "best_rand": round(float(sweep["rand"].min()), 4)}
    print(json.dumps(row))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as file:
            file.write(json.dumps(row) + "\n")
    if args.save:
        torch.save(model.state_dict(), args.save)


if __name__ == "__main__":
    main()
