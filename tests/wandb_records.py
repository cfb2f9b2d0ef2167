"""Read a W&B offline run file (``run-ID.wandb``) back into its records, for tests.

The file is W&B's header followed by a LevelDB-style log (32 KiB blocks; each chunk has a 7-byte
header: crc32c, length, type FULL/FIRST/MIDDLE/LAST) of serialized ``wandb_internal_pb2.Record``s.
wandb ships no reader for it, so the tests carry this small one.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

BLOCK = 32 * 1024
HEADER = 7  # ":W&B" + 2-byte magic + 1-byte version
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _chunks(raw: bytes):
    body = raw[HEADER:]
    pos, pending = 0, b""
    while pos + 7 <= len(body):
        left = BLOCK - ((pos + HEADER) % BLOCK)
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", body[pos : pos + 7])
        data = body[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield data
        elif kind == FIRST:
            pending = data
        elif kind == MIDDLE:
            pending += data
        elif kind == LAST:
            yield pending + data
            pending = b""
        else:  # zero padding at the end of a block
            pos += BLOCK - ((pos + HEADER) % BLOCK)


@dataclass
class OfflineRun:
    run_id: str = ""
    name: str = ""
    group: str = ""
    project: str = ""
    job_type: str = ""
    config: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def read_run(path: str | Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    raw = Path(path).read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B run file"
    run = OfflineRun()
    for data in _chunks(raw):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            run.run_id, run.name, run.group, run.project, run.job_type = r.run_id, r.display_name, r.run_group, r.project, r.job_type
            for item in r.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for item in rec.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return run
