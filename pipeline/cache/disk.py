"""The persistent cache tier: one folder shared by every process of a run and by later runs.

Layout of ``<root>/<name>/`` (``root`` defaults to ``default_cache_dir()``)::

    index.sqlite (-wal, -shm)     SQLite in WAL mode: one row per entry (key, type tag,
                                  value inline if <= INLINE_MAX bytes, else its file name;
                                  size, crc32, cost, expiry, last access, hit count)
    blobs/ab/<keyhash>-<token>.val   larger values, one immutable file each
    tmp/<pid>-<token>.part        values being written; renamed into blobs/ when complete
    locks/<keyhash>.lock          get_or_compute's per-key locks, present while held
    open.lock                     shared while the index is checked on open, exclusive to rebuild it
    broken/<when>-<pid>/          an index found corrupt, moved aside (the newest 3 kept)

Reads do not write: a hit's recency and count are kept in memory and written in
one transaction (to ``usage``, a narrow table of their own, so no value row is
rewritten) once ``flush_every`` rows are pending or ``flush_interval`` seconds
have passed, before any eviction, and on ``prune()``/``close()``; ``get`` is a
single read-only query (diskcache's LRU/LFU write on every read and lose 7-11x
on gets for it). Another process's unflushed hits are not seen by this one's
evictions: across processes, LRU and LFU are as exact as the last flushes.

Values are bytes, JSON (dict, list, str, numbers, bool, None; they come back as
JSON gives them: tuples as lists, dict keys as str) or ``pyarrow.Table`` (Arrow
IPC stream). Nothing read from disk is unpickled. Every value carries its size
and crc32 (crc32, not blake2b: blake2b costs 15 us per 20 KB read, twice a whole
get; the corruption we guard against is accidental). The size is checked on
every read, the crc32 on a handle's first read of a row (rows are never
updated in place and their seq is never reused, so a row checked once by this
handle is trusted after). A value that fails either check, or whose file is
missing, is counted, removed and reported as a miss.

On open the index gets ``PRAGMA quick_check`` (it reads the whole index file:
about a second per GB of inline values; ``verify_on_open=False`` skips it and
leaves detection to the first failing query). A broken index is moved to
``broken/`` and an empty one built, never an exception; a handle that another
process had open on the old file keeps using that file until it reopens.

Durability (``fsync=False``, the default): files are written to ``tmp/`` and
renamed (atomic; no torn file is ever visible under its final name) and the
index uses ``synchronous=NORMAL`` (WAL: consistent after a crash, the last
commits may be lost on power failure). A power cut may thus cost entries or
leave a short file; checksums turn those into misses. ``fsync=True`` fsyncs
each file and its folder before the rename and sets ``synchronous=FULL``.

``DiskCache`` composes the parts, one module each: ``encoding`` (values as
bytes, what an entry costs), ``blobs`` (the value files), ``index`` (the SQLite
index and its transactions) and ``usage`` (hits held between flushes).
"""

from __future__ import annotations

import functools
import math
import os
import sqlite3
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from ..errors import CacheClosed, UnsupportedCacheValue
from .blobs import BlobFiles, key_hash
from .config import CacheConfig, EvictionPolicy
from .encoding import BLOCK, BYTES, INLINE_MAX, ROW_OVERHEAD, decode_value, encode_value, entry_cost
from .index import (
    EVICTION_ORDER,
    NO_SEQ,
    IndexBroken,
    IndexRebuilt,
    Txn,
    connect_index,
    is_corruption,
    set_aside,
    write_transaction,
)
from .location import cache_path
from .locks import FileLock
from .usage import PendingHits

__all__ = [
    "DiskCache",
    "DiskCacheStats",
    "PruneResult",
    "UnsupportedCacheValue",
    "CacheClosed",
    "entry_cost",
    "INLINE_MAX",
    "ROW_OVERHEAD",
    "BLOCK",
]

T = TypeVar("T")

GiB: Final = 1 << 30
_DEFAULT_CONFIG: Final = CacheConfig(max_entries=None, max_size_bytes=2 * GiB)
_MISS: Final = object()
_RETRY: Final = object()
_VERIFIED_MAX: Final = 1 << 17  # rows remembered as checked; forgotten all at once past this
_GET_SQL: Final = "SELECT seq, kind, file, size, crc, expires, value FROM entries WHERE key = ?"


# --- records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiskCacheStats:
    """What a disk cache holds and what this handle has seen since it opened.

    ``hits`` to ``index_rebuilds`` count this handle's events; ``entries`` and
    ``size_bytes`` (as ``entry_cost`` counts them) are the whole cache's.
    """

    hits: int
    misses: int
    evictions: int
    expirations: int
    entries: int
    size_bytes: int
    corrupt_found: int
    corrupt_repaired: int
    index_rebuilds: int
    path: Path


@dataclass(frozen=True, slots=True)
class PruneResult:
    """What one ``prune()`` removed."""

    expired: int
    evicted: int
    orphan_files: int
    bytes_freed: int


# --- the cache ------------------------------------------------------------------------


class DiskCache:
    """A persistent, size-bounded key-value cache on local disk, safe across processes and threads.

    ``directory`` is the root of the caches (``default_cache_dir()`` when
    ``None``); the cache lives in its subfolder ``name``. ``config`` bounds it
    (default: 2 GiB, any number of entries) and picks the eviction policy:
    LRU, LFU (counts halved every ~8 hits per entry), FIFO and TTL (soonest to
    expire first) are exact; HYBRID evicts by ``config.hybrid.secondary``
    (evictions happen at the bound, which is past the switch threshold) and
    TINYLFU by LFU, the nearest the disk tier has. ``clock`` gives expiry and
    access times. See the module docstring for layout and durability.

    ``fsync`` makes writes durable against power loss; ``verify_on_open`` runs
    ``quick_check``; access counts are flushed once ``flush_every`` rows or
    ``flush_interval`` seconds are pending; under LRU a row's access is
    recorded at most once per ``touch_interval`` seconds (recency is that
    coarse; 0 makes it exact). A handle may be pickled (it reopens the folder
    in the other process) and survives ``fork``.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        config: CacheConfig = _DEFAULT_CONFIG,
        *,
        name: str = "default",
        clock: Callable[[], float] = time.time,
        fsync: bool = False,
        verify_on_open: bool = True,
        flush_every: int = 1024,
        flush_interval: float = 5.0,
        touch_interval: float = 1.0,
    ) -> None:
        self.name = name
        self.config = config
        self.path = cache_path(name, directory)
        self._directory = directory
        self._clock = clock
        self._fsync = fsync
        self._verify = verify_on_open
        self._flush_every = max(1, flush_every)
        self._flush_interval = flush_interval
        self._policy = _resolve_policy(config)
        self._victims = EVICTION_ORDER[self._policy]
        self._tracks_access = self._policy in (EvictionPolicy.LRU, EvictionPolicy.LFU)
        self._db_path = self.path / "index.sqlite"
        self._blobs = BlobFiles(self.path / "blobs", self.path / "tmp", fsync=fsync)
        self._locks = self.path / "locks"
        self._lock = threading.RLock()
        self._pending_hits = PendingHits(self._policy, touch_interval)
        self._verified: set[int] = set()  # seqs whose value this handle has checked (rows are immutable)
        self._pending_expired: set[str] = set()
        self._last_flush = time.monotonic()
        self._last_cleanup = clock()
        self._hits = self._misses = self._evictions = self._expirations = 0
        self._corrupt_found = self._corrupt_repaired = self._index_rebuilds = 0
        self._fork_gen = _fork_gen
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Cursor | None = None  # reused by get: saves a cursor per call
        self._inherited: list[sqlite3.Connection] = []
        self._conn = self._open()

    # --- reading ------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, as the type it was stored as; ``default`` if none."""
        with self._lock:
            value = self._get(key)
            if value is _MISS:
                self._misses += 1
                return default
            return value

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The stored values of those ``keys`` that have one (missing keys are left out)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                sql = ("SELECT key, seq, kind, file, size, crc, expires, value FROM entries "
                       f"WHERE key IN ({','.join('?' * len(chunk))})")
                rows = self._query(sql, chunk)
                now = self._clock()
                for key, *row in rows or ():
                    value = self._materialize(key, row, now)
                    if value is _RETRY:
                        value = self._get(key)
                    if value is not _MISS:
                        found[key] = value
            self._misses += len(wanted) - len(found)
        return found

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` has an unexpired value (a check only: no hit, no recency)."""
        if not isinstance(key, str):
            return False
        with self._lock:
            rows = self._query("SELECT expires FROM entries WHERE key = ?", (key,))
            return bool(rows) and rows[0][0] > self._clock()

    def __len__(self) -> int:
        """Entries stored (expired ones included until they are swept)."""
        return self._totals()[0]

    def size_bytes(self) -> int:
        """Bytes the entries are counted for (see ``entry_cost``)."""
        return self._totals()[1]

    def stats(self) -> DiskCacheStats:
        """Deprecated: the older name of :meth:`statistics`."""
        warnings.warn(f"{type(self).__name__}.stats() is deprecated: use statistics()", DeprecationWarning,
                      stacklevel=2)
        return self.statistics()

    def statistics(self) -> DiskCacheStats:
        """A snapshot of the counters and the totals, as one frozen record."""
        entries, size = self._totals()
        with self._lock:
            return DiskCacheStats(
                hits=self._hits, misses=self._misses, evictions=self._evictions,
                expirations=self._expirations, entries=entries, size_bytes=size,
                corrupt_found=self._corrupt_found, corrupt_repaired=self._corrupt_repaired,
                index_rebuilds=self._index_rebuilds, path=self.path,
            )

    # --- writing ------------------------------------------------------------------------

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (``config.ttl`` when ``None``).

        A value whose entry alone exceeds ``max_size_bytes`` is not stored (and
        the key's old value is dropped).
        """
        self.set_many({key: value}, ttl)

    def set_many(self, mapping: Mapping[str, Any], ttl: float | None = None) -> None:
        """Store every item of ``mapping`` in one transaction (all or none)."""
        for attempt in (1, 2):
            rows, written = self._prepare(mapping, ttl)
            try:
                with self._lock:
                    self._write(functools.partial(self._insert, rows=rows))
                return
            except IndexRebuilt:
                if attempt == 2:
                    raise CacheClosed(f"{self!r}: the index broke twice in a row") from None
            except BaseException:
                self._blobs.remove_all(written)
                raise

    def remove(self, key: str) -> bool:
        """Delete ``key``; return whether it was there."""
        with self._lock:
            try:
                return bool(self._write(lambda txn: txn.delete("WHERE key = ?", (key,))) > 0)
            except IndexRebuilt:
                return False  # the rebuilt index is empty: the key is gone anyway

    def clear(self) -> None:
        """Delete every entry."""
        with self._lock:
            self._pending_hits.drop()
            self._pending_expired.clear()

            def wipe(txn: Txn) -> None:
                txn.delete("", ())
                txn.resync = True

            try:
                self._write(wipe)
            except IndexRebuilt:
                pass  # rebuilt empty

    def get_or_compute(self, key: str, fn: Callable[[], T], ttl: float | None = None,
                       *, lock_timeout: float | None = None) -> T | Any:
        """The value of ``key``, computing it with ``fn()`` and storing it if missing.

        Processes and threads asking for the same missing key compute it once:
        the first takes the key's lock file, the others wait on it and find the
        value stored. If ``fn()`` raises, nothing is stored, the error
        propagates and each waiter then tries in turn. A holder that dies
        releases the lock with its process. ``LockTimeout`` past ``lock_timeout``.
        """
        with self._lock:
            value = self._get(key)
        if value is not _MISS:
            return value
        lock = FileLock(self._locks / f"{key_hash(key)}.lock", unlink=True)
        try:
            lock.acquire(lock_timeout)
        except FileNotFoundError:  # the folder went with a rebuilt index
            self._locks.mkdir(parents=True, exist_ok=True)
            lock.acquire(lock_timeout)
        try:
            with self._lock:
                value = self._get(key)  # someone may have computed it while we waited
                if value is not _MISS:
                    return value
                self._misses += 1
            value = fn()
            self.set(key, value, ttl)
            return value
        finally:
            lock.release()

    # --- upkeep -------------------------------------------------------------------------

    def prune(self) -> PruneResult:
        """Flush access counts, drop expired entries, evict down to the bounds, sweep orphan files."""
        with self._lock:
            before = (self._expirations, self._evictions)

            def body(txn: Txn) -> None:
                self._flush_into(txn)
                self._expire(txn)
                self._evict(txn)
                txn.resync = True  # recount the totals exactly

            try:
                freed = self._write(body, count_freed=True)
            except IndexRebuilt:
                freed = 0
            orphans = self._sweep_orphans()
            return PruneResult(expired=self._expirations - before[0], evicted=self._evictions - before[1],
                               orphan_files=orphans, bytes_freed=freed)

    def flush(self) -> None:
        """Write the access counts kept in memory to the index now."""
        with self._lock:
            if self._pending_hits or self._pending_expired:
                try:
                    self._write(self._flush_into)
                except IndexRebuilt:
                    pass

    def close(self) -> None:
        """Flush access counts and close the index (idempotent)."""
        with self._lock:
            if self._conn is None:
                return
            try:
                if self._fork_gen == _fork_gen:
                    self.flush()
            except sqlite3.Error:
                pass  # counts are hints: losing a batch is harmless
            finally:
                if self._fork_gen == _fork_gen:
                    self._conn.close()
                self._conn = self._reader = None

    def __enter__(self) -> DiskCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __reduce__(self) -> tuple[Any, ...]:
        # Another process gets its own connection to the same folder.
        return (_reopen, (self._directory, self.config, self.name, self._clock, self._fsync))

    def __repr__(self) -> str:
        return f"DiskCache({str(self.path)!r}, policy={self._policy.value})"

    # --- internals: reads -------------------------------------------------------------------

    def _get(self, key: str) -> Any:
        """The value or ``_MISS`` (the caller counts misses); hits and bookkeeping done here."""
        for _ in range(3):
            reader = self._reader
            if reader is None or self._fork_gen != _fork_gen:
                reader = self._reader = self._db().cursor()
            try:
                row = reader.execute(_GET_SQL, (key,)).fetchone()
            except sqlite3.DatabaseError as exc:
                if not self._recover_from(exc):
                    raise
                return _MISS
            if row is None:
                return _MISS
            value = self._materialize(key, row, self._clock())
            if value is not _RETRY:
                return value
        return _MISS

    def _materialize(self, key: str, row: Any, now: float) -> Any:
        """Turn an index row into its value (or ``_MISS``/``_RETRY``), checking it on the way."""
        seq, kind, file, size, crc, expires, inline = row
        if expires <= now:
            self._pending_expired.add(key)  # deleted at the next flush: this read writes nothing
            if len(self._pending_expired) >= self._flush_every:
                self._flush_quietly()
            return _MISS
        if file is None:
            data = inline
        else:
            data = self._blobs.read(file)
            if data is None:
                still = self._query("SELECT file FROM entries WHERE key = ?", (key,))
                if not still or still[0][0] != file:
                    return _RETRY  # replaced or evicted under us: not corruption
        try:
            if data is None or len(data) != size:
                raise ValueError("short value")
            if seq not in self._verified:
                # A row's value never changes (a new value is a new row), so one
                # check per handle is enough; sizes are checked on every read.
                if zlib.crc32(data) != crc:
                    raise ValueError("checksum mismatch")
                if len(self._verified) >= _VERIFIED_MAX:
                    self._verified.clear()
                self._verified.add(seq)
            value = data if kind == BYTES else decode_value(kind, data)
        except Exception:
            self._verified.discard(seq)
            self._repair(key, file, crc)
            return _MISS
        self._hits += 1
        if self._tracks_access:
            self._note_access(seq, now)
        return value

    def _note_access(self, seq: int, now: float) -> None:
        """Remember a hit in memory (``_flush_into`` writes it); flush once enough are pending."""
        if not self._pending_hits.note(seq, now):
            return
        pending = len(self._pending_hits)
        if pending >= self._flush_every or time.monotonic() - self._last_flush >= self._flush_interval:
            self._flush_quietly()

    def _query(self, sql: str, params: Iterable[Any]) -> list[Any]:
        """Run a read query; on a corrupt index, rebuild it and return no rows."""
        conn = self._db()
        try:
            return conn.execute(sql, tuple(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            if not self._recover_from(exc):
                raise
            return []

    def _totals(self) -> tuple[int, int]:
        with self._lock:
            rows = self._query("SELECT entries, size FROM meta WHERE id = 0", ())
            return (int(rows[0][0]), int(rows[0][1])) if rows else (0, 0)

    # --- internals: writes ------------------------------------------------------------------

    def _prepare(self, mapping: Mapping[str, Any],
                 ttl: float | None) -> tuple[list[tuple[str, tuple[Any, ...] | None]], list[str]]:
        """Serialise values and write the large ones to files (outside any transaction)."""
        now = self._clock()
        life = self.config.ttl if ttl is None else ttl
        expires = math.inf if life is None else now + life
        limit = self.config.max_size_bytes
        rows: list[tuple[str, tuple[Any, ...] | None]] = []
        written: list[str] = []
        try:
            for key, value in mapping.items():
                if not isinstance(key, str):
                    raise TypeError(f"cache keys are str, not {type(key).__name__}")
                kind, data = encode_value(value)
                cost = entry_cost(key, len(data))
                if limit is not None and cost > limit:
                    rows.append((key, None))  # too big to keep: only drop the old value
                    continue
                file = None
                if len(data) > INLINE_MAX:
                    file = self._blobs.write(key, data)
                    written.append(file)
                rows.append((key, ((key, kind, file, len(data), zlib.crc32(data), cost, expires,
                                    None if file else data), now)))
        except BaseException:
            self._blobs.remove_all(written)
            raise
        return rows, written

    def _insert(self, txn: Txn, rows: list[tuple[str, tuple[Any, ...] | None]]) -> None:
        for key, row in rows:
            txn.delete("WHERE key = ?", (key,))
            if row is not None:
                seq = txn.next_seq
                txn.next_seq += 1
                txn.conn.execute(
                    "INSERT INTO entries (seq, key, kind, file, size, crc, cost, expires, value) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (seq, *row[0]))
                txn.conn.execute("INSERT INTO usage (seq, accessed, hits) VALUES (?, ?, 1.0)", (seq, row[1]))
                self._pending_hits.touched(seq, row[1])
                txn.entries += 1
                txn.first_new = min(txn.first_new, seq)
                txn.size += row[0][5]
        self._flush_into(txn)
        now = self._clock()
        if now - self._last_cleanup >= self.config.cleanup_interval:
            self._expire(txn)
        self._evict(txn)

    def _write(self, body: Callable[[Txn], T], count_freed: bool = False) -> Any:
        """Run ``body`` in one write transaction; delete the files it freed once committed.

        Raises ``IndexRebuilt`` (after rebuilding) if the index turns out corrupt.
        """
        conn = self._db()
        try:
            result, txn = write_transaction(conn, body)
        except sqlite3.DatabaseError as exc:
            if self._recover_from(exc):
                raise IndexRebuilt(str(exc)) from exc
            raise
        self._blobs.remove_all(txn.freed_files)
        return txn.freed_bytes if count_freed else result

    def _flush_into(self, txn: Txn) -> None:
        """Write the pending access counts and delete entries seen expired."""
        self._pending_hits.write_into(txn)
        if self._pending_expired:
            now = self._clock()
            for key in self._pending_expired:
                self._expirations += txn.delete("WHERE key = ? AND expires <= ?", (key, now))
            self._pending_expired.clear()
        self._last_flush = time.monotonic()

    def _flush_quietly(self) -> None:
        try:
            self.flush()
        except sqlite3.OperationalError:
            pass  # busy past the timeout: the counts wait for the next flush

    def _expire(self, txn: Txn) -> None:
        now = self._clock()
        self._expirations += txn.delete("WHERE expires <= ?", (now,))
        self._last_cleanup = now

    def _evict(self, txn: Txn) -> None:
        """Delete entries in policy order until both bounds hold (expired entries first)."""
        max_n, max_b = self.config.max_entries, self.config.max_size_bytes

        def over() -> bool:
            return (max_n is not None and txn.entries > max_n) or (max_b is not None and txn.size > max_b)

        if not over():
            return
        self._expire(txn)
        while over():
            victims = txn.conn.execute(self._victims, (txn.first_new,)).fetchall()
            if not victims:
                if txn.first_new == NO_SEQ:
                    break
                txn.first_new = NO_SEQ  # more new entries than fit: the oldest of them go too
                continue
            for (seq,) in victims:
                self._evictions += txn.delete("WHERE seq = ?", (seq,))
                if not over():
                    break

    def _repair(self, key: str, file: str | None, crc: int) -> None:
        """Remove an entry whose value failed its checks (unless it was replaced meanwhile)."""
        self._corrupt_found += 1
        try:
            self._write(lambda txn: txn.delete("WHERE key = ? AND file IS ? AND crc = ?", (key, file, crc)))
        except IndexRebuilt:
            pass  # the whole index was rebuilt: the entry is gone too
        except sqlite3.Error:
            return
        self._blobs.remove(file)
        self._corrupt_repaired += 1

    # --- internals: opening, rebuilding, sweeping ---------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise CacheClosed(f"{self!r} is closed")
        if self._fork_gen != _fork_gen:
            # Forked: a SQLite connection must not cross a fork. Keep the
            # parent's object alive (closing it here could disturb the parent).
            self._inherited.append(self._conn)
            self._reader = None
            self._fork_gen = _fork_gen
            self._pending_hits.drop()
            self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        # Memos keyed by seq belong to one index file; a rebuilt one restarts its seqs.
        self._pending_hits.forget_all()
        self._verified.clear()
        for folder in (self.path, self._blobs.folder, self._blobs.tmp, self._locks):
            folder.mkdir(parents=True, exist_ok=True)
        conn: sqlite3.Connection | None = None
        with FileLock(self.path / "open.lock", shared=True):
            try:
                conn = self._connect(self._verify)
            except IndexBroken:
                pass
        if conn is None:
            with FileLock(self.path / "open.lock"):
                try:  # another process may have rebuilt it while we waited
                    conn = self._connect(True)
                except IndexBroken:
                    self._set_aside()
                    conn = self._connect(False)
        self._blobs.sweep_tmp()
        self._sweep_locks()
        return conn

    def _connect(self, check: bool) -> sqlite3.Connection:
        return connect_index(self._db_path, fsync=self._fsync, check=check, policy=self._policy)

    def _set_aside(self) -> None:
        """Move a broken index to ``broken/`` and drop the value files it referred to."""
        stamp = set_aside(self._db_path, self.path / "broken")
        self._blobs.discard_all(self.path / f"blobs.trash-{stamp}")
        self._index_rebuilds += 1

    def _recover_from(self, exc: sqlite3.DatabaseError) -> bool:
        """If ``exc`` says the index is corrupt, reopen (checking and rebuilding it) and return True."""
        if not is_corruption(exc):
            return False
        if self._conn is not None:
            self._conn.close()
        self._reader = None
        self._pending_hits.drop()
        self._conn = None
        old_verify, self._verify = self._verify, True
        try:
            self._conn = self._open()
        finally:
            self._verify = old_verify
        return True

    def _sweep_locks(self) -> None:
        """Remove lock files that killed holders left (free ones; held ones stay)."""
        try:
            names = os.listdir(self._locks)
        except FileNotFoundError:
            return
        for name in names:
            lock = FileLock(self._locks / name, unlink=True)
            try:
                if lock.try_acquire():
                    lock.release()
            except OSError:
                pass

    def _sweep_orphans(self) -> int:
        """Remove value files no entry refers to (left by a writer killed between rename and commit)."""
        known = {row[0] for row in self._query("SELECT file FROM entries WHERE file IS NOT NULL", ())}
        return self._blobs.sweep_orphans(known)


# --- helpers ----------------------------------------------------------------------------

_fork_gen = 0  # bumped in a forked child: tells a handle its connection came from the parent


def _forked() -> None:
    global _fork_gen
    _fork_gen += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


def _reopen(directory: Any, config: CacheConfig, name: str, clock: Callable[[], float], fsync: bool) -> DiskCache:
    return DiskCache(directory, config, name=name, clock=clock, fsync=fsync)


def _resolve_policy(config: CacheConfig) -> EvictionPolicy:
    policy = config.eviction_policy
    if policy is EvictionPolicy.HYBRID:
        policy = config.hybrid.secondary
    if policy is EvictionPolicy.TINYLFU:
        return EvictionPolicy.LFU
    return policy if policy in EVICTION_ORDER else EvictionPolicy.LRU
