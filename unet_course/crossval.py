"""Cross-validation on the 30 ISBI 2012 slices: k folds, each trained, calibrated and scored (chapter 7).

One split of five held-out slices says as much about which slices were held out as about the
network. :func:`cross_validate` trains one run per fold under a budget (the sizes of
:data:`unet_course.budget.TRAINING_RUNS`), chooses each fold's threshold on its own training
slices, predicts its held-out slices whole (overlap-tile) and scores them with every metric of
:data:`SCORES`. Each fold is a run folder (``fold-K/``: checkpoint, ``model.json``, history)
plus ``scores.json``; ``summary.json`` holds the mean and standard deviation over folds. An
interrupted cross-validation continues where it stopped: finished folds are kept, the fold in
progress resumes from its checkpoint.

Two splits are built in: :func:`nvidia_folds`, the split of NVIDIA's DeepLearningExamples
``UNet_Medical`` (reproduced from its code, rounding included: its five folds of six held-out
slices overlap: four slices are held out twice and four never), and :func:`disjoint_folds`, k disjoint
folds that hold out every slice once.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import resources
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .budget import TRAINING_RUNS
from .calibrate import choose_threshold
from .data.isbi import ISBI2012, NUM_SLICES
from .files import atomic_file
from .metrics import challenge_sweep, dice, nvidia_dice, nvidia_resize, pixel_error, rand_error, v_info, v_rand, \
    warping_error
from .runs import model_from_config, read_checkpoint, training_config, weights_sha256, write_config

__all__ = ["Fold", "nvidia_folds", "disjoint_folds", "SCORES", "score_slices", "fold_figures", "run_fold", "rescore", "summarize",
           "cross_validate", "published_summary"]

SPLITS = ("nvidia", "disjoint")


@dataclass(frozen=True)
class Fold:
    """One fold: the slices it trains on and the slices it holds out (ISBI 2012 indices 0–29)."""

    index: int
    train: tuple[int, ...]
    held_out: tuple[int, ...]


def nvidia_folds(n_folds: int = 5, *, seed: int = 0, ratio: float = 0.8, length: int = NUM_SLICES) -> list[Fold]:
    """The folds of NVIDIA's ``UNet_Medical`` (TensorFlow2), computed as its data loader computes them.

    Its recipe: ``np.random.seed(seed)``, shuffle ``arange(length)``, rotate right by
    ``fold · int((1 − ratio) · length)``, train on the first ``int(ratio · length)`` and hold out the
    rest. In floating point ``(1 − 0.8) · 30`` is 5.999…, so the rotation step is 5, not 6: with
    the defaults the five held-out sets of six slices overlap: slices 4, 22, 23 and 25 are held out
    twice, and 2, 10, 13 and 28 never.
    """
    if not 0 < ratio < 1:
        raise ValueError(f"ratio is the fraction of slices trained on, in (0, 1); got {ratio}")
    order = np.arange(length)
    np.random.RandomState(seed).shuffle(order)  # the same draws as np.random.seed(seed); np.random.shuffle
    step, kept = int((1.0 - ratio) * length), int(ratio * length)
    folds = []
    for index in range(n_folds):
        rotated = np.roll(order, index * step)  # deque.rotate(n) moves items n places to the right
        folds.append(Fold(index, tuple(int(i) for i in rotated[:kept]), tuple(int(i) for i in rotated[kept:])))
    return folds


def disjoint_folds(n_folds: int = 5, *, seed: int = 0, length: int = NUM_SLICES) -> list[Fold]:
    """``n_folds`` folds whose held-out sets partition a seeded shuffle of ``range(length)``."""
    if not 2 <= n_folds <= length:
        raise ValueError(f"n_folds must be 2..{length} for {length} slices; got {n_folds}")
    order = np.arange(length)
    np.random.RandomState(seed).shuffle(order)
    parts = np.array_split(order, n_folds)
    return [Fold(k, tuple(int(i) for j, p in enumerate(parts) if j != k for i in p), tuple(int(i) for i in part))
            for k, part in enumerate(parts)]


def _two_class(probabilities: np.ndarray, mask: np.ndarray, threshold: float,
               metric: Callable[..., float]) -> float:
    return float(metric(probabilities, mask, threshold=threshold))


# name → f(P(class 1) (H, W), mask (H, W) with 1 = cell interior, threshold) → float. Errors: lower is
# better; V_Rand, V_Info and the Dice scores: higher is better. NVIDIA's Dice is soft (no threshold).
SCORES: dict[str, Callable[[np.ndarray, np.ndarray, float], float]] = {
    "pixel_error": lambda p, t, cut: _two_class(p, t, cut, pixel_error),
    "rand_error": lambda p, t, cut: _two_class(p, t, cut, rand_error),
    "warping_error": lambda p, t, cut: _two_class(p, t, cut, warping_error),
    "v_rand": lambda p, t, cut: _two_class(p, t, cut, v_rand),
    "v_info": lambda p, t, cut: _two_class(p, t, cut, v_info),
    "nvidia_dice": lambda p, t, cut: nvidia_dice(p, t),
    "nvidia_dice_388": lambda p, t, cut: nvidia_dice(*nvidia_resize(p, t)),
    "dice": lambda p, t, cut: float(dice(p, t, threshold=cut)[1]),  # hard Dice of the cell class
}


def score_slices(probabilities: np.ndarray, masks: np.ndarray, threshold: float) -> dict[str, list[float]]:
    """Every score of :data:`SCORES` per slice: ``{name: [value per slice]}``.

    ``probabilities`` (N, H, W) is P(cell interior); ``masks`` (N, H, W) holds 1 for cell interior.
    """
    if probabilities.shape != masks.shape or probabilities.ndim != 3:
        raise ValueError(f"probabilities {probabilities.shape} and masks {masks.shape} must both be (N, H, W)")
    return {name: [score(p, t, threshold) for p, t in zip(probabilities, masks)] for name, score in SCORES.items()}


def fold_figures(probabilities: np.ndarray, masks: np.ndarray, threshold: float) -> tuple[dict, dict]:
    """``(per_slice, figures)``: :func:`score_slices`, and the fold's figures.

    The figures are the mean over slices of every score, plus the challenge's form of V_Rand
    and V_Info: the best over its thresholds of the mean over the slices
    (``best_v_rand``, ``best_v_info``, :func:`unet_course.metrics.challenge_sweep`).
    """
    per_slice = score_slices(probabilities, masks, threshold)
    figures = {name: float(np.mean(values)) for name, values in per_slice.items()}
    sweep = challenge_sweep(probabilities, masks)
    figures |= {"best_v_rand": sweep.best_v_rand, "best_v_info": sweep.best_v_info}
    return per_slice, figures


def _write_json(path: Path, value: dict) -> None:
    with atomic_file(path) as (file, _):
        file.write((json.dumps(value, indent=2) + "\n").encode())


def _held_out_probabilities(model: torch.nn.Module, data: ISBI2012, device: torch.device | None) -> np.ndarray:
    from .calibrate import foreground_probabilities

    return np.stack([p for p, _ in foreground_probabilities(model, data, device=device)])


def run_fold(out: str | os.PathLike, fold: int | Fold, *, budget: str = "cpu", data_root: str | os.PathLike,
             folds: Sequence[Fold] | None = None, device: torch.device | str | None = None, seed: int = 0,
             steps: int | None = None, progress: bool = True) -> dict:
    """Train, calibrate and score one fold into ``out/fold-K``; returns its ``scores.json`` content.

    A fold whose ``scores.json`` exists is read, not trained again; a fold with a checkpoint and
    no scores resumes from it. ``fold`` is an index into ``folds`` (default :func:`nvidia_folds`)
    or a :class:`Fold`. ``steps`` overrides the budget's (tests use a few).
    """
    from .train import fit

    if budget not in TRAINING_RUNS:
        raise ValueError(f"budget must be one of {', '.join(TRAINING_RUNS)}; got {budget!r}")
    if not isinstance(fold, Fold):
        folds = list(folds) if folds is not None else nvidia_folds()
        if not 0 <= fold < len(folds):
            raise ValueError(f"fold must be 0..{len(folds) - 1}; got {fold}")
        fold = folds[fold]
    folder = Path(out) / f"fold-{fold.index}"
    scores_path = folder / "scores.json"
    if scores_path.exists():
        stored = json.loads(scores_path.read_text())
        if tuple(stored["held_out"]) != fold.held_out:
            raise ValueError(f"{scores_path} holds slices {stored['held_out']}, not this fold's {list(fold.held_out)}; "
                             "cross-validate into another folder")
        return stored
    run = dict(TRAINING_RUNS[budget])
    if steps is not None:
        run["steps"] = steps
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, config_path = folder / "checkpoint.pt", folder / "model.json"
    resume = checkpoint.exists()
    if resume and read_checkpoint(checkpoint).get("step", 0) > run["steps"]:
        raise ValueError(f"{checkpoint} is past {run['steps']} steps; cross-validate into another folder")
    root = Path(data_root) / "isbi2012"
    train, held_out = ISBI2012(root, download=True, indices=fold.train), ISBI2012(root, indices=fold.held_out)
    torch.manual_seed(seed + fold.index)
    config = training_config(run, in_channels=1, data="isbi2012", budget=budget, train_slices=list(fold.train),
                             held_out_slices=list(fold.held_out))
    model = model_from_config(config)
    if not resume:
        write_config(config_path, config)
    history = fit(model, train, steps=run["steps"], lr=run["lr"], lr_schedule=run["lr_schedule"],
                  tile_size=run["tile_size"], loss_weights=run["loss_weights"], checkpoint=checkpoint,
                  checkpoint_every=max(1, run["steps"] // 20), resume=resume, device=device, seed=seed + fold.index,
                  progress=progress)
    history.save(folder / "history.json")
    config["threshold"] = choose_threshold(model, train, device=device)
    config["weights_sha256"] = weights_sha256(model.state_dict())  # the weights checkpoint.pt holds now
    write_config(config_path, config)
    probabilities = _held_out_probabilities(model, held_out, device)
    with atomic_file(folder / "held_out_probabilities.npy") as (file, _):
        np.save(file, probabilities.astype(np.float32))
    scores = {"index": fold.index, "train": list(fold.train), "held_out": list(fold.held_out),
              "threshold": config["threshold"], "budget": budget, "steps": run["steps"],
              "seconds": float(sum(history.seconds_per_step))}
    scores["per_slice"], scores["mean"] = fold_figures(probabilities, held_out.masks, config["threshold"])
    _write_json(scores_path, scores)
    return scores


def rescore(out: str | os.PathLike, data_root: str | os.PathLike) -> list[dict]:
    """Score every finished fold of ``out`` again from its stored held-out probabilities.

    For when :data:`SCORES` gains a metric: nothing is trained or predicted again.
    """
    results = []
    for scores_path in sorted(Path(out).glob("fold-*/scores.json")):
        stored = json.loads(scores_path.read_text())
        probabilities = np.load(scores_path.parent / "held_out_probabilities.npy")
        masks = ISBI2012(Path(data_root) / "isbi2012", indices=stored["held_out"]).masks
        stored["per_slice"], stored["mean"] = fold_figures(probabilities, masks, stored["threshold"])
        _write_json(scores_path, stored)
        results.append(stored)
    return results


def summarize(fold_scores: Sequence[dict]) -> dict:
    """Mean and sample standard deviation (None for one fold) over folds of each fold's figures, and the folds.

    ``per_fold`` holds each fold's figures, its training steps and seconds, and its scores per slice.
    """
    if not fold_scores:
        raise ValueError("summarize needs at least one fold's scores")
    names = list(fold_scores[0]["mean"])
    table = {name: [f["mean"][name] for f in fold_scores] for name in names}
    return {
        "folds": len(fold_scores),
        "mean": {name: float(np.mean(v)) for name, v in table.items()},
        "std": {name: float(np.std(v, ddof=1)) if len(v) > 1 else None for name, v in table.items()},
        "per_fold": [{"index": f["index"], "held_out": f["held_out"], "threshold": f["threshold"], **f["mean"],
                      "steps": f.get("steps"), "seconds": f.get("seconds"), "per_slice": f["per_slice"]}
                     for f in fold_scores],
    }


def _check_settings(out: Path, settings: dict) -> None:
    """Write ``out/crossval.json`` the first time; later, refuse to mix in folds of other settings."""
    path = out / "crossval.json"
    if path.exists():
        stored = json.loads(path.read_text())
        changed = [f"{key} {settings[key]!r} (stored: {stored.get(key)!r})" for key in settings
                   if stored.get(key) != settings[key]]
        if changed:
            raise ValueError(f"{out} holds a cross-validation with other settings: {', '.join(changed)}; "
                             "run with the stored settings to continue it, or choose another output folder")
    elif any(out.glob("fold-*")):
        raise ValueError(f"{out} holds fold folders but no crossval.json; choose another output folder")
    else:
        _write_json(path, settings)


def cross_validate(out: str | os.PathLike, *, budget: str = "cpu", data_root: str | os.PathLike,
                   split: str = "nvidia", n_folds: int = 5, only: Sequence[int] | None = None,
                   device: torch.device | str | None = None, seed: int = 0, steps: int | None = None,
                   progress: bool = True) -> dict:
    """Run (or continue) every fold of ``split`` into ``out`` and write ``out/summary.json``.

    ``only`` runs just those fold indices (the summary then covers the folds finished so far).
    Returns the summary (:func:`summarize`, plus the split and budget).
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    folds = nvidia_folds(n_folds) if split == "nvidia" else disjoint_folds(n_folds)
    if only is not None and not all(0 <= i < n_folds for i in only):
        raise ValueError(f"only: fold indices must be 0..{n_folds - 1}; got {list(only)}")
    _check_settings(Path(out), {"split": split, "folds": n_folds, "budget": budget, "seed": seed, "steps": steps})
    for fold in folds if only is None else [folds[i] for i in only]:
        if progress:
            print(f"fold {fold.index}: held out {list(fold.held_out)}", file=sys.stderr)
        run_fold(out, fold, budget=budget, data_root=data_root, device=device, seed=seed, steps=steps,
                 progress=progress)
    done = [json.loads(p.read_text()) for p in sorted(Path(out).glob("fold-*/scores.json"))]
    summary = {"split": split, "budget": budget, **summarize(done)}
    _write_json(Path(out) / "summary.json", summary)
    return summary


def published_summary(budget: str = "cpu") -> dict:
    """The stored cross-validation of the recipe behind the published ``isbi2012-<budget>`` network.

    Shipped with the package (``weights/unet_isbi2012_<budget>.crossval.json``), so that chapter 7
    shows it on a fresh runtime; ``unet-course crossval --budget <budget>`` computes it again.
    """
    name = f"unet_isbi2012_{budget}.crossval.json"
    path = resources.files(__package__).joinpath("weights", name)
    if not path.is_file():
        raise FileNotFoundError(f"no stored cross-validation for the {budget!r} budget ({name}); "
                                f"compute one with `unet-course crossval --budget {budget} --out DIR`")
    return json.loads(path.read_text())
