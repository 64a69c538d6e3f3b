"""The peers framepipe's feed is measured against: other ways a user gets rgb24 frames into a consumer.

Each peer takes a list of clip paths and a ``consume(frames)`` callable, delivers every frame of every
file as rgb24 at source size (uint8, H x W x 3 per frame), in frame order within each file, and
returns how many frames it delivered. Each is written as a careful user of that library would write it:

* ``pyav_loop`` - one process, PyAV's frame iterator with FFmpeg's own threading
  (``thread_type = "AUTO"``: frame and slice threads), one ``(H, W, 3)`` numpy array per call: the
  loop most people write first, and the floor any pipeline has to beat.
* ``torchcodec_loader`` - the PyTorch way: torchcodec's ``VideoDecoder`` (NHWC, CPU) inside an
  ``IterableDataset`` that gives each ``DataLoader`` worker its own files (``batch_size=None``: the
  dataset makes the batches), each batch ``batch_size`` consecutive frames of one file as a
  ``(N, H, W, 3)`` uint8 tensor, read with ``get_frames_in_range`` (sequential decode, no seek
  within a file). ``seek_mode="approximate"`` skips the up-front scan of every packet that "exact"
  makes (for constant-frame-rate files the indices are the same); ``num_ffmpeg_threads`` splits
  the cores between the workers (``cpu_count // workers``, at least 1), as torchcodec's docs advise
  for several decoders at once. Batches reach the consumer through torch's shared-memory hand-off,
  in the order the DataLoader takes them from the workers (round-robin).
* ``decord_loader`` - decord's ``VideoReader`` (its own bundled FFmpeg, its default thread count)
  reading ``get_batch`` of consecutive indices, one ``(N, H, W, 3)`` numpy array per batch.

Each imports its library inside the function, so this module imports without any of them;
``available()`` says which can run here and, for those that cannot, why.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PEERS", "available", "decord_loader", "pyav_loop", "torchcodec_loader"]

Consume = Callable[[Any], object]  # gets a numpy array or a torch tensor of uint8 rgb24 frames
Paths = Sequence[str | Path]


def pyav_loop(paths: Paths, consume: Consume) -> int:
    """PyAV in this process: one rgb24 ``(H, W, 3)`` numpy array per frame."""
    import av

    n = 0
    for path in paths:
        with av.open(str(path)) as container:
            container.streams.video[0].thread_type = "AUTO"
            for frame in container.decode(video=0):
                consume(frame.to_ndarray(format="rgb24"))
                n += 1
    return n


def torchcodec_loader(paths: Paths, consume: Consume, batch_size: int = 32, workers: int = 2) -> int:
    """torchcodec in ``workers`` DataLoader processes: ``(N, H, W, 3)`` uint8 tensors of consecutive frames."""
    import torch
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info
    from torchcodec.decoders import VideoDecoder

    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    files = [str(p) for p in paths]

    class Clips(IterableDataset[torch.Tensor]):
        def __iter__(self) -> Iterator[torch.Tensor]:
            info = get_worker_info()
            mine = files if info is None else files[info.id::info.num_workers]
            for path in mine:
                decoder = VideoDecoder(path, dimension_order="NHWC", device="cpu",
                                       seek_mode="approximate", num_ffmpeg_threads=threads)
                total = decoder.metadata.num_frames or 0
                for start in range(0, total, batch_size):
                    yield decoder.get_frames_in_range(start, min(start + batch_size, total)).data

    n = 0
    # fork (Linux's default, said outright): the workers inherit ``Clips``, a class local to this call
    context = "fork" if workers > 0 else None
    for batch in DataLoader(Clips(), batch_size=None, num_workers=workers, multiprocessing_context=context):
        consume(batch)
        n += len(batch)
    return n


def decord_loader(paths: Paths, consume: Consume, batch_size: int = 32) -> int:
    """decord in this process: ``get_batch`` of consecutive indices, ``(N, H, W, 3)`` numpy arrays."""
    from decord import VideoReader, cpu

    n = 0
    for path in paths:
        reader = VideoReader(str(path), ctx=cpu(0))
        total = len(reader)
        for start in range(0, total, batch_size):
            consume(reader.get_batch(list(range(start, min(start + batch_size, total)))).asnumpy())
        n += total
        del reader
    return n


PEERS: dict[str, Callable[..., int]] = {
    "pyav": pyav_loop, "torchcodec": torchcodec_loader, "decord": decord_loader,
}


def available() -> dict[str, str | None]:
    """For each peer: None if it can run here, else why not (the import's error)."""
    probes = {"pyav": "av", "torchcodec": "torchcodec.decoders", "decord": "decord"}
    out: dict[str, str | None] = {}
    for name, module in probes.items():
        try:
            __import__(module)  # torchcodec loads its FFmpeg and torch libraries here
            out[name] = None
        except Exception as exc:  # ImportError, or OSError/RuntimeError from a native library
            out[name] = f"{type(exc).__name__}: {exc}"
    return out
