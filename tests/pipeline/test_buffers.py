"""BufferPool and FrameRef: slots leased once, freed with their last reference, stale handles refused."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from loky import ProcessPoolExecutor
from support.segments import mapped, segment_exists

from pipeline.dataplane.buffers import BufferPool, FrameRef, SlotLease
from pipeline.dataplane.segments import sweep_stale_segments
from pipeline.errors import BufferPoolExhausted, PoolClosed, StaleFrameRef

# --- Leasing --------------------------------------------------------------------------------


def test_slots_are_aligned_and_the_pool_reports_its_use() -> None:
    with BufferPool(1000, 3, name="t") as pool:
        assert pool.stride == 1024
        leases = [pool.acquire() for _ in range(3)]
        addresses = [lease.array((1000,)).ctypes.data for lease in leases]
        assert all(a % 64 == 0 for a in addresses)
        assert pool.utilization == 1.0 and pool.free_slots == 0
        assert pool.try_acquire() is None
        stats = pool.statistics()
        assert (stats.allocations, stats.peak_leased, stats.leased_slots) == (3, 3, 3)


def test_page_alignment_is_an_option() -> None:
    with BufferPool(100, 2, page_aligned=True) as pool:
        lease = pool.acquire()
        assert lease.array((100,)).ctypes.data % os.sysconf("SC_PAGE_SIZE") == 0


def test_acquire_times_out_with_a_clear_error_and_counts_the_wait() -> None:
    with BufferPool(64, 1, name="tiny") as pool:
        held = pool.acquire()
        with pytest.raises(BufferPoolExhausted, match="no free slot in pool tiny"):
            pool.acquire(timeout=0)
        assert pool.statistics().waits == 1 and pool.statistics().timeouts == 1
        held.release()
        assert pool.acquire(timeout=0).slot == held.slot


def test_a_waiting_acquire_gets_the_slot_released_by_another_thread() -> None:
    import threading
    with BufferPool(64, 1) as pool:
        held = pool.acquire()
        got: list[SlotLease] = []
        waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=60)))
        waiter.start()
        held.release()
        waiter.join()
        assert got and got[0].slot == held.slot and got[0].generation == held.generation + 1


def test_a_lease_is_released_by_context_manager_by_release_and_by_garbage_collection() -> None:
    with BufferPool(64, 1) as pool:
        with pool.acquire():
            assert pool.free_slots == 0
        assert pool.free_slots == 1
        lease = pool.acquire()
        lease.release()
        lease.release()  # idempotent
        assert pool.free_slots == 1
        pool.acquire()  # dropped at once
        assert pool.free_slots == 1


def test_fan_out_frees_the_slot_only_after_every_reader_released() -> None:
    with BufferPool(64, 1) as pool:
        first = pool.acquire()
        second = first.retain()
        first.release()
        assert pool.free_slots == 0
        second.release()
        assert pool.free_slots == 1


def test_a_ref_to_a_recycled_slot_raises_instead_of_reading_another_frame() -> None:
    with BufferPool(64, 1) as pool:
        lease = pool.acquire()
        ref = lease.ref((64,))
        lease.release()
        again = pool.acquire()
        again.array((64,))[:] = 9
        with pytest.raises(StaleFrameRef, match="stale"):
            ref.array()


def test_frame_ref_is_small_and_its_numpy_and_arrow_views_share_memory() -> None:
    with BufferPool(1920 * 1080 * 3, 1) as pool:
        lease = pool.acquire()
        ref = lease.ref((1080, 1920, 3), np.uint8, pixel_format="rgb24", pts=90, time_base=Fraction(1, 30),
                        stream=0, seq=3)
        assert len(pickle.dumps(ref)) < 1024
        assert pickle.loads(pickle.dumps(ref)) == ref
        assert ref.time == 3.0
        view = ref.array()
        view[0, 0] = (1, 2, 3)
        buf = ref.arrow_buffer()
        assert buf.address == view.ctypes.data and buf.size == view.nbytes
        assert bytes(buf[:3]) == b"\x01\x02\x03"
        tensor = ref.arrow_tensor()
        assert tensor.shape == (1080, 1920, 3) and tensor.type == pa.uint8()
        assert np.shares_memory(tensor.to_numpy(), view)


def test_expand_adds_slots_and_shrink_never_drops_a_leased_one() -> None:
    with BufferPool(64, 2) as pool:
        held = [pool.acquire(), pool.acquire()]
        assert pool.expand(3) == 5
        assert pool.shrink(0) == 2  # the two leased slots stay
        assert pool.free_slots == 0
        for lease in held:
            lease.release()
        assert pool.shrink(1) == 1
        assert pool.expand(2) == 3


def test_a_closed_pool_refuses_leases_and_unlinks_its_memory() -> None:
    pool = BufferPool(64, 2)
    names = pool.segment_names()
    ref = pool.acquire().ref((8,))
    pool.close()
    assert not any(segment_exists(n) for n in names)
    with pytest.raises(PoolClosed):
        pool.acquire()
    with pytest.raises(PoolClosed):
        ref.array()


def test_an_array_taken_before_the_pool_closed_stays_readable_and_goes_unmapped_with_it() -> None:
    pool = BufferPool(276 * 320, 2)
    names = pool.segment_names()
    with pool.acquire() as lease:
        ref = lease.ref((276, 320))
        ref.array()[:] = 7
        kept = ref.array()
        view = memoryview(ref.array())  # a buffer export over the slot, as a decoder's frame holds one
    pool.close()
    assert not any(segment_exists(n) for n in names)  # the name goes at once
    assert kept.mean() == 7 and np.asarray(view).mean() == 7  # the memory stays while viewed
    with pytest.raises(PoolClosed):
        ref.array()
    assert all(mapped(n) for n in names)
    del kept, view
    assert not any(mapped(n) for n in names)


class PoolMachine(RuleBasedStateMachine):
    """Random acquire / retain / release / expand / shrink sequences against a simple model."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = BufferPool(64, 3, prefault=False)
        self.leases: list[SlotLease] = []
        self.refcount: dict[int, int] = {}
        self.total = 3
        self.stale_refs: list[FrameRef] = []

    @rule()
    def acquire(self) -> None:
        free = self.total - len(self.refcount)
        lease = self.pool.try_acquire()
        if free == 0:
            assert lease is None
            return
        assert lease is not None and lease.slot not in self.refcount
        self.leases.append(lease)
        self.refcount[lease.slot] = 1

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def retain(self, data: st.DataObject) -> None:
        lease = data.draw(st.sampled_from(self.leases))
        self.leases.append(lease.retain())
        self.refcount[lease.slot] += 1

    @precondition(lambda self: self.leases)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        lease = self.leases.pop(data.draw(st.integers(0, len(self.leases) - 1)))
        ref = lease.ref((8,))
        lease.release()
        self.refcount[lease.slot] -= 1
        if self.refcount[lease.slot] == 0:
            del self.refcount[lease.slot]
            self.stale_refs.append(ref)

    @rule(n=st.integers(1, 3))
    def expand(self, n: int) -> None:
        self.total = self.pool.expand(n)

    @rule(goal=st.integers(0, 8))
    def shrink(self, goal: int) -> None:
        new_total = self.pool.shrink(goal)
        leased = len(self.refcount)
        assert new_total == (self.total if self.total <= goal else max(goal, leased))
        self.total = new_total

    @invariant()
    def counts_match_the_model(self) -> None:
        assert self.pool.total_slots == self.total
        assert self.pool.leased_slots == len(self.refcount)
        assert self.pool.free_slots == self.total - len(self.refcount)
        expected = len(self.refcount) / self.total if self.total else 0.0
        assert self.pool.utilization == expected

    @invariant()
    def old_refs_are_stale(self) -> None:
        for ref in self.stale_refs[-3:]:
            with pytest.raises((StaleFrameRef, PoolClosed)):
                ref.array()

    def teardown(self) -> None:
        self.pool.close()


PoolMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_pool_state_machine = PoolMachine.TestCase


# --- Across processes ----------------------------------------------------------------------


def fill_frame(ref: FrameRef, value: int) -> FrameRef:
    """In a worker: write a gradient plus ``value`` into the granted slot; return the ref with its pts."""
    view = ref.array()
    view[...] = (np.arange(view.size, dtype=np.uint32).reshape(view.shape) + value) % 251
    return ref.replace(pts=value)


def read_sum(ref: FrameRef) -> int:
    return int(ref.array().sum(dtype=np.uint64))


def test_a_worker_fills_a_granted_slot_and_the_parent_reads_it_bit_exact() -> None:
    with BufferPool(270 * 480 * 3, 2) as pool, ProcessPoolExecutor(max_workers=2) as ex:
        leases = [pool.acquire() for _ in range(2)]
        refs = [lease.ref((270, 480, 3)) for lease in leases]
        back = [f.result() for f in [ex.submit(fill_frame, r, v) for r, v in zip(refs, (7, 11))]]
        for ref, value in zip(back, (7, 11)):
            expected = (np.arange(270 * 480 * 3, dtype=np.uint32).reshape(270, 480, 3) + value) % 251
            assert np.array_equal(ref.array(), expected.astype(np.uint8))
            assert ref.pts == value


def test_a_worker_resolving_a_stale_ref_gets_stale_frame_ref() -> None:
    with BufferPool(64, 1) as pool, ProcessPoolExecutor(max_workers=1) as ex:
        lease = pool.acquire()
        ref = lease.ref((64,))
        assert ex.submit(read_sum, ref).result() == 0
        lease.release()
        with pytest.raises(StaleFrameRef):
            ex.submit(read_sum, ref).result()


# --- No residue in /dev/shm -------------------------------------------------------------------

OWNER_SCRIPT = textwrap.dedent("""
    import sys
    from pipeline.dataplane.frame_pools import BufferConfig, VideoBufferPool
    pools = VideoBufferPool(BufferConfig.low_memory())
    for p in pools:
        print(*p.segment_names(), flush=True)
    print("ready", flush=True)
    sys.stdin.readline()  # the test has seen the segments: go on
    mode = sys.argv[1]
    if mode == "raise":
        raise RuntimeError("stage blew up")
    if mode == "wait":
        sys.stdin.read()
""")


def _start_owner(mode: str, **kwargs: object) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([sys.executable, "-c", OWNER_SCRIPT, mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)  # type: ignore[call-overload]
    names: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == "ready":
            break
        names += line.split()
    assert names and all(segment_exists(n) for n in names)
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    return proc, names


@pytest.mark.parametrize("mode, status", [("exit", 0), ("raise", 1)])
def test_no_segment_survives_a_normal_exit_or_an_exception(mode: str, status: int) -> None:
    proc, names = _start_owner(mode)
    _, err = proc.communicate(timeout=60)  # closes stdin
    assert proc.returncode == status
    assert not [n for n in names if segment_exists(n)]
    assert "leaked" not in err and "KeyError" not in err


def test_no_segment_survives_sigterm() -> None:
    proc, names = _start_owner("wait")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert not [n for n in names if segment_exists(n)]
    assert "leaked" not in err


def test_segments_of_a_sigkilled_run_are_swept_by_the_next_one() -> None:
    proc, names = _start_owner("wait", start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the owner and its resource tracker die together
    # Every framepipe run on this machine sweeps as it starts, and one of another test session could take the
    # segments before this test looks. A zombie counts as alive to every sweep, so until the owner is reaped
    # they are the test's to see. After the reap whichever sweep comes first unlinks them (which one names what
    # it took is test_shm's to check): after ours, none may be left.
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped
    assert all(segment_exists(n) for n in names)  # SIGKILL leaves them all
    proc.communicate(timeout=60)
    sweep_stale_segments()
    assert not [n for n in names if segment_exists(n)]
