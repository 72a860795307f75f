"""Training tiles streamed from any map-style dataset: a seeded sampler, worker processes, one device copy.

``fit(..., num_workers=N)`` reads its training data through a ``torch.utils.data.DataLoader``
instead of holding every item in memory. Worker processes read an item, compute its weight
map, mirror-pad it, cut a random tile and draw that tile's flips and elastic grid; the
training process moves the batch to the device once and deforms it there, on the GPU when
there is one (:func:`augment_tiles`). Tile ``t`` draws all of this from its own seed
``(seed, t)``, and :class:`TileSampler` visits the items in a fresh seeded order every epoch,
so a run repeats whatever the number of workers, resumes exactly from any step, and splits
across processes (rank ``r`` takes its slice of every step's batch) into the very batches one
process would have trained on. The page "Train on more data and more GPUs" teaches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from .augment import elastic_deform, orient, random_displacement

__all__ = ["TileSampler", "TileStream", "augment_tiles", "random_tile", "tile_loader"]

Sample = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # image (C, H, W), mask (H, W), weight map (H, W)
Augment = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, ...]]

# What each seeded stream is for; two streams of one run never share a seed.
_TILES, _ORDER, _WORKERS = 0, 1, 2


def _seed(seed: int, purpose: int, index: int) -> int:
    """A 64-bit seed for stream ``index`` of kind ``purpose`` in a run seeded ``seed`` (mixed, not ``seed + index``)."""
    return int(np.random.SeedSequence([seed % 2**64, purpose, index]).generate_state(1, np.uint64)[0])


def random_tile(sample: Sample, tile_size: int, generator: torch.Generator, index: int = 0) -> Sample:
    """A random ``tile_size`` square of one ``(image (C, H, W), mask (H, W), weight_map (H, W))`` (views, not copies).

    Draws the top row, then the left column, from ``generator``. ``index`` only names the
    item in the error raised when the item is smaller than the tile.

    Example:
        >>> sample = (torch.zeros(1, 64, 64), torch.zeros(64, 64, dtype=torch.long), torch.ones(64, 64))
        >>> random_tile(sample, 60, torch.Generator().manual_seed(0))[0].shape
        torch.Size([1, 60, 60])
    """
    image, mask, weight_map = sample
    height, width = mask.shape
    if height < tile_size or width < tile_size:
        raise ValueError(f"training image {index} is {height}×{width} (after mirror padding) but the tile is "
                         f"{tile_size}×{tile_size}; use a smaller tile_size or larger images")
    top = int(torch.randint(0, height - tile_size + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - tile_size + 1, (1,), generator=generator))
    window = (slice(top, top + tile_size), slice(left, left + tile_size))
    return image[(slice(None), *window)], mask[window], weight_map[window]


class TileSampler(Sampler[tuple[int, int]]):
    """The ``(tile number, item index)`` pairs one process trains on, from step ``start`` to ``steps``.

    Step ``s`` trains on the tiles ``s·B·W … s·B·W + B·W - 1`` of the run (``B = batch_size``
    per process, ``W = world_size``); rank ``r`` takes the ``B`` tiles from ``s·B·W + r·B``.
    Tile ``t`` comes from item ``order_e[t mod N]``, where ``order_e`` is a random order of the
    ``N`` items drawn from ``(seed, e)`` for epoch ``e = t div N``: every item once per epoch.

    Args:
        num_items: items in the dataset (at least 1).
        batch_size: tiles per step and process.
        steps: the run's total steps; start: the first step to yield (a resumed run's). Default 0.
        seed: the run's seed. Default 0.
        rank, world_size: this process and how many share each step. Defaults 0 and 1.

    Example:
        >>> list(TileSampler(3, 2, steps=2, seed=0))[0][0], len(TileSampler(3, 2, steps=2))
        (0, 4)
    """

    def __init__(self, num_items: int, batch_size: int, *, steps: int, start: int = 0, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if num_items < 1:
            raise ValueError("the training data set is empty; give fit at least one (image, mask) item")
        self.num_items, self.batch_size, self.steps, self.start = num_items, batch_size, steps, start
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def order(self, epoch: int) -> torch.Tensor:
        """The item indices in the order epoch ``epoch`` visits them."""
        return torch.randperm(self.num_items, generator=torch.Generator().manual_seed(_seed(self.seed, _ORDER, epoch)))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, order = -1, None
        run_batch = self.batch_size * self.world_size
        for step in range(self.start, self.steps):
            first = step * run_batch + self.rank * self.batch_size
            for tile in range(first, first + self.batch_size):
                if tile // self.num_items != epoch:
                    epoch = tile // self.num_items
                    order = self.order(epoch)
                yield tile, int(order[tile % self.num_items])

    def __len__(self) -> int:
        return (self.steps - self.start) * self.batch_size


class TileStream(Dataset):
    """Training tiles by number: ``stream[t, i]`` is tile ``t`` of the run, cut from item ``i``.

    Args:
        prepare: ``prepare(i)`` returns item ``i`` as ``(image (C, H, W) float32, mask (H, W)
            int64, weight_map (H, W) float32)``, mirror-padded for a valid U-Net; runs in the
            DataLoader's workers (and must be picklable where workers are spawned).
        tile_size: side of the tiles.
        seed: the run's seed; tile ``t`` draws from a generator seeded with ``(seed, t)``.
        augment: True (default) draws the paper's augmentation for :func:`augment_tiles`
            to apply on the device; a callable ``(images, masks, weight_maps, generator)`` is
            applied here to each tile as a batch of one; False for none.
        grid, elastic_sigma: the elastic grid drawn when ``augment`` is True (defaults 3 and
            10 px, the paper's).

    Shape:
        ``(image (C, T, T), mask (T, T), weight_map (T, T))``, followed, when ``augment`` is True,
        by ``orientation (2,)`` int64 (quarter turns, flip) and ``displacement (2, grid, grid)``
        in pixels.
    """

    def __init__(self, prepare: Callable[[int], Sample], tile_size: int, *, seed: int = 0,
                 augment: bool | Augment = True, grid: int = 3, elastic_sigma: float = 10.0) -> None:
        self.prepare, self.tile_size, self.seed, self.augment = prepare, tile_size, seed, augment
        self.grid, self.elastic_sigma = grid, elastic_sigma

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, ...]:
        tile, index = key
        generator = torch.Generator().manual_seed(_seed(self.seed, _TILES, tile))
        image, mask, weight_map = random_tile(self.prepare(index), self.tile_size, generator, index)
        if self.augment is True:  # drawn here, applied to the whole batch on the device by augment_tiles
            orientation = torch.randint(0, 4, (2,), generator=generator)
            displacement = random_displacement(1, self.grid, self.elastic_sigma, generator=generator)[0]
            return image, mask, weight_map, orientation, displacement
        if callable(self.augment):  # on copies: the tile may be a view of an item held in memory
            tiles = (t[None].clone() for t in (image, mask, weight_map))
            image, mask, weight_map = (t[0] for t in self.augment(*tiles, generator))
        return image, mask, weight_map


def augment_tiles(images: torch.Tensor, masks: torch.Tensor, weight_maps: torch.Tensor, orientations: torch.Tensor,
                  displacement: torch.Tensor) -> Sample:
    """The paper's augmentation of a batch with the draws its tiles brought: flips, then the elastic deformation.

    Runs where the batch is (batched on the GPU for a CUDA batch); :class:`TileStream` draws
    the random part in the workers, so this is pure arithmetic.

    Args:
        images, masks, weight_maps: the batch, ``(N, C, T, T)``, ``(N, T, T)``, ``(N, T, T)``.
        orientations: ``(N, 2)`` int64, each tile's quarter turns and flip (see :func:`~unet_course.augment.orient`).
        displacement: ``(N, 2, grid, grid)`` node displacements in pixels (:func:`~unet_course.augment.elastic_deform`).

    Returns:
        ``(images, masks, weight_maps)`` of the same shapes, dtypes and device.
    """
    turns = orientations.tolist()
    images, masks, weight_maps = (torch.stack([orient(t, k, flip) for t, (k, flip) in zip(batch, turns)])
                                  for batch in (images, masks, weight_maps))
    return tuple(elastic_deform(images, masks, weight_maps, displacement=displacement))


def tile_loader(prepare: Callable[[int], Sample], num_items: int, *, tile_size: int, batch_size: int, steps: int,
                start: int = 0, seed: int = 0, augment: bool | Augment = True, num_workers: int = 0,
                pin_memory: bool = False, rank: int = 0, world_size: int = 1) -> DataLoader:
    """A ``DataLoader`` of the batches one process trains on from step ``start`` to ``steps``.

    Combines :class:`TileSampler` and :class:`TileStream` (see them for the arguments);
    ``num_workers`` processes prepare the tiles (0: this process), and ``pin_memory`` puts
    each batch in page-locked memory so that its copy to a GPU runs asynchronously.
    Yields ``len(TileSampler(...)) / batch_size`` batches of ``TileStream``'s tensors,
    stacked along a new first axis.
    """
    sampler = TileSampler(num_items, batch_size, steps=steps, start=start, seed=seed, rank=rank,
                          world_size=world_size)
    # The workers' own torch, numpy and random states (for a dataset that draws from them) are
    # seeded from this generator, one per process, so that they repeat too.
    workers = torch.Generator().manual_seed(_seed(seed, _WORKERS, rank))
    return DataLoader(TileStream(prepare, tile_size, seed=seed, augment=augment), batch_size=batch_size,
                      sampler=sampler, num_workers=num_workers, pin_memory=pin_memory, generator=workers)
