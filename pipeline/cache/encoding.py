"""How the disk cache turns a value into bytes and back, and what a stored entry is counted for.

Values are bytes, JSON or a ``pyarrow.Table`` (Arrow IPC stream), never a pickle:
nothing read from a cache folder can run code. A kind's number is stored in the index.
"""

from __future__ import annotations

import json
from typing import Any, Final

from ..errors import UnsupportedCacheValue

__all__ = ["BYTES", "JSON", "ARROW", "encode_value", "decode_value", "entry_cost", "INLINE_MAX", "ROW_OVERHEAD",
           "BLOCK"]

BYTES: Final = 0
"""Kind of a value stored as given (``bytes``, ``bytearray``, ``memoryview``)."""
JSON: Final = 1
"""Kind of a JSON value (dict, list, str, numbers, bool, None), compact UTF-8."""
ARROW: Final = 2
"""Kind of a ``pyarrow.Table``, as an Arrow IPC stream."""

INLINE_MAX: Final = 32 * 1024
"""Values up to this many bytes live in the index; larger ones in files."""
ROW_OVERHEAD: Final = 128
"""Bytes counted per entry on top of its key and value: the fixed columns,
record header, rowid, file name and B-tree cell pointers of its row."""
BLOCK: Final = 4096
"""File values are counted in whole blocks of this size (what a filesystem allocates)."""


def encode_value(value: Any) -> tuple[int, bytes]:
    """``value`` as its kind and bytes; ``UnsupportedCacheValue`` if it is none of the kinds."""
    if isinstance(value, bytes):
        return BYTES, value
    if isinstance(value, (bytearray, memoryview)):
        return BYTES, bytes(value)
    if value is None or isinstance(value, (str, int, float, list, dict)):
        try:
            return JSON, json.dumps(value, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise UnsupportedCacheValue(f"value is not JSON-serialisable: {exc}") from exc
    if type(value).__module__.startswith("pyarrow"):
        import pyarrow as pa

        if isinstance(value, pa.Table):
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, value.schema) as writer:
                writer.write_table(value)
            return ARROW, sink.getvalue().to_pybytes()
    raise UnsupportedCacheValue(
        f"cannot store a {type(value).__name__} on disk: use bytes, JSON values or a pyarrow.Table")


def decode_value(kind: int, data: bytes) -> Any:
    """The value that ``encode_value`` turned into ``kind`` and ``data`` (JSON gives lists for tuples)."""
    if kind == BYTES:
        return data
    if kind == JSON:
        return json.loads(data)
    if kind == ARROW:
        import pyarrow as pa

        return pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    raise ValueError(f"unknown value kind {kind}")


def entry_cost(key: str, value_size: int) -> int:
    """Bytes an entry is counted for against ``max_size_bytes``.

    ``2 * len(key in UTF-8)`` (the key is in the table and in its unique index)
    ``+ ROW_OVERHEAD`` ``+`` the value: its size when inline (<= ``INLINE_MAX``),
    else its file's size rounded up to whole ``BLOCK``s.
    """
    key_bytes = len(key.encode("utf-8", "surrogatepass"))
    value_bytes = value_size if value_size <= INLINE_MAX else -(-value_size // BLOCK) * BLOCK
    return 2 * key_bytes + ROW_OVERHEAD + value_bytes
