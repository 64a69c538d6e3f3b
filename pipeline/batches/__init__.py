"""Frames into the caller's own code: ``Pipeline.iter_batches`` hands a pipeline's frames over in batches whose
memory is the shared-memory slots the workers decoded into — no copy, prefetch bounded, memory flat.

* ``iterate``: ``iter_batches`` and ``FrameBatches`` (the run, its batches, its files' results).
* ``batch``: ``FrameBatch`` — one batch as columns (numpy, Arrow or DLPack), ``keep()`` and ``copy()``.
* ``channel``: ``BatchChannel`` — the consumer's socket that lends batch slots to the sinks and queues them.
* ``sink``: ``BatchSink`` — the stage, in each file's worker, that writes frames (or clips) into those slots.
* ``torch``: ``FrameDataset`` — a PyTorch ``IterableDataset`` over the batches (``pip install framepipe[torch]``).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .batch import COLUMNS, BatchFormat, FrameBatch
    from .iterate import FrameBatches, iter_batches
else:
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        ".batch": ("COLUMNS", "BatchFormat", "FrameBatch"),
        ".iterate": ("FrameBatches", "iter_batches"),
    })
    del lazy_exports

__all__ = ["COLUMNS", "BatchFormat", "FrameBatch", "FrameBatches", "iter_batches"]
