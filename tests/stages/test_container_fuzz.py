"""Fuzzed containers: bytes of tiny clips flipped, inserted, deleted and cut, each read as the engine reads a file,
in a WorkerPool that kills a hung worker and replaces a crashed one. Every case must end in a result or a clear
framepipe error: never a Python error of another kind, never a hang, never a dead pool.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import decode_tasks

from pipeline.errors import TaskTimeout, WorkerCrashed
from pipeline.runtime.pool import TaskPoolConfig, WorkerPool
from stages import ClipSpec, make_clip

SEEDS = {  # 64x64, 10 frames: a case decodes in milliseconds
    "mp4": ClipSpec("s.mp4", 64, 64, 1.0, fps=10, audio=True),  # index (moov) after the data
    "faststart.mp4": ClipSpec("f.mp4", 64, 64, 1.0, fps=10, faststart=True),  # index first: cuts keep it
    "webm": ClipSpec("s.webm", 64, 64, 1.0, fps=10, codec="libvpx-vp9"),
}
TIMEOUT_S = 60.0  # a hang is killed here; a case normally takes milliseconds


def write_y4m(path: Path, frames: int = 10) -> Path:
    """Raw 4:2:0 video, read by the engine's own parser rather than FFmpeg."""
    rng = np.random.default_rng(0)
    with open(path, "wb") as f:
        f.write(b"YUV4MPEG2 W64 H64 F10:1 Ip A1:1 C420jpeg\n")
        for _ in range(frames):
            f.write(b"FRAME\n" + rng.bytes(64 * 64 * 3 // 2))
    return path


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("fuzz-seeds")
    made = {name: make_clip(root / f"seed.{name}", spec) for name, spec in SEEDS.items()}
    made["y4m"] = write_y4m(root / "seed.y4m")
    return {name: path.read_bytes() for name, path in made.items()}


@pytest.fixture(scope="module")
def pool() -> WorkerPool:
    with WorkerPool("fuzz", TaskPoolConfig(1, timeout=TIMEOUT_S, retries=0)) as p:
        yield p


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cases")


# An offset is from the start (>= 0) or from the end (< 0, where the MP4 index often is).
offsets = st.one_of(st.integers(0, 4096), st.integers(-4096, -1), st.integers(0, 1 << 20))
mutations = st.lists(st.one_of(
    st.tuples(st.just("flip"), offsets, st.integers(1, 255)),
    st.tuples(st.just("insert"), offsets, st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), offsets, st.integers(1, 512)),
    st.tuples(st.just("truncate"), offsets, st.just(0)),
), min_size=1, max_size=4)


def mutate(data: bytes, steps: list[tuple[str, int, object]]) -> bytes:
    """``data`` with each step applied in turn (offsets wrap around the current length)."""
    out = bytearray(data)
    for kind, offset, arg in steps:
        at = offset % len(out) if out else 0
        if kind == "flip" and out:
            out[at] ^= int(arg)  # type: ignore[call-overload]
        elif kind == "insert":
            out[at:at] = bytes(arg)  # type: ignore[call-overload]
        elif kind == "delete":
            del out[at:at + int(arg)]  # type: ignore[call-overload]
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


@pytest.mark.slow
def test_mutated_containers_end_in_a_result_or_a_clear_error(seeds: dict[str, bytes], pool: WorkerPool,
                                                             cases: Path) -> None:
    # One test, the coverage check after the cases: as a second test reading a module-level count it skipped
    # whenever it ran alone, first (-k, another order) or without the fuzz test, and checked nothing.
    outcomes: collections.Counter[str] = collections.Counter()

    @settings(max_examples=1000, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(seed=st.sampled_from(sorted([*SEEDS, "y4m"])), steps=mutations)
    def read_one(seed: str, steps: list[tuple[str, int, object]]) -> None:
        case = cases / f"case.{seed.rsplit('.', 1)[-1]}"
        case.write_bytes(mutate(seeds[seed], steps))
        try:
            outcome = pool.submit_task(decode_tasks.read_like_the_engine, (str(case),),
                                       name=f"read {case.name}").result()
        except (WorkerCrashed, TaskTimeout) as exc:  # the decoder died or hung: the pool must have recovered
            outcome = type(exc).__name__
            assert pool.execute(len, "alive") == 5
        outcomes[outcome.split(":")[0].split(";")[0]] += 1
        assert outcome == "ok" or outcome.startswith(("ok; [decode] ", "UnreadableFile: ", "CorruptMedia: ",
                                                      "TruncatedMedia: ", "EmptyStream: ", "UndecodableStream: ",
                                                      "UnsupportedMedia: ", "WorkerCrashed", "TaskTimeout")), outcome
        assert "\n" not in outcome  # one line

    read_one()
    # The cases are not all rejected at the door: many decode, many fail for a reason.
    assert sum(outcomes.values()) >= 1000, outcomes
    assert outcomes["ok"] >= 100 and sum(outcomes.values()) - outcomes["ok"] >= 100, outcomes
