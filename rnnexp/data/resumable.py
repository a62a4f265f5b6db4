"""Batch orders that survive a crash: seeded per epoch, and resumable mid-epoch.

Lightning restores model, optimizer and loop counters from a checkpoint, but a plain
shuffled DataLoader restarted mid-epoch draws a new order and trains some samples twice
and others never. Here the order of epoch k depends only on ``(seed, k)`` (Lightning calls
``set_epoch`` at each epoch start), and the first iteration after a restore skips the
batches the interrupted epoch had already trained, read from Lightning's own restored
loop counters.

Training loaders are :class:`ResumableLoader`: Lightning builds a loader's iterator once before
it calls ``set_epoch`` on a resume, and a loader with worker processes takes its first indices
when its iterator is built, so the iterator must wait for the first batch.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler


class SeededBatches(Sampler[List[int]]):
    """Index lists of ``batch_size``, shuffled from ``seed + epoch`` when ``shuffle``.

    Under DDP each of ``num_replicas`` ranks takes every ``num_replicas``-th batch of the
    same global order, so an epoch shows every sample once across ranks. Ranks must run
    the same number of steps: when the batches do not divide evenly, the last ones are
    dealt round-robin again from the start of the order (as ``DistributedSampler`` pads).
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        self.size, self.batch_size, self.shuffle, self.seed, self.drop_last = size, batch_size, shuffle, seed, drop_last
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _total_batches(self) -> int:
        return self.size // self.batch_size if self.drop_last else -(-self.size // self.batch_size)

    def __len__(self) -> int:
        return -(-self._total_batches() // self.num_replicas)

    def __iter__(self) -> Iterator[List[int]]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        batches = [order[i * self.batch_size : (i + 1) * self.batch_size].tolist() for i in range(self._total_batches())]
        padded = len(self) * self.num_replicas
        batches += batches[: padded - len(batches)]
        yield from batches[self.rank :: self.num_replicas]


def batches_done_in_epoch(trainer: Optional[pl.Trainer]) -> int:
    """Training batches already completed in the current epoch when fitting resumes from a checkpoint."""
    if trainer is None or not trainer.fit_loop.restarting:
        return 0
    # "processed", not "completed": a checkpoint written in on_train_batch_end counts its
    # batch as processed but not yet completed.
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)


class ResumableBatches(Sampler[List[int]]):
    """Wraps a batch sampler: its next iteration skips ``skip`` batches (without loading them)."""

    def __init__(self, batches: Sampler[Sequence[int]], skip: int = 0) -> None:
        self.batches, self.skip = batches, skip
        # Lightning calls set_epoch on ``loader.sampler`` and ``loader.batch_sampler.sampler``,
        # never on a batch sampler itself: expose the wrapped one under that name.
        self.sampler = batches

    def set_epoch(self, epoch: int) -> None:
        # Used directly as a DataLoader's ``sampler`` (with ``batch_size=None``), this is the
        # only object Lightning sees.
        if hasattr(self.batches, "set_epoch"):
            self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        skip, self.skip = self.skip, 0
        iterator = iter(self.batches)
        if skip < len(self.batches):  # a checkpoint at the very end of an epoch skips nothing
            for _ in range(skip):
                next(iterator)
        yield from iterator


class ResumableLoader(DataLoader):
    """A training ``DataLoader`` whose iterator starts at the first batch, and which Lightning knows resumes.

    On a resume Lightning 2.6 builds the iterator in ``FitLoop.setup_data`` and only then
    calls ``set_epoch``; with ``num_workers > 0`` torch's iterator asks the sampler for its
    first ``prefetch_factor * num_workers`` batches while it is built, so a resumed epoch k
    would start with epoch 0's order. Here ``iter()`` returns a handle that builds torch's
    iterator at the first ``next()``, after ``set_epoch``; with ``num_workers=0`` nothing
    changes, since torch asks the sampler lazily anyway.

    ``state_dict``/``load_state_dict`` make it a ``_Stateful`` loader for Lightning, which
    otherwise warns "your dataloader is not resumable" on every mid-epoch resume. There is
    nothing to store: the samplers' order depends only on ``(seed, epoch)`` and the position
    in the epoch is read from Lightning's own restored loop counters
    (:func:`batches_done_in_epoch`), which every checkpoint already holds.
    """

    def __iter__(self) -> Iterator[Any]:
        return _StartsAtFirstBatch(super().__iter__)

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        pass


class _StartsAtFirstBatch:
    def __init__(self, make: Callable[[], Iterator[Any]]) -> None:
        self._make: Optional[Callable[[], Iterator[Any]]] = make
        self._iterator: Optional[Iterator[Any]] = None

    def __iter__(self) -> "_StartsAtFirstBatch":
        return self

    def __next__(self) -> Any:
        if self._iterator is None:
            assert self._make is not None
            self._iterator, self._make = self._make(), None
        return next(self._iterator)
