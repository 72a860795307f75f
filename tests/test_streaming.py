"""Streamed training data: seeded tile numbers, any number of workers, one copy to the device."""

import pytest
import torch

from unet_course.augment import elastic_deform, orient
from unet_course.data import SyntheticCells
from unet_course.models.unet import UNet
from unet_course.streaming import TileSampler, augment_tiles, tile_loader
from unet_course.batches import batch_on_device, paper_augmentation, prepare_samples, random_tiles
from unet_course.runs import read_checkpoint
from unet_course.train import fit

DATA = SyntheticCells(3, 64, seed=0)
SMALL = dict(steps=4, tile_size=60, device="cpu", progress=False, seed=2)


def _model() -> UNet:
    torch.manual_seed(0)
    return UNet(base_channels=4, depth=2)


def _prepare(index: int):
    image, mask = DATA[index]
    return image, mask, torch.rand(mask.shape)  # the global stream: the workers' seeding decides it


def _batches(**options) -> list[tuple[torch.Tensor, ...]]:
    arguments = dict(tile_size=40, batch_size=2, steps=3, seed=5) | options
    return list(tile_loader(_prepare, len(DATA), **arguments))


def test_the_ranks_split_each_step_of_one_process_stream():
    one = list(TileSampler(5, 4, steps=3, seed=1))
    ranks = [list(TileSampler(5, 2, steps=3, seed=1, rank=rank, world_size=2)) for rank in (0, 1)]
    assert [pair for step in range(3) for rank in ranks for pair in rank[2 * step:2 * step + 2]] == one
    assert list(TileSampler(5, 4, steps=3, start=2, seed=1)) == one[8:]  # a resumed run continues the stream


def test_every_item_comes_once_per_epoch_in_a_new_order():
    items = [item for _, item in TileSampler(5, 1, steps=10, seed=0)]
    assert sorted(items[:5]) == sorted(items[5:]) == [0, 1, 2, 3, 4]
    assert items[:5] != items[5:]
    with pytest.raises(ValueError, match="empty"):
        TileSampler(0, 1, steps=1)


def test_batches_do_not_depend_on_the_number_of_workers():
    inline, workers = _batches(num_workers=0), _batches(num_workers=2)
    assert len(inline) == 3 and len(inline[0]) == 5  # image, mask, weight map, orientation, displacement
    for first, second in zip(inline, workers):
        assert all(torch.equal(a, b) for a, b in zip(first[:2] + first[3:], second[:2] + second[3:]))
    assert not all(torch.equal(a[2], b[2]) for a, b in zip(inline, workers))  # global draws follow the workers...
    assert all(torch.equal(a[2], b[2]) for a, b in zip(workers, _batches(num_workers=2)))  # ...and repeat


def test_a_streamed_run_repeats_with_any_number_of_workers_and_resumes_exactly(tmp_path):
    inline = fit(_model(), DATA, num_workers=0, **SMALL)
    assert fit(_model(), DATA, num_workers=2, **SMALL).loss == inline.loss
    checkpoint = tmp_path / "run.pt"
    fit(_model(), DATA, num_workers=1, checkpoint=checkpoint, **SMALL | {"steps": 2})
    assert fit(_model(), DATA, num_workers=1, checkpoint=checkpoint, resume=True, **SMALL).loss == inline.loss
    assert read_checkpoint(checkpoint)["step"] == 4 and "world_size" not in read_checkpoint(checkpoint)


class _Counted(torch.utils.data.Dataset):
    def __init__(self, data):
        self.data, self.read = data, []

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        self.read.append(index)
        return self.data[index]


def test_a_streamed_run_reads_only_the_items_its_tiles_need():
    data = _Counted(SyntheticCells(50, 64, seed=0))
    fit(_model(), data, num_workers=0, **SMALL | {"steps": 2})
    assert len(data.read) == 3  # the first item, checked up front, and one per tile: nothing held in memory


def test_the_in_memory_run_draws_tiles_then_augmentation_from_one_generator(monkeypatch):
    import unet_course.train as train

    seen = []
    monkeypatch.setattr(train._Trainer, "step", lambda self, batch, lr, step: seen.append(batch) or 1.0)
    fit(_model(), DATA, steps=2, tile_size=60, batch_size=2, progress=False, seed=4)
    generator = torch.Generator().manual_seed(4)
    samples, augment = prepare_samples(DATA, "balanced", margin=_model().margin), paper_augmentation()
    for batch in seen:
        expected = augment(*random_tiles(samples, 2, 60, generator), generator)
        assert all(torch.equal(a, b) for a, b in zip(batch, expected))


def test_augmentation_runs_after_the_batch_moved_to_the_device():
    seen = []
    paper = paper_augmentation()

    def augment(images, masks, weight_maps, generator):
        seen.append({images.device.type, masks.device.type, weight_maps.device.type})
        return paper(images, masks, weight_maps, generator)

    batch = (torch.rand(2, 1, 60, 60), torch.zeros(2, 60, 60, dtype=torch.long), torch.ones(2, 60, 60))
    out = batch_on_device(batch, "meta", augment, torch.Generator().manual_seed(0))  # a stand-in for a GPU
    assert seen == [{"meta"}] and {t.device.type for t in out} == {"meta"}
    streamed = batch + (torch.tensor([[1, 0], [2, 1]]), torch.randn(2, 2, 3, 3))
    assert {t.device.type for t in batch_on_device(streamed, "meta")} == {"meta"}


def test_streamed_augmentation_gives_each_tile_its_own_draws():
    images, masks = torch.rand(2, 1, 40, 40), torch.randint(0, 2, (2, 40, 40))
    weight_maps, displacement = torch.rand(2, 40, 40), 3 * torch.randn(2, 2, 3, 3)
    orientations = torch.tensor([[1, 0], [3, 1]])
    batch = augment_tiles(images, masks, weight_maps, orientations, displacement)
    for index, (k, flip) in enumerate(orientations.tolist()):
        alone = elastic_deform(*(orient(t[index:index + 1], k, flip) for t in (images, masks, weight_maps)),
                               displacement=displacement[index:index + 1])
        assert all(torch.allclose(a[index:index + 1], b, atol=1e-6) for a, b in zip(batch, alone))
    assert torch.equal(orient(images, 3, 1), torch.rot90(images, 3, dims=(-2, -1)).flip(-1))


def test_a_custom_augmentation_runs_on_each_streamed_tile():
    calls = []

    def augment(images, masks, weight_maps, generator):
        calls.append(tuple(images.shape))
        return images, masks, weight_maps

    fit(_model(), DATA, num_workers=0, augment=augment, **SMALL | {"steps": 1, "batch_size": 2})
    assert calls == [(1, 1, 60, 60)] * 2


@pytest.mark.parametrize("num_workers", [-1, 1.5, True])
def test_bad_num_workers_are_explained(num_workers):
    with pytest.raises(ValueError, match=r"num_workers must be 0 or more, got .*worker processes"):
        fit(_model(), DATA, num_workers=num_workers, **SMALL)


def test_the_command_line_refuses_a_negative_number_of_workers(capsys):
    from unet_course.cli import main

    assert main(["train", "--num-workers", "-1", "--steps", "1"]) == 2
    assert "--num-workers must be 0 or more, got -1" in capsys.readouterr().err


class _CountedReads(torch.utils.data.Dataset):
    """``size`` lazy items of ``side``² pixels, made when read; counts the reads."""

    def __init__(self, size: int, side: int) -> None:
        self.size, self.side, self.reads = size, side, []

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int):
        self.reads.append(index)
        mask = torch.zeros(self.side, self.side, dtype=torch.long)
        mask[:, self.side // 2:] = 1
        return mask[None].float(), mask


def test_fit_streams_a_dataset_too_big_for_memory_by_default():
    from unet_course.batches import IN_MEMORY_BYTES

    data = _CountedReads(5_000, 256)  # ~1.4 MB per prepared item: ~7 GB held whole
    history = fit(_model(), data, steps=3, tile_size=60, device="cpu", progress=False)
    assert len(history.loss) == 3
    assert len(data.reads) <= 1 + 3, f"read {len(data.reads)} items for 3 steps of one tile"
    small = _CountedReads(3, 256)  # a few items stay in memory, each read once up front
    fit(_model(), small, steps=3, tile_size=60, device="cpu", progress=False)
    assert sorted(small.reads) == [0, 1, 2]
    assert 3 * 1_400_000 < IN_MEMORY_BYTES < 5_000 * 1_400_000
