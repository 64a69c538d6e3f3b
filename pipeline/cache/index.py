"""The disk cache's SQLite index: its schema, opening it in WAL mode, write transactions, corruption.

One row per entry (its value inline when small, else its file's name) and the
running totals in ``meta``. A corrupt index is told apart from other errors
(``IndexBroken``, ``is_corruption``) so that the cache can set it aside and start an empty one.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from .config import EvictionPolicy

__all__ = ["IndexBroken", "IndexRebuilt", "Txn", "connect_index", "write_transaction", "is_corruption",
           "set_aside", "EVICTION_ORDER", "NO_SEQ"]

T = TypeVar("T")

NO_SEQ: Final = (1 << 63) - 1
"""Greater than every seq: ``Txn.first_new`` when the transaction inserted nothing."""

_SCHEMA_VERSION: Final = 1
_CORRUPTION_CODES: Final = frozenset({11, 26})  # SQLITE_CORRUPT, SQLITE_NOTADB
_KEEP_BROKEN: Final = 3

# Eviction order per policy, and the index that serves it.
# (``seq < ?`` spares the entries the transaction itself is writing, as an
# in-memory cache makes room before it inserts: under LFU a newcomer would
# otherwise always be the first to go.)
EVICTION_ORDER: Final = {
    EvictionPolicy.LRU: "SELECT seq FROM usage WHERE seq < ? ORDER BY accessed, seq LIMIT 32",
    EvictionPolicy.LFU: "SELECT seq FROM usage WHERE seq < ? ORDER BY hits, accessed, seq LIMIT 32",
    EvictionPolicy.FIFO: "SELECT seq FROM entries WHERE seq < ? ORDER BY seq LIMIT 32",
    EvictionPolicy.TTL: "SELECT seq FROM entries WHERE seq < ? ORDER BY expires, seq LIMIT 32",
}
_POLICY_INDEX: Final = {
    EvictionPolicy.LRU: "CREATE INDEX IF NOT EXISTS usage_lru ON usage(accessed)",
    EvictionPolicy.LFU: "CREATE INDEX IF NOT EXISTS usage_lfu ON usage(hits, accessed)",
}

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS entries (
    seq      INTEGER PRIMARY KEY,  -- from meta.next_seq, never reused: FIFO order, tie-breaks, memos
    key      TEXT NOT NULL UNIQUE,
    kind     INTEGER NOT NULL,     -- 0 bytes, 1 JSON, 2 Arrow IPC stream
    file     TEXT,                 -- blobs/ path of a large value, else NULL
    size     INTEGER NOT NULL,     -- bytes of the serialised value
    crc      INTEGER NOT NULL,     -- zlib.crc32 of them
    cost     INTEGER NOT NULL,     -- bytes counted against max_size_bytes (entry_cost)
    expires  REAL NOT NULL,        -- clock time, +inf for never
    value    BLOB                  -- small values inline (last: other columns read without it)
);
CREATE INDEX IF NOT EXISTS entries_expires ON entries(expires);
-- Access bookkeeping in a narrow table of its own: updating it never rewrites
-- a row that holds a value (SQLite rewrites a whole row on UPDATE).
CREATE TABLE IF NOT EXISTS usage (
    seq      INTEGER PRIMARY KEY,  -- entries.seq
    accessed REAL NOT NULL,        -- last access (LRU), flushed in batches
    hits     REAL NOT NULL         -- aged access count (LFU), flushed in batches
);
CREATE TRIGGER IF NOT EXISTS entries_gone AFTER DELETE ON entries
    BEGIN DELETE FROM usage WHERE seq = old.seq; END;
CREATE TABLE IF NOT EXISTS meta (
    id      INTEGER PRIMARY KEY CHECK (id = 0),
    entries INTEGER NOT NULL,      -- running totals, kept in step by every write transaction
    size    INTEGER NOT NULL,
    ticks   REAL NOT NULL,         -- hits flushed since LFU counts were last halved
    next_seq INTEGER NOT NULL      -- (AUTOINCREMENT would write one more page per transaction)
);
INSERT OR IGNORE INTO meta VALUES (0, 0, 0, 0, 1);
"""


class IndexBroken(Exception):
    """The SQLite index cannot be used (corrupt, truncated, not a database)."""


class IndexRebuilt(Exception):
    """A write found the index corrupt; it was rebuilt empty and the write did not happen."""


def connect_index(db_path: Path, *, fsync: bool, check: bool, policy: EvictionPolicy) -> sqlite3.Connection:
    """A connection to the index at ``db_path``, made (schema and ``policy``'s index) if new.

    ``check`` runs ``PRAGMA quick_check``. ``IndexBroken`` if the file is not a
    usable index; ``fsync`` sets ``synchronous=FULL`` (else ``NORMAL``).
    """
    conn = sqlite3.connect(db_path, timeout=60.0, isolation_level=None, check_same_thread=False)
    try:
        _set_wal(conn)
        conn.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        conn.execute("PRAGMA mmap_size=268435456")
        conn.execute("PRAGMA cache_size=-32768")  # 32 MiB of pages
        if check:
            result = conn.execute("PRAGMA quick_check").fetchall()
            if result != [("ok",)]:
                raise IndexBroken("; ".join(str(r[0]) for r in result[:3]))
        if conn.execute("PRAGMA user_version").fetchone()[0] != _SCHEMA_VERSION:
            _create_schema(conn)
        index = _POLICY_INDEX.get(policy)
        if index:
            conn.execute(index)
        conn.execute("SELECT entries, size FROM meta WHERE id = 0").fetchone()
    except IndexBroken:
        conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        conn.close()
        if is_corruption(exc) or "no such table" in str(exc):
            raise IndexBroken(str(exc)) from exc
        raise
    return conn


def is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Whether ``exc`` says the index file is corrupt or not a database (not busy, not full)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _CORRUPTION_CODES
    text = str(exc)
    return "malformed" in text or "not a database" in text


def set_aside(db_path: Path, broken: Path) -> str:
    """Move the index at ``db_path`` (and its ``-wal``, ``-shm``) to a new folder in ``broken``; return its name.

    The name is unique (time, pid, random); only the newest ``_KEEP_BROKEN`` folders of ``broken`` are kept.
    """
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(2)}"
    dest = broken / stamp
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{db_path}{suffix}")
        if src.exists():
            os.replace(src, dest / src.name)
    kept = sorted((p for p in broken.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in kept[:-_KEEP_BROKEN]:
        shutil.rmtree(old, ignore_errors=True)
    return stamp


class Txn:
    """One write transaction's running totals and the value files its deletions freed (deleted after the commit)."""

    __slots__ = ("conn", "entries", "size", "next_seq", "start", "freed_files", "freed_bytes", "resync",
                 "first_new")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.entries, self.size, self.next_seq = conn.execute(
            "SELECT entries, size, next_seq FROM meta WHERE id = 0").fetchone()
        self.start = (self.entries, self.size, self.next_seq)
        self.freed_files: list[str] = []
        self.freed_bytes = 0
        self.resync = False
        self.first_new = NO_SEQ  # the first seq this transaction inserted

    def delete(self, where: str, params: tuple[Any, ...]) -> int:
        """Delete the entries ``where`` selects; return how many."""
        rows = self.conn.execute(f"DELETE FROM entries {where} RETURNING file, cost", params).fetchall()
        for file, cost in rows:
            if file is not None:
                self.freed_files.append(file)
            self.entries -= 1
            self.size -= cost
            self.freed_bytes += cost
        return len(rows)

    def finish(self) -> None:
        """Write the totals back (recounted from the table after ``resync``)."""
        if self.resync:
            self.conn.execute("UPDATE meta SET entries = (SELECT count(*) FROM entries), "
                              "size = (SELECT coalesce(sum(cost), 0) FROM entries), "
                              "next_seq = max(?, (SELECT coalesce(max(seq), 0) + 1 FROM entries)) WHERE id = 0",
                              (self.next_seq,))
        elif (self.entries, self.size, self.next_seq) != self.start:
            # BEGIN IMMEDIATE made us the only writer: the figures read at the start still hold.
            self.conn.execute("UPDATE meta SET entries = ?, size = ?, next_seq = ? WHERE id = 0",
                              (self.entries, self.size, self.next_seq))


def write_transaction(conn: sqlite3.Connection, body: Callable[[Txn], T]) -> tuple[T, Txn]:
    """Run ``body`` in one write transaction (``BEGIN IMMEDIATE``: the only writer), committed if it returns.

    Returns its result and the ``Txn``, whose ``freed_files`` are now the caller's to delete.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        txn = Txn(conn)
        result = body(txn)
        txn.finish()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result, txn


def _set_wal(conn: sqlite3.Connection, patience_s: float = 60.0) -> None:
    """Put the index in WAL mode, waiting out other processes that open it at the same moment.

    Changing the journal mode takes an exclusive lock, and SQLite answers
    "database is locked" at once instead of waiting on its busy timeout: two
    workers opening a fresh cache together hit it (seen as a lost entry).
    """
    deadline = time.monotonic() + patience_s
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)  # a retry back-off, not a wait for an event
            delay = min(delay * 2, 0.05)


def _create_schema(conn: sqlite3.Connection) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            raise IndexBroken(f"index has schema version {version}, this framepipe writes {_SCHEMA_VERSION}")
        for statement in _SCHEMA.split(";\n"):  # statements end a line; the trigger's inner one does not
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
