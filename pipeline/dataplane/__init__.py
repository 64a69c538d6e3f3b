"""The shared-memory data plane: where frames live while they travel between processes.

A frame is written once into a slot of a :class:`BufferPool` (a shared-memory
segment carved into fixed-size slots) and travels as a small :class:`FrameRef`;
the receiving process maps the same memory. :class:`VideoBufferPool` keeps one
pool per size class (1080p, 4K, audio). ``zerocopy`` reads files straight into
slots and copies between files in the kernel.

Stage authors use the names below; ``segments`` (segment ownership and the
sweep of leftovers) is internal to the engine.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .buffers import BufferPool, BufferPoolStats, FrameRef, SlotLease
    from .frame_pools import BufferConfig, SizeClass, SlotAllocator, VideoBufferPool
    from .zerocopy import MappedFile, TransferMethod, iter_chunks, read_into, transfer
else:  # numpy and pyarrow load with the first name that needs them (``zerocopy``'s do not)
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        ".buffers": ("BufferPool", "BufferPoolStats", "FrameRef", "SlotLease"),
        ".frame_pools": ("BufferConfig", "SizeClass", "SlotAllocator", "VideoBufferPool"),
        ".zerocopy": ("MappedFile", "TransferMethod", "iter_chunks", "read_into", "transfer"),
    })
    del lazy_exports

__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "BufferConfig", "BufferPool", "BufferPoolStats", "FrameRef", "iter_chunks", "MappedFile", "read_into",
    "SizeClass", "SlotAllocator", "SlotLease", "transfer", "TransferMethod", "VideoBufferPool",
]
