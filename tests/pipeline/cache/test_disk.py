"""DiskCache, the persistent tier: values, bounds and policies, expiry, reads that do not
write, processes sharing one folder, and recovery from corruption and killed writers."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import signal
import sqlite3
import threading
import traceback
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cache.config import CacheConfig, EvictionPolicy
from pipeline.cache.disk import (
    INLINE_MAX,
    DiskCache,
    DiskCacheStats,
    UnsupportedCacheValue,
    entry_cost,
)
from pipeline.cache.location import InvalidCacheName, cache_path, default_cache_dir
from pipeline.cache.locks import FileLock

SPAWN = mp.get_context("spawn")
BIG = INLINE_MAX + 5000  # stored as a file


class FakeClock:
    """A clock that moves only when told to (or by ``step`` on every reading)."""

    def __init__(self, start: float = 1000.0, step: float = 0.0) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def bounded(max_entries: int | None = None, max_bytes: int | None = None,
            policy: EvictionPolicy = EvictionPolicy.LRU, ttl: float | None = None) -> CacheConfig:
    return CacheConfig(max_entries=max_entries, max_size_bytes=max_bytes, eviction_policy=policy, ttl=ttl)


def blob_files(cache: DiskCache) -> list[Path]:
    return [p for p in (cache.path / "blobs").rglob("*") if p.is_file()]


def db_state(cache: DiskCache) -> list[tuple[int, int]]:
    """Size and mtime of the index and its WAL: what a write would change."""
    out = []
    for suffix in ("", "-wal"):
        st = os.stat(f"{cache.path / 'index.sqlite'}{suffix}")
        out.append((st.st_size, st.st_mtime_ns))
    return out


# --- values -------------------------------------------------------------------------------


def _table(rows: int) -> Any:
    import pyarrow as pa

    return pa.table({"frame": list(range(rows)), "label": [f"f{i}" for i in range(rows)]})


@pytest.mark.parametrize("value", [
    b"", b"small bytes", bytes(range(256)) * (BIG // 256 + 1),
    {"w": 1920, "h": 1080, "tags": ["a", "b"], "nested": {"x": None, "ok": True}},
    [1, 2.5, "three"], "text \u00e9\u4e2d", 42, 3.25, None,
], ids=["empty", "bytes", "big-bytes", "dict", "list", "str", "int", "float", "none"])
def test_each_value_type_comes_back_as_stored(tmp_path: Path, value: Any) -> None:
    with DiskCache(tmp_path) as cache:
        cache.set("k", value)
        got = cache.get("k", "missing")
        assert got == value and type(got) is type(value)


@pytest.mark.parametrize("rows", [3, 5000], ids=["inline", "file"])
def test_arrow_tables_round_trip(tmp_path: Path, rows: int) -> None:
    table = _table(rows)
    with DiskCache(tmp_path) as cache:
        cache.set("t", table)
        assert cache.get("t").equals(table)
        assert bool(blob_files(cache)) == (rows > 3)


def test_a_pickle_stored_as_bytes_comes_back_as_bytes_never_unpickled(tmp_path: Path) -> None:
    payload = pickle.dumps({"would": "unpickle"})
    with DiskCache(tmp_path) as cache:
        cache.set("p", payload)
        assert cache.get("p") == payload


def test_unsupported_values_are_refused_and_set_many_is_all_or_nothing(tmp_path: Path) -> None:
    with DiskCache(tmp_path) as cache:
        with pytest.raises(UnsupportedCacheValue):
            cache.set("x", {1, 2})
        with pytest.raises(UnsupportedCacheValue):
            cache.set_many({"a": b"1", "big": b"x" * BIG, "bad": object()})
        assert len(cache) == 0 and "a" not in cache and blob_files(cache) == []


def test_set_many_and_get_many(tmp_path: Path) -> None:
    with DiskCache(tmp_path) as cache:
        items = {f"k{i}": (b"v" * i if i % 2 else {"i": i}) for i in range(20)}
        items["big"] = b"b" * BIG
        cache.set_many(items)
        assert cache.get_many([*items, "nope"]) == items
        assert cache.remove("k1") and not cache.remove("k1")
        assert "k1" not in cache and cache.get("k1") is None


def test_values_survive_reopening(tmp_path: Path) -> None:
    with DiskCache(tmp_path, name="runs") as cache:
        cache.set("small", b"s")
        cache.set("big", b"b" * BIG)
    with DiskCache(tmp_path, name="runs") as cache:
        assert cache.get("small") == b"s" and cache.get("big") == b"b" * BIG


def test_clear_empties_the_cache_and_its_files(tmp_path: Path) -> None:
    with DiskCache(tmp_path, name="thumbs") as cache:
        cache.set_many({"a": b"1", "b": b"2" * BIG})
        assert cache.name == "thumbs"
        cache.clear()
        assert len(cache) == 0 and cache.size_bytes() == 0 and blob_files(cache) == []
        cache.set("a", b"again")
        assert cache.get("a") == b"again"


def test_get_or_compute_stores_once_and_a_raising_fn_stores_nothing(tmp_path: Path) -> None:
    calls = []
    with DiskCache(tmp_path) as cache:
        assert cache.get_or_compute("k", lambda: calls.append(1) or [1, 2]) == [1, 2]
        assert cache.get_or_compute("k", lambda: calls.append(1) or [3]) == [1, 2]
        assert len(calls) == 1

        def boom() -> bytes:
            raise KeyError("no")

        with pytest.raises(KeyError):
            cache.get_or_compute("e", boom)
        assert "e" not in cache
        assert list((cache.path / "locks").iterdir()) == []  # lock files go with their holders


def test_stats_is_a_frozen_snapshot(tmp_path: Path) -> None:
    with DiskCache(tmp_path) as cache:
        cache.set("a", b"1")
        cache.get("a")
        cache.get("b")
        stats = cache.statistics()
    assert isinstance(stats, DiskCacheStats)
    assert (stats.hits, stats.misses, stats.entries, stats.path) == (1, 1, 1, tmp_path / "default")
    assert stats.size_bytes == entry_cost("a", 1)
    with pytest.raises(AttributeError):
        stats.hits = 5  # type: ignore[misc]


# --- key safety -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["../../etc/passwd", "/etc/passwd", "a/../../b", "..", "C:\\x", "nul\x00byte",
                                 "\u202e\u0000../" * 20])
def test_keys_never_escape_the_cache_folder(tmp_path: Path, key: str) -> None:
    root = tmp_path / "root"
    with DiskCache(root) as cache:
        cache.set(key, b"x" * BIG)
        cache.set(key + "small", b"y")
        assert cache.get(key) == b"x" * BIG and cache.get(key + "small") == b"y"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    for path in root.rglob("*"):
        assert path.resolve().is_relative_to(root.resolve())


def test_a_tampered_file_name_in_the_index_is_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * BIG)
    with DiskCache(tmp_path / "c") as cache:
        cache.set("k", b"v" * BIG)
    with sqlite3.connect(tmp_path / "c" / "default" / "index.sqlite") as db:
        db.execute("UPDATE entries SET file = '../../../secret'")
    with DiskCache(tmp_path / "c") as cache:
        assert cache.get("k") is None and cache.statistics().corrupt_found == 1
    assert secret.exists()


# --- bounds and policies -------------------------------------------------------------------------


def test_bounds_count_keys_and_overhead_and_are_never_exceeded(tmp_path: Path) -> None:
    limit = 40_000
    with DiskCache(tmp_path, bounded(max_entries=6, max_bytes=limit)) as cache:
        items = [(f"key-{i:03d}" * (1 + i % 3), size)
                 for i, size in enumerate([10, 3000, BIG // 2, 700, 9000, 1, 20_000, 5] * 3)]
        for key, size in items:
            cache.set(key, b"z" * size)
            assert len(cache) <= 6 and cache.size_bytes() <= limit
        live = [k for k, _ in cache._query("SELECT key, 1 FROM entries", ())]
        assert cache.size_bytes() == sum(entry_cost(k, len(cache.get(k))) for k in live)
        assert cache.statistics().evictions == len(items) - len(live)
        cache.set(live[0], b"q" * BIG)  # alone over the bound (with its blocks): not kept, old value gone
        assert live[0] not in cache and entry_cost(live[0], BIG) > limit >= BIG
    assert entry_cost("ab", 10) == 4 + 128 + 10 and entry_cost("ab", BIG) == 4 + 128 + 40960


@pytest.mark.parametrize("policy", [EvictionPolicy.LRU, EvictionPolicy.FIFO])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(st.tuples(st.sampled_from(["set", "get"]), st.integers(0, 7),
                              st.sampled_from([1, 500, 2000, BIG])), min_size=1, max_size=30))
def test_eviction_order_matches_a_reference_model(tmp_path_factory: pytest.TempPathFactory,
                                                  policy: EvictionPolicy, ops: list[tuple[str, int, int]]) -> None:
    max_n, max_b = 4, 3 * entry_cost("k0", BIG)
    model: OrderedDict[str, int] = OrderedDict()  # key -> value size, first = next to go
    folder = tmp_path_factory.mktemp("model")
    with DiskCache(folder, bounded(max_n, max_b, policy), clock=FakeClock(step=1.0), touch_interval=0.0) as cache:
        for op, k, size in ops:
            key = f"k{k}"
            if op == "set":
                model.pop(key, None)
                if entry_cost(key, size) <= max_b:
                    model[key] = size
                while len(model) > max_n or sum(entry_cost(k2, s) for k2, s in model.items()) > max_b:
                    model.popitem(last=False)
                cache.set(key, b"v" * size)
            else:
                got = cache.get(key)
                assert (got is not None) == (key in model)
                if got is not None:
                    assert len(got) == model[key]
                    if policy is EvictionPolicy.LRU:
                        model.move_to_end(key)
            assert [f"k{i}" for i in range(8) if f"k{i}" in cache] == sorted(model)  # `in` leaves recency alone
            assert len(cache) == len(model)


def test_lfu_evicts_the_least_asked_for(tmp_path: Path) -> None:
    with DiskCache(tmp_path, bounded(max_entries=3, policy=EvictionPolicy.LFU), clock=FakeClock(step=1)) as cache:
        cache.set_many({"a": b"1", "b": b"2", "c": b"3"})
        for key, n in (("a", 5), ("b", 1), ("c", 3)):
            for _ in range(n):
                cache.get(key)
        cache.set("d", b"4")
        assert sorted(cache.get_many("abcd")) == ["a", "c", "d"]


def test_ttl_policy_evicts_the_soonest_to_expire(tmp_path: Path) -> None:
    with DiskCache(tmp_path, bounded(max_entries=2, policy=EvictionPolicy.TTL), clock=FakeClock()) as cache:
        cache.set("late", b"1", ttl=100)
        cache.set("soon", b"2", ttl=10)
        cache.set("new", b"3", ttl=50)
        assert sorted(cache.get_many(["late", "soon", "new"])) == ["late", "new"]


def test_entries_expire_with_the_clock(tmp_path: Path) -> None:
    clock = FakeClock()
    with DiskCache(tmp_path, bounded(ttl=60), clock=clock) as cache:
        cache.set("default-ttl", b"1")
        cache.set("short", b"2", ttl=10)
        clock.now += 9.9
        assert cache.get("short") == b"2" and "short" in cache
        clock.now += 0.1
        assert cache.get("short") is None and "short" not in cache
        assert cache.get("default-ttl") == b"1"
        clock.now += 50
        assert cache.get("default-ttl") is None
        result = cache.prune()
        assert result.expired == 2 and len(cache) == 0 and cache.size_bytes() == 0
        assert cache.statistics().expirations == 2


def test_reads_do_not_write_until_the_batch_is_flushed(tmp_path: Path) -> None:
    clock = FakeClock(step=1.0)
    with DiskCache(tmp_path, bounded(max_entries=3), clock=clock) as cache:
        cache.set_many({"a": b"1", "b": b"2", "c": b"3" * BIG})
    with DiskCache(tmp_path, bounded(max_entries=3), clock=clock, flush_interval=1e9) as cache:
        before = db_state(cache)
        for _ in range(300):
            assert cache.get("a") == b"1" and cache.get("c") == b"3" * BIG
        cache.get_many(["a", "c"])
        assert db_state(cache) == before
        cache.set("d", b"4")  # flushes the reads first: "b" is now the least recently used
        assert sorted(cache.get_many("abcd")) == ["a", "c", "d"]


def test_hybrid_and_tinylfu_map_to_the_nearest_disk_policy(tmp_path: Path) -> None:
    for policy in (EvictionPolicy.HYBRID, EvictionPolicy.TINYLFU):
        with DiskCache(tmp_path, bounded(max_entries=2, policy=policy), name=policy.value) as cache:
            cache.set_many({"a": b"1", "b": b"2", "c": b"3"})
            assert len(cache) == 2


# --- processes --------------------------------------------------------------------------------


def _run_all(target: Any, args_of: list[tuple[Any, ...]], timeout: float = 60.0) -> list[Any]:
    """Run ``target(*args, results)`` in one spawned process per args; return what each put."""
    results = SPAWN.Queue()
    procs = [SPAWN.Process(target=target, args=(*args, results)) for args in args_of]
    for p in procs:
        p.start()
    out = [results.get(timeout=timeout) for _ in procs]
    for p in procs:
        p.join(timeout)
        assert p.exitcode == 0
    errors = [o for o in out if isinstance(o, str)]
    assert not errors, errors[0]
    return out


def _writer(cache: DiskCache, results: Any) -> None:
    try:
        cache.set_many({"from-child": {"pid": os.getpid()}, "big": b"B" * BIG})
        cache.close()
        results.put(("ok", os.getpid()))
    except BaseException:
        results.put(traceback.format_exc())


def test_values_written_by_another_process_are_read_here(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    [(_, pid)] = _run_all(_writer, [(cache,)])  # the cache travels pickled: the child opens the folder
    assert cache.get("from-child") == {"pid": pid} and cache.get("big") == b"B" * BIG
    cache.close()


def test_threads_sharing_a_handle_compute_a_key_once(tmp_path: Path) -> None:
    calls: list[int] = []
    barrier = threading.Barrier(4)
    with DiskCache(tmp_path) as cache:
        def ask() -> Any:
            barrier.wait()
            return cache.get_or_compute("k", lambda: calls.append(1) or {"v": 1})

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(lambda _: ask(), range(4))) == [{"v": 1}] * 4
    assert calls == [1]


def _use_inherited(cache: DiskCache, results: Any) -> None:
    results.put(cache.get("a"))
    cache.set("b", b"child")
    cache.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    cache.set("a", b"parent")
    fork = mp.get_context("fork")
    results = fork.Queue()
    child = fork.Process(target=_use_inherited, args=(cache, results))
    child.start()
    assert results.get(timeout=30) == b"parent"
    child.join(30)
    assert child.exitcode == 0
    assert cache.get("b") == b"child" and cache.get("a") == b"parent"
    cache.close()


def _expected(key: str) -> bytes:
    return key.encode() * (BIG // len(key) if key.endswith("big") else 3)


def _hammer(root: str, worker: int, barrier: Any, results: Any) -> None:
    try:
        import random

        log = Path(root) / "computed.log"
        cache = DiskCache(root)
        keys = [f"k{i}" + ("big" if i % 4 == 0 else "") for i in range(24)] + ["boom"]
        random.Random(worker).shuffle(keys)

        def compute(key: str) -> bytes:
            with open(log, "a") as f:  # one short O_APPEND write per computation
                f.write(f"{key}\n")
            if key == "boom" and log.read_text().count("boom\n") == 1:
                raise RuntimeError("first try of boom fails")
            return _expected(key)

        barrier.wait()
        raised = 0
        for key in keys:
            try:
                assert cache.get_or_compute(key, lambda key=key: compute(key)) == _expected(key)
            except RuntimeError:
                raised += 1
        for j in range(40):
            cache.set(f"w{worker}-{j}", _expected(f"w{worker}-{j}" + ("big" if j % 10 == 0 else "")))
            cache.set("shared", f"{worker}-{j}".encode() * 100)
            assert cache.get("shared") is not None
        for other in range(4):
            cache.get(f"w{other}-0")
        stats = cache.statistics()
        cache.close()
        results.put((raised, stats.corrupt_found))
    except BaseException:
        results.put(traceback.format_exc())


@pytest.mark.slow
def test_four_processes_compute_each_key_once_and_lose_no_writes(tmp_path: Path) -> None:
    barrier = SPAWN.Barrier(4)
    out = _run_all(_hammer, [(str(tmp_path), w, barrier) for w in range(4)])
    assert sum(raised for raised, _ in out) == 1  # "boom" failed for one process; another then computed it
    assert all(corrupt == 0 for _, corrupt in out)
    computed = (tmp_path / "computed.log").read_text().split()
    assert sorted(computed) == sorted([f"k{i}" + ("big" if i % 4 == 0 else "") for i in range(24)] + ["boom"] * 2)
    with DiskCache(tmp_path) as cache:
        for w in range(4):
            for j in range(40):
                key = f"w{w}-{j}"
                assert cache.get(key) == _expected(key + ("big" if j % 10 == 0 else ""))
        assert cache.get("shared").split(b"-")[0] in {b"0", b"1", b"2", b"3"}
        assert cache.statistics().corrupt_found == 0
        assert cache._query("PRAGMA integrity_check", ()) == [("ok",)]


def _endless_writer(root: str, results: Any) -> None:
    cache = DiskCache(root)
    i = 0
    while True:
        cache.set(f"n{i}", b"x" * (BIG if i % 3 == 0 else 100))
        if i == 30:
            results.put("written")
        i += 1


def test_a_killed_writer_leaves_a_working_cache(tmp_path: Path) -> None:
    results = SPAWN.Queue()
    proc = SPAWN.Process(target=_endless_writer, args=(str(tmp_path), results))
    proc.start()
    assert results.get(timeout=60) == "written"
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(30)
    with DiskCache(tmp_path) as cache:
        assert cache.statistics().index_rebuilds == 0
        assert all(cache.get(f"n{i}") is not None for i in range(31))
        assert cache.statistics().corrupt_found == 0
        assert list((cache.path / "tmp").iterdir()) == []  # its partial file is swept
        cache.prune()
        assert len(cache) == len(cache._query("SELECT 1 FROM entries", ()))


def test_partial_files_of_dead_writers_and_stale_locks_are_swept_on_open(tmp_path: Path) -> None:
    dead = SPAWN.Process(target=os.getpid)
    dead.start()
    dead.join()
    folder = cache_path("default", tmp_path)
    (folder / "tmp").mkdir(parents=True)
    (folder / "locks").mkdir()
    (folder / "tmp" / f"{dead.pid}-abc.part").write_bytes(b"half")
    (folder / "tmp" / f"{os.getpid()}-live.part").write_bytes(b"being written")
    (folder / "locks" / "left-by-a-dead-holder.lock").touch()
    held = FileLock(folder / "locks" / "held.lock", unlink=True)
    held.acquire()
    try:
        DiskCache(tmp_path).close()
        assert sorted(p.name for p in (folder / "tmp").iterdir()) == [f"{os.getpid()}-live.part"]
        assert [p.name for p in (folder / "locks").iterdir()] == ["held.lock"]
    finally:
        held.release()


def test_prune_sweeps_value_files_no_entry_refers_to(tmp_path: Path) -> None:
    with DiskCache(tmp_path) as cache:
        cache.set("kept", b"k" * BIG)
        old = cache.path / "blobs" / "ab" / ("ab" + "0" * 38 + "-" + "1" * 16 + ".val")
        young = old.with_name("ab" + "0" * 38 + "-" + "2" * 16 + ".val")
        old.parent.mkdir(exist_ok=True)
        old.write_bytes(b"orphan")
        young.write_bytes(b"maybe a set about to commit")
        os.utime(old, (1, 1))
        assert cache.prune().orphan_files == 1
        assert not old.exists() and young.exists() and cache.get("kept") == b"k" * BIG


# --- corruption ------------------------------------------------------------------------------


def _garbage(db: Path) -> None:
    db.write_bytes(os.urandom(64 * 1024))


def _truncate(db: Path) -> None:
    with open(db, "r+b") as f:
        f.truncate(os.path.getsize(db) // 2)


def _scribble(db: Path) -> None:
    data = bytearray(db.read_bytes())
    for offset in range(4096 + 100, len(data), 4096):  # every page after the first
        data[offset:offset + 64] = os.urandom(64)
    db.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _truncate, _scribble], ids=["garbage", "truncated", "scribbled"])
def test_a_broken_index_is_set_aside_and_rebuilt_on_open(tmp_path: Path, damage: Any) -> None:
    with DiskCache(tmp_path) as cache:
        cache.set_many({f"k{i}": b"v" * (BIG if i % 5 == 0 else 2000) for i in range(60)})
        db = cache.path / "index.sqlite"
    damage(db)
    with DiskCache(tmp_path) as cache:
        assert cache.statistics().index_rebuilds == 1 and len(cache) == 0
        assert blob_files(cache) == []  # the rebuilt index owns no files
        assert len(list((cache.path / "broken").iterdir())) == 1
        cache.set("k1", b"new")
        assert cache.get("k1") == b"new"
    with DiskCache(tmp_path) as cache:
        assert cache.get("k1") == b"new" and cache.statistics().index_rebuilds == 0


def test_an_index_broken_while_open_is_rebuilt_and_reads_miss(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path)
    cache.set_many({f"k{i}": b"v" * 3000 for i in range(50)})
    cache._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    cache._conn.close()
    _garbage(cache.path / "index.sqlite")
    cache._conn = sqlite3.connect(cache.path / "index.sqlite", isolation_level=None, check_same_thread=False)
    cache._reader = None
    assert cache.get("k1") is None
    assert cache.statistics().index_rebuilds == 1
    cache.set("k1", b"again")
    assert cache.get("k1") == b"again"
    cache.close()


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _shorten(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-10])


@pytest.mark.parametrize("damage", [_flip, _shorten, Path.unlink], ids=["flipped", "short", "deleted"])
def test_a_damaged_value_file_is_a_counted_repaired_miss(tmp_path: Path, damage: Any) -> None:
    with DiskCache(tmp_path) as cache:
        cache.set_many({"victim": b"v" * BIG, "other": b"o" * BIG})
        [victim] = [p for p in blob_files(cache)
                    if p.name.startswith(__import__("hashlib").blake2b(b"victim", digest_size=20).hexdigest())]
    damage(victim)
    with DiskCache(tmp_path) as cache:
        assert cache.get("victim") is None
        stats = cache.statistics()
        assert (stats.corrupt_found, stats.corrupt_repaired, stats.misses) == (1, 1, 1)
        assert "victim" not in cache and len(cache) == 1 and not victim.exists()
        assert cache.get("other") == b"o" * BIG
        cache.set("victim", b"fresh" * 10_000)
        assert cache.get("victim") == b"fresh" * 10_000


def test_a_damaged_inline_value_is_a_counted_repaired_miss(tmp_path: Path) -> None:
    with DiskCache(tmp_path) as cache:
        cache.set_many({"victim": {"json": "value"}, "other": b"fine"})
    with sqlite3.connect(tmp_path / "default" / "index.sqlite") as db:  # a flipped bit in the BLOB
        db.execute("UPDATE entries SET value = CAST('{\"json\":\"valuE\"}' AS BLOB) WHERE key = 'victim'")
    with DiskCache(tmp_path) as cache:
        assert cache.get_many(["victim", "other"]) == {"other": b"fine"}
        assert cache.statistics().corrupt_repaired == 1 and "victim" not in cache


# --- location -----------------------------------------------------------------------------------


def test_default_cache_dir_follows_the_platform_convention(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FRAMEPIPE_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv("FRAMEPIPE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "framepipe"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "framepipe"


def test_each_cache_name_gets_its_own_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FRAMEPIPE_CACHE_DIR", str(tmp_path))
    with DiskCache(name="probes") as a, DiskCache(name="thumbs") as b:
        a.set("k", b"a")
        assert b.get("k") is None
        assert a.path == tmp_path / "probes" and b.path == tmp_path / "thumbs"
    for bad in ("", "..", "a/b", "../x", ".hidden"):
        with pytest.raises(InvalidCacheName):
            cache_path(bad, tmp_path)


def _open_and_set(root: str, i: int, barrier) -> None:  # noqa: ANN001
    barrier.wait()  # every process opens the fresh cache at the same moment
    with DiskCache(root, name="fresh") as cache:
        cache.set(f"k{i}", b"x" * (1000 + i))


def test_processes_opening_a_fresh_cache_together_all_keep_their_values(tmp_path: Path) -> None:
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    for trial in range(5):
        root = str(tmp_path / f"t{trial}")
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_and_set, args=(root, i, barrier)) for i in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        assert [p.exitcode for p in procs] == [0, 0, 0, 0]
        with DiskCache(root, name="fresh") as cache:
            assert [cache.get(f"k{i}") for i in range(4)] == [b"x" * (1000 + i) for i in range(4)]
