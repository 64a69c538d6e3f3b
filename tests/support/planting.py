"""What a hostile user plants: pickles that leave a marker when unpickled, rows planted in a cache's index,
files written outside the folder they belong in (engine-only)."""

from __future__ import annotations

import pickle
import sqlite3
from pathlib import Path

import pyarrow as pa

from pipeline.cache import DiskCache


class LeavesAMarker:
    """Unpickling this opens ``path`` for writing: the file appears if anything ever unpickles it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return open, (self.path, "w")


def outside_files(root: Path, inside: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and inside not in p.parents]


def plant_row(cache: DiskCache, key: str, kind: int, value: bytes | None, file: str | None, size: int,
              crc: int) -> None:
    """Write an index row as someone with write access to the cache folder could."""
    with sqlite3.connect(cache.path / "index.sqlite") as db:
        db.execute("DELETE FROM entries WHERE key = ?", (key,))
        seq = db.execute("SELECT coalesce(max(seq), 0) + 1000 FROM entries").fetchone()[0]
        db.execute("INSERT INTO entries (seq, key, kind, file, size, crc, cost, expires, value) "
                   "VALUES (?, ?, ?, ?, ?, ?, 100, 1e300, ?)", (seq, key, kind, file, size, crc, value))
        db.execute("INSERT INTO usage (seq, accessed, hits) VALUES (?, 0, 1)", (seq,))


def arrow_with_a_pickled_extension_type(marker: Path, table: pa.Table | None = None) -> pa.Table:
    """``table`` plus a column whose type claims to be the pickle-based ``arrow.py_extension_type``."""
    field = pa.field("x", pa.binary(), metadata={b"ARROW:extension:name": b"arrow.py_extension_type",
                                                 b"ARROW:extension:metadata": pickle.dumps(LeavesAMarker(marker))})
    table = table if table is not None else pa.table({"y": [1]})
    column = pa.array([b"x"] * table.num_rows, pa.binary())
    return table.append_column(field, column).replace_schema_metadata(table.schema.metadata)
