"""fit(): the loss falls, runs repeat, checkpoints are atomic and resume is exact."""

import json

import numpy as np
import pytest
import torch

from unet_course.data import SyntheticMembranes
from unet_course.models.unet import UNet
from unet_course.batches import loss_weight_map, paper_augmentation
from unet_course.runs import History, RunError, read_checkpoint, write_checkpoint
from unet_course.train import fit


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


@pytest.mark.parametrize("num_workers, losses", [(None, [5.453696250915527, 3.4075117111206055, 0.7125852704048157]),
                                                  (0, [7.470808506011963, 2.2986643314361572, 0.42505398392677307])])
def test_a_seeded_run_gives_the_losses_it_always_gave(num_workers, losses):
    """Pinned from the training loop as chapter 6 ran it, in memory and streamed: moving code must not move a draw.

    The tolerance allows another CPU's float rounding; another crop, flip or deformation changes the losses by far more.
    """
    history = fit(_model(), SyntheticMembranes(3, 96, seed=1), steps=3, tile_size=60, num_workers=num_workers,
                  progress=False, seed=3, loss_weights="unet")
    assert history.loss == pytest.approx(losses, rel=1e-3)


def test_resume_continues_exactly(tmp_path):
    straight = fit(_model(), DATA, steps=6, tile_size=60, progress=False, seed=1)
    checkpoint = tmp_path / "run.pt"
    fit(_model(), DATA, steps=3, tile_size=60, progress=False, seed=1, checkpoint=checkpoint)
    assert read_checkpoint(checkpoint)["step"] == 3
    resumed = fit(_model(seed=99), DATA, steps=6, tile_size=60, progress=False, seed=1,
                  checkpoint=checkpoint, resume=True)
    assert resumed.loss == straight.loss  # the earlier steps come back from the checkpoint, the rest repeat
    assert read_checkpoint(checkpoint)["step"] == 6


def test_checkpoint_is_atomic_and_safe(tmp_path):
    path = tmp_path / "c.pt"
    write_checkpoint(path, model={"w": torch.ones(2)}, step=1)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary left
    assert read_checkpoint(path)["step"] == 1
    torch.save({"evil": object()}, tmp_path / "pickled.pt")
    with pytest.raises(RunError, match="could run code"):  # weights_only=True refuses arbitrary objects
        read_checkpoint(tmp_path / "pickled.pt")
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        read_checkpoint(tmp_path / "absent.pt")


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="not a valid input size.*nearest valid"):
        fit(_model(), DATA, steps=1, tile_size=61, progress=False)
    with pytest.raises(ValueError, match="resume=True needs the checkpoint"):
        fit(_model(), DATA, steps=1, resume=True, progress=False)
    too_big = _model().valid_input_size(120)  # images are 64 + 2 × 20 mirrored pixels
    with pytest.raises(ValueError, match=f"tile is {too_big}"):
        fit(_model(), DATA, steps=1, tile_size=too_big, progress=False)
    with pytest.raises(ValueError, match="weights must be"):
        loss_weight_map(torch.zeros(4, 4, dtype=torch.long), "heavy")


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


def test_loss_weight_map_kinds():
    mask = torch.zeros(32, 32, dtype=torch.long)
    mask[4:14, 4:14] = 1
    mask[15:28, 4:14] = 1  # two cells, a one-pixel gap
    plain, balanced, paper = (loss_weight_map(mask, kind) for kind in (None, "balanced", "unet"))
    assert torch.equal(plain, torch.ones(32, 32))
    assert balanced[mask == 1].mean() != balanced[mask == 0].mean()
    assert paper[14, 8] > balanced[14, 8] + 1  # the gap between the cells weighs more


def test_augmentation_keeps_alignment():
    images = torch.rand(2, 1, 32, 32)
    masks = (images[:, 0] > 0.5).long()
    weights = torch.ones(2, 32, 32)
    out_images, out_masks, out_weights = paper_augmentation(elastic_sigma=0.0)(images, masks, weights, torch.Generator().manual_seed(0))
    assert torch.equal((out_images[:, 0] > 0.5).long(), out_masks)


def test_history_round_trip(tmp_path):
    history = History(step=[1, 2, 3], loss=[3.0, 2.0, 1.0])
    history.save(tmp_path / "h.json")
    assert History.load(tmp_path / "h.json") == history
    assert np.allclose(history.smoothed_loss(window=2), [3.0, 2.5, 1.5])
    assert json.loads((tmp_path / "h.json").read_text())["loss"] == [3.0, 2.0, 1.0]


def test_read_checkpoint_names_a_damaged_file_and_never_suggests_unsafe_loading(tmp_path):
    import pickle

    from unet_course.runs import RunError, read_checkpoint, write_checkpoint

    path = tmp_path / "run.pt"
    write_checkpoint(path, model={"w": torch.zeros(3)}, step=1)
    path.write_bytes(path.read_bytes()[:40])  # truncated
    with pytest.raises(RunError, match=f"cannot read the checkpoint {path}"):
        read_checkpoint(path)
    with open(path, "wb") as file:
        pickle.dump({"step": 1, "hook": print}, file)  # a callable: weights_only refuses it
    with pytest.raises(RunError, match="could run code") as raised:
        read_checkpoint(path)
    assert "weights_only=False" not in str(raised.value)


def test_a_custom_loss_gets_the_cropped_target_and_weight_map():
    seen = []

    def loss(logits, target, weight_map):
        seen.append((tuple(logits.shape), tuple(target.shape), tuple(weight_map.shape), target.dtype))
        return torch.nn.functional.cross_entropy(logits, target)

    history = fit(_model(), DATA, steps=2, tile_size=60, progress=False, loss=loss)
    model = _model()
    output = model.output_size(60)
    assert seen == [((1, 2, output, output), (1, output, output), (1, output, output), torch.int64)] * 2
    assert len(history.loss) == 2 and all(np.isfinite(history.loss))


def test_a_two_argument_loss_from_smp_trains():
    from segmentation_models_pytorch.losses import DiceLoss

    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    history = fit(model, DATA, steps=3, tile_size=60, progress=False, loss=DiceLoss(mode="multiclass"))
    assert all(0 <= value <= 1 for value in history.loss)  # a Dice loss, not the cross-entropy
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_the_default_loss_is_the_papers_weighted_cross_entropy():
    from unet_course.train import paper_loss

    calls = []

    def spy(logits, target, weight_map):
        calls.append(weight_map)
        return paper_loss(logits, target, weight_map)

    default = fit(_model(), DATA, steps=2, tile_size=60, progress=False)
    explicit = fit(_model(), DATA, steps=2, tile_size=60, progress=False, loss=spy)
    assert default.loss == explicit.loss and len(calls) == 2


def test_a_loss_that_cannot_take_the_crop_is_explained():
    def uncropped(logits, target):  # expects the whole tile, as a same-size model gives
        return torch.nn.functional.cross_entropy(logits.reshape(1, 2, 60, 60), target)

    with pytest.raises(ValueError, match=r"the loss uncropped failed on logits \(1, 2, 20, 20\) and a target "
                                         r"\(1, 20, 20\) cropped to the output"):
        fit(_model(), DATA, steps=1, tile_size=60, progress=False, loss=uncropped)
    with pytest.raises(ValueError, match="the loss must return a scalar tensor"):
        fit(_model(), DATA, steps=1, tile_size=60, progress=False,
            loss=lambda logits, target: torch.nn.functional.cross_entropy(logits, target, reduction="none"))


def test_resume_refuses_other_settings_and_names_them(tmp_path):
    checkpoint = tmp_path / "run.pt"
    fit(_model(), DATA, steps=2, tile_size=60, checkpoint=checkpoint, progress=False)
    with pytest.raises(ValueError, match=r"lr 0\.003 there, 0\.01 here.*tile_size 60 there, 44 here|"
                                         r"tile_size 60 there, 44 here.*lr 0\.003 there, 0\.01 here"):
        fit(_model(), DATA, steps=4, tile_size=44, lr=0.01, checkpoint=checkpoint, resume=True, progress=False)
    with pytest.raises(ValueError, match="loss_weights 'balanced' there, 'unet' here"):
        fit(_model(), DATA, steps=4, tile_size=60, loss_weights="unet", checkpoint=checkpoint, resume=True,
            progress=False)
    with pytest.raises(ValueError, match="base_channels 4 there, 8 here"):
        fit(UNet(base_channels=8, depth=2), DATA, steps=4, tile_size=60, checkpoint=checkpoint, resume=True,
            progress=False)
    assert fit(_model(), DATA, steps=4, tile_size=60, checkpoint=checkpoint, resume=True, progress=False).step[-1] == 4


def test_a_cosine_run_resumed_to_more_steps_says_its_schedule_changes(tmp_path):
    checkpoint = tmp_path / "run.pt"
    fit(_model(), DATA, steps=2, tile_size=60, lr_schedule="cosine", checkpoint=checkpoint, progress=False)
    with pytest.warns(UserWarning, match="cosine schedule planned for 2 steps to 4") as caught:
        fit(_model(), DATA, steps=4, tile_size=60, lr_schedule="cosine", checkpoint=checkpoint, resume=True,
            progress=False)
    assert [w.filename for w in caught] == [__file__]  # the warning points at the call of fit, not inside it


def test_progress_false_prints_nothing(capfd):
    fit(_model(), DATA, DATA, steps=2, tile_size=60, eval_every=1, progress=False, loss_weights="unet")
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    fit(_model(), DATA, DATA, steps=2, tile_size=60, eval_every=1, progress=True)
    assert "val IoU" in "".join(capfd.readouterr())  # the validation lines go with the bar


def test_the_papers_defaults_reach_training(monkeypatch):
    """momentum 0.99, w0 = 10, σ = 5 px, a 3×3 grid and σ = 10 px: what fit uses when told nothing."""
    import inspect

    import unet_course.batches as batches

    seen = {}
    real_sgd, real_deform, real_map = torch.optim.SGD, batches.elastic_deform, batches.unet_weight_map
    monkeypatch.setattr(torch.optim, "SGD", lambda params, **kw: seen.update(sgd=kw) or real_sgd(params, **kw))
    monkeypatch.setattr(batches, "elastic_deform", lambda *a, **kw: seen.update(deform=kw) or real_deform(*a, **kw))
    monkeypatch.setattr(batches, "unet_weight_map", lambda *a, **kw: seen.update(weights=kw) or real_map(*a, **kw))
    fit(_model(), DATA, steps=1, tile_size=60, progress=False, loss_weights="unet")
    assert seen["sgd"]["momentum"] == 0.99
    assert (seen["weights"]["w0"], seen["weights"]["border_sigma"]) == (10.0, 5.0)
    assert (seen["deform"]["grid"], seen["deform"]["elastic_sigma"]) == (3, 10.0)
    assert inspect.signature(fit).parameters["batch_size"].default == 1
