"""Batch orders for language-model data: length buckets for whole documents, contiguous streams for TBPTT.

Both are seeded per epoch (Lightning calls ``set_epoch`` at every epoch start), so epoch k
has the same order in every run with the same seed, and both deal disjoint, equal shares to
the ranks of a DDP job.
"""

from __future__ import annotations

from typing import Iterator, List, Sequence, Tuple

import torch
from torch.utils.data import Sampler

from rnnexp.errors import check_choice, check_positive_int

BATCHINGS = ("bucket", "random")


class BucketBatches(Sampler[List[int]]):
    """Index lists of about ``batch_size`` samples of similar length.

    ``mode="bucket"``: shuffle, cut the order into pools of ``pool`` batches, sort each pool
    by length, cut it into batches and shuffle the batches. Padding then only comes from
    length differences inside a batch of neighbours in the sorted pool, and the batch order
    stays random. ``mode="random"`` skips the sorting (the usual shuffled batches).

    The epoch's samples are cut into a number of batches divisible by ``num_replicas`` and
    sizes differing by at most one (never above ``batch_size``), so every sample is seen once
    per epoch, by exactly one rank, and every rank runs the same number of steps (DDP
    would hang otherwise) without repeating or dropping samples. Only when there are fewer
    samples than that number of batches (5 samples, ``batch_size=1``, 2 ranks: 6 batches) are
    the first samples of the order repeated, as ``DistributedSampler`` pads, so that no batch
    is empty.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        mode: str = "bucket",
        pool: int = 100,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        check_positive_int("batch_size", batch_size)
        check_positive_int("bucket_pool", pool)
        check_choice("sampler", mode, BATCHINGS)
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is outside [0, {num_replicas})")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.int64)
        self.batch_size, self.mode, self.pool, self.shuffle, self.seed = batch_size, mode, pool, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch = 0
        size = len(self.lengths)
        if size < num_replicas:
            raise ValueError(f"{size} samples cannot be shared by {num_replicas} ranks")
        batches = -(-size // batch_size)
        self.total = -(-batches // num_replicas) * num_replicas

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.total // self.num_replicas

    def batches(self) -> List[torch.Tensor]:
        """Every rank's batches of this epoch, in order (rank r takes every ``num_replicas``-th)."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        size = len(self.lengths)
        order = torch.randperm(size, generator=generator) if self.shuffle else torch.arange(size)
        if size < self.total:
            order = torch.cat([order, order[: self.total - size]])
        if self.mode == "bucket":
            span = self.pool * self.batch_size
            pools = []
            for chunk in order.split(span):
                # Stable, so equal lengths keep their shuffled order.
                keys = self.lengths[chunk]
                pools.append(chunk[torch.sort(keys, descending=True, stable=True).indices])
            order = torch.cat(pools)
        batches = list(order.tensor_split(self.total))
        if self.shuffle and self.mode == "bucket":
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self) -> Iterator[List[int]]:
        for batch in self.batches()[self.rank :: self.num_replicas]:
            yield batch.tolist()


class StreamOrder(Sampler[Tuple[int, int]]):
    """Yields ``(epoch, k)`` for the k-th window of an epoch's streams, in order.

    The windows must come in order for the carried state to continue the text, so the only
    randomness is which document order the dataset builds the epoch's streams from; the
    epoch travels with the key so the dataset needs no ``set_epoch`` of its own.
    """

    def __init__(self, num_windows: int, skip: int = 0) -> None:
        self.num_windows = num_windows
        self.epoch = 0
        # A run resumed mid-epoch goes on with the windows it had not trained (from a zero state).
        self.skip = skip if skip < num_windows else 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_windows

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        skip, self.skip = self.skip, 0
        for k in range(skip, self.num_windows):
            yield (self.epoch, k)
