"""``FrameDataset``: a pipeline's batches as PyTorch tensors made from the slots (no copy) with
``num_workers=0``, and every file's frames once when ``DataLoader`` workers share the files out.

Runs where torch is installed (``make test`` installs its CPU wheel: ``framepipe[torch]``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from support.arrays import ReadFrames, frame_pixels, write_frames
from support.segments import mapped_file

from pipeline import Pipeline

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

from pipeline.batches.torch import FrameDataset  # noqa: E402


def _reader() -> Pipeline:
    p = Pipeline("frames", extensions=[".npy"])
    p.add(ReadFrames())
    return p


def _frames_by_file(batches: list[dict[str, object]]) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}
    for b in batches:
        got.setdefault(Path(str(b["file"])).name, []).extend(b["index"].tolist())  # type: ignore[attr-defined]
    return got


def test_in_the_main_process_the_tensors_are_the_slots(tmp_path: Path) -> None:
    for i, n in enumerate((10, 7)):
        write_frames(tmp_path / "in" / f"c{i}.npy", n, seed=i)
    seen = []
    for batch in DataLoader(FrameDataset(_reader(), tmp_path / "in", batch_size=4, workers=2), batch_size=None):
        frames = batch["frames"]
        assert frames.dtype == torch.uint8 and frames.shape[1:] == (48, 64, 3)
        assert mapped_file(frames.data_ptr()).startswith("/dev/shm/")  # no copy: the tensor is the worker's slot
        seed = int(Path(batch["file"]).stem[1:])
        for frame, i in zip(frames, batch["index"].tolist()):
            assert np.array_equal(frame.numpy(), frame_pixels(i, seed=seed))
        seen.append({"file": batch["file"], "index": batch["index"].clone()})

    assert _frames_by_file(seen) == {"c0.npy": list(range(10)), "c1.npy": list(range(7))}


def test_dataloader_workers_share_the_files_and_give_every_frame_once(tmp_path: Path) -> None:
    lengths = (9, 5, 6)
    for i, n in enumerate(lengths):
        write_frames(tmp_path / "in" / f"c{i}.npy", n, seed=i)
    loader = DataLoader(FrameDataset(_reader(), tmp_path / "in", batch_size=4), batch_size=None, num_workers=2)
    seen = []
    for batch in loader:
        seed = int(Path(batch["file"]).stem[1:])
        for frame, i in zip(batch["frames"], batch["index"].tolist()):
            assert np.array_equal(frame.numpy(), frame_pixels(i, seed=seed))  # whole, though sent by a worker
        seen.append(batch)

    assert _frames_by_file(seen) == {f"c{i}.npy": list(range(n)) for i, n in enumerate(lengths)}
