"""Toy translation tasks for encoder-decoders, generated from a seed (no downloads).

``task``:
  ``reverse``  "hello" -> "olleh" (lowercase letters, ``min_length``..``max_length``)
  ``sort``     "hello" -> "ehllo"
  ``add``      "123+45" -> "168" (operands of 1..``max_digits`` digits)
  ``dates``    a date in one of :data:`DATE_FORMATS` ("3 march 2019", "Mar 3, 2019", "03/03/19", ...)
               -> ISO "2019-03-03" (years 1950-2049)

Source texts are drawn without repetition and dealt to train/val/test, so the splits are
disjoint by source text: a model is tested on inputs it never saw. One character vocabulary
(with ``<pad>`` at 0, ``<bos>``, ``<eos>``) serves both sides; it is fixed by the task, not by
the draw. Batches follow :mod:`rnnexp.batch` (target kind ``sequence``): training batches
group sources of similar length (``bucketing``), seeded per epoch and resumable mid-epoch.
"""

from __future__ import annotations

import datetime
import random
import string
from typing import Callable, Dict, List, Sequence, Tuple

import pytorch_lightning as pl
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader

from rnnexp.batch import BOS, EOS, PAD_INDEX, DataSpec
from rnnexp.data.collate import collate_sequences
from rnnexp.data.resumable import ResumableBatches, batches_done_in_epoch
from rnnexp.data.samplers import BucketBatches
from rnnexp.data.vocab import PAD, Vocab
from rnnexp.errors import ConfigError, check_choice, check_positive_int

MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
          "october", "november", "december"]
# strftime-free, so the text never depends on the locale. d: date.
DATE_FORMATS: Dict[str, Callable[[datetime.date], str]] = {
    "3 march 2019": lambda d: f"{d.day} {MONTHS[d.month - 1]} {d.year}",
    "03 March 2019": lambda d: f"{d.day:02d} {MONTHS[d.month - 1].title()} {d.year}",
    "Mar 3, 2019": lambda d: f"{MONTHS[d.month - 1][:3].title()} {d.day}, {d.year}",
    "March 3, 2019": lambda d: f"{MONTHS[d.month - 1].title()} {d.day}, {d.year}",
    "MAR 03 2019": lambda d: f"{MONTHS[d.month - 1][:3].upper()} {d.day:02d} {d.year}",
    "03/03/19": lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",  # US order; 50-99 -> 19xx
    "3/3/2019": lambda d: f"{d.month}/{d.day}/{d.year}",
    "3.3.2019": lambda d: f"{d.day}.{d.month}.{d.year}",  # European order
    "the 3 of march, 2019": lambda d: f"the {d.day} of {MONTHS[d.month - 1]}, {d.year}",
    "sunday, march 3, 2019": lambda d: f"{d.strftime('%A').lower()}, {MONTHS[d.month - 1]} {d.day}, {d.year}",
    "2019 mar 3": lambda d: f"{d.year} {MONTHS[d.month - 1][:3]} {d.day}",
}
FIRST_DAY, DAYS = datetime.date(1950, 1, 1), (datetime.date(2050, 1, 1) - datetime.date(1950, 1, 1)).days
LETTERS = string.ascii_lowercase
TASKS = ("reverse", "sort", "add", "dates")


def _alphabet(task: str) -> str:
    if task in ("reverse", "sort"):
        return LETTERS
    if task == "add":
        return string.digits + "+"
    return string.ascii_letters + string.digits + " ,./-"


def _draw(task: str, rng: random.Random, min_length: int, max_length: int, max_digits: int) -> Tuple[str, str]:
    if task in ("reverse", "sort"):
        text = "".join(rng.choice(LETTERS) for _ in range(rng.randint(min_length, max_length)))
        return text, text[::-1] if task == "reverse" else "".join(sorted(text))
    if task == "add":
        a, b = (rng.randrange(10 ** rng.randint(1, max_digits)) for _ in range(2))
        return f"{a}+{b}", str(a + b)
    date = FIRST_DAY + datetime.timedelta(days=rng.randrange(DAYS))
    return rng.choice(list(DATE_FORMATS.values()))(date), date.isoformat()


def generate_pairs(task: str, count: int, seed: int, min_length: int = 1, max_length: int = 10,
                   max_digits: int = 3) -> List[Tuple[str, str]]:
    """``count`` (source, target) pairs with distinct sources, the same for the same arguments."""
    rng, seen, pairs = random.Random(seed), set(), []
    for _ in range(50 * count + 1000):  # a space too small for `count` distinct sources stops here
        source, target = _draw(task, rng, min_length, max_length, max_digits)
        if source not in seen:
            seen.add(source)
            pairs.append((source, target))
            if len(pairs) == count:
                return pairs
    raise ConfigError("num_train", count, f"task={task} with these lengths has about {len(pairs)} distinct "
                      "sources; lower num_train/num_val/num_test or raise max_length/max_digits")


def collate_pairs(samples: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Source/target samples -> a padded batch with the keys of :mod:`rnnexp.batch` (target kind ``sequence``)."""
    batch = collate_sequences(samples)
    decoder_inputs = [s["target_inputs"] for s in samples]
    batch["target_inputs"] = pad_sequence(decoder_inputs, batch_first=True, padding_value=PAD_INDEX)
    batch["target_lengths"] = torch.tensor([len(t) for t in decoder_inputs], dtype=torch.int64)
    return batch


class Seq2SeqToyDataModule(pl.LightningDataModule):
    def __init__(
        self,
        task: str = "reverse",
        num_train: int = 10000,
        num_val: int = 500,
        num_test: int = 1000,
        min_length: int = 1,
        max_length: int = 10,
        max_digits: int = 3,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        bucketing: bool = True,
        pool_batches: int = 50,
        data_seed: int = 0,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        check_choice("task", task, TASKS)
        for key, value in [("num_train", num_train), ("num_val", num_val), ("num_test", num_test),
                           ("min_length", min_length), ("max_length", max_length), ("max_digits", max_digits),
                           ("batch_size", batch_size)]:
            check_positive_int(key, value)
        if max_length < min_length:
            raise ConfigError("max_length", max_length, f"must be >= data.min_length ({min_length})")
        self.task, self.batch_size = task, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.bucketing, self.pool_batches, self.seed, self.num_workers = bucketing, pool_batches, seed, num_workers
        self.vocab = Vocab([PAD, BOS, EOS, *_alphabet(task)])
        pairs = generate_pairs(task, num_train + num_val + num_test, data_seed, min_length, max_length, max_digits)
        self.pairs = {"train": pairs[:num_train], "val": pairs[num_train:num_train + num_val],
                      "test": pairs[num_train + num_val:]}
        self.samples = {split: [self.encode(s, t) for s, t in p] for split, p in self.pairs.items()}

    def encode(self, source: str, target: str) -> Dict[str, torch.Tensor]:
        bos, eos = self.vocab.index[BOS], self.vocab.index[EOS]
        out = self.vocab.ids(list(target))
        return {
            "inputs": self.vocab.encode(list(source)),
            "targets": torch.tensor(out + [eos], dtype=torch.int64),
            "target_inputs": torch.tensor([bos] + out, dtype=torch.int64),
        }

    def spec(self) -> DataSpec:
        """Token ids in, an output sequence over the same vocabulary out."""
        size = len(self.vocab)
        return DataSpec("tokens", size, "sequence", size, list(self.vocab.tokens))

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        lengths = [len(s["inputs"]) for s in self.samples[split]]
        mode = "bucket" if self.bucketing else "random"
        batches = BucketBatches(lengths, batch_size, mode, self.pool_batches, shuffle, self.seed, world, rank)
        skip = batches_done_in_epoch(self.trainer) if split == "train" else 0
        return DataLoader(
            self.samples[split], batch_sampler=ResumableBatches(batches, skip=skip), collate_fn=collate_pairs,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),  # never draws from the global RNG
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.eval_batch_size, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.eval_batch_size, False)
