"""Character-level language modelling on one-document-per-line text (CS20's ``trump_tweets.txt``).

The file is read as UTF-8, one document per line (CS20's format: a tweet per line ending in
the marker `` _E_``, URLs replaced by ``__HTTP__``; both are kept as they are, so the model
learns to end tweets). Documents are split into train/val/test (seeded, by distinct text), and the
vocabulary is built from the training split: index 0 is padding, index 1 the unknown symbol
that rare (``min_count``) and unseen characters map to. Nothing is dropped (CS20's fixed
vocabulary silently dropped ``!``, ``&`` and every non-listed character). Every document is
followed by ``\\n``, the end-of-document symbol, so bits per character count it too.

``batching=stream``: the split's documents, concatenated, as B contiguous streams cut into
windows of ``num_steps``; row i of window k+1 continues row i of window k, so a model that
carries (and detaches) its state across batches gets truncated BPTT. Batches carry
``carry_state: True`` to say so. The document order is reshuffled each training epoch.

``batching=tweets``: each document is one sequence (``"\\n" + doc + "\\n"``: input
``chars[:-1]``, target ``chars[1:]``), padded per batch and packed by the backbone; batches
of similar lengths (``bucketing=true``) or shuffled ones (``bucketing=false``).
"""

from __future__ import annotations

import logging
import os
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from rnnexp.batch import DataSpec
from rnnexp.data.collate import collate_sequences
from rnnexp.data.folders import download_folder
from rnnexp.data.resumable import ResumableBatches, ResumableLoader, batches_done_in_epoch
from rnnexp.data.samplers import BucketBatches, StreamOrder
from rnnexp.data.stream_windows import StreamWindows
from rnnexp.data.vocab import Vocab
from rnnexp.errors import ConfigError, DataError, check_choice, check_fraction, check_positive_int

log = logging.getLogger(__name__)

FILENAME = "trump_tweets.txt"
URL = (
    "https://raw.githubusercontent.com/chiphuyen/stanford-tensorflow-tutorials/master/examples/data/trump_tweets.txt"
)
END_OF_DOC = "\n"
MODES = ("stream", "tweets")


def read_documents(path: Path) -> List[str]:
    """Non-empty lines of a UTF-8 text file, without line endings; a :class:`DataError` naming
    the file (and for bad bytes, the line and byte offset) when it is not such a file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    if not raw.strip():
        raise DataError(f"{path} is empty; expected UTF-8 text with one document (tweet) per line")
    if b"\x00" in raw:
        offset = raw.index(b"\x00")
        raise DataError(f"{path} is a binary file (NUL byte at offset {offset}); expected UTF-8 text, one document per line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1)
        raise DataError(
            f"{path} is not UTF-8: line {line}, byte {column} of the line (offset {exc.start}) is "
            f"{raw[exc.start:exc.end]!r}; convert it with iconv -t UTF-8"
        ) from exc
    # split("\n"), not splitlines(): U+2028 and friends are characters of a tweet, not line ends.
    documents = [line.rstrip("\r") for line in text.split("\n")]
    return [d for d in documents if d.strip()]


def download(url: str, target: Path, timeout: float) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
        out.write(response.read())
    os.replace(partial, target)


def split_documents(
    documents: Sequence[str], val_fraction: float, test_fraction: float, seed: int
) -> Tuple[List[str], List[str], List[str]]:
    """Seeded split by distinct text: every copy of a document goes to the same split, so no
    validation or test document is also a training one (the CS20 file repeats 299 of its lines).
    The fractions count distinct texts; a non-zero fraction gets at least one."""
    copies: Dict[str, int] = {}
    for document in documents:
        copies[document] = copies.get(document, 0) + 1
    distinct = list(copies)  # in order of first appearance
    n = len(distinct)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise DataError(f"{n} distinct documents are too few for a train/val/test split; the file needs at least 3")
    pick = lambda idx: [distinct[i] for i in idx for _ in range(copies[distinct[i]])]  # noqa: E731
    return pick(order[n_val + n_test :]), pick(order[:n_val]), pick(order[n_val : n_val + n_test])


class TweetsDataModule(pl.LightningDataModule):
    """``data=tweets``: CS20's Trump tweets (or any one-document-per-line UTF-8 file), char level."""

    def __init__(
        self,
        data_dir: str = "data/tweets",
        path: Optional[str] = None,
        download: bool = True,
        url: str = URL,
        download_timeout: float = 5.0,
        batching: str = "stream",
        bucketing: bool = True,
        pool_batches: int = 100,
        batch_size: int = 64,
        eval_batch_size: Optional[int] = None,
        num_steps: int = 50,
        min_count: int = 5,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        check_choice("batching", batching, MODES)
        if not isinstance(bucketing, bool):
            raise ConfigError("bucketing", bucketing, "must be true (length buckets) or false (random batches)")
        check_positive_int("batch_size", batch_size)
        check_positive_int("num_steps", num_steps)
        check_positive_int("min_count", min_count)
        check_positive_int("pool_batches", pool_batches)
        if eval_batch_size is not None:
            check_positive_int("eval_batch_size", eval_batch_size)
        for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            check_fraction(key, value)
        if val_fraction + test_fraction >= 1:
            raise ConfigError("val_fraction", val_fraction, f"val_fraction + test_fraction must be < 1 (test is {test_fraction})")
        self.data_dir, self.path, self.download, self.url = data_dir, path, download, url
        self.download_timeout = download_timeout
        self.batching, self.bucketing, self.pool_batches = batching, bucketing, pool_batches
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_steps, self.min_count = num_steps, min_count
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.shuffle, self.seed, self.num_workers = shuffle, seed, num_workers
        self.vocab: Optional[Vocab] = None
        self.splits: Dict[str, List[np.ndarray]] = {}

    # -- files -----------------------------------------------------------------------------
    def file(self) -> Path:
        """The text file to read, downloaded first when it is missing (and ``download``)."""
        if self.path:
            path = Path(self.path).expanduser()
            if not path.is_file():
                raise DataError(f"data.path={self.path}: no such file; give a UTF-8 text file with one document per line")
            return path
        path = Path(self.data_dir).expanduser() / FILENAME
        if path.is_file():
            return path
        hint = (f"put {FILENAME} in {path.parent}, or set paths.data_dir=<dir> (or the environment variable "
                f"RNNEXP_DATA_DIR) to a folder whose {path.parent.name}/ has it, or data.path=<file>")
        if not self.download:
            raise DataError(f"{path} not found and data.download=false; {hint}")
        try:
            log.info("Downloading %s to %s", self.url, path)
            with download_folder(path.parent):  # removed again when the download fails
                download(self.url, path, self.download_timeout)
        except Exception as exc:  # noqa: BLE001 - any network failure ends the same way
            raise DataError(f"{path} not found and the download from {self.url} failed ({exc}); {hint}") from exc
        return path

    def prepare_data(self) -> None:
        self.file()

    def _load(self) -> None:
        if self.vocab is not None:
            return
        documents = read_documents(self.file())
        train, val, test = split_documents(documents, self.val_fraction, self.test_fraction, self.split_seed)
        # The end-of-document symbol is part of every document's text, however rare documents are.
        self.vocab = Vocab.build([*train, END_OF_DOC * self.min_count], min_count=self.min_count, unk=True)
        self.splits = {name: [self._encode(d) for d in docs] for name, docs in (("train", train), ("val", val), ("test", test))}

    def _encode(self, document: str) -> np.ndarray:
        return np.asarray(self.vocab.ids(document + END_OF_DOC), dtype=np.int64)

    def setup(self, stage: Optional[str] = None) -> None:
        self._load()

    def spec(self) -> DataSpec:
        """What the data feeds a model: character ids, and the next character at every step."""
        self._load()
        size = len(self.vocab)
        return DataSpec("tokens", size, "next_token", size, list(self.vocab.tokens))

    # -- loaders ---------------------------------------------------------------------------
    def _ranks(self) -> Tuple[int, int]:
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _stream_loader(self, split: str, rows: int, shuffle: bool) -> DataLoader:
        world, rank = self._ranks()
        documents = self.splits[split]
        if split != "train":
            # Evaluation splits are small: fewer streams rather than an error.
            total = sum(len(d) for d in documents)
            rows = max(1, min(rows, (total - 1) // (world * 2)))
        dataset = StreamWindows(documents, rows, self.num_steps, shuffle, self.seed, world, rank)
        order = StreamOrder(len(dataset), skip=batches_done_in_epoch(self.trainer) if split == "train" else 0)
        loader = ResumableLoader if split == "train" else DataLoader
        return loader(dataset, sampler=order, batch_size=None, num_workers=self.num_workers,
                      generator=torch.Generator().manual_seed(self.seed))

    def tweet_samples(self, split: str) -> List[Dict[str, torch.Tensor]]:
        samples = []
        start = self.vocab.index[END_OF_DOC] if END_OF_DOC in self.vocab.index else self.vocab.unk_index
        for ids in self.splits[split]:
            ids = torch.from_numpy(np.concatenate([[start], ids]))
            samples.append({"inputs": ids[:-1], "targets": ids[1:]})
        return samples

    def tweet_batches(self, split: str, batch_size: int, mode: str, shuffle: bool) -> BucketBatches:
        world, rank = self._ranks()
        lengths = [len(ids) for ids in self.splits[split]]
        return BucketBatches(lengths, batch_size, mode, self.pool_batches, shuffle, self.seed, world, rank)

    def _tweets_loader(self, split: str, batch_size: int, mode: str, shuffle: bool) -> DataLoader:
        batches = self.tweet_batches(split, batch_size, mode, shuffle)
        skip = batches_done_in_epoch(self.trainer) if split == "train" else 0
        loader = ResumableLoader if split == "train" else DataLoader
        return loader(
            self.tweet_samples(split),
            batch_sampler=ResumableBatches(batches, skip=skip),
            collate_fn=collate_sequences,
            num_workers=self.num_workers,
            # Its own generator: creating the iterator must not draw from the global RNG that
            # dropout uses, or a resumed run would see different masks.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        self._load()
        if self.batching == "stream":
            return self._stream_loader("train", self.batch_size, self.shuffle)
        return self._tweets_loader("train", self.batch_size, "bucket" if self.bucketing else "random", self.shuffle)

    def _eval_loader(self, split: str) -> DataLoader:
        self._load()
        if self.batching == "stream":
            return self._stream_loader(split, self.eval_batch_size, False)
        # Sorted by length, unshuffled: the least padding, the same batches every time.
        return self._tweets_loader(split, self.eval_batch_size, "bucket", False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
