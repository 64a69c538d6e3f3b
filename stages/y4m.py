"""YUV4MPEG2 (``.y4m``) files read straight into buffer-pool slots.

Raw video needs no decoder: each frame's bytes are read by the kernel
directly into a shared-memory slot (``os.preadv``), and the frame handed on
is a view of that slot. The header is parsed from a memory map.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

from pipeline import CorruptMedia
from pipeline.buffers import BufferPool, FrameRef, SlotLease
from pipeline.frame_pools import frame_layout, frame_nbytes
from pipeline.zerocopy import MappedFile, read_into

__all__ = ["Y4MFile"]

_COLORSPACES = {
    "420jpeg": "yuv420p", "420paldv": "yuv420p", "420mpeg2": "yuv420p", "420": "yuv420p",
    "422": "yuv422p", "444": "yuv444p", "mono": "gray", "420p10": "yuv420p10le", "422p10": "yuv422p10le",
    "444p10": "yuv444p10le",
}


class Y4MFile:
    """A YUV4MPEG2 file: its geometry, frame rate and the offset of every frame."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file = MappedFile(path)
        try:
            self._parse()
        except BaseException:
            self._file.close()
            raise

    def _parse(self) -> None:
        f = self._file
        end = f.find(b"\n")
        if end < 0 or bytes(f.view(0, 10)) != b"YUV4MPEG2 ":
            raise CorruptMedia(self.path, "not a YUV4MPEG2 file (bad header)")
        params = {p[0]: p[1:] for p in bytes(f.view(10, end - 10)).decode("ascii", "replace").split()}
        try:
            self.width, self.height = int(params["W"]), int(params["H"])
        except (KeyError, ValueError):
            raise CorruptMedia(self.path, "YUV4MPEG2 header has no frame size") from None
        num, _, den = params.get("F", "25:1").partition(":")
        self.fps = Fraction(int(num), int(den or 1))
        colorspace = params.get("C", "420jpeg").split("XYSCSS")[0]
        if colorspace not in _COLORSPACES:
            raise CorruptMedia(self.path, f"unsupported YUV4MPEG2 colorspace C{colorspace}")
        self.pixel_format = _COLORSPACES[colorspace]
        self.frame_size = frame_nbytes(self.width, self.height, self.pixel_format)
        self.shape, self.dtype = frame_layout(self.width, self.height, self.pixel_format)
        self.offsets: list[int] = []
        pos = end + 1
        while pos < f.size:
            if bytes(f.view(pos, 5)) != b"FRAME":
                raise CorruptMedia(self.path, f"frame {len(self.offsets)}: no FRAME marker at byte {pos}")
            data = f.find(b"\n", pos) + 1
            if data <= 0 or data + self.frame_size > f.size:
                break  # a truncated last frame is dropped, as decoders do
            self.offsets.append(data)
            pos = data + self.frame_size

    @property
    def frame_count(self) -> int:
        return len(self.offsets)

    def read(self, index: int, lease: SlotLease, *, seq: int | None = None) -> FrameRef:
        """Read frame ``index`` into ``lease``'s slot (the kernel writes it there) and return its ref."""
        view = lease.buffer()[: self.frame_size]
        n = read_into(self._file.fileno(), view, self.offsets[index])
        view.release()
        if n != self.frame_size:
            raise CorruptMedia(self.path, f"frame {index} is truncated ({n} of {self.frame_size} bytes)")
        return lease.ref(self.shape, self.dtype, pixel_format=self.pixel_format, pts=index,
                         time_base=1 / self.fps, seq=index if seq is None else seq)

    def frames(self, pool: BufferPool, timeout: float | None = None) -> Iterator[tuple[SlotLease, FrameRef]]:
        """Every frame in order, each in a freshly leased slot (release the lease when done with it)."""
        for i in range(self.frame_count):
            lease = pool.acquire(timeout)
            yield lease, self.read(i, lease)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "Y4MFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
