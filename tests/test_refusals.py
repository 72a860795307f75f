"""Bad input, one row each: the command line refuses (or fails) in one line and changes nothing it was not asked to.

Every command-line row runs in a fresh workspace holding a trained run, a folder of images
and a training folder; it asserts the exit status, the error line, and that no file
outside the row's named output changed (every file hashed before and after). The library
rows assert the exception type and message of the same checks.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course.cli import main
from unet_course.runs import read_checkpoint, write_checkpoint
from unet_course.train import TrainingDiverged
from unet_course.weight_map import class_weight_map, unet_weight_map

TINY = ["--base-channels", "4", "--depth", "2", "--tile-size", "60", "--quiet"]
SYNTHETIC = ["--data", "synthetic-membranes", "--images", "2", "--image-size", "64", "--held-out", "1", *TINY]


def _png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def ws(tiny_run, tmp_path) -> Path:
    """run/ (3 trained steps), images/ (two 8-bit PNGs), data/images + data/masks (0/255), spare/ (a file)."""
    shutil.copytree(tiny_run, tmp_path / "run")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        _png(tmp_path / "images" / f"{name}.png", rng.integers(0, 256, (40, 44), dtype=np.uint8))
        _png(tmp_path / "data" / "images" / f"{name}.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
        _png(tmp_path / "data" / "masks" / f"{name}.png", (rng.random((64, 64)) > 0.5).astype(np.uint8) * 255)
    (tmp_path / "spare").write_text("a file, not a folder")
    return tmp_path


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root``: a folder as "dir", a file as the SHA-256 of its bytes."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


# --- ways to spoil a workspace --------------------------------------------------------------------

def _float_tiff_with_nan(ws: Path) -> None:
    pixels = np.random.default_rng(1).random((40, 44)).astype(np.float32)
    pixels[10, 10] = np.nan
    Image.fromarray(pixels).save(ws / "images" / "b.tif")  # after a.png: a mask could already have been written
    (ws / "images" / "b.png").unlink()


def _twin_names(ws: Path) -> None:
    shutil.copy(ws / "images" / "a.png", ws / "images" / "a.tif")


def _existing_mask(ws: Path) -> None:
    _png(ws / "masks" / "a.png", np.zeros((40, 44), np.uint8))


def _truncated_checkpoint(ws: Path) -> None:
    data = (ws / "run" / "checkpoint.pt").read_bytes()
    (ws / "run" / "checkpoint.pt").write_bytes(data[: len(data) // 2])


def _pickled_checkpoint(ws: Path) -> None:
    torch.save({"model": {}, "note": object()}, ws / "run" / "checkpoint.pt")


def _wider_checkpoint(ws: Path) -> None:
    from unet_course.models.unet import UNet

    write_checkpoint(ws / "run" / "checkpoint.pt", model=UNet(base_channels=8, depth=2).state_dict(), step=3)


def _nan_checkpoint(ws: Path) -> None:
    _edit_json(weights_sha256=None)(ws)  # a model.json that names no weights, as chapter 6 writes
    state = read_checkpoint(ws / "run" / "checkpoint.pt")
    state["model"] = {key: torch.full_like(value, float("nan")) if value.is_floating_point() else value
                      for key, value in state["model"].items()}
    write_checkpoint(ws / "run" / "checkpoint.pt", **state)


def _broken_json(ws: Path) -> None:
    (ws / "run" / "model.json").write_text('{"base_channels": 4, "depth"')


def _incomplete_json(ws: Path) -> None:
    (ws / "run" / "model.json").write_text('{"base_channels": 4}')


def _masks(values) -> callable:
    def spoil(ws: Path) -> None:
        rng = np.random.default_rng(2)
        _png(ws / "data" / "masks" / "a.png", rng.choice(values, (64, 64)).astype(np.uint8))
    return spoil


def _jpeg_masks(ws: Path) -> None:
    rows, cols = np.mgrid[:64, :64]
    mask = (((rows - 30) ** 2 + (cols - 35) ** 2) < 19**2).astype(np.uint8) * 255  # a disc: JPEG rings its edge
    (ws / "data" / "masks" / "a.png").unlink()
    Image.fromarray(mask).save(ws / "data" / "masks" / "a.jpg", quality=75)


def _nan_training_image(ws: Path) -> None:
    pixels = np.random.default_rng(3).random((64, 64)).astype(np.float32)
    pixels[5, 5] = np.inf
    (ws / "data" / "images" / "a.png").unlink()
    Image.fromarray(pixels).save(ws / "data" / "images" / "a.tif")


def _no_cuda(ws: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _empty_run_folder(ws: Path) -> None:
    (ws / "fresh").mkdir()


def _flipped_weights(ws: Path) -> None:
    """16 bytes of one stored weight flipped in place, as a bad disk or copy would."""
    path = ws / "run" / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    stored = read_checkpoint(path)["model"]["contracting.0.2.weight"].numpy().tobytes()
    at = data.find(stored) + 20
    data[at:at + 16] = bytes(255 - byte for byte in data[at:at + 16])
    path.write_bytes(bytes(data))


class _Payload:
    """An object whose unpickling would run code."""

    def __reduce__(self):
        return (print, ("unpickled",))


def _raw_pickle_checkpoint(ws: Path) -> None:
    import pickle  # a plain pickle (protocol 4), not torch's zip format: torch warns before it refuses

    (ws / "run" / "checkpoint.pt").write_bytes(pickle.dumps({"model": {}, "hook": _Payload()}, protocol=4))


def _edit_json(**changes) -> callable:
    """Change keys of the run's model.json (None removes one)."""
    def spoil(ws: Path) -> None:
        path = ws / "run" / "model.json"
        config = json.loads(path.read_text()) | changes
        path.write_text(json.dumps({key: value for key, value in config.items() if value is not None}))
    return spoil


def _out_of_memory(ws: Path, monkeypatch) -> None:
    import unet_course.tiling

    def predict_tiled(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: not enough memory: you "
                           "tried to allocate 36000000000 bytes.")
    monkeypatch.setattr(unet_course.tiling, "predict_tiled", predict_tiled)


@dataclass
class Case:
    name: str
    argv: str  # split on spaces; {ws} is the workspace
    status: int
    message: str  # a fragment of the error line
    spoil: callable = None
    changes: tuple[str, ...] = ()  # paths (relative to the workspace) the command may change
    patch: callable = None  # called with (workspace, monkeypatch)


PREDICT = "predict {ws}/run {ws}/images {ws}/masks --quiet"
FOLDER = "train --data {ws}/data --steps 2 --out {ws}/out " + " ".join(TINY)
TRAIN = "train " + " ".join(SYNTHETIC) + " --steps 2 --out {ws}/out"
RESUME = "train " + " ".join(SYNTHETIC) + " --out {ws}/run --resume"

CASES = [
    # predict: nothing is overwritten that the user did not name as output
    Case("predict into its input", "predict {ws}/run {ws}/images {ws}/images --quiet", 2,
         "is the input folder or inside it"),
    Case("predict into a folder inside its input", "predict {ws}/run {ws}/images {ws}/images/out --quiet", 2,
         "is the input folder or inside it"),
    Case("predict a file into its own folder", "predict {ws}/run {ws}/images/a.png {ws}/images --quiet", 2,
         "is the folder of the input a.png"),
    Case("predict a file beside another image, --overwrite", "predict {ws}/run {ws}/images/a.tif {ws}/images --quiet "
         "--overwrite", 2, "is the folder of the input a.tif; masks would mix with \\(or replace\\) the images beside",
         _twin_names),
    Case("OUTPUT below a file", "predict {ws}/run {ws}/images {ws}/spare/masks --quiet", 2,
         "OUTPUT_DIR .*spare/masks cannot be created: .*spare is a file, not a folder"),
    Case("--skip-existing and --overwrite", PREDICT + " --skip-existing --overwrite", 2, "pass one of them"),
    Case("a.png and a.tif in one input folder", PREDICT, 2, "both be written as a.png", _twin_names),
    Case("a mask already in the output", PREDICT, 2, "already holds 1 of the masks.*--overwrite", _existing_mask),
    Case("output is a file", "predict {ws}/run {ws}/images {ws}/spare --quiet", 2, "is a file"),
    # predict: inputs checked up front
    Case("NaN pixel in a float TIFF", PREDICT, 2, "b.tif holds 1 non-finite pixel", _float_tiff_with_nan),
    Case("predict --tile-size 0", PREDICT + " --tile-size 0", 2, "--tile-size must be a positive"),
    Case("predict --batch-size 0", PREDICT + " --batch-size 0", 2, "--batch-size must be at least 1"),
    Case("predict --device cuda without CUDA", PREDICT + " --device cuda", 2, "no such device", patch=_no_cuda),
    Case("predict --device nonsense", PREDICT + " --device gpu0", 2, "not a device name"),
    # predict: damaged or foreign run files fail (status 1), naming the file
    Case("truncated checkpoint", PREDICT, 1, "cannot read the checkpoint .*checkpoint.pt: the file is damaged",
         _truncated_checkpoint),
    Case("checkpoint with pickled objects", PREDICT, 1, "holds Python objects besides tensors", _pickled_checkpoint),
    Case("checkpoint of another width", PREDICT, 1, "does not fit the model in .*model.json", _wider_checkpoint),
    Case("checkpoint of a diverged run", PREDICT, 1, "NaN or infinite weights.*lower --lr", _nan_checkpoint),
    Case("model.json not JSON", PREDICT, 1, "model.json is not valid JSON", _broken_json),
    Case("model.json incomplete", PREDICT, 1, "model.json is incomplete or damaged \\(no depth\\)", _incomplete_json),
    Case("16 bytes of a weight flipped", PREDICT, 1, "checkpoint .*checkpoint.pt is damaged: its weights do not match "
         "the SHA-256", _flipped_weights),
    Case("a raw pickle as checkpoint.pt", PREDICT, 1, "holds Python objects besides tensors", _raw_pickle_checkpoint),
    Case("model.json says padding same", PREDICT, 1, "does not fit the model in .*model.json \\(padding 'same' there, "
         "'valid' in the checkpoint\\)", _edit_json(padding="same")),
    Case("model.json says depth 40", PREDICT, 1, "does not fit the model in .*\\(depth 40 there, 2 in the checkpoint",
         _edit_json(depth=40)),
    Case("model.json says base_channels 1000000", PREDICT, 1, "base_channels 1000000 there, 4 in the checkpoint",
         _edit_json(base_channels=1_000_000)),
    Case("model.json of other weights", PREDICT, 1, "model.json was written for other weights than those in",
         _edit_json(weights_sha256="0" * 64)),
    Case("predict out of memory (RAM)", PREDICT, 1, "ran out of memory \\(RAM\\); pass a smaller --tile-size",
         patch=_out_of_memory, changes=("masks",)),
    # export and evaluate: never over what they read, never below a file
    Case("export over the run's checkpoint", "export {ws}/run --format torchscript --out {ws}/run/checkpoint.pt "
         "--overwrite", 2, "is a file this export reads from the run .*--overwrite replaces earlier output, never an "
         "input"),
    Case("export over the run's model.json", "export {ws}/run --format onnx --out {ws}/run/model.json --overwrite", 2,
         "is a file this export reads"),
    Case("export --out below a file", "export {ws}/run --format onnx --out {ws}/spare/unet.onnx", 2,
         "--out .*spare/unet.onnx cannot be created: .*spare is a file"),
    Case("evaluate --out below a file", "evaluate {ws}/run {ws}/data/images {ws}/data/masks --out {ws}/spare/report "
         "--quiet", 2, "--out .*spare/report cannot be created"),
    # train: an existing run is never replaced unless asked
    Case("train into an existing run", TRAIN.replace("{ws}/out", "{ws}/run"), 2, "already holds a run.*--resume"),
    Case("--overwrite with a bad option", TRAIN.replace("{ws}/out", "{ws}/run") + " --overwrite --lr nan", 2,
         "--lr must be a finite number"),
    Case("--resume with another width", RESUME + " --steps 5 --base-channels 8", 2, "--base-channels 8 differs"),
    Case("--resume and --overwrite", RESUME + " --steps 5 --overwrite", 2, "pass one of them"),
    Case("--resume to fewer steps", RESUME + " --steps 2", 2, "--steps 2 is fewer than the 3 steps"),
    Case("--resume with nothing to resume", TRAIN + " --resume", 2, "no .*checkpoint.pt to continue from"),
    Case("--resume into an empty folder", TRAIN.replace("{ws}/out", "{ws}/fresh") + " --resume", 2,
         "no .*checkpoint.pt to continue from", _empty_run_folder),
    Case("--resume on other data", RESUME + " --steps 5 --data {ws}/data", 2,
         "--data .*data differs from the run being resumed \\(synthetic-membranes in .*model.json\\); leave --data out"),
    Case("--resume from a flipped weight", RESUME + " --steps 5", 1, "is damaged: its weights do not match",
         _flipped_weights),
    Case("--resume from a truncated checkpoint", RESUME + " --steps 5", 1, "cannot read the checkpoint",
         _truncated_checkpoint),
    Case("--resume from a checkpoint of another width", RESUME + " --steps 5", 1, "does not fit the model",
         _wider_checkpoint),
    Case("--resume with a damaged model.json", RESUME + " --steps 5", 1, "model.json is not valid JSON",
         _broken_json),
    # train: bad options, refused by our checks
    Case("--lr nan", TRAIN + " --lr nan", 2, "--lr must be a finite number above 0"),
    Case("--lr -1", TRAIN + " --lr -1", 2, "--lr must be a finite number above 0"),
    Case("--lr inf", TRAIN + " --lr inf", 2, "--lr must be a finite number above 0"),
    Case("--batch-size 0", TRAIN + " --batch-size 0", 2, "--batch-size must be at least 1"),
    Case("--momentum 1", TRAIN + " --momentum 1", 2, "--momentum must be"),
    Case("--steps 0", TRAIN.replace("--steps 2", "--steps 0"), 2, "--steps must be at least 1"),
    Case("--steps not a number", TRAIN.replace("--steps 2", "--steps two"), 2, "invalid int value: 'two'"),
    Case("--out is a file", TRAIN.replace("{ws}/out", "{ws}/spare"), 2, "--out .*spare is a file"),
    Case("--out below a file", TRAIN.replace("{ws}/out", "{ws}/spare/run"), 2, "--out .*spare/run cannot be created"),
    Case("--base-channels too large for the machine", TRAIN + " --base-channels 1000000", 2,
         "--base-channels and --depth: UNet\\(base_channels=1000000, depth=2\\) has .* parameters, .*more than this "
         "machine's"),
    Case("--data-root is a file", "train --data isbi2012 --data-root {ws}/spare --steps 1 --out {ws}/out --quiet",
         2, "--data-root: .*spare is a file"),
    Case("train --device cuda without CUDA", TRAIN + " --device cuda", 2, "no such device", patch=_no_cuda),
    # train: masks and images checked before the first step
    Case("grey-level masks 0/128/255", FOLDER, 2, "holds the values 0, 128, 255, but the model has 2 classes",
         _masks([0, 128, 255])),
    Case("masks with more classes than the model", FOLDER, 2, "holds the values 0, 1, 2, but the model has 2",
         _masks([0, 1, 2])),
    Case("JPEG masks", FOLDER, 2, "a.jpg holds the values .*JPEG compression", _jpeg_masks),
    Case("infinite pixel in a training image", FOLDER, 2, "a.tif holds 1 non-finite pixel", _nan_training_image),
    Case("training images smaller than the tile", FOLDER.replace("--tile-size 60", "--tile-size 188"), 2,
         "too small for --tile-size 188"),
    # training that goes wrong stops (status 1) and keeps the last good checkpoint
    Case("training diverges", TRAIN.replace("--steps 2", "--steps 6") + " --lr 1e30", 1,
         "training diverged at step 2 .*keeps the last good step; train a new run with a lower learning rate: the same "
         "command with --overwrite and --lr 1e\\+29", changes=("out",)),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_refusal(case, ws, capsys, monkeypatch):
    if case.spoil is not None:
        case.spoil(ws)
    if case.patch is not None:
        case.patch(ws, monkeypatch)
    before = _snapshot(ws)
    argv = case.argv.format(ws=ws).split()
    capsys.readouterr()
    try:
        status = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        status = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("unet-course ")]
    assert status == case.status, err
    assert lines and lines[0].startswith(f"unet-course {argv[0]}: error: "), err
    assert re.search(case.message, lines[0]), lines[0]
    assert not any("Traceback" in line for line in err) and "weights_only=False" not in "\n".join(err)
    if case.status == 2 or argv[0] != "train":
        assert err == lines[:1], f"a refusal is one line: {err}"
    after = _snapshot(ws)
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    outside = {path for path in changed if not any(path == c or path.startswith(c + "/") for c in case.changes)}
    assert not outside, f"changed outside the named output: {sorted(outside)}"


def test_a_diverged_run_keeps_its_last_good_checkpoint(ws, capsys, monkeypatch):
    import unet_course.train

    monkeypatch.setattr(unet_course.train, "paper_loss", lambda *tensors: torch.tensor(float("nan")))
    argv = ["train", *SYNTHETIC, "--out", str(ws / "run"), "--resume", "--steps", "9", "--checkpoint-every", "100"]
    before = _snapshot(ws / "run")
    assert main(argv) == 1
    assert "training diverged" in capsys.readouterr().err
    assert _snapshot(ws / "run") == before  # checkpoint, history and model.json as they were


def test_overwrite_replaces_a_mask_and_only_with_it(ws):
    _existing_mask(ws)
    before = _snapshot(ws)
    assert main(["predict", str(ws / "run"), str(ws / "images"), str(ws / "masks"), "--quiet", "--overwrite"]) == 0
    after = _snapshot(ws)
    assert {p for p in after if before.get(p) != after[p]} == {"masks/a.png", "masks/b.png"}
    assert set(after) - set(before) == {"masks/b.png"}


def test_overwrite_starts_a_new_run(ws):
    old = (ws / "run" / "checkpoint.pt").read_bytes()
    assert main(["train", *SYNTHETIC, "--steps", "2", "--out", str(ws / "run"), "--overwrite"]) == 0
    assert (ws / "run" / "checkpoint.pt").read_bytes() != old
    assert json.loads((ws / "run" / "history.json").read_text())["step"] == [1, 2]


def test_resume_to_the_steps_done_changes_nothing_of_the_history(ws):
    history = json.loads((ws / "run" / "history.json").read_text())
    assert main(["train", *SYNTHETIC, "--out", str(ws / "run"), "--resume", "--steps", "3"]) == 0
    assert json.loads((ws / "run" / "history.json").read_text())["step"] == history["step"] == [1, 2, 3]


def _save_16_bit(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint16)).save(path)


def test_16_bit_tiffs_read_at_their_range_in_training_and_prediction(ws):
    from unet_course.data import ImageMaskFolder

    eight = np.asarray(Image.open(ws / "data" / "images" / "a.png"))
    _save_16_bit(ws / "data" / "images" / "a.tif", eight.astype(np.uint16) * 257)  # the same image, 16-bit
    (ws / "data" / "images" / "a.png").unlink()
    image, _ = ImageMaskFolder(ws / "data" / "images", ws / "data" / "masks", num_classes=2)[0]
    assert torch.equal(image[0], torch.from_numpy(eight / np.float32(255)))  # not clipped to 1.0
    assert main(["train", "--data", str(ws / "data"), "--steps", "2", "--out", str(ws / "out"), *TINY]) == 0

    shutil.copy(ws / "data" / "images" / "a.tif", ws / "images" / "a.tif")  # 16-bit beside 8-bit: same masks
    (ws / "images" / "a.png").unlink()
    _png(ws / "eight" / "a.png", eight)
    assert main(["predict", str(ws / "run"), str(ws / "images"), str(ws / "m16"), "--quiet"]) == 0
    assert main(["predict", str(ws / "run"), str(ws / "eight"), str(ws / "m8"), "--quiet"]) == 0
    assert np.array_equal(np.asarray(Image.open(ws / "m16" / "a.png")), np.asarray(Image.open(ws / "m8" / "a.png")))


# --- the library raises the same checks ---------------------------------------------------------

def _fit(**options):
    from unet_course.data import SyntheticMembranes
    from unet_course.models.unet import UNet
    from unet_course.train import fit

    torch.manual_seed(0)
    data = options.pop("data", None) or SyntheticMembranes(2, 64, seed=0)
    return fit(UNet(base_channels=4, depth=2), data, **{"steps": 1, "tile_size": 60, "progress": False, **options})


def _with_masks(value):
    from unet_course.data import SyntheticMembranes

    image, mask = SyntheticMembranes(1, 64, seed=0)[0]
    return [(image, mask * value)]


def _tiled(image, **options):
    from unet_course.models.unet import UNet
    from unet_course.tiling import predict_tiled

    return predict_tiled(UNet(base_channels=4, depth=2), image, **options)


def _loss(target_value=0, weight_value=1.0, **options):
    from unet_course.losses import weighted_cross_entropy

    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[0, 0, 0] = target_value
    weight = torch.ones(1, 4, 4)
    weight[0, 1, 1] = weight_value
    return weighted_cross_entropy(torch.randn(1, 2, 4, 4), target, weight, **options)


LIBRARY = [
    ("fit lr nan", lambda: _fit(lr=float("nan")), ValueError, "lr must be a finite number above 0"),
    ("fit lr -1", lambda: _fit(lr=-1.0), ValueError, "lr must be a finite number above 0"),
    ("fit batch_size 0", lambda: _fit(batch_size=0), ValueError, "batch_size must be at least 1"),
    ("fit w0 inf", lambda: _fit(w0=float("inf"), loss_weights="unet"), ValueError, "w0 must be finite"),
    ("fit sigma nan", lambda: _fit(border_sigma=float("nan")), ValueError, "border_sigma must be finite"),
    ("fit masks 0/255, two classes", lambda: _fit(data=_with_masks(255)), ValueError,
     r"mask 0 of the training data holds the values 0, 255, but the model has 2 classes"),
    ("fit negative loss weights", lambda: _fit(data=[(*_with_masks(1)[0], -torch.ones(64, 64))]), ValueError,
     "negative or non-finite loss weights"),
    ("fit NaN image", lambda: _fit(data=[(torch.full((1, 64, 64), float("nan")), _with_masks(1)[0][1])]),
     TrainingDiverged, "diverged at step 1"),
    ("loss target -100 without ignore_index", lambda: _loss(-100), ValueError, r"outside the 2 classes 0..1: \[-100\]"),
    ("loss target 255", lambda: _loss(255), ValueError, r"outside the 2 classes 0..1: \[255\]"),
    ("loss negative weight", lambda: _loss(weight_value=-1.0), ValueError, "weight_map holds negative, NaN"),
    ("loss NaN weight", lambda: _loss(weight_value=float("nan")), ValueError, "weight_map holds negative, NaN"),
    ("class weights NaN", lambda: class_weight_map(np.array([[0, 1]]), [1.0, np.nan]),
     ValueError, "class_weights must be finite and >= 0"),
    ("class weights negative", lambda: class_weight_map(np.array([[0, 1]]), [1, -2]),
     ValueError, "class_weights must be finite and >= 0"),
    ("weight map w0 inf", lambda: unet_weight_map(np.ones((8, 8), int), w0=np.inf),
     ValueError, "w0 must be finite"),
    ("predict_tiled empty image", lambda: _tiled(torch.zeros(1, 0, 0)), ValueError, "image is empty"),
    ("predict_tiled tile 0", lambda: _tiled(torch.zeros(1, 20, 20), tile_size=0), ValueError,
     "tile_size must be a positive"),
    ("predict_tiled NaN pixel", lambda: _tiled(torch.full((1, 20, 20), float("nan"))), ValueError,
     "NaN or infinite values"),
]


@pytest.mark.parametrize("call, error, message", [row[1:] for row in LIBRARY], ids=[row[0] for row in LIBRARY])
def test_library_refusal(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_ignore_index_skips_what_it_names():
    assert torch.isfinite(_loss(-100, ignore_index=-100))


def test_fit_resume_checks(tmp_path):
    checkpoint = tmp_path / "run.pt"
    with pytest.warns(UserWarning, match="no checkpoint at .*run.pt yet: training starts at step 0"):
        _fit(steps=2, checkpoint=checkpoint, resume=True)
    saved = checkpoint.read_bytes()
    with pytest.raises(ValueError, match="steps 1 is fewer than the 2 steps .*run.pt already holds; .*pass 2 or more"):
        _fit(steps=1, checkpoint=checkpoint, resume=True)
    with pytest.raises(ValueError, match="holds the values"):
        _fit(steps=3, checkpoint=checkpoint, resume=True, data=_with_masks(3))
    assert checkpoint.read_bytes() == saved


def test_folder_refusals(ws):
    from unet_course.data import ImageMaskFolder

    _twin_names(ws)
    with pytest.raises(ValueError, match="share the name 'a'"):
        ImageMaskFolder(ws / "images", ws / "images")
    colour = np.zeros((64, 64, 3), np.uint8)
    colour[..., 0] = 255
    _png(ws / "data" / "masks" / "a.png", colour)
    with pytest.raises(ValueError, match="a.png is a colour image"):
        ImageMaskFolder(ws / "data" / "images", ws / "data" / "masks")[0]


# --- what a refusal row cannot show ----------------------------------------------------------------

def test_ctrl_c_keeps_whole_masks_and_skip_existing_continues(ws, capsys, monkeypatch):
    import unet_course.tiling

    real, calls = unet_course.tiling.predict_tiled, []

    def interrupted_on_the_second_image(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(unet_course.tiling, "predict_tiled", interrupted_on_the_second_image)
    argv = ["predict", str(ws / "run"), str(ws / "images"), str(ws / "masks"), "--quiet"]
    assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "unet-course predict: interrupted; every mask written is complete (none is half-written); continue with the "
        "same command plus --skip-existing"]
    assert sorted(path.name for path in (ws / "masks").iterdir()) == ["a.png"]  # whole, and no .part file
    first = (ws / "masks" / "a.png").read_bytes()
    monkeypatch.setattr(unet_course.tiling, "predict_tiled", real)
    assert main(argv) == 2 and "--skip-existing to keep them" in capsys.readouterr().err
    assert main(argv + ["--skip-existing"]) == 0
    assert "wrote 1 mask(s)" in capsys.readouterr().err
    assert sorted(path.name for path in (ws / "masks").iterdir()) == ["a.png", "b.png"]
    assert (ws / "masks" / "a.png").read_bytes() == first


@pytest.mark.parametrize("pixels, dtype, said", [
    (255, np.float32, r"b.tif holds 32-bit float pixels from 0 to 255, read as stored, but the network expects 0–1"),
    (4000, np.uint16, r"b.tif is a 16-bit image whose pixels reach only 4000 of 65535 \(12-bit camera data\?\)"),
])
def test_an_image_far_from_the_trained_range_is_read_as_stored_with_one_warning(ws, capsys, pixels, dtype, said):
    image = np.asarray(Image.open(ws / "images" / "b.png")).astype(np.float64) / 255 * pixels
    (ws / "images" / "b.png").unlink()
    Image.fromarray(image.astype(dtype)).save(ws / "images" / "b.tif")
    capsys.readouterr()
    assert main(["predict", str(ws / "run"), str(ws / "images"), str(ws / "masks"), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and re.match(f"unet-course predict: warning: .*{said}", err[0]), err
    assert err[1].startswith("wrote 2 mask(s)")  # normalising is the user's choice: the file is read as documented


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_written_files_get_the_mode_of_the_umask(ws, umask, mode, monkeypatch):
    import os

    previous = os.umask(umask)
    try:
        assert main(["train", *SYNTHETIC, "--steps", "1", "--out", str(ws / "out")]) == 0
        assert main(["predict", str(ws / "out"), str(ws / "images"), str(ws / "masks"), "--quiet"]) == 0
    finally:
        os.umask(previous)
    written = [*(ws / "out").iterdir(), *(ws / "masks").iterdir()]
    assert len(written) == 5 and {path.stat().st_mode & 0o777 for path in written} == {mode}


def test_a_run_carries_the_sha256_of_its_weights(ws):
    from unet_course.runs import RunError, load_run, weights_sha256

    state = read_checkpoint(ws / "run" / "checkpoint.pt")
    config = json.loads((ws / "run" / "model.json").read_text())
    assert state["model_sha256"] == config["weights_sha256"] == weights_sha256(state["model"])
    channels_last = {key: value.contiguous(memory_format=torch.channels_last) if value.ndim == 4 else value
                     for key, value in state["model"].items()}
    assert weights_sha256(channels_last) == state["model_sha256"]  # the values, not their layout in memory
    _flipped_weights(ws)
    with pytest.raises(RunError, match=r"checkpoint .* is damaged: its weights do not match the SHA-256"):
        load_run(ws / "run")


def test_only_rank_0_speaks_under_torchrun(ws, capsys, monkeypatch):
    import unet_course.cli

    monkeypatch.setattr(unet_course.cli, "QUIET_RANK_WAIT_S", 0.0)
    argv = ["predict", str(ws / "run"), str(ws / "images"), str(ws / "images"), "--quiet"]
    monkeypatch.setenv("RANK", "1")
    assert main(argv) == 2 and capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 2 and "is the input folder" in capsys.readouterr().err


def test_the_advice_after_a_divergence_is_a_command_that_works(ws, capsys, monkeypatch):
    import unet_course.train

    argv = ["train", *SYNTHETIC, "--out", str(ws / "run"), "--resume", "--steps", "5"]
    with monkeypatch.context() as patched:
        patched.setattr(unet_course.train, "paper_loss", lambda *tensors: torch.tensor(float("nan")))
        assert main(argv) == 1
    advice = re.search(r"the same command (with --overwrite instead of --resume) and (--lr \S+) \(now",
                       capsys.readouterr().err)
    assert advice and advice[2] == "--lr 0.0003"  # a tenth of the smoke budget's 0.003
    advised = [arg for arg in argv if arg != "--resume"] + ["--overwrite", *advice[2].split()]
    assert main(advised) == 0
    assert json.loads((ws / "run" / "model.json").read_text())["lr"] == 0.0003


def test_resume_continues_on_the_runs_own_folder_of_data(ws, monkeypatch):
    argv = ["train", "--data", str(ws / "data"), "--steps", "1", "--out", str(ws / "out"), *TINY]
    assert main(argv) == 0
    assert json.loads((ws / "out" / "model.json").read_text())["data"] == str((ws / "data").resolve())
    monkeypatch.chdir(ws)  # the same folder named relative to another working directory
    assert main(["train", "--data", "data", "--steps", "2", "--out", "out", "--resume", *TINY]) == 0
    assert main(["train", "--steps", "3", "--out", "out", "--resume", *TINY]) == 0  # --data left out: the run's
    assert json.loads((ws / "out" / "model.json").read_text())["data"] == str((ws / "data").resolve())
