"""Loading MNIST: rnnexp's checked IDX reader vs a bare gzip + numpy read, in one process.

    .venv/bin/python benchmarks/mnist_load.py [--data-dir ../shared/data] [--repeats 5]

rnnexp's side is ``MNISTDataModule.setup()``: decode all four files, check magic numbers,
header sizes and md5 sums, split 55k/5k, compute the normalisation and build the tensors.
The reference decodes the same files with ``gzip`` and ``np.frombuffer`` and nothing else.
The two alternate; medians of wall and CPU seconds are printed (the target is < 2 s for all
70k images).
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
import _repo  # noqa: E402,F401  (the repo root on sys.path: benchmarks/_repo.py)

from benchmarks.mnist_common import DEFAULT_DATA  # noqa: E402
from rnnexp.data import mnist  # noqa: E402

FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz"]


def bare_read(folder: Path) -> None:
    for name in FILES:
        data = gzip.open(folder / name).read()
        offset = 16 if "images" in name else 8
        np.frombuffer(data, dtype=np.uint8, offset=offset)


def rnnexp_setup(folder: Path) -> None:
    mnist._DECODED.clear()  # a cold read: the module keeps decoded arrays for later setups in the process
    mnist.MNISTDataModule(str(folder), download=False).setup()


def timed(fn, folder):
    wall, cpu = time.perf_counter(), time.process_time()
    fn(folder)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=DEFAULT_DATA, help="the folder holding mnist/")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    folder = Path(args.data_dir) / "mnist"
    if not all((folder / name).is_file() for name in FILES):
        sys.exit(f"the four MNIST .gz files are not in {folder}; pass --data-dir")
    ours, ref = [], []
    for _ in range(args.repeats):
        ours.append(timed(rnnexp_setup, folder))
        ref.append(timed(bare_read, folder))
    for label, runs in (("rnnexp setup (checked, split, normalised)", ours), ("bare gzip + numpy read", ref)):
        print(f"{label:45s} wall {statistics.median(r[0] for r in runs):.2f} s   "
              f"cpu {statistics.median(r[1] for r in runs):.2f} s")
    print(f"ratio (wall): {statistics.median(r[0] for r in ours) / statistics.median(r[0] for r in ref):.2f}")


if __name__ == "__main__":
    main()
