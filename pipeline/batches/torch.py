"""``FrameDataset``: a pipeline's frame batches as a PyTorch ``IterableDataset`` (``pip install framepipe[torch]``).

Each item is one batch as a dict: ``frames`` a uint8 tensor made from the slot with ``torch.from_dlpack`` (no
copy; N x H x W x C, or N x K x H x W x C for clips), ``index``, ``pts_s`` and ``keyframe`` tensors, and
``file``, the input's path. Give it to a ``DataLoader`` with ``batch_size=None`` (the dataset makes the
batches)::

    loader = DataLoader(FrameDataset(p, "clips/", batch_size=32), batch_size=None)

Two ways to run, and the first is the faster (``benchmarks/bench_feed.py``):

* ``num_workers=0`` (default): framepipe's own worker processes decode, one file each at once, and the tensors
  are views of their slots — no copy anywhere. Each tensor holds its slot for as long as it lives (a kept
  batch), so a loop that fetches a batch ahead (Lightning, Accelerate) reads whole pixels; drop them and the
  slot goes back to the workers.
* ``num_workers=N``: each ``DataLoader`` worker takes every N-th file and decodes them in its own process
  (framepipe's ``inline`` executor); torch copies each batch into its own shared memory to send it to the main
  process. That copy, and one decoder per worker instead of a pool sized to the machine, is what this way
  costs. A pipeline that writes outputs into ``out`` writes each worker's into ``out/worker<N>``.

For a GPU, ``DataLoader(..., pin_memory=True)`` copies each batch into pinned memory (from which
``.to("cuda", non_blocking=True)`` overlaps the transfer with work); that copy is made before the next batch is
asked for, so it is always of valid pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import IterableDataset, get_worker_info
from torch.utils.dlpack import from_dlpack

from .iterate import iter_batches

if TYPE_CHECKING:
    from ..graph import Pipeline
    from .batch import FrameBatch

__all__ = ["FrameDataset", "as_tensors"]


def as_tensors(batch: FrameBatch) -> dict[str, Any]:
    """A batch's columns as tensors over the same memory (``file``: the input's path)."""
    return {"frames": from_dlpack(batch.frames), "file": batch.file,
            **{k: torch.from_numpy(batch[k]) for k in ("index", "pts_s", "keyframe")}}


class FrameDataset(IterableDataset[dict[str, Any]]):
    """The batches of ``pipeline.iter_batches(inputs, batch_size, **options)`` as dicts of tensors (see the
    module: with ``DataLoader(num_workers=N)``, each worker decodes every N-th input file)."""

    def __init__(self, pipeline: Pipeline, inputs: Iterable[str | os.PathLike[str]] | str | os.PathLike[str],
                 batch_size: int = 32, **options: Any) -> None:
        self.pipeline = pipeline
        self.inputs = inputs if isinstance(inputs, (str, os.PathLike)) else list(inputs)
        self.batch_size = batch_size
        self.options = options

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        if worker is None:
            with iter_batches(self.pipeline, self.inputs, self.batch_size, **self.options) as batches:
                for batch in batches:
                    yield as_tensors(batch.keep())  # the tensor holds the slot while it lives
            return
        from ..run import collect_inputs
        extensions = self.options.get("extensions", self.pipeline.extensions)
        files = collect_inputs(self.inputs, extensions, select=self.options.get("select"), identify=False)
        mine = [f.path for f in files][worker.id::worker.num_workers]
        if not mine:
            return
        options = {**self.options, "executor": "inline", "workers": 1}
        if options.get("out") is not None:  # each worker's run has an OUT of its own (one run holds a folder)
            options["out"] = os.path.join(os.fspath(options["out"]), f"worker{worker.id}")
        with iter_batches(self.pipeline, mine, self.batch_size, **options) as batches:
            for batch in batches:
                yield as_tensors(batch.keep())  # valid until torch has sent it (the tensor holds the slot)
