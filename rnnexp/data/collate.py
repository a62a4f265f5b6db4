"""Pad variable-length samples into a batch dict; packing happens inside the model.

A ``PackedSequence`` built here would be split apart by Lightning's batch transfer
(Lightning #437) and fails under DDP, so batches stay padded tensors plus lengths.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from rnnexp.batch import IGNORE_INDEX, PAD_INDEX


def collate_sequences(samples: Sequence[Dict[str, Tensor]]) -> Dict[str, Tensor]:
    """Samples ``{"inputs": [T] or [T, F], "targets": [] or [T]}`` -> a padded batch.

    ``lengths`` stays an int64 CPU tensor; per-step targets are padded with
    ``IGNORE_INDEX`` so the loss and metrics skip them.
    """
    inputs: List[Tensor] = [s["inputs"] for s in samples]
    batch = {
        "inputs": pad_sequence(inputs, batch_first=True, padding_value=PAD_INDEX),
        "lengths": torch.tensor([len(x) for x in inputs], dtype=torch.int64),
    }
    targets = [s["targets"] for s in samples]
    if targets[0].dim() == 0:
        batch["targets"] = torch.stack(targets)
    else:
        batch["targets"] = pad_sequence(targets, batch_first=True, padding_value=IGNORE_INDEX)
    return batch
