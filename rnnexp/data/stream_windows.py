"""Truncated-BPTT windows: a token text cut into B contiguous streams, read window by window.

The batches of ``data=tweets batching=stream`` and of ``rnnexp.evaluate``: row i of window k+1
continues row i of window k, so a model that carries (and detaches) its state across batches
reads each stream as one long sequence. Batches say so with ``carry_state: True``.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from rnnexp.errors import DataError


class StreamWindows(Dataset):
    """Windows of B contiguous streams: ``dataset[(epoch, k)]`` is window k of that epoch.

    The documents (each followed by the end-of-document id) are concatenated, in an order
    reshuffled per epoch when ``shuffle``, and cut into ``rows * num_replicas`` streams of
    equal length; this rank takes its ``rows``. Window k holds characters
    ``[k*num_steps, (k+1)*num_steps)`` of every stream; the last window is shorter rather
    than dropped, so every character but the ``< rows`` left over by the cut is trained once
    per epoch.
    """

    def __init__(
        self,
        documents: Sequence[np.ndarray],
        rows: int,
        num_steps: int,
        shuffle: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.documents = list(documents)
        self.rows, self.num_steps, self.shuffle, self.seed = rows, num_steps, shuffle, seed
        self.num_replicas, self.rank = num_replicas, rank
        total = sum(len(d) for d in self.documents)
        self.stream_length = (total - 1) // (rows * num_replicas)  # -1: the last character has no target
        if self.stream_length < 1:
            raise DataError(f"{total} characters cannot fill {rows * num_replicas} streams; lower data.batch_size")
        self._cached: Tuple[int, Optional[np.ndarray]] = (-1, None)

    def __len__(self) -> int:
        return -(-self.stream_length // self.num_steps)

    def text(self, epoch: int) -> np.ndarray:
        """The epoch's whole concatenated text (all ranks)."""
        if self.shuffle:
            order = torch.randperm(len(self.documents), generator=torch.Generator().manual_seed(self.seed + epoch))
            return np.concatenate([self.documents[i] for i in order.tolist()])
        return np.concatenate(self.documents)

    def streams(self, epoch: int) -> np.ndarray:
        """[rows, stream_length + 1] ids of this rank's streams (one extra for the last target)."""
        if self._cached[0] != epoch or self._cached[1] is None:
            text = self.text(epoch)
            length, rows = self.stream_length, self.rows * self.num_replicas
            # Stream i is text[i*length : (i+1)*length + 1]: inputs and its targets shifted by one.
            starts = np.arange(rows)[self.rank * self.rows : (self.rank + 1) * self.rows] * length
            streams = text[starts[:, None] + np.arange(length + 1)[None, :]]
            self._cached = (epoch, streams)
        return self._cached[1]

    def __getitem__(self, key) -> Dict[str, object]:
        # An int key comes from Lightning's sampler replacement (overfit_batches): epoch 0.
        epoch, k = key if isinstance(key, tuple) else (0, int(key))
        streams = self.streams(epoch)
        start = k * self.num_steps
        stop = min(start + self.num_steps, self.stream_length)
        inputs = torch.from_numpy(np.ascontiguousarray(streams[:, start:stop]))
        targets = torch.from_numpy(np.ascontiguousarray(streams[:, start + 1 : stop + 1]))
        return {
            "inputs": inputs,
            "targets": targets,
            "lengths": torch.full((self.rows,), stop - start, dtype=torch.int64),
            "carry_state": True,
        }
