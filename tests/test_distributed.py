"""Two gloo processes train as one process with their whole batch; rank 0 alone writes; resume is exact."""

import io
import json
import os
import runpy
import socket
import sys
from contextlib import redirect_stderr
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from unet_course.data import SyntheticCells
from unet_course.distributed import gather_objects, mean_over_processes, process_group, share_from_main
from unet_course.models.unet import UNet
from unet_course.runs import read_checkpoint
from unet_course.train import fit

WORLD_SIZE = 2
DATA = SyntheticCells(3, 64, seed=0)
RUN = dict(steps=4, tile_size=60, device="cpu", seed=3, eval_every=2, batch_size=2)  # 2 tiles per process and step
CLI = ["train", "--data", "synthetic-cells", "--base-channels", "4", "--depth", "2", "--tile-size", "60", "--steps",
       "2", "--images", "3", "--image-size", "64", "--held-out", "1", "--device", "cpu", "--quiet"]


def _model() -> UNet:
    torch.manual_seed(0)
    return UNet(base_channels=4, depth=2, dropout=0.0)  # drop-out draws differ per process, by design


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _process(rank: int, folder: str, port: int) -> None:
    """One of the two processes: the command line as torchrun starts it, then fit under a process group."""
    import unet_course.cli.train as cli_train
    import unet_course.runs as runs
    import unet_course.train as train
    from unet_course.cli import main

    torch.set_num_threads(1)
    folder = Path(folder)
    writes = []
    save, write_config, save_history = runs.write_checkpoint, cli_train.write_config, runs.History.save
    train.write_checkpoint = lambda path, **state: writes.append("checkpoint") or save(path, **state)
    cli_train.write_config = lambda *args: writes.append("model.json") or write_config(*args)
    runs.History.save = lambda self, path: writes.append("history") or save_history(self, path)

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD_SIZE))
    with redirect_stderr(io.StringIO()) as said:
        status = main(CLI + ["--out", str(folder / "cli"), "--num-workers", "1"])
    joined_and_left = not dist.is_initialized()

    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank, world_size=WORLD_SIZE)
    with redirect_stderr(io.StringIO()) as bar:
        straight = fit(model := _model(), DATA, DATA, progress=True, **RUN)
    if rank == 0:
        torch.save(model.state_dict(), folder / "straight.pt")
    checkpoint = folder / "run.pt"
    fit(_model(), DATA, progress=False, checkpoint=checkpoint, **RUN | {"steps": 2})
    resumed = fit(_model(), DATA, progress=False, checkpoint=checkpoint, resume=True, **RUN)
    dist.destroy_process_group()
    (folder / f"rank{rank}.json").write_text(json.dumps({
        "status": status, "joined_and_left": joined_and_left, "said": said.getvalue(), "bar": bar.getvalue(),
        "writes": writes, "loss": straight.loss, "val_loss": straight.val_loss, "resumed": resumed.loss}))


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, list[dict]]:
    folder = tmp_path_factory.mktemp("distributed")
    mp.spawn(_process, args=(str(folder), _free_port()), nprocs=WORLD_SIZE)
    return folder, [json.loads((folder / f"rank{rank}.json").read_text()) for rank in range(WORLD_SIZE)]


def _largest_difference(a: dict, b: dict) -> float:
    return max(float((a[name] - b[name]).abs().max()) for name in a)


def test_two_processes_take_the_steps_of_one_process_with_their_whole_batch(two_processes):
    """Equal to float rounding: the same tiles, the mean of two tile-means is the mean over both, no drop-out."""
    folder, (first, second) = two_processes
    whole_batch = {"batch_size": WORLD_SIZE * RUN["batch_size"]}
    alone = fit(model := _model(), DATA, DATA, num_workers=0, progress=False, **RUN | whole_batch)
    assert first["loss"] == second["loss"] and first["val_loss"] == second["val_loss"]
    assert first["loss"] == pytest.approx(alone.loss, rel=1e-5)
    assert first["val_loss"] == pytest.approx(alone.val_loss, rel=1e-5)
    two = torch.load(folder / "straight.pt", weights_only=True)
    assert _largest_difference(two, model.state_dict()) < 1e-6  # measured 6e-8 after 4 steps; they moved by 2e-2
    trained = read_checkpoint(folder / "run.pt")["model"]
    for name, weights in _model().state_dict().items():
        assert name in trained
    assert trained["contracting.0.0.weight"] != pytest.approx(_model().state_dict()["contracting.0.0.weight"])


def test_one_process_holding_its_data_in_memory_draws_other_tiles(two_processes):
    """A real difference, not rounding: in memory, one process cuts its tiles from the book's single random stream."""
    folder, _ = two_processes
    whole_batch = {"batch_size": WORLD_SIZE * RUN["batch_size"]}
    fit(model := _model(), DATA, num_workers=None, progress=False, **RUN | whole_batch)
    assert _largest_difference(torch.load(folder / "straight.pt", weights_only=True), model.state_dict()) > 1e-4


def test_a_run_of_two_processes_resumes_exactly_and_only_with_two(two_processes):
    folder, (first, _) = two_processes
    assert first["resumed"] == first["loss"]
    state = read_checkpoint(folder / "run.pt")
    assert state["step"] == 4 and state["world_size"] == WORLD_SIZE and len(state["torch_rng_per_rank"]) == 2
    with pytest.raises(ValueError, match=r"trained by 2 process\(es\) and this run has 1.*--nproc-per-node 2"):
        fit(_model(), DATA, checkpoint=folder / "run.pt", resume=True, progress=False, **RUN | {"steps": 6})


def test_rank_0_alone_writes_and_shows_progress(two_processes):
    folder, (first, second) = two_processes
    assert second["writes"] == [] and second["said"] == "" and second["bar"] == ""
    assert {"checkpoint", "model.json", "history"} <= set(first["writes"]) and "training" in first["bar"]
    assert first["said"].count("budget:") == 1


def test_the_command_line_joins_the_processes_torchrun_describes(two_processes, capsys):
    from unet_course.cli import main

    folder, runs = two_processes
    assert [run["status"] for run in runs] == [0, 0] and all(run["joined_and_left"] for run in runs)
    assert sorted(path.name for path in (folder / "cli").iterdir()) == ["checkpoint.pt", "history.json", "model.json"]
    assert read_checkpoint(folder / "cli" / "checkpoint.pt")["world_size"] == WORLD_SIZE
    assert main(CLI + ["--out", str(folder / "cli"), "--steps", "3", "--resume"]) == 2
    assert "trained by 2 process(es) and this run has 1; resume it with torchrun --nproc-per-node 2" in \
        capsys.readouterr().err


def test_one_process_is_its_own_process_group():
    assert process_group() == (0, 1)
    value = torch.tensor(2.5)
    assert mean_over_processes(value) is value and share_from_main(value) is value
    assert gather_objects(value) == [value]


def test_python_m_unet_course_runs_the_command_line(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["unet_course", "--help"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("unet_course", run_name="__main__")
    assert exited.value.code == 0 and "unet-course" in capsys.readouterr().out
