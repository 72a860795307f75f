"""Cross-validation: the folds, one fold trained, calibrated, scored and resumed, the summary, the command."""

from __future__ import annotations

import json
import statistics
from collections import deque

import numpy as np
import pytest

from unet_course import crossval
from unet_course.cli import main
from unet_course.data import ISBI2012
from unet_course.crossval import Fold, disjoint_folds, nvidia_folds, run_fold, summarize
from unet_course.runs import load_run, read_checkpoint, read_config, weights_sha256


def _nvidia_recipe(fold: int) -> tuple[list[int], list[int]]:
    """NVIDIA's loader, step by step as its code does it: global seed, shuffle, deque rotation, slices."""
    np.random.seed(0)
    indices = np.arange(0, 30, 1)
    np.random.shuffle(indices)
    rotated = deque(indices)
    rotated.rotate(fold * int((1.0 - 0.8) * 30))
    rotated = np.array(rotated)
    return [int(i) for i in rotated[:24]], [int(i) for i in rotated[24:]]


@pytest.mark.parametrize("fold", range(5))
def test_nvidia_folds_are_the_ones_its_loader_computes(fold):
    train, held_out = _nvidia_recipe(fold)
    ours = nvidia_folds()[fold]
    assert (list(ours.train), list(ours.held_out), ours.index) == (train, held_out, fold)


def test_nvidia_folds_overlap_and_leave_four_slices_never_held_out():
    folds = nvidia_folds()
    assert [len(f.held_out) for f in folds] == [6] * 5 and all(len(f.train) == 24 for f in folds)
    assert all(not set(f.train) & set(f.held_out) for f in folds)
    held = [i for f in folds for i in f.held_out]  # the rotation steps by 5 while 6 are held out
    assert sorted(set(range(30)) - set(held)) == [2, 10, 13, 28]
    assert sorted(i for i in set(held) if held.count(i) == 2) == [4, 22, 23, 25]
    assert sorted(nvidia_folds()[0].held_out) == [0, 3, 12, 15, 21, 25]


def test_disjoint_folds_hold_out_every_slice_once():
    folds = disjoint_folds(5)
    held = [i for f in folds for i in f.held_out]
    assert sorted(held) == list(range(30)) and all(len(f.held_out) == 6 for f in folds)
    assert all(sorted(f.train + f.held_out) == list(range(30)) for f in folds)
    assert disjoint_folds(5, seed=1) != folds
    with pytest.raises(ValueError, match="n_folds must be 2..30"):
        disjoint_folds(1)


def test_summary_is_the_mean_and_sample_std_over_folds():
    folds = [{"index": k, "held_out": [k], "threshold": 0.5, "mean": {"rand_error": v, "pixel_error": 2 * v},
              "per_slice": {"rand_error": [v], "pixel_error": [2 * v]}, "steps": 10, "seconds": 1.0}
             for k, v in enumerate([0.1, 0.3, 0.2])]
    summary = summarize(folds)
    assert summary["folds"] == 3
    assert summary["mean"]["rand_error"] == pytest.approx(0.2)
    assert summary["std"]["pixel_error"] == pytest.approx(statistics.stdev([0.2, 0.6, 0.4]))
    assert [row["rand_error"] for row in summary["per_fold"]] == [0.1, 0.3, 0.2]
    assert summary["per_fold"][1]["per_slice"] == {"rand_error": [0.3], "pixel_error": [0.6]}


TINY = Fold(0, train=(0, 1), held_out=(2,))


def test_a_fold_is_trained_calibrated_scored_and_kept(isbi_root, tmp_path, monkeypatch):
    scores = run_fold(tmp_path, TINY, budget="smoke", data_root=isbi_root.parent, steps=2, progress=False)
    folder = tmp_path / "fold-0"
    config = read_config(folder / "model.json")
    assert config["train_slices"] == [0, 1] and config["held_out_slices"] == [2]
    assert config["threshold"] == scores["threshold"] and config["base_channels"] == 8  # the smoke budget
    assert read_checkpoint(folder / "checkpoint.pt")["step"] == 2
    model, stored = load_run(folder)  # a run folder like any other: predict and evaluate accept it
    assert stored["weights_sha256"] == weights_sha256(model.state_dict())
    assert set(scores["per_slice"]) == set(crossval.SCORES) and scores["held_out"] == [2]
    assert set(scores["mean"]) == set(crossval.SCORES) | {"best_v_rand", "best_v_info"}
    stored = np.load(folder / "held_out_probabilities.npy")
    assert stored.shape == (1, 512, 512) and 0 <= stored.min() <= stored.max() <= 1
    # the scores are those of the stored probabilities at the stored threshold
    mask = (np.load(folder / "held_out_probabilities.npy")[0] > scores["threshold"])
    truth = ISBI2012(isbi_root, indices=[2]).masks[0]
    assert scores["per_slice"]["pixel_error"][0] == pytest.approx(float(np.mean(mask != truth)))
    assert json.loads((folder / "scores.json").read_text()) == scores

    def refuse(*args, **kwargs):
        raise AssertionError("a finished fold was trained again")

    monkeypatch.setattr("unet_course.train.fit", refuse)
    assert run_fold(tmp_path, TINY, budget="smoke", data_root=isbi_root.parent, steps=2, progress=False) == scores
    with pytest.raises(ValueError, match="not this fold's"):
        run_fold(tmp_path, Fold(0, (0, 1), (3,)), budget="smoke", data_root=isbi_root.parent, steps=2)


def test_a_fold_in_progress_resumes_from_its_checkpoint(isbi_root, tmp_path, monkeypatch):
    import unet_course.train

    folder = tmp_path / "fold-0"
    run_fold(tmp_path, TINY, budget="smoke", data_root=isbi_root.parent, steps=2, progress=False)
    (folder / "scores.json").unlink()  # as if interrupted after the checkpoint of step 2
    state = read_checkpoint(folder / "checkpoint.pt")
    calls, fit = [], unet_course.train.fit
    monkeypatch.setattr(unet_course.train, "fit", lambda *a, **k: calls.append(k) or fit(*a, **k))
    scores = run_fold(tmp_path, TINY, budget="smoke", data_root=isbi_root.parent, steps=3, progress=False)
    resumed = read_checkpoint(folder / "checkpoint.pt")
    assert resumed["step"] == 3 and len(resumed["history"]["loss"]) == 3
    assert resumed["history"]["loss"][:2] == state["history"]["loss"]
    assert scores["steps"] == 3 and [call["resume"] for call in calls] == [True]


def test_cross_validate_refuses_to_mix_settings(isbi_root, tmp_path, monkeypatch):
    monkeypatch.setattr(crossval, "nvidia_folds", lambda n: [TINY, Fold(1, (0, 2), (1,))][:n])
    summary = crossval.cross_validate(tmp_path, budget="smoke", data_root=isbi_root.parent, n_folds=2, only=[0],
                                      steps=1, progress=False)
    assert summary["folds"] == 1 and json.loads((tmp_path / "summary.json").read_text()) == summary
    assert json.loads((tmp_path / "crossval.json").read_text())["budget"] == "smoke"
    with pytest.raises(ValueError, match=r"other settings: budget 'cpu' \(stored: 'smoke'\)"):
        crossval.cross_validate(tmp_path, budget="cpu", data_root=isbi_root.parent, n_folds=2, only=[1], steps=1)
    with pytest.raises(ValueError, match="only: fold indices must be 0..1"):
        crossval.cross_validate(tmp_path, budget="smoke", data_root=isbi_root.parent, n_folds=2, only=[2], steps=1)


def test_the_command_runs_a_fold_and_prints_the_summary(isbi_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(crossval, "nvidia_folds", lambda n: [TINY, Fold(1, (0, 2), (1,))][:n])
    argv = ["crossval", "--out", str(tmp_path / "cv"), "--data-root", str(isbi_root.parent), "--budget", "smoke",
            "--steps", "1", "--folds", "2", "--only", "0", "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "rand_error: 0." in err and "over 1 folds" in err and "±" not in err
    assert (tmp_path / "cv" / "fold-0" / "scores.json").exists() and not (tmp_path / "cv" / "fold-1").exists()
    assert main(argv[:5] + ["--budget", "cpu"] + argv[7:]) == 2
    assert "other settings" in capsys.readouterr().err.splitlines()[-1]
    assert main(["crossval", "--out", str(tmp_path / "x"), "--folds", "1", "--quiet"]) == 2
    assert "--folds must be at least 2" in capsys.readouterr().err
