"""MNIST's original files: IDX arrays in gzip, their checksums, and downloading them.

Every problem with a file (missing, truncated, wrong magic, wrong checksum) becomes a
one-line :class:`DataError` naming the file, never a gzip or numpy traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from rnnexp.data.folders import download_folder
from rnnexp.errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # unsigned byte data with 3 and 1 dimensions


@dataclass(frozen=True)
class MnistFile:
    name: str
    magic: int
    size: int  # bytes of the original gzip file
    md5: str


FILES = {
    "train_images": MnistFile("train-images-idx3-ubyte.gz", IMAGES_MAGIC, 9_912_422, "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    "train_labels": MnistFile("train-labels-idx1-ubyte.gz", LABELS_MAGIC, 28_881, "d53e105ee54ea40749a09fcbcd1e9432"),
    "test_images": MnistFile("t10k-images-idx3-ubyte.gz", IMAGES_MAGIC, 1_648_877, "9fb629c4189551a2d022fa330f9573f3"),
    "test_labels": MnistFile("t10k-labels-idx1-ubyte.gz", LABELS_MAGIC, 4_542, "ec29112dd5afa0611ce80d1b7f02629c"),
}

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: Path, spec: MnistFile) -> None:
    """The md5 is checked only for a file of the original's exact size.

    A file of that size is meant to be the real MNIST file, so a wrong md5 means a damaged
    copy. Files of other sizes (subsets in IDX format, the test fixtures) are checked
    structurally instead: gzip's CRC-32 and the IDX header.
    """
    if path.stat().st_size != spec.size:
        return
    actual = md5sum(path)
    if actual != spec.md5:
        raise DataError(
            f"{path} has md5 {actual}, expected {spec.md5} for the original {spec.name}: the file is damaged; "
            "delete it to download it again (or set data.verify_checksums=false to use it anyway)"
        )


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """An IDX file (gzip) -> a uint8 array of the shape its header gives."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"{path} is not a complete gzip file ({exc}); delete it and download it again") from None
    if len(raw) < 4:
        raise DataError(f"{path} is too short to be an IDX file ({len(raw)} bytes after gzip)")
    (magic,) = struct.unpack(">i", raw[:4])
    if magic != expected_magic:
        kind = "images" if expected_magic == IMAGES_MAGIC else "labels"
        raise DataError(f"{path} has IDX magic number {magic}, expected {expected_magic} for MNIST {kind}")
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} ends inside its IDX header")
    shape = struct.unpack(f">{ndim}i", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path} holds {len(raw) - header} bytes of data, its IDX header {tuple(shape)} says {expected}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def download(spec: MnistFile, folder: Path, mirrors: Sequence[str], timeout: float) -> Optional[str]:
    """Fetch one file into ``folder``; None on success, else why every mirror failed.

    Written to ``<name>.part`` and renamed, so an interrupted download never leaves a
    truncated file under the real name.
    """
    from tqdm.auto import tqdm

    reasons = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + spec.name
        part = folder / (spec.name + ".part")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=spec.name, leave=False) as bar:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
            os.replace(part, folder / spec.name)
            return None
        except OSError as exc:  # URLError, timeouts and HTTP errors are all OSErrors
            part.unlink(missing_ok=True)
            reasons.append(f"{url}: {getattr(exc, 'reason', exc)}")
    return "; ".join(reasons) or "no mirrors configured"


def ensure_files(folder: Path, download_missing: bool, mirrors: Sequence[str], timeout: float) -> None:
    """Every MNIST file present in ``folder``, downloading the missing ones if allowed."""
    missing = [spec for spec in FILES.values() if not (folder / spec.name).is_file()]
    if not missing:
        return
    names = ", ".join(spec.name for spec in missing)
    where = (
        f"put the MNIST files ({', '.join(s.name for s in FILES.values())}) in {folder}, or set "
        f"paths.data_dir=<dir> (or the environment variable RNNEXP_DATA_DIR) to a folder whose {folder.name}/ has them"
    )
    if not download_missing:
        raise DataError(f"MNIST files missing from {folder}: {names}; {where}")
    try:
        with download_folder(folder):  # removed again if nothing could be downloaded into it
            for spec in missing:
                failure = download(spec, folder, mirrors, timeout)
                if failure:
                    raise DataError(f"MNIST file {spec.name} is missing from {folder} and could not be downloaded "
                                    f"({failure}); {where}")
    except OSError as exc:
        raise DataError(f"cannot create {folder} to download MNIST into ({exc.strerror}); {where}") from None
