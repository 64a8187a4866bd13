"""``hubscan lake stats``: files, rows and bytes per table and partition.

Rows come from Parquet footers (no data is read), so this is cheap enough to run on a lake
of millions of rows and tells when a partition needs compacting (many small files).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from .compact import PENDING_DIR, pending_deletes
from .fs import TEMP_MARK, TRASH_MARK

if TYPE_CHECKING:
    from . import Lake

__all__ = ["stats", "LakeStats", "PartitionStats"]


@dataclass(frozen=True)
class PartitionStats:
    table: str
    partition: str  # ``source=hf/scan_date=2026-11-23``
    files: int
    rows: int
    bytes: int

    @property
    def mean_file_bytes(self) -> float:
        return self.bytes / self.files if self.files else 0.0


@dataclass
class LakeStats:
    """Per-partition figures plus what is not (yet) data: temp files, pending deletes."""

    partitions: list[PartitionStats] = field(default_factory=list)
    temp_files: int = 0
    pending_deletes: int = 0
    other_files: list[str] = field(default_factory=list)

    def by_table(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for p in self.partitions:
            t = out.setdefault(p.table, {"partitions": 0, "files": 0, "rows": 0, "bytes": 0})
            t["partitions"] += 1
            t["files"] += p.files
            t["rows"] += p.rows
            t["bytes"] += p.bytes
        return out

    @property
    def files(self) -> int:
        return sum(p.files for p in self.partitions)

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.partitions)

    @property
    def bytes(self) -> int:
        return sum(p.bytes for p in self.partitions)

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_pylist([asdict(p) for p in self.partitions],
                                    schema=pa.schema([("table", pa.string()), ("partition", pa.string()),
                                                      ("files", pa.int64()), ("rows", pa.int64()),
                                                      ("bytes", pa.int64())]))

    def as_dict(self) -> dict[str, Any]:
        return {"tables": self.by_table(), "partitions": [asdict(p) for p in self.partitions],
                "files": self.files, "rows": self.rows, "bytes": self.bytes,
                "temp_files": self.temp_files, "pending_deletes": self.pending_deletes,
                "other_files": self.other_files}


def stats(lake: "Lake") -> LakeStats:
    """Count live Parquet files (pending deletes excluded), their rows and bytes."""
    storage = lake.storage
    pending = pending_deletes(storage)
    acc: dict[tuple[str, str], list[int]] = {}
    out = LakeStats(pending_deletes=len(pending))
    for e in storage.list_files():
        rel = storage.relative(e.path)
        if rel.startswith(PENDING_DIR.split("/")[0] + "/"):
            continue
        if TEMP_MARK in e.name or TRASH_MARK in e.name:
            out.temp_files += 1
            continue
        table = rel.split("/", 1)[0]
        if not e.path.endswith(".parquet") or table not in lake.registry:
            out.other_files.append(rel)
            continue
        if e.path in pending:
            continue
        part = rel.split("/", 1)[1].rsplit("/", 1)[0] if rel.count("/") >= 2 else ""
        try:
            with storage.fs.open_input_file(e.path) as f:
                rows = pq.read_metadata(f).num_rows
        except FileNotFoundError:  # compacted away while we listed
            continue
        a = acc.setdefault((table, part), [0, 0, 0])
        a[0] += 1
        a[1] += rows
        a[2] += e.size
    out.partitions = [PartitionStats(t, p, *v) for (t, p), v in sorted(acc.items())]
    return out
