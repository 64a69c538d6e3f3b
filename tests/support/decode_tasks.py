"""What the container fuzz test runs in pool workers (importable there by name)."""

from __future__ import annotations

from pathlib import Path

from pipeline import FileItem, FileRun, InputError, StageContext
from stages.decode import Decode
from stages.metadata import probe


def read_like_the_engine(path: str) -> str:
    """Probe ``path`` and decode all of it to RGB, as the thumbnails preset does.

    Returns ``"ok"`` (then the decoder's warnings) or the ``InputError``'s
    class and reason; anything else it raises is a bug the test reports.
    """
    p = Path(path)
    run = FileRun(FileItem(path, p.name), p.parent, p.stem)
    decode = Decode(pixel_format="rgb24")
    try:
        probe(path)
        for _ in decode.process(run.file, StageContext(run, "decode")):
            pass
    except InputError as exc:
        return f"{type(exc).__name__}: {exc.reason}"
    finally:
        decode.teardown()  # its raw-video slots, as a worker's stage does
    return "; ".join(["ok", *run.warnings])
