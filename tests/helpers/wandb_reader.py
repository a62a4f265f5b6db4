"""Read back an offline wandb run (``run-<id>.wandb``) without a server.

wandb >= 0.2x dropped its Python reader for this file; the format is unchanged: a 7-byte
header, then a LevelDB-style log of 32 KiB blocks whose records (7-byte header: crc32,
length, type FULL/FIRST/MIDDLE/LAST) hold serialized ``wandb_internal_pb2.Record`` messages.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    if len(data) < 7:  # created, header not written yet
        return
    assert data[:4] == b":W&B", f"{path} is not a wandb run file"
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        room = BLOCK - pos % BLOCK
        if room < 7:  # the rest of a block too short for a header is padding
            pos += room
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if (kind == 0 and length == 0) or len(payload) < length:  # the end, or a record still being written
            break
        if kind == FULL:
            pending = payload
        elif kind == FIRST:
            pending = payload
            continue
        elif kind == MIDDLE:
            pending += payload
            continue
        elif kind == LAST:
            pending += payload
        record = pb.Record()
        record.ParseFromString(pending)
        yield record


def read_run(run_dir: Path, timeout: float = 30.0) -> Dict[str, Any]:
    """{"run": RunRecord, "config": {key: value}, "history": [{key: value}], "summary": {...}, "exit_code": int|None}

    wandb >= 0.31 returns from ``wandb.finish()`` before its service has written the run's
    records to disk (the file may still be its 7-byte header), so this waits up to ``timeout``
    seconds for the exit record, which is written last.
    """
    deadline = time.monotonic() + timeout
    while True:
        out = _read_run(run_dir)
        if out["exit_code"] is not None or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def _read_run(run_dir: Path) -> Dict[str, Any]:
    (path,) = Path(run_dir).glob("*.wandb")
    out: Dict[str, Any] = {"run": None, "config": {}, "history": [], "summary": {}, "exit_code": None}
    history: List[Dict[str, Any]] = out["history"]
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            out["run"] = record.run
            for item in record.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            out["exit_code"] = record.exit.exit_code
    return out
