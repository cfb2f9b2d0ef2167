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
    tags: tuple[str, ...] = ()
    notes: str = ""
    start_time: float = 0.0
    metrics: list[dict] = field(default_factory=list)  # define_metric: name or glob, step metric, summary
    logged: list[dict] = field(default_factory=list)  # artifacts this run produced: name, type, metadata, references
    used: list[dict] = field(default_factory=list)  # artifacts this run uses (logged for use after commit)


def read_run(path: str | Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    raw = Path(path).read_bytes()
    assert raw[:4] == b":W&B", f"{path} is not a W&B run file"
    run = OfflineRun()
    for data in _chunks(raw):
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":  # the first one, then again on every change (tags...): the last one holds
            r = rec.run
            run.run_id, run.name, run.group, run.project, run.job_type = r.run_id, r.display_name, r.run_group, r.project, r.job_type
            run.tags, run.notes, run.start_time = tuple(r.tags), r.notes, r.start_time.seconds + r.start_time.nanos / 1e9
            for item in r.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "metric":
            m = rec.metric
            summary = [k for k in ("min", "max", "mean", "last", "best") if getattr(m.summary, k)]
            run.metrics.append({"name": m.name or m.glob_name, "step_metric": m.step_metric, "summary": summary})
        elif kind == "artifact":
            a = rec.artifact
            entry = {
                "name": a.name,
                "type": a.type,
                "metadata": json.loads(a.metadata) if a.metadata else {},
                "references": {c.path: c.ref for c in a.manifest.contents if c.ref},
            }
            (run.used if a.use_after_commit else run.logged).append(entry)
        elif kind == "config":
            for item in rec.config.update:
                run.config[item.key] = json.loads(item.value_json)
        elif kind == "history":
            run.history.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for item in rec.summary.update:
                run.summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return run


def runs_as_synced(paths) -> dict[str, OfflineRun]:
    """Per run id, what ``wandb sync`` of these run files leaves on the server: the files of one run are
    uploaded in the order they were started, and each one's run, config and summary replace the
    previous file's (offline, a resumed run is a new file that W&B does not merge)."""
    runs = sorted((read_run(p) for p in paths), key=lambda r: r.start_time)
    return {r.run_id: r for r in runs if r.run_id}
