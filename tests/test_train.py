"""fit(): the loss falls, runs repeat, checkpoints are atomic and resume is exact."""

import json

import numpy as np
import pytest
import torch

from unet_course.data import SyntheticMembranes
from unet_course.models.unet import UNet
from unet_course.train import History, fit, load_checkpoint, paper_augmentation, prepare_weights, save_checkpoint


def _model(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(base_channels=4, depth=2)


DATA = SyntheticMembranes(length=3, size=64, seed=0)


def test_fit_records_history_and_leaves_eval_mode():
    model = _model()
    history = fit(model, DATA, DATA, steps=4, tile_size=60, eval_every=2, progress=False)
    assert history.step == [1, 2, 3, 4] and len(history.loss) == 4
    assert history.val_step == [2, 4] and all(0 <= v <= 1 for v in history.val_iou)
    assert not model.training


def test_loss_falls_on_an_easy_problem():
    model = _model()
    history = fit(model, DATA, steps=40, tile_size=60, augment=False, progress=False)
    assert np.mean(history.loss[-10:]) < 0.7 * np.mean(history.loss[:5])


def test_cpu_runs_repeat_exactly():
    first = fit(_model(), DATA, steps=5, tile_size=60, progress=False, seed=3)
    second = fit(_model(), DATA, steps=5, tile_size=60, progress=False, seed=3)
    assert first.loss == second.loss


def test_resume_continues_exactly(tmp_path):
    straight = fit(_model(), DATA, steps=6, tile_size=60, progress=False, seed=1)
    checkpoint = tmp_path / "run.pt"
    fit(_model(), DATA, steps=3, tile_size=60, progress=False, seed=1, checkpoint=checkpoint)
    assert load_checkpoint(checkpoint)["step"] == 3
    resumed = fit(_model(seed=99), DATA, steps=6, tile_size=60, progress=False, seed=1,
                  checkpoint=checkpoint, resume=True)
    assert resumed.loss == straight.loss  # the earlier steps come back from the checkpoint, the rest repeat
    assert load_checkpoint(checkpoint)["step"] == 6


def test_checkpoint_is_atomic_and_safe(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint(path, model={"w": torch.ones(2)}, step=1)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left
    assert load_checkpoint(path)["step"] == 1
    torch.save({"evil": object()}, tmp_path / "pickled.pt")
    with pytest.raises(Exception):  # weights_only=True refuses arbitrary objects
        load_checkpoint(tmp_path / "pickled.pt")
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="not a valid input size.*nearest valid"):
        fit(_model(), DATA, steps=1, tile_size=61, progress=False)
    with pytest.raises(ValueError, match="resume=True needs the checkpoint"):
        fit(_model(), DATA, steps=1, resume=True, progress=False)
    too_big = _model().valid_input_size(120)  # images are 64 + 2 × 20 mirrored pixels
    with pytest.raises(ValueError, match=f"tile is {too_big}"):
        fit(_model(), DATA, steps=1, tile_size=too_big, progress=False)
    with pytest.raises(ValueError, match="weights must be"):
        prepare_weights(torch.zeros(4, 4, dtype=torch.long), "heavy")


def test_same_size_models_train_too():
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=2, padding="same")
    history = fit(model, DATA, DATA, steps=2, tile_size=32, eval_every=2, progress=False)
    assert len(history.loss) == 2 and len(history.val_iou) == 1


def test_images_smaller_than_the_margin_are_mirrored():
    """The paper's margin (92 px) exceeds these 40-px images: mirror padding reflects again."""
    torch.manual_seed(0)
    model = UNet(base_channels=4, depth=4)
    tiny = SyntheticMembranes(length=1, size=40, seed=0)
    history = fit(model, tiny, tiny, steps=1, tile_size=188, progress=False)
    assert len(history.loss) == 1 and len(history.val_iou) == 1


def test_prepare_weights_kinds():
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[4:14, 4:14] = 1
    mask[15:28, 4:14] = 1  # two cells, a one-pixel gap
    plain, balanced, paper = (prepare_weights(mask, kind) for kind in (None, "balanced", "unet"))
    assert torch.equal(plain, torch.ones(32, 32))
    assert balanced[mask == 1].mean() != balanced[mask == 0].mean()
    assert paper[14, 8] > balanced[14, 8] + 1  # the gap between the cells weighs more


def test_augmentation_keeps_alignment():
    images = torch.rand(2, 1, 32, 32)
    masks = (images[:, 0] > 0.5).long()
    weights = torch.ones(2, 32, 32)
    out_images, out_masks, out_weights = paper_augmentation(sigma=0.0)(images, masks, weights, torch.Generator().manual_seed(0))
    assert torch.equal((out_images[:, 0] > 0.5).long(), out_masks)


def test_history_round_trip(tmp_path):
    history = History(step=[1, 2, 3], loss=[3.0, 2.0, 1.0])
    history.save(tmp_path / "h.json")
    assert History.load(tmp_path / "h.json") == history
    assert np.allclose(history.smoothed_loss(window=2), [3.0, 2.5, 1.5])
    assert json.loads((tmp_path / "h.json").read_text())["loss"] == [3.0, 2.0, 1.0]


def test_load_checkpoint_names_a_damaged_file_and_never_suggests_unsafe_loading(tmp_path):
    import pickle

    from unet_course.train import CheckpointError, load_checkpoint, save_checkpoint

    path = tmp_path / "run.pt"
    save_checkpoint(path, model={"w": torch.zeros(3)}, step=1)
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(CheckpointError, match=f"cannot read the checkpoint {path}"):
        load_checkpoint(path)
    with open(path, "wb") as file:
        pickle.dump({"step": 1, "hook": print}, file)  # a callable: weights_only refuses it
    with pytest.raises(CheckpointError, match="could run code") as raised:
        load_checkpoint(path)
    assert "weights_only=False" not in str(raised.value)
