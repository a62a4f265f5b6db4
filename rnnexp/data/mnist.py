"""MNIST read as a sequence: rows (28 steps x 28 pixels), pixels (784 x 1) or permuted pixels.

The four original IDX gzip files are read from ``data_dir`` (downloaded when missing and
the network is there). Images stay uint8 arrays in memory; a batch is cut out of them
by index and normalised on the fly, which is faster than a per-sample ``Dataset`` with a
``collate_fn`` and keeps 70k float images (220 MB) out of memory.

- validation: ``val_size`` images of the 60k training set, chosen by ``split_seed``;
- normalisation: the mean and std of the remaining training images (one scalar each);
- ``permute=true``: one fixed permutation of the 784 pixels from ``permutation_seed``,
  the same for train, validation and test; the seed is saved in the run's ``config.yaml``,
  so :func:`pixel_permutation` gives it back;
- ``shift=k``: training images moved by up to k pixels up/down and left/right (the usual
  translation augmentation, as torchvision's ``RandomAffine(translate=...)``); validation and
  test images are never moved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Set, Tuple

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnexp.batch import DataSpec
from rnnexp.data.resumable import ResumableBatches, ResumableLoader, SeededBatches, batches_done_in_epoch
from rnnexp.data.idx import FILES, MIRRORS, ensure_files, read_idx, verify_checksum
from rnnexp.errors import ConfigError, DataError, check_choice, check_int, check_positive_int

MODES = ("row", "pixel")
SIDE = 28
NUM_CLASSES = 10

# Decoded files by (path, size, mtime): several datamodules in one process (tests,
# benchmarks, sweeps) decode each file once; a changed file is read again. The md5 of a
# file is computed once too, but only a file in _VERIFIED has been checked: one decoded
# with verify_checksums=false is still checked when a later datamodule asks.
_DECODED: Dict[Tuple[str, int, int], np.ndarray] = {}
_VERIFIED: Set[Tuple[str, int, int]] = set()


def pixel_permutation(seed: int) -> Tensor:
    """The fixed pixel order of permuted MNIST for ``seed`` (numpy's PCG64 stream is stable across versions)."""
    return torch.from_numpy(np.random.default_rng(seed).permutation(SIDE * SIDE))


def pixel_mean_std(images: np.ndarray) -> Tuple[float, float]:
    """Mean and (population) std of uint8 pixels, exact, from a 256-bin histogram:
    a float copy of 55k images would be 345 MB and take a second."""
    counts = np.bincount(images.reshape(-1), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    total = counts.sum()
    mean = float((counts * values).sum() / total)
    var = float((counts * (values - mean) ** 2).sum() / total)
    return mean, var**0.5


def load_split(folder: Path, split: str, verify_checksums: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """``split`` train|test -> (uint8 images [N, 28, 28], int64 labels [N]), read-only arrays."""
    arrays = []
    for part in ("images", "labels"):
        spec = FILES[f"{split}_{part}"]
        path = folder / spec.name
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if verify_checksums and key not in _VERIFIED:
            verify_checksum(path, spec)
            _VERIFIED.add(key)
        if key not in _DECODED:
            _DECODED[key] = read_idx(path, spec.magic)
        arrays.append(_DECODED[key])
    images, labels = arrays
    images_name, labels_name = FILES[split + "_images"].name, FILES[split + "_labels"].name
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE):
        raise DataError(f"{folder / images_name} holds images of shape {images.shape[1:]}, not 28x28")
    if len(images) != len(labels):
        raise DataError(f"{folder / images_name} has {len(images)} images but {labels_name} {len(labels)} labels")
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise DataError(f"{folder / labels_name} has a label {int(labels.max())}; MNIST labels are 0-9")
    return images, labels.astype(np.int64)


def shifted(images: np.ndarray, offsets: np.ndarray, shift: int) -> np.ndarray:
    """``images`` [B, 28*28] (uint8) moved by ``offsets`` [B, 2] (rows, columns; each in
    [-shift, shift]), the uncovered border blank (0), as one gather out of a padded copy."""
    count = len(images)
    padded = np.zeros((count, SIDE + 2 * shift, SIDE + 2 * shift), dtype=images.dtype)
    padded[:, shift : shift + SIDE, shift : shift + SIDE] = images.reshape(count, SIDE, SIDE)
    # Output pixel (r, c) of an image moved down by dr and right by dc is input (r - dr, c - dc).
    rows = shift - offsets[:, 0, None] + np.arange(SIDE)
    cols = shift - offsets[:, 1, None] + np.arange(SIDE)
    moved = padded[np.arange(count)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return moved.reshape(count, SIDE * SIDE)


class SequenceImages(Dataset):
    """Whole batches by index: ``dataset[indices] -> {"inputs", "lengths", "targets"}``.

    Used with ``batch_size=None`` and a sampler that yields index lists, so a batch is a
    single gather instead of B ``__getitem__`` calls and a collate. The gather and the
    normalisation run in numpy, single-threaded: torch's two-thread kernels on these
    small arrays wait on each other when the cores are shared, 50x slower at worst.

    ``shift > 0`` moves each image of a batch by random offsets (:func:`shifted`). The offsets
    are drawn from a generator seeded by ``shift_seed`` and the batch's indices: no state to
    save or to send to worker processes, the same batch gets the same offsets in a resumed
    run, and a sample gets new ones each epoch (its batch is a different draw of the order).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, steps: int, mean: float, std: float,
                 shift: int = 0, shift_seed: int = 0) -> None:
        self.images = np.ascontiguousarray(images.reshape(len(images), SIDE * SIDE))  # uint8, permuted if asked
        self.labels = np.ascontiguousarray(labels)
        self.steps, self.mean, self.std = steps, mean, std
        self.shift, self.shift_seed = shift, shift_seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, indices) -> Dict[str, Tensor]:
        index = np.asarray(indices, dtype=np.int64)
        images = np.take(self.images, index, axis=0)
        if self.shift:
            rng = np.random.default_rng([self.shift_seed, *index.tolist()])
            images = shifted(images, rng.integers(-self.shift, self.shift + 1, size=(len(index), 2)), self.shift)
        inputs = images.astype(np.float32)
        inputs -= self.mean
        inputs /= self.std
        return {
            "inputs": torch.from_numpy(inputs).view(len(index), self.steps, -1),
            # Every row is full length, so the backbone runs the fused kernel without packing.
            "lengths": torch.full((len(index),), self.steps, dtype=torch.int64),
            "targets": torch.from_numpy(np.take(self.labels, index)),
        }

    def tensors(self) -> Tuple[Tensor, Tensor]:
        """Every sample at once: (inputs [N, T, F] float, targets [N])."""
        return self[np.arange(len(self))]["inputs"], torch.from_numpy(self.labels)


class MNISTDataModule(pl.LightningDataModule):
    def __init__(
        self,
        data_dir: str = "data/mnist",
        mode: str = "row",
        permute: bool = False,
        permutation_seed: int = 0,
        val_size: int = 5000,
        split_seed: int = 0,
        batch_size: int = 128,
        eval_batch_size: Optional[int] = 1000,
        shuffle: bool = True,
        shuffle_seed: int = 0,
        normalize: bool = True,
        verify_checksums: bool = True,
        download: bool = True,
        mirrors: Sequence[str] = MIRRORS,
        download_timeout: float = 10.0,
        num_workers: int = 0,
        shift: int = 0,
        shift_seed: int = 0,
    ) -> None:
        super().__init__()
        check_choice("mode", mode, MODES)
        check_positive_int("batch_size", batch_size)
        if eval_batch_size is not None:
            check_positive_int("eval_batch_size", eval_batch_size)
        check_int("val_size", val_size, 0, hint=" (images of the training set held out)")
        check_int("num_workers", num_workers, 0)
        if permute and mode != "pixel":
            raise ConfigError("permute", permute, "permuted MNIST reads pixels: set data.mode=pixel")
        check_int("shift", shift, 0, SIDE, hint=": pixels an image may move (0: off)")
        if shift and permute:
            raise ConfigError("shift", shift, "moves the image, which a permuted sequence no longer is: set data.shift=0")
        if not download_timeout or download_timeout <= 0:
            raise ConfigError("download_timeout", download_timeout, "must be a number of seconds > 0")
        self.data_dir = Path(data_dir)
        self.mode, self.permute, self.permutation_seed = mode, permute, permutation_seed
        self.val_size, self.split_seed = val_size, split_seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.shuffle, self.shuffle_seed = shuffle, shuffle_seed
        self.normalize, self.verify_checksums = normalize, verify_checksums
        self.download, self.mirrors, self.download_timeout = download, list(mirrors), float(download_timeout)
        self.num_workers = num_workers
        self.shift, self.shift_seed = shift, shift_seed
        self.steps = SIDE if mode == "row" else SIDE * SIDE
        self.permutation: Optional[Tensor] = pixel_permutation(permutation_seed) if permute else None
        self.train_set: Optional[SequenceImages] = None
        self.val_set: Optional[SequenceImages] = None
        self.test_set: Optional[SequenceImages] = None
        self.mean, self.std = 0.0, 1.0

    @property
    def input_size(self) -> int:
        return SIDE if self.mode == "row" else 1

    def spec(self) -> DataSpec:
        """What the data feeds a model: float pixels (a row or one pixel per step), one digit per image."""
        return DataSpec("features", self.input_size, "label", NUM_CLASSES)

    def prepare_data(self) -> None:
        ensure_files(self.data_dir, self.download, self.mirrors, self.download_timeout)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train_set is not None:
            return  # fit and then test on one datamodule: decode and split once
        self.prepare_data()  # also when used without a Trainer (benchmarks, notebooks)
        train_images, train_labels = load_split(self.data_dir, "train", self.verify_checksums)
        test_images, test_labels = load_split(self.data_dir, "test", self.verify_checksums)
        if self.val_size >= len(train_images):
            raise ConfigError("val_size", self.val_size, f"must be smaller than the {len(train_images)} training images")
        order = np.random.default_rng(self.split_seed).permutation(len(train_images))
        val_index, train_index = np.sort(order[: self.val_size]), np.sort(order[self.val_size :])
        train_part = np.take(train_images, train_index, axis=0)
        if self.normalize:
            self.mean, self.std = pixel_mean_std(train_part)
            if self.std == 0.0:
                self.std = 1.0  # a blank training set (only in hand-made files): nothing to scale

        def make(images: np.ndarray, labels: np.ndarray, shift: int = 0) -> SequenceImages:
            flat = images.reshape(len(images), SIDE * SIDE)
            if self.permutation is not None:
                flat = np.take(flat, self.permutation.numpy(), axis=1)
            return SequenceImages(flat, labels, self.steps, self.mean, self.std, shift, self.shift_seed)

        self.train_set = make(train_part, train_labels[train_index], self.shift)
        self.val_set = make(np.take(train_images, val_index, axis=0), train_labels[val_index])
        self.test_set = make(test_images, test_labels)

    def _loader(self, dataset: Optional[SequenceImages], batch_size: int, train: bool = False) -> DataLoader:
        assert dataset is not None
        # Its own generator: building an iterator must not draw (the workers' base seed) from
        # the global RNG that dropout uses, or a resumed run would see different masks.
        generator = torch.Generator().manual_seed(self.shuffle_seed)
        if not train:
            batches = SeededBatches(len(dataset), batch_size, shuffle=False)
            return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=self.num_workers,
                              generator=generator)
        # Under DDP each rank takes its share of one seeded order (Lightning's own sampler is
        # off), and a resumed run skips the batches its interrupted epoch already trained.
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        batches = SeededBatches(len(dataset), batch_size, self.shuffle, self.shuffle_seed, num_replicas=world, rank=rank)
        sampler = ResumableBatches(batches, skip=batches_done_in_epoch(self.trainer))
        return ResumableLoader(dataset, sampler=sampler, batch_size=None, num_workers=self.num_workers,
                               generator=generator)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_set, self.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_set, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.test_set, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
