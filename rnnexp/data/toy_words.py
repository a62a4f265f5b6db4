"""The seeds' toy examples as selectable tasks.

Character tasks (many-to-many, predict the next character at every step):
  ``hello``        "hell" -> "ello" with one-hot characters
  ``hello_batch``  the three-sequence batch ``hello``, ``eolll``, ``lleel``
  ``hihello``      "hihell" -> "ihello"
Word task (many-to-one, predict the last word from the ones before):
  ``i_like_dog``   "i like dog" / "i love coffee" / "i hate milk"

``sequences=[...]`` replaces a task's text (lengths may differ: batches are padded and
the model packs them). These are memorisation tasks: validation and test use the
training sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from rnnexp.batch import DataSpec
from rnnexp.data.collate import collate_sequences
from rnnexp.data.resumable import ResumableBatches, ResumableLoader, SeededBatches, batches_done_in_epoch
from rnnexp.data.vocab import Vocab
from rnnexp.errors import ConfigError, check_choice, check_positive_int


@dataclass(frozen=True)
class ToyTask:
    sequences: Sequence[str]
    level: str  # "char" or "word"
    target: str  # "sequence" (next token at every step) or "label" (the last token)


TASKS: Dict[str, ToyTask] = {
    "hello": ToyTask(["hello"], "char", "sequence"),
    "hello_batch": ToyTask(["hello", "eolll", "lleel"], "char", "sequence"),
    "hihello": ToyTask(["hihello"], "char", "sequence"),
    "i_like_dog": ToyTask(["i like dog", "i love coffee", "i hate milk"], "word", "label"),
}


class ToyWordsDataModule(pl.LightningDataModule):
    def __init__(
        self,
        task: str = "i_like_dog",
        sequences: Optional[Sequence[str]] = None,
        level: Optional[str] = None,
        target: Optional[str] = None,
        batch_size: int = 3,
        repeat: int = 20,
        shuffle: bool = True,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        check_choice("task", task, TASKS)
        check_positive_int("batch_size", batch_size)
        check_positive_int("repeat", repeat)
        base = TASKS[task]
        self.level = level or base.level
        self.target_kind = target or base.target
        check_choice("level", self.level, ("char", "word"))
        check_choice("target", self.target_kind, ("sequence", "label"))
        texts = list(sequences) if sequences else list(base.sequences)
        self.token_lists = [list(t) if self.level == "char" else t.split() for t in texts]
        for text, tokens in zip(texts, self.token_lists):
            if len(tokens) < 2:
                raise ConfigError("sequences", text, "every sequence needs at least 2 tokens (an input and a target)")
        self.vocab = Vocab.build(self.token_lists)
        self.batch_size, self.repeat, self.shuffle, self.seed = batch_size, repeat, shuffle, seed
        self.num_workers = num_workers
        self.samples = [self._sample(tokens) for tokens in self.token_lists]

    def _sample(self, tokens: List[str]):
        ids = self.vocab.encode(tokens)
        if self.target_kind == "sequence":
            return {"inputs": ids[:-1], "targets": ids[1:]}
        return {"inputs": ids[:-1], "targets": ids[-1]}

    def spec(self) -> DataSpec:
        """What the data feeds a model: token ids, and the next token at every step or a last-word label."""
        size = len(self.vocab)
        target = "next_token" if self.target_kind == "sequence" else "label"
        return DataSpec("tokens", size, target, size, list(self.vocab.tokens))

    def _loader(self, samples, shuffle: bool) -> DataLoader:
        return DataLoader(samples, batch_size=self.batch_size, shuffle=shuffle, collate_fn=collate_sequences,
                          num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        samples = self.samples * self.repeat
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        batches = SeededBatches(len(samples), self.batch_size, self.shuffle, self.seed, num_replicas=world, rank=rank)
        batches = ResumableBatches(batches, skip=batches_done_in_epoch(self.trainer))
        # Its own generator: creating the iterator must not draw from the global RNG that
        # dropout uses, or a resumed run would see different masks.
        generator = torch.Generator().manual_seed(self.seed)
        return ResumableLoader(samples, batch_sampler=batches, collate_fn=collate_sequences, generator=generator,
                               num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.samples, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.samples, False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.samples, False)
