"""A run on disk, function by function: every refusal word for word, the edges of what is accepted.

Written so that changing a comparison, default or message of ``unet_course.runs`` fails a test
(``make mutation`` measures it as the "run files" target); runs are taught in chapter 6.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from conftest import tiny_unet
from unet_course import UNet
from unet_course.runs import (History, RunError, check_config_fits, check_resume, config_path, load_parameters,
                              load_run, model_description, model_from_config, read_checkpoint, read_config,
                              run_files, run_threshold, training_config, weights_sha256, write_checkpoint,
                              write_config)

CONFIG = {"base_channels": 4, "depth": 2}


def _refused(error: type[Exception], message: str, call) -> None:
    with pytest.raises(error) as raised:
        call()
    assert str(raised.value) == message


def _run(tmp_path, model: nn.Module | None = None, config: dict | None = None, **state):
    """A run folder holding ``model``'s checkpoint and ``config`` as model.json; returns its path."""
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    write_checkpoint(run / "checkpoint.pt", model=(model or tiny_unet()).state_dict(), **state)
    write_config(run / "model.json", CONFIG if config is None else config)
    return run


# --- where a run's files are -----------------------------------------------------------------------------------------

def test_a_folder_holds_its_files_and_a_pt_file_has_its_json_beside_it(tmp_path):
    run = _run(tmp_path)
    assert config_path(run) == run / "model.json" and config_path(tmp_path / "a.pt") == tmp_path / "a.json"
    assert run_files(run) == (run / "checkpoint.pt", run / "model.json")
    (tmp_path / "net.pt").write_bytes((run / "checkpoint.pt").read_bytes())
    (tmp_path / "net.json").write_text("{}")
    assert run_files(tmp_path / "net.pt") == (tmp_path / "net.pt", tmp_path / "net.json")


def test_a_missing_run_file_is_named(tmp_path):
    hint = ": pass the --out folder of `unet-course train` (or a .pt file with its .json beside it)"
    _refused(FileNotFoundError, f"no checkpoint at {tmp_path / 'checkpoint.pt'}{hint}", lambda: run_files(tmp_path))
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    _refused(FileNotFoundError, f"no model description at {tmp_path / 'model.json'}{hint}", lambda: run_files(tmp_path))
    (tmp_path / "model.json").mkdir()  # a folder where the file should be
    _refused(FileNotFoundError, f"no model description at {tmp_path / 'model.json'}{hint}", lambda: run_files(tmp_path))


def test_the_threshold_is_the_runs_or_one_half():
    assert run_threshold({"threshold": 0.65}) == 0.65 and run_threshold({}) == 0.5


# --- model.json ------------------------------------------------------------------------------------------------------

def test_model_json_is_written_indented_and_read_back(tmp_path):
    config = {"base_channels": 4, "depth": 2, "threshold": 0.4, "padding": "same", "weights_sha256": "a" * 64}
    write_config(tmp_path / "model.json", config)
    assert (tmp_path / "model.json").read_text() == json.dumps(config, indent=2) + "\n"
    assert read_config(tmp_path / "model.json") == config


def _damaged(path, what: str) -> str:
    return (f"{path} is incomplete or damaged ({what}); restore the model.json written by `unet-course train` beside "
            f"its checkpoint, or train again")


@pytest.mark.parametrize("change, what", [
    ({"base_channels": 0}, "a bad base_channels"), ({"depth": 0}, "a bad depth"), ({"depth": True}, "a bad depth"),
    ({"depth": 2.0}, "a bad depth"), ({"in_channels": 0}, "a bad in_channels"),
    ({"num_classes": 1}, "a bad num_classes"), ({"tile_size": 0}, "a bad tile_size"),
    ({"threshold": -0.01}, "a bad threshold"), ({"threshold": 1.01}, "a bad threshold"),
    ({"threshold": "0.5"}, "a bad threshold"), ({"threshold": None}, "a bad threshold"),
    ({"padding": "reflect"}, "a bad padding"), ({"weights_sha256": "a" * 63}, "a bad weights_sha256"),
    ({"weights_sha256": 7}, "a bad weights_sha256"),
    ({"base_channels": 0, "padding": "x", "threshold": 2}, "a bad base_channels, a bad threshold, a bad padding"),
])
def test_each_bad_entry_of_model_json_is_named(tmp_path, change, what):
    write_config(tmp_path / "model.json", CONFIG | change)
    _refused(RunError, _damaged(tmp_path / "model.json", what), lambda: read_config(tmp_path / "model.json"))


def test_the_smallest_and_the_edge_values_are_accepted(tmp_path):
    for config in ({"base_channels": 1, "depth": 1, "in_channels": 1, "num_classes": 2, "tile_size": 1},
                   CONFIG | {"threshold": 0}, CONFIG | {"threshold": 1}, CONFIG | {"threshold": 1.0},
                   CONFIG | {"padding": "valid"}, CONFIG | {"padding": "same"}):
        write_config(tmp_path / "model.json", config)
        assert read_config(tmp_path / "model.json") == config


def test_missing_keys_come_first_in_the_refusal(tmp_path):
    write_config(tmp_path / "model.json", {"num_classes": 1})
    _refused(RunError, _damaged(tmp_path / "model.json", "no base_channels, no depth, a bad num_classes"),
             lambda: read_config(tmp_path / "model.json"))
    write_config(tmp_path / "model.json", {"depth": 2})
    _refused(RunError, _damaged(tmp_path / "model.json", "no base_channels"),
             lambda: read_config(tmp_path / "model.json"))


def test_a_file_that_is_no_description_is_refused_word_for_word(tmp_path):
    path = tmp_path / "model.json"
    path.write_text("[1, 2]")
    _refused(RunError, f"{path} does not describe a model; restore the model.json written by `unet-course train`, "
                       f"or train again", lambda: read_config(path))
    for content in (b"{", b"\xff\xfe"):
        path.write_bytes(content)
        with pytest.raises(RunError) as raised:
            read_config(path)
        assert re.fullmatch(rf"{re.escape(str(path))} is not valid JSON \(.+\); it is written by `unet-course train` "
                            r"beside checkpoint\.pt: restore it, or train again", str(raised.value))
        assert raised.value.__suppress_context__


# --- the model a run describes ---------------------------------------------------------------------------------------

def test_model_json_builds_the_model_it_names():
    model = model_from_config({"base_channels": 3, "depth": 1, "in_channels": 2, "num_classes": 4, "padding": "same",
                               "batch_norm": True})
    assert (model.base_channels, model.depth, model.in_channels, model.num_classes, model.padding, model.batch_norm) \
        == (3, 1, 2, 4, "same", True)
    plain = model_from_config({"base_channels": 3, "depth": 1})
    assert (plain.in_channels, plain.num_classes, plain.padding, plain.batch_norm) == (1, 2, "valid", False)
    with pytest.raises(ValueError, match="parameters"):
        model_from_config({"base_channels": 10**6, "depth": 4})  # refused before a byte is allocated


def test_a_new_runs_config_lets_the_run_override_the_defaults_and_adds_the_rest():
    run = {"base_channels": 8, "depth": 3, "steps": 10, "padding": "same"}
    assert training_config(run, in_channels=3, data="isbi2012", budget="cpu", fold=2) == {
        "in_channels": 3, "num_classes": 2, "padding": "same", "base_channels": 8, "depth": 3, "steps": 10,
        "data": "isbi2012", "budget": "cpu", "fold": 2}
    assert training_config({}, in_channels=1, data="d", budget="b") == {
        "in_channels": 1, "num_classes": 2, "padding": "valid", "data": "d", "budget": "b"}


def test_a_models_description_lists_its_shape():
    model = UNet(base_channels=2, depth=1, padding="same", batch_norm=True, in_channels=3, num_classes=4)
    assert model_description(model) == {
        "model": "UNet", "parameters": sum(p.numel() for p in model.parameters()), "in_channels": 3, "num_classes": 4,
        "base_channels": 2, "depth": 1, "padding": "same", "batch_norm": True}
    conv = nn.Conv2d(2, 3, 3)  # its padding is a tuple: not described
    assert model_description(conv) == {"model": "Conv2d", "parameters": 2 * 3 * 9 + 3, "in_channels": 2}


# --- the digest of the weights ---------------------------------------------------------------------------------------

def _recipe(parameters: dict) -> str:
    """The digest as model.json files written so far hold it: names in order, each with dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name in sorted(parameters):
        value = parameters[name]
        if isinstance(value, torch.Tensor):
            digest.update(f"{name}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
            digest.update(value.contiguous().numpy().tobytes())
        else:
            digest.update(f"{name}\0{type(value).__name__}\0()\0".encode() + repr(value).encode())
    return digest.hexdigest()


def test_the_weights_digest_keeps_the_format_stored_runs_hold():
    parameters = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.count": 3, "a.bias": torch.tensor([1, 2])}
    assert weights_sha256(parameters) == _recipe(parameters) and len(weights_sha256(parameters)) == 64
    assert weights_sha256(dict(reversed(parameters.items()))) == weights_sha256(parameters)  # any order in the dict


def test_the_digest_sees_values_dtypes_shapes_and_names_but_not_the_layout():
    base = {"w": torch.arange(6.0).reshape(2, 3)}
    digest = weights_sha256(base)
    assert weights_sha256({"w": torch.arange(6.0).reshape(3, 2).t().contiguous().t().reshape(2, 3)}) == digest
    assert weights_sha256({"w": base["w"].t().contiguous().t()}) == digest  # a transposed layout, the same numbers
    for other in ({"w": base["w"] + 1}, {"w": base["w"].double()}, {"w": base["w"].reshape(3, 2)}, {"v": base["w"]},
                  {"w": base["w"], "x": 1}, {"w": base["w"].reshape(-1)}):
        assert weights_sha256(other) != digest


def test_a_checkpoint_carries_the_digest_of_its_model(tmp_path):
    model = tiny_unet()
    write_checkpoint(tmp_path / "c.pt", model=model.state_dict(), step=3)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    assert state["model_sha256"] == weights_sha256(model.state_dict()) and state["step"] == 3
    write_checkpoint(tmp_path / "plain.pt", step=1, model=[1])
    assert "model_sha256" not in torch.load(tmp_path / "plain.pt", weights_only=True)
    buffer = io.BytesIO()
    write_checkpoint(buffer, model={"w": torch.ones(2)})
    buffer.seek(0)
    assert read_checkpoint(buffer)["model_sha256"] == weights_sha256({"w": torch.ones(2)})
    assert sorted(path.name for path in tmp_path.iterdir()) == ["c.pt", "plain.pt"]  # no temporary file left


def test_changed_weights_are_refused_and_meta_tensors_are_not_hashed(tmp_path):
    state = {"model": {"w": torch.ones(3)}, "step": 1}
    write_checkpoint(tmp_path / "c.pt", **state)
    tampered = torch.load(tmp_path / "c.pt", weights_only=True)
    tampered["model"]["w"][1] = 2.0
    torch.save(tampered, tmp_path / "c.pt")
    _refused(RunError, f"the checkpoint {tmp_path / 'c.pt'} is damaged: its weights do not match the SHA-256 written "
                       "with them; restore an intact copy, or train again", lambda: read_checkpoint(tmp_path / "c.pt"))
    torch.save({"model": {"w": torch.ones(3)}, "model_sha256": "0" * 64}, tmp_path / "meta.pt")
    assert read_checkpoint(tmp_path / "meta.pt", map_location="meta")["model"]["w"].is_meta  # nothing to hash
    torch.save({"model": [1.0], "model_sha256": "0" * 64}, tmp_path / "list.pt")
    assert read_checkpoint(tmp_path / "list.pt")["model"] == [1.0]  # no state dict to hash
    torch.save({"model": {"w": torch.ones(3)}}, tmp_path / "old.pt")
    assert torch.equal(read_checkpoint(tmp_path / "old.pt")["model"]["w"], torch.ones(3))  # written before digests


# --- resuming --------------------------------------------------------------------------------------------------------

STATE = {"step": 10, "model": {}, "world_size": 2, "settings": {"lr": 0.01, "steps": 100, "lr_schedule": "cosine"}}


def test_a_checkpoint_without_a_step_count_or_model_cannot_be_resumed():
    message = "c.pt is not a training checkpoint (it has no step count); train again"
    for state in ({"model": {}}, {"step": 1.0, "model": {}}, {"step": "1", "model": {}}, {"step": 1}):
        _refused(RunError, message, lambda: check_resume(state, "c.pt", steps=5, world_size=1))


@pytest.mark.parametrize("trained_by, world_size, how", [
    (2, 1, "with torchrun --nproc-per-node 2"), (None, 2, "without torchrun"), (1, 3, "without torchrun")])
def test_a_checkpoint_resumes_only_with_as_many_processes(trained_by, world_size, how):
    state = {"step": 1, "model": {}} | ({} if trained_by is None else {"world_size": trained_by})
    _refused(ValueError, f"cannot resume c.pt: it was trained by {trained_by or 1} process(es) and this run has "
                         f"{world_size}; resume it {how}, as each process's share of a step's tiles depends on their "
                         f"number, or train a new checkpoint",
             lambda: check_resume(state, "c.pt", steps=5, world_size=world_size))


def test_steps_is_the_total_and_may_equal_what_the_checkpoint_holds():
    _refused(ValueError, "steps 9 is fewer than the 10 steps c.pt already holds; steps is the total, so pass 10 or "
                         "more to continue it, or train a new checkpoint",
             lambda: check_resume(STATE, "c.pt", steps=9, world_size=2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_resume(STATE, "c.pt", steps=10, world_size=2)  # nothing left to do, nothing refused
        check_resume(STATE, "c.pt", steps=100, world_size=2, settings={"lr": 0.01, "steps": 100, "tile": 60})


def test_a_checkpoint_that_recorded_no_settings_resumes_with_any():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_resume({"step": 1, "model": {}}, "c.pt", steps=5, world_size=1,
                     settings={"lr": 0.1, "lr_schedule": "cosine"})


def test_every_setting_that_differs_is_named():
    _refused(ValueError, "cannot resume c.pt: it was trained with other settings (lr 0.01 there, 0.02 here; "
                         "lr_schedule 'cosine' there, 'constant' here); pass the recorded settings, or train a new "
                         "checkpoint",
             lambda: check_resume(STATE, "c.pt", steps=100, world_size=2,
                                  settings={"lr": 0.02, "lr_schedule": "constant", "steps": 50, "momentum": 0.9}))


def test_a_schedule_planned_for_another_length_is_resumed_with_a_warning():
    settings = {"lr": 0.01, "lr_schedule": "cosine"}
    with pytest.warns(UserWarning) as caught:
        check_resume(STATE, "c.pt", steps=200, world_size=2, settings=settings)
    assert [str(w.message) for w in caught] == [
        "resuming a cosine schedule planned for 100 steps to 200: the learning rate follows the new length from "
        "step 10 on"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_resume(STATE, "c.pt", steps=100, world_size=2, settings=settings)  # the planned length
        constant = STATE | {"settings": {"lr_schedule": "constant", "steps": 100}}
        check_resume(constant, "c.pt", steps=200, world_size=2, settings={"lr_schedule": "constant"})
        check_resume(constant, "c.pt", steps=200, world_size=2, settings={"lr": 0.01})  # no schedule: constant
        check_resume(STATE | {"settings": {"lr_schedule": "cosine"}}, "c.pt", steps=200, world_size=2,
                     settings=settings)  # no planned length recorded


# --- a model.json beside a checkpoint ------------------------------------------------------------------------------

def _does_not_fit(checkpoint, config_file, differ: str) -> str:
    return (f"the checkpoint {checkpoint} does not fit the model in {config_file} ({differ}); keep each checkpoint "
            f"with the model.json written beside it, or train again")


def test_a_model_json_of_another_shape_is_refused_before_a_model_is_built():
    state = {"model": tiny_unet(base_channels=4, depth=2, in_channels=2, num_classes=3, batch_norm=True).state_dict(),
             "settings": {"padding": "same", "lr": 0.1}}
    fits = {"base_channels": 4, "depth": 2, "in_channels": 2, "num_classes": 3, "batch_norm": True, "padding": "same"}
    check_config_fits(fits, state, "c.pt", "m.json")
    differ = ("in_channels 1 there, 2 in the checkpoint; base_channels 8 there, 4 in the checkpoint; depth 3 there, "
              "2 in the checkpoint; num_classes 2 there, 3 in the checkpoint; batch_norm False there, True in the "
              "checkpoint; padding 'valid' there, 'same' in the checkpoint")
    _refused(RunError, _does_not_fit("c.pt", "m.json", differ),
             lambda: check_config_fits({"base_channels": 8, "depth": 3}, state, "c.pt", "m.json"))


def test_the_shape_is_read_from_a_bare_state_dict_and_a_foreign_one_is_left_to_loading():
    bare = tiny_unet().state_dict()
    _refused(RunError, _does_not_fit("c.pt", "m.json", "depth 3 there, 2 in the checkpoint"),
             lambda: check_config_fits({"base_channels": 4, "depth": 3}, bare, "c.pt", "m.json"))
    check_config_fits({"base_channels": 4, "depth": 2, "padding": "same"}, bare, "c.pt", "m.json")  # no padding known
    for foreign in ({"w": torch.ones(2)},
                    {"contracting.0.0.weight": torch.ones(2), "head.weight": torch.ones(2, 1, 1, 1)},
                    {"contracting.0.0.weight": torch.ones(4, 1, 3, 3), "head.weight": torch.ones(2)},
                    {"contracting.0.0.weight": torch.ones(4, 1, 3, 3)}):
        check_config_fits({"base_channels": 9, "depth": 9}, {"model": foreign}, "c.pt", "m.json")


def test_a_model_json_written_for_other_weights_is_refused():
    state = {"model": tiny_unet().state_dict()}
    digest = weights_sha256(state["model"])
    check_config_fits(CONFIG | {"weights_sha256": digest}, state, "c.pt", "m.json")  # computed when not recorded
    check_config_fits(CONFIG | {"weights_sha256": "f" * 64}, state | {"model_sha256": "f" * 64}, "c.pt", "m.json")
    _refused(RunError, "m.json was written for other weights than those in c.pt (its weights_sha256 differs): keep "
                       "each checkpoint with the model.json written beside it, or finish an interrupted --resume with "
                       "the same command",
             lambda: check_config_fits(CONFIG | {"weights_sha256": "f" * 64}, state, "c.pt", "m.json"))


def test_parameters_of_another_architecture_are_refused_with_torchs_first_detail():
    model = tiny_unet()
    with pytest.raises(RunError) as raised:
        load_parameters(UNet(base_channels=8, depth=2), {"model": model.state_dict()}, "c.pt", "m.json")
    detail = re.fullmatch(r"the checkpoint c\.pt does not fit the model in m\.json \((.+)\); keep each checkpoint "
                          r"with the model\.json written beside it, or train again", str(raised.value)).group(1)
    assert detail.startswith("size mismatch for contracting.0.0.weight") and len(detail) == 160
    assert raised.value.__suppress_context__
    with pytest.raises(RunError, match=r"\(another model\)"):
        load_parameters(model, {"model": "not a state dict"}, "c.pt", "m.json")


def test_diverged_parameters_are_refused_and_whole_numbers_are_not_checked():
    model = nn.BatchNorm2d(2)  # its step counter is an integer buffer
    state = model.state_dict()
    load_parameters(model, state, "c.pt", "m.json")
    state["running_var"] = torch.tensor([1.0, float("nan")])
    _refused(RunError, "the checkpoint c.pt holds NaN or infinite weights: the training that wrote it diverged; "
                       "train a new run with a lower --lr (with --overwrite, or into another --out)",
             lambda: load_parameters(model, state, "c.pt", "m.json"))


def test_a_run_loads_as_an_eval_model_with_its_config(tmp_path):
    model = tiny_unet(seed=3)
    run = _run(tmp_path, model, CONFIG | {"threshold": 0.4})
    loaded, config = load_run(run)
    assert config == CONFIG | {"threshold": 0.4} and not loaded.training
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_a_run_that_does_not_fit_names_its_checkpoint_and_its_model_json(tmp_path):
    run = _run(tmp_path, config={"base_channels": 8, "depth": 2})
    _refused(RunError, _does_not_fit(run / "checkpoint.pt", run / "model.json", "base_channels 8 there, 4 in the "
                                                                                "checkpoint"), lambda: load_run(run))
    state = tiny_unet().state_dict() | {"extra.weight": torch.ones(1)}  # the sizes fit, the names do not
    write_checkpoint(run / "checkpoint.pt", model=state)
    write_config(run / "model.json", CONFIG)
    _refused(RunError, _does_not_fit(run / "checkpoint.pt", run / "model.json", 'Unexpected key(s) in state_dict: '
                                                                                '"extra.weight".'),
             lambda: load_run(run))


def test_a_run_too_large_for_this_machine_is_a_run_error_naming_its_model_json(tmp_path, monkeypatch):
    import unet_course.sizes as sizes

    run = _run(tmp_path)
    monkeypatch.setattr(sizes, "_memory_bytes", lambda: 1000)  # a machine of 1,000 bytes
    with pytest.raises(RunError, match=re.escape(str(run / "model.json"))):
        load_run(run)


# --- the history -----------------------------------------------------------------------------------------------------

def test_the_history_records_steps_and_validations_and_smooths_the_loss(tmp_path):
    history = History()
    assert history.smoothed_loss().tolist() == []
    for step in range(1, 26):  # loss = step, 10·step ms a step
        history.record(step, float(step), seconds=step / 100)
    history.record_validation(25, 0.5, 0.75)
    assert history.step == list(range(1, 26)) and history.loss == [float(step) for step in range(1, 26)]
    assert history.seconds_per_step == [step / 100 for step in range(1, 26)]
    assert (history.val_step, history.val_loss, history.val_iou) == ([25], [0.5], [0.75])
    smoothed = history.smoothed_loss()  # the mean of the last 20 steps, of fewer at the start
    assert smoothed[0] == 1.0 and smoothed[1] == 1.5 and smoothed[19] == 10.5 and smoothed[-1] == 15.5
    assert history.smoothed_loss(window=2)[-1] == 24.5
    assert history.last_validation() == "step 25: loss 15.5000, val loss 0.5000, val IoU 0.750, 155 ms/step"
    assert history.last_validation(window=2) == "step 25: loss 15.5000, val loss 0.5000, val IoU 0.750, 245 ms/step"
    history.save(tmp_path / "history.json")
    assert History.load(tmp_path / "history.json") == history
    slow = History([1], [0.5], [1], [0.4], [0.6], [2.0])  # one step of two seconds
    assert slow.last_validation() == "step 1: loss 0.5000, val loss 0.4000, val IoU 0.600, 2000 ms/step"
