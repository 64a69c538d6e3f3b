"""YUV4MPEG2 (``.y4m``) files read straight into buffer-pool slots.

Raw video needs no decoder: each frame's bytes are read by the kernel
directly into a shared-memory slot (``os.preadv``), and the frame handed on
is a view of that slot — or, outside a pipeline, into an array the frame
owns. The header is parsed from a memory map.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import TYPE_CHECKING

from pipeline.dataplane import MappedFile, read_into

from .errors import CorruptMedia, TruncatedMedia
from .media import check_picture_size
from .pixels import frame_layout, frame_nbytes

if TYPE_CHECKING:  # imported where used: building a pipeline loads none of them
    import numpy as np

    from pipeline.dataplane import BufferPool, FrameRef, SlotLease

__all__ = ["Y4MFile"]

_COLORSPACES = {
    "420jpeg": "yuv420p", "420paldv": "yuv420p", "420mpeg2": "yuv420p", "420": "yuv420p",
    "422": "yuv422p", "444": "yuv444p", "mono": "gray", "420p10": "yuv420p10le", "422p10": "yuv422p10le",
    "444p10": "yuv444p10le",
}


class Y4MFile:
    """A YUV4MPEG2 file: its geometry, frame rate and the offset of every whole frame.

    A file damaged part way (a frame cut short, a missing ``FRAME`` marker)
    keeps the frames before the damage; ``damage`` says what it is.
    """

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
        if self.width <= 0 or self.height <= 0:
            raise CorruptMedia(self.path, f"absurd picture size {self.width}x{self.height} in the header")
        check_picture_size(self.path, self.width, self.height)
        num, _, den = params.get("F", "25:1").partition(":")
        try:
            self.fps = Fraction(int(num), int(den or 1))
        except (ValueError, ZeroDivisionError):
            raise CorruptMedia(self.path, f"YUV4MPEG2 header has no frame rate (F{num}:{den})") from None
        if self.fps <= 0:
            raise CorruptMedia(self.path, f"YUV4MPEG2 header has no frame rate (F{num}:{den})")
        colorspace = params.get("C", "420jpeg").split("XYSCSS")[0]
        if colorspace not in _COLORSPACES:
            raise CorruptMedia(self.path, f"unsupported YUV4MPEG2 colorspace C{colorspace}")
        self.pixel_format = _COLORSPACES[colorspace]
        self.frame_size = frame_nbytes(self.width, self.height, self.pixel_format)
        self.shape, self.dtype = frame_layout(self.width, self.height, self.pixel_format)
        self.offsets: list[int] = []
        self.damage: CorruptMedia | None = None
        pos = end + 1
        while pos < f.size:
            n = len(self.offsets)
            if bytes(f.view(pos, 5)) != b"FRAME":
                self.damage = CorruptMedia(self.path, f"frame {n}: no FRAME marker at byte {pos} "
                                                      f"({n} frames before it read)")
                break
            data = f.find(b"\n", pos) + 1
            if data <= 0 or data + self.frame_size > f.size:
                self.damage = TruncatedMedia(self.path, f"truncated: frame {n} is cut short "
                                                        f"({n} whole frames before it read)")
                break
            self.offsets.append(data)
            pos = data + self.frame_size

    @property
    def frame_count(self) -> int:
        return len(self.offsets)

    def read(self, index: int, lease: SlotLease, *, seq: int | None = None) -> FrameRef:
        """Read frame ``index`` into ``lease``'s slot (the kernel writes it there) and return its ref."""
        view = lease.buffer()[: self.frame_size]
        try:
            self._fill(index, view)
        finally:
            view.release()
        return lease.ref(self.shape, self.dtype, pixel_format=self.pixel_format, pts=index,
                         time_base=1 / self.fps, seq=index if seq is None else seq)

    def read_array(self, index: int) -> np.ndarray:
        """Frame ``index`` read into a new array of its own (no slot, nothing to release)."""
        import numpy as np
        arr = np.empty(self.shape, self.dtype)
        self._fill(index, memoryview(arr))
        return arr

    def _fill(self, index: int, buffer: memoryview) -> None:
        n = read_into(self._file.fileno(), buffer, self.offsets[index])
        if n != self.frame_size:
            raise CorruptMedia(self.path, f"frame {index} is truncated ({n} of {self.frame_size} bytes)")

    def frames(self, pool: BufferPool, timeout: float | None = None) -> Iterator[tuple[SlotLease, FrameRef]]:
        """Every frame in order, each in a freshly leased slot (release the lease when done with it)."""
        for i in range(self.frame_count):
            lease = pool.acquire(timeout)
            yield lease, self.read(i, lease)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Y4MFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
