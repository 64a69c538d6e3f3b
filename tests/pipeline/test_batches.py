"""``Pipeline.iter_batches``: every frame once, in order within its file, in batches whose memory is the workers'
shared-memory slots; clips that never cross a file; prefetch that bounds the slots whatever the input's length;
``keep()``; Arrow and DLPack columns; and a consumer that stops early leaves no segment and no thread.

The inputs are numpy frames (``support.arrays``), each painted with its number, so a batch tells which frames
it holds; ``invert`` is a map stage, so its frames come to the sink in slots already.
"""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.arrays import ArrayFrame, ReadFrames, array_pipeline, frame_pixels, write_frames
from support.segments import mapped_file

from pipeline import FILE, FRAME, Pipeline, PipelineDefinitionError, Stage, StageContext
from pipeline.batches import FrameBatch


def _reader() -> Pipeline:
    p = Pipeline("frames", extensions=[".npy"])
    p.add(ReadFrames())
    return p


def _inputs(folder: Path, lengths: dict[str, int], **size: int) -> dict[str, Path]:
    return {name: write_frames(folder / name, n, seed=i, **size) for i, (name, n) in enumerate(lengths.items())}


def _by_file(batches: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    got: dict[str, list[dict[str, Any]]] = {}
    for b in batches:
        got.setdefault(Path(str(b["file"][0])).name, []).append(b)
    return got


def _segments() -> list[Path]:
    return list(Path("/dev/shm").glob(f"framepipe_{os.getpid()}_*"))


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("framepipe")]


@pytest.mark.parametrize("executor", ["local", "inline"])
def test_every_frame_comes_once_in_order_within_its_file(tmp_path: Path, executor: str) -> None:
    files = _inputs(tmp_path / "in", {"a.npy": 23, "b.npy": 8, "c.npy": 16})
    seen = [b.copy() for b in _reader().iter_batches(tmp_path / "in", batch_size=5, workers=2, executor=executor)]
    by_file = _by_file(seen)

    assert sorted(by_file) == ["a.npy", "b.npy", "c.npy"]
    for seed, (name, path) in enumerate(files.items()):
        batches = by_file[name]
        assert [len(b["index"]) for b in batches][:-1] == [5] * (len(batches) - 1)  # full but the file's last
        assert all((b["file"] == str(path)).all() for b in batches)  # never another file's frames
        frames = np.concatenate([b["frames"] for b in batches])
        n = len(np.load(path))
        assert np.concatenate([b["index"] for b in batches]).tolist() == list(range(n))
        assert np.array_equal(frames, np.stack([frame_pixels(i, seed=seed) for i in range(n)]))


def test_a_batch_is_a_view_of_a_shared_memory_slot_until_the_next_one(tmp_path: Path) -> None:
    _inputs(tmp_path / "in", {"a.npy": 12})
    batches = _reader().iter_batches(tmp_path / "in", batch_size=4, workers=1)
    first = next(batches)
    frames = first["frames"]

    assert frames.shape == (4, 48, 64, 3) and not frames.flags.owndata
    # the consumer's batch is the slot the worker wrote: no copy was made
    assert mapped_file(frames.ctypes.data).startswith("/dev/shm/")
    assert not first.released
    second = next(batches)
    assert first.released and not second.released  # the first slot went back to the workers with next()
    batches.close()
    assert second.released


def test_a_kept_batch_stays_valid_while_later_batches_reuse_the_slots(tmp_path: Path) -> None:
    _inputs(tmp_path / "in", {"a.npy": 40})
    batches = _reader().iter_batches(tmp_path / "in", batch_size=4, workers=1, prefetch=1)
    kept = next(batches).keep()
    row = kept["frames"][1]  # a view of a view: it keeps the slot as the batch does
    expected = np.stack([frame_pixels(i) for i in range(4)])
    rest = [b["index"].tolist() for b in batches]

    assert rest[-1] == [36, 37, 38, 39] and len(rest) == 9
    assert not kept.released and np.array_equal(kept["frames"], expected)  # nine batches later, unchanged
    assert np.array_equal(row, expected[1])
    kept.release()
    assert kept.released


def test_clips_of_k_frames_with_a_stride_never_cross_a_file(tmp_path: Path) -> None:
    _inputs(tmp_path / "in", {"a.npy": 11, "b.npy": 3, "c.npy": 7})
    seen = [b.copy() for b in _reader().iter_batches(tmp_path / "in", batch_size=2, clip_length=4, clip_stride=3,
                                                      workers=2)]
    by_file = _by_file(seen)

    starts = {name: [int(i) for b in batches for i in b["index"][:, 0]] for name, batches in by_file.items()}
    # b is shorter than a clip; a clip that would end past its file's end is dropped
    assert starts == {"a.npy": [0, 3, 6], "c.npy": [0, 3]}
    for seed, name in ((0, "a.npy"), (2, "c.npy")):
        for b in by_file[name]:
            assert b["frames"].shape[1:] == (4, 48, 64, 3)
            for clip, indices in zip(b["frames"], b["index"]):
                assert indices.tolist() == list(range(indices[0], indices[0] + 4))
                assert np.array_equal(clip, np.stack([frame_pixels(int(i), seed=seed) for i in indices]))


def test_map_stage_frames_in_slots_are_batched_from_the_named_stage(tmp_path: Path) -> None:
    _inputs(tmp_path / "in", {"a.npy": 9})
    p = array_pipeline(keep_every=100)
    seen = [b.copy() for b in p.iter_batches(tmp_path / "in", batch_size=4, stage="invert", out=tmp_path / "out",
                                             workers=2)]
    frames = np.concatenate([b["frames"] for b in seen])

    assert np.array_equal(frames, 255 - np.stack([frame_pixels(i) for i in range(9)]))
    assert (tmp_path / "out" / "frames" / "a" / "f0000.npy").is_file()  # the pipeline's own outputs are written


class _ShapeChange(Stage):
    """Frames of 48 x 64, then, from frame ``at``, of 64 x 48 (the same bytes) and then 32 x 32."""

    accepts = (FILE,)
    emits = (FRAME,)

    def __init__(self, at: int) -> None:
        super().__init__("shape_change")
        self.at = at

    def process(self, item: Any, ctx: StageContext) -> Any:
        for i in range(self.at * 3):
            size = (48, 64) if i < self.at else (64, 48) if i < 2 * self.at else (32, 32)
            yield ArrayFrame(i, frame_pixels(i, *size))


def test_a_change_of_frame_shape_starts_a_new_batch(tmp_path: Path) -> None:
    _inputs(tmp_path / "in", {"a.npy": 1})
    p = Pipeline("changes", extensions=[".npy"])
    p.add(_ShapeChange(at=5))
    seen = [b.copy() for b in p.iter_batches(tmp_path / "in", batch_size=3, workers=1)]

    assert [(b["frames"].shape, b["index"].tolist()) for b in seen] == [
        ((3, 48, 64, 3), [0, 1, 2]), ((2, 48, 64, 3), [3, 4]),
        ((3, 64, 48, 3), [5, 6, 7]), ((2, 64, 48, 3), [8, 9]),
        ((3, 32, 32, 3), [10, 11, 12]), ((2, 32, 32, 3), [13, 14])]
    for b in seen:
        for frame, i in zip(b["frames"], b["index"]):
            assert np.array_equal(frame, frame_pixels(int(i), *frame.shape[:2]))


def test_prefetch_bounds_the_slots_whatever_the_input_length(tmp_path: Path) -> None:
    _inputs(tmp_path / "in", {"a.npy": 120, "b.npy": 120})
    batches = _reader().iter_batches(tmp_path / "in", batch_size=2, workers=2, prefetch=1)
    seen = 0
    in_use = []
    for b in batches:
        seen += len(b["index"])
        in_use.append(batches.slots_in_use)

    assert seen == 240
    # One waiting (prefetch), up to two being filled per file in flight (the sink asks the next while its
    # batch waits), the consumer's own and the one it asked for: never more, for 120 batches.
    assert max(in_use) <= 1 + 2 * 2 + 2
    assert batches.peak_slots <= 1 + 2 * 2 + 2


def test_arrow_and_dlpack_columns_share_the_slot(tmp_path: Path) -> None:
    import pyarrow as pa
    _inputs(tmp_path / "in", {"a.npy": 6})
    arrow = next(iter(_reader().iter_batches(tmp_path / "in", batch_size=6, workers=1, format="arrow")))
    table = arrow.to_table()

    assert table.column_names == ["frames", "file", "index", "pts_s", "keyframe"] and table.num_rows == 6
    assert isinstance(arrow["frames"], pa.FixedShapeTensorArray)
    assert arrow["frames"].storage.values.buffers()[1].address == arrow.frames.ctypes.data  # no copy
    assert np.array_equal(arrow["frames"].to_numpy_ndarray(), np.stack([frame_pixels(i) for i in range(6)]))

    dl = next(iter(_reader().iter_batches(tmp_path / "in", batch_size=6, workers=1, format="dlpack")))
    assert type(dl["frames"]).__name__ == "PyCapsule"
    assert dl["frames"] is not dl["frames"]  # a capsule is taken once: each time asked, a new one
    assert isinstance(dl, FrameBatch) and dl.frames.shape == (6, 48, 64, 3)


def test_a_batch_cannot_be_kept_once_its_slot_went_back(tmp_path: Path) -> None:
    _inputs(tmp_path / "in", {"a.npy": 8})
    with _reader().iter_batches(tmp_path / "in", batch_size=4, workers=1) as batches:
        first = next(batches)
        next(batches)
        with pytest.raises(ValueError, match="keep\\(\\) it before asking for the next"):
            first.keep()


@pytest.mark.parametrize("how", ["break", "raise", "collect"])
def test_a_consumer_that_stops_early_leaves_no_segment_and_no_thread(tmp_path: Path, how: str) -> None:
    _inputs(tmp_path / "in", {f"c{i}.npy": 300 for i in range(4)})
    if how == "break":
        for _ in _reader().iter_batches(tmp_path / "in", batch_size=4, workers=2):
            break
    elif how == "raise":
        with pytest.raises(RuntimeError, match="the consumer's own"):
            for _ in _reader().iter_batches(tmp_path / "in", batch_size=4, workers=2):
                raise RuntimeError("the consumer's own error")
    else:
        batches = _reader().iter_batches(tmp_path / "in", batch_size=4, workers=2)
        next(batches)
        del batches
        gc.collect()

    assert not _threads()
    assert not _segments()  # the batch slots and the run's own pools, all unlinked


def test_a_failed_file_is_told_and_the_others_give_every_frame(tmp_path: Path) -> None:
    _inputs(tmp_path / "in", {"a.npy": 7, "c.npy": 5})
    (tmp_path / "in" / "b.npy").write_bytes(b"not an array")
    batches = _reader().iter_batches(tmp_path / "in", batch_size=4, workers=2)
    counts: dict[str, int] = {}
    for b in batches:
        counts[Path(b.file).name] = counts.get(Path(b.file).name, 0) + b.rows

    assert counts == {"a.npy": 7, "c.npy": 5}
    assert [Path(r.file.path).name for r in batches.failed] == ["b.npy"]
    assert "not a numpy array file" in (batches.failed[0].error or "")
    assert batches.run_result is not None and len(batches.run_result.files) == 3


def test_what_cannot_be_batched_is_refused_before_anything_runs(tmp_path: Path) -> None:
    p = _reader()
    with pytest.raises(ValueError, match="'local' or 'inline' executor"):
        p.iter_batches(tmp_path, executor="ray")
    with pytest.raises(ValueError, match="batch_size must be"):
        p.iter_batches(tmp_path, batch_size=0)
    with pytest.raises(PipelineDefinitionError, match="no stage 'nope'"):
        p.iter_batches(tmp_path, stage="nope")
    with pytest.raises(ValueError, match="format must be"):
        p.iter_batches(tmp_path, format="pandas")  # type: ignore[arg-type]
    assert not _threads()


class _DiesOnce(Stage):
    """Reads an input's frames as ReadFrames does, but its worker dies at frame ``at`` the first time (it leaves
    ``marker`` to say so): the local executor runs the file again on another worker."""

    accepts = (FILE,)
    emits = (FRAME,)

    def __init__(self, at: int, marker: Path) -> None:
        super().__init__("dies_once")
        self.at, self.marker = at, marker

    def process(self, item: Any, ctx: StageContext) -> Any:
        frames = np.load(item.path)
        for i in range(len(frames)):
            if i == self.at and not self.marker.exists():
                self.marker.touch()
                os._exit(1)
            yield ArrayFrame(i, np.array(frames[i]))


@pytest.mark.parametrize("clip_length", [1, 3])
def test_a_file_run_again_after_its_worker_died_gives_each_frame_once(tmp_path: Path, clip_length: int) -> None:
    _inputs(tmp_path / "in", {"a.npy": 30})
    p = Pipeline("dies", extensions=[".npy"])
    p.add(_DiesOnce(at=17, marker=tmp_path / "died"))
    with p.iter_batches(tmp_path / "in", batch_size=4, clip_length=clip_length, clip_stride=2 if clip_length > 1
                        else None, workers=1) as batches:
        seen = [b.copy() for b in batches]

    assert (tmp_path / "died").exists()  # the first worker did die, after batches of the file were given
    starts = [int(i) for b in seen for i in (b["index"] if clip_length == 1 else b["index"][:, 0])]
    expected = list(range(30)) if clip_length == 1 else list(range(0, 28, 2))
    assert starts == expected  # the second attempt gave what the first had not: none twice, none lost
    assert batches.run_result is not None and batches.run_result.files[0].ok
    assert batches.run_result.files[0].attempts == 2
    for b in seen:
        for frames, indices in zip(b["frames"], b["index"]):
            for frame, i in zip(frames if clip_length > 1 else [frames], np.atleast_1d(indices)):
                assert np.array_equal(frame, frame_pixels(int(i)))


def test_a_process_without_the_runs_key_is_lent_nothing() -> None:
    from multiprocessing import AuthenticationError

    from pipeline.batches.channel import BatchChannel, connect

    channel = BatchChannel(prefetch=1)
    try:
        with pytest.raises(AuthenticationError):
            connect(channel.address, b"not the key")
        conn = connect(channel.address, channel.authkey)
        conn.send(("want", 1024))
        assert conn.recv().shape == (1024,)  # this run's sink is lent a slot
        conn.close()
        channel.settle()
        assert channel.leased_slots() == 0  # what it held went back when it hung up
    finally:
        channel.close()
