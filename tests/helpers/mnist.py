"""Small MNIST files in the original IDX gzip format, written by the tests themselves.

Image k has a bright bar on row ``2 * label + 4`` plus a little noise, so a model can learn
the labels and normalisation has something to measure. 6,000 training images leave
1,000 for training after the default 5,000-image validation split.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path
from typing import Optional

import numpy as np

from rnnexp.data.idx import FILES, IMAGES_MAGIC, LABELS_MAGIC

TRAIN_SIZE, TEST_SIZE = 6000, 200


def idx_bytes(array: np.ndarray, magic: Optional[int] = None) -> bytes:
    """The IDX encoding of a uint8 array: magic (0x08 = unsigned byte, then ndim), sizes, data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = (0x08 << 8 | array.ndim) if magic is None else magic
    return struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.tobytes()


def write_gzip(path: Path, payload: bytes, name_padding: int = 0) -> Path:
    """gzip with a fixed mtime (same bytes every time); ``name_padding`` lengthens the stored
    file name in the gzip header, to make a valid file of a chosen size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(
        filename="x" * name_padding or path.stem, mode="wb", fileobj=raw, mtime=0, compresslevel=1
    ) as f:
        f.write(payload)
    return path


def make_split(size: int, seed: int):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size, dtype=np.uint8)
    images = np.zeros((size, 28, 28), dtype=np.uint8)
    images[np.arange(size), 2 * labels.astype(np.int64) + 4, 4:24] = 255
    noise = rng.integers(0, 28, (size, 2))
    images[np.arange(size), noise[:, 0], noise[:, 1]] = 128
    return images, labels


def write_mnist(data_dir: Path, train_size: int = TRAIN_SIZE, test_size: int = TEST_SIZE) -> Path:
    """``data_dir/mnist/`` with the four files, where ``data=mnist`` looks under ``paths.data_dir``."""
    folder = Path(data_dir) / "mnist"
    for split, size, seed in (("train", train_size, 0), ("test", test_size, 1)):
        images, labels = make_split(size, seed)
        write_gzip(folder / FILES[f"{split}_images"].name, idx_bytes(images, IMAGES_MAGIC))
        write_gzip(folder / FILES[f"{split}_labels"].name, idx_bytes(labels, LABELS_MAGIC))
    return folder
