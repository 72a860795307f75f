"""The ``unet-course`` command line: help, train, resume, predict, and one-line errors."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unet_course.cli import build_parser, main
from unet_course.runs import read_checkpoint

TINY = ["--data", "synthetic-membranes", "--base-channels", "4", "--depth", "2", "--tile-size", "60", "--images", "2",
        "--image-size", "64", "--held-out", "1", "--quiet"]


def _options(parser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _write_pngs(folder: Path, sizes, levels: int = 256) -> None:
    """Random 8-bit images; ``levels=2`` gives black-and-white (0/255) masks."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index, (height, width) in enumerate(sizes):
        pixels = rng.integers(0, levels, (height, width)) * (255 // (levels - 1))
        Image.fromarray(pixels.astype(np.uint8)).save(folder / f"im{index}.png")


def test_help_lists_every_option(capsys):
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    for name in ("train", "predict", "evaluate", "export"):
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0
        shown = capsys.readouterr().out
        options = _options(subcommands[name]) - {"-h"}
        assert options and all(option in shown for option in options)
        helps = [action.help for action in subcommands[name]._actions]
        assert all(helps), f"{name}: every option and argument explains itself"
    assert {"--data", "--data-root", "--steps", "--base-channels", "--depth", "--tile-size", "--lr", "--out", "--resume",
            "--budget", "--seed"} <= _options(subcommands["train"])
    assert {"--tta", "--tile-size"} <= _options(subcommands["predict"])


def test_installed_console_script_shows_help():
    script = Path(sys.executable).with_name("unet-course")
    if not script.exists():
        pytest.skip("the console script is not installed (pip install -e .)")
    result = subprocess.run([str(script), "train", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--resume" in result.stdout and "isbi2012" in result.stdout


def test_train_writes_checkpoint_history_and_config(tiny_run):
    assert {p.name for p in tiny_run.iterdir()} >= {"checkpoint.pt", "history.json", "model.json"}
    history = json.loads((tiny_run / "history.json").read_text())
    assert history["step"] == [1, 2, 3] and len(history["loss"]) == 3 and history["val_step"][-1] == 3
    config = json.loads((tiny_run / "model.json").read_text())
    assert (config["base_channels"], config["depth"], config["tile_size"]) == (4, 2, 60)
    assert 0 < config["threshold"] < 1  # chosen on the training images after training
    assert read_checkpoint(tiny_run / "checkpoint.pt")["step"] == 3


def test_train_takes_the_budgets_schedule_unless_told(tmp_path):
    """--budget supplies lr, schedule and loss weights as chapter 6 uses them; options override them."""
    from unet_course.budget import TRAINING_RUNS

    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "2", "--budget", "cpu", "--out", str(out)]) == 0
    config = json.loads((out / "model.json").read_text())
    cpu = TRAINING_RUNS["cpu"]
    assert (config["lr"], config["lr_schedule"], config["loss_weights"]) == (cpu["lr"], cpu["lr_schedule"], cpu["loss_weights"])
    last_lr = read_checkpoint(out / "checkpoint.pt")["optimizer"]["param_groups"][0]["lr"]
    assert last_lr < cpu["lr"] if cpu["lr_schedule"] == "cosine" else last_lr == cpu["lr"]
    assert main(["train", *TINY, "--steps", "2", "--budget", "cpu", "--lr", "0.001", "--lr-schedule", "constant",
                 "--loss-weights", "none", "--out", str(out), "--overwrite"]) == 0
    config = json.loads((out / "model.json").read_text())
    assert (config["lr"], config["lr_schedule"], config["loss_weights"]) == (0.001, "constant", None)


def test_resume_continues_to_the_total(tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    first = json.loads((out / "history.json").read_text())["loss"]
    assert main(["train", *TINY, "--steps", "5", "--out", str(out), "--resume"]) == 0
    history = json.loads((out / "history.json").read_text())
    assert history["step"] == [1, 2, 3, 4, 5] and history["loss"][:3] == first
    assert read_checkpoint(out / "checkpoint.pt")["step"] == 5
    assert main(["train", *TINY, "--steps", "6", "--out", str(out), "--resume", "--base-channels", "8"]) == 2


def test_predict_writes_one_mask_per_image(tiny_run, tmp_path):
    _write_pngs(tmp_path / "in", [(50, 70), (40, 30)])
    assert main(["predict", str(tiny_run), str(tmp_path / "in"), str(tmp_path / "out"), "--quiet"]) == 0
    masks = sorted((tmp_path / "out").iterdir())
    assert [m.name for m in masks] == ["im0.png", "im1.png"]
    arrays = [np.asarray(Image.open(m)) for m in masks]
    assert [a.shape for a in arrays] == [(50, 70), (40, 30)]
    assert all(set(np.unique(a).tolist()) <= {0, 255} for a in arrays)


def test_predict_takes_a_published_name_where_it_takes_a_run(tmp_path, monkeypatch, capsys):
    from unet_course import pretrained, pretrained_config
    from unet_course.tiling import predict_tiled

    _write_pngs(tmp_path / "in", [(48, 52)])
    assert main(["predict", "isbi2012-cpu", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet", "--no-tta"]) == 0
    written = np.asarray(Image.open(tmp_path / "out" / "im0.png"))
    image = torch.from_numpy(np.asarray(Image.open(tmp_path / "in" / "im0.png"), dtype=np.float32) / 255)[None]
    threshold = pretrained_config("isbi2012-cpu")["threshold"]
    expected = (predict_tiled(pretrained("isbi2012-cpu"), image, tile_size=pretrained_config()["tile_size"])[1]
                > threshold).numpy() * 255
    assert np.array_equal(written, expected)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "isbi2012-cpu").mkdir()  # a folder of that name is a run, as everywhere else
    assert main(["predict", "isbi2012-cpu", "in", "again"]) == 2
    assert "no checkpoint at isbi2012-cpu/checkpoint.pt" in capsys.readouterr().err


@pytest.mark.parametrize("flags, tta", [([], True), (["--tta"], True), (["--no-tta"], False)])
def test_predict_averages_the_eight_orientations_unless_told_not_to(tiny_run, tmp_path, flags, tta):
    from unet_course.runs import model_from_config
    from unet_course.tiling import predict_tiled

    _write_pngs(tmp_path / "in", [(48, 52)])
    config = json.loads((tiny_run / "model.json").read_text())
    model = model_from_config(config)
    model.load_state_dict(read_checkpoint(tiny_run / "checkpoint.pt")["model"])
    image = torch.from_numpy(np.asarray(Image.open(tmp_path / "in" / "im0.png"), dtype=np.float32) / 255)[None]
    # built without predict_tiled's own averaging: each of the 8 flipped/turned images predicted plainly, turned back
    views = []
    for turns, flip in [(turns, flip) for flip in (False, True) for turns in range(4)] if tta else [(0, False)]:
        seen = torch.rot90(image.flip(-1) if flip else image, turns, dims=(-2, -1))
        back = torch.rot90(predict_tiled(model, seen, tile_size=60), -turns, dims=(-2, -1))
        views.append(back.flip(-1) if flip else back)
    probability = torch.stack(views).mean(0)[1]
    # the run's threshold, set where it splits this image in half, so that any other averaging shows in the mask
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    threshold = float(probability.median())
    (run / "model.json").write_text(json.dumps(config | {"threshold": threshold}))
    assert main(["predict", str(run), str(tmp_path / "in"), str(tmp_path / "out"), "--quiet", *flags]) == 0
    expected = (probability > threshold).numpy() * 255  # the run's threshold, not argmax
    written = np.asarray(Image.open(tmp_path / "out" / "im0.png"))
    clear = (probability - threshold).abs().numpy() > 1e-5  # float rounding may tip pixels on the cut
    assert clear.mean() > 0.99 and np.array_equal(written[clear], expected[clear])
    assert 0.4 < (written == 255).mean() < 0.6


def test_predict_reads_every_page_of_a_tiff(tiny_run, tmp_path):
    pages = [Image.fromarray(np.full((36, 44), 40 * k, dtype=np.uint8)) for k in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    assert main(["predict", str(tiny_run), str(tmp_path / "stack.tif"), str(tmp_path / "out"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["stack_000.png", "stack_001.png", "stack_002.png"]


def _error(argv, capsys, status: int = 2) -> str:
    assert main(argv) == status
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


def test_errors_are_one_line_with_status_2(tiny_run, tmp_path, capsys):
    _write_pngs(tmp_path / "in", [(40, 40)])
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "bad.png").write_text("not an image")
    out = str(tmp_path / "out")
    assert "no checkpoint" in _error(["predict", str(tmp_path / "absent"), str(tmp_path / "in"), out], capsys)
    assert "does not exist" in _error(["predict", str(tiny_run), str(tmp_path / "nothing"), out], capsys)
    assert "no images" in _error(["predict", str(tiny_run), str(tmp_path / "empty"), out], capsys)
    assert "bad.png" in _error(["predict", str(tiny_run), str(tmp_path / "broken"), out, "--quiet"], capsys)
    assert "not a folder" in _error(["train", "--data", str(tmp_path / "absent"), "--steps", "1"], capsys)
    assert "no images/ folder" in _error(["train", "--data", str(tmp_path / "empty"), "--steps", "1"], capsys)
    assert "not a valid input size" in _error(["train", *TINY, "--tile-size", "61", "--steps", "1"], capsys)


def test_train_on_a_folder_with_an_unreadable_image(tmp_path, capsys):
    _write_pngs(tmp_path / "data" / "images", [(64, 64), (64, 64)])
    _write_pngs(tmp_path / "data" / "masks", [(64, 64)], levels=2)
    (tmp_path / "data" / "masks" / "im1.png").write_text("not an image")
    message = _error(["train", "--data", str(tmp_path / "data"), "--base-channels", "4", "--depth", "2", "--tile-size", "60",
                      "--steps", "1", "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert "im1.png" in message


def test_train_on_isbi_without_data_fails_clearly(tmp_path, capsys, monkeypatch):
    def offline(*args, **kwargs):
        from unet_course.data import DownloadError

        raise DownloadError("offline")

    monkeypatch.setattr("unet_course.data.isbi.download_file", offline)
    argv = ["train", "--data", "isbi2012", "--data-root", str(tmp_path), "--steps", "1", "--quiet"]
    assert "offline" in _error(argv, capsys, status=1)  # a failure, not a mistake in the command


def test_train_on_isbi_fetches_the_missing_slices(isbi_root, tmp_path, monkeypatch):
    monkeypatch.setenv("UNET_COURSE_DATA_MIRROR", isbi_root.parent.as_uri())
    partial = tmp_path / "data" / "isbi2012"
    shutil.copytree(isbi_root, partial)
    for path in ("image/3.png", "label/27.png"):  # one training slice, one held-out slice
        (partial / path).unlink()
    argv = ["train", "--data", "isbi2012", "--data-root", str(tmp_path / "data"), "--base-channels", "4", "--depth", "2",
            "--tile-size", "60", "--steps", "1", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(argv) == 0
    assert (partial / "image" / "3.png").exists() and (partial / "label" / "27.png").exists()


def test_debug_shows_the_traceback(tmp_path):
    argv = ["predict", str(tmp_path / "absent"), str(tmp_path), str(tmp_path / "out")]
    assert main(argv) == 2
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        main([*argv, "--debug"])


@pytest.mark.parametrize("option, value, argument", [
    ("--lr", "nan", {"lr": float("nan")}), ("--momentum", "1", {"momentum": 1.0}),
    ("--batch-size", "0", {"batch_size": 0}), ("--num-workers", "-2", {"num_workers": -2}),
    ("--eval-every", "0", {"eval_every": 0}), ("--checkpoint-every", "0", {"checkpoint_every": 0}),
    ("--steps", "0", {"steps": 0}),
])
def test_train_refuses_in_fits_own_words(option, value, argument, tmp_path, capsys):
    """fit's checks are the only ones: the command line says what fit says, with the option's name."""
    from unet_course.train import check_fit_arguments

    with pytest.raises(ValueError) as raised:
        check_fit_arguments(**({"steps": 10, "lr": 0.01} | argument))
    assert main(["train", *TINY, "--out", str(tmp_path / "run"), option, value]) == 2
    name = option[2:].replace("-", "_")  # fit's name of the option
    assert str(raised.value).startswith(name)
    assert capsys.readouterr().err == f"unet-course train: error: {option}{str(raised.value)[len(name):]}\n"
    assert not (tmp_path / "run").exists()


def test_gray_values_flag_trains_with_them_and_excludes_no_augment(tmp_path, capsys):
    from unet_course.cli.train import _augmentation

    parser = build_parser()
    assert _augmentation(parser.parse_args(["train", "--out", "x"])) is True  # the paper's geometry only
    assert _augmentation(parser.parse_args(["train", "--out", "x", "--no-augment"])) is False
    assert callable(_augmentation(parser.parse_args(["train", "--out", "x", "--gray-values"])))
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["train", "--out", "x", "--gray-values", "--no-augment"])
    assert exited.value.code == 2 and "not allowed with" in capsys.readouterr().err
    assert main(["train", *TINY, "--steps", "2", "--out", str(tmp_path / "run"), "--gray-values"]) == 0
    assert (tmp_path / "run" / "checkpoint.pt").exists()
