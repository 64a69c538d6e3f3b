"""Objects under a URL: listing a prefix as a folder is walked, an object's identity, and putting outputs.

A listing gives each object's size and modification time, not its content's identity; that comes from one
HEAD per object (``identify``, in threads): its ``ETag`` (and ``VersionId`` where the bucket keeps versions).
The fingerprint is a digest of size, ETag and version — not the time, so an object put again with the same
bytes keeps its fingerprint (and its ledger line and cached results), while any change of content changes
its ETag and so its fingerprint.

An output is put with ``open_output_stream``: S3 makes an object visible only when its upload completes (a
single PUT, or the completion of a multipart upload), so a reader never sees half of one; a failed upload
leaves nothing under the final name.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ..errors import BucketNotFound, UnreadableFile
from ..outputs import LEDGER_NAME, REPORT_NAME
from .location import filesystem, is_relative_key, join_url, split_url, storage_error

if TYPE_CHECKING:
    from ..sources import FileSelection

__all__ = ["ObjectEntry", "list_objects", "object_fingerprint", "object_unchanged", "identify", "put_file", "get_file",
           "output_sizes", "delete_objects", "check_folder"]

_HEADS_AT_ONCE = 16
_COPY_CHUNK = 8 << 20


@dataclass(frozen=True, slots=True)
class ObjectEntry:
    """One object a listing found: its URL, name relative to the listed prefix, size and modification time."""

    url: str
    relpath: str
    size: int
    mtime_ns: int




def list_objects(url: str, extensions: Iterable[str] | None, select: FileSelection,
                 skip: Iterable[str] = ()) -> list[ObjectEntry]:
    """The objects under ``url`` (a prefix, walked as a folder; or one object, taken whatever its suffix) that
    ``select`` and ``extensions`` take, sorted by name.

    The rules are a local walk's: suffixes case-insensitive, ``include`` / ``exclude`` globs on the relative
    name or the base name, hidden names (a part starting with a dot) skipped unless ``select.hidden``, only
    the top level unless ``select.recursive``. Outputs are never inputs: nothing under a URL in ``skip`` (the
    run's OUT), nor under a prefix holding a ledger beside a report (another run's OUT), is taken. A prefix with
    nothing under it raises ``UnreadableFile`` (no such file or folder), as a missing folder does; a missing
    bucket, ``BucketNotFound``.
    """
    import pyarrow.fs as pafs
    fs, root = filesystem(url)
    try:
        single = fs.get_file_info(root)
        if single.type == pafs.FileType.File:
            return [ObjectEntry(url, PurePosixPath(root).name, int(single.size or 0), _mtime_ns(single))]
        infos = fs.get_file_info(pafs.FileSelector(root, recursive=select.recursive, allow_not_found=True))
    except OSError as exc:
        raise storage_error(exc, url) from exc
    scheme = split_url(url)[0]
    files = [i for i in infos if i.type == pafs.FileType.File]
    if not files and single.type == pafs.FileType.NotFound:
        _check_bucket(fs, url)
        raise UnreadableFile(url, "no such file or folder")
    prefix = root.rstrip("/") + "/"
    skipped = [split_url(s)[1].rstrip("/") + "/" for s in skip]
    rels = {i.path: i.path[len(prefix):] for i in files if i.path.startswith(prefix)}
    # a prefix with a ledger and a report beside it is an output folder (as sources.is_output_folder reads a local one)
    outputs = {rel.rpartition("/")[0] for rel in rels.values() if rel.rpartition("/")[2] == LEDGER_NAME}
    outputs = {d for d in outputs if f"{d}/{REPORT_NAME}".lstrip("/") in set(rels.values())}
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions} if extensions else None
    found = []
    for info in files:
        rel = rels.get(info.path)
        if rel is None or any((info.path + "/").startswith(s) or info.path.startswith(s) for s in skipped):
            continue
        parts = rel.split("/")
        if not select.hidden and any(p.startswith(".") for p in parts):
            continue
        if any("/".join(parts[:n]) in outputs for n in range(len(parts))):
            continue
        if exts is not None and os.path.splitext(parts[-1])[1].lower() not in exts:
            continue
        if not select.takes(rel):
            continue
        found.append(ObjectEntry(_url(scheme, info.path), rel, int(info.size or 0), _mtime_ns(info)))
    return sorted(found, key=lambda e: e.relpath)


def _check_bucket(fs: object, url: str) -> None:
    """Raise ``BucketNotFound`` when the bucket of ``url`` (an S3 URL) does not exist (a listing of a missing
    bucket with ``allow_not_found`` finds nothing, as it does under a missing prefix)."""
    import pyarrow.fs as pafs
    scheme, path = split_url(url)
    if scheme != "s3" or not isinstance(fs, pafs.S3FileSystem):
        return
    bucket = path.split("/", 1)[0]
    try:
        found = fs.get_file_info(bucket)
    except OSError as exc:
        raise storage_error(exc, url) from exc
    if found.type == pafs.FileType.NotFound:
        raise BucketNotFound(url, f"no such bucket {bucket!r}")


def _url(scheme: str, path: str) -> str:
    return f"file://{path}" if scheme == "file" else f"{scheme}://{path}"


def _mtime_ns(info: object) -> int:
    mtime = getattr(info, "mtime_ns", None)
    return int(mtime) if mtime is not None else 0


def object_unchanged(url: str, fingerprint: str) -> bool:
    """Whether the object at ``url`` still has ``fingerprint`` (one HEAD); False when it cannot be asked."""
    try:
        return object_fingerprint(url)[0] == fingerprint
    except OSError:
        return False


def object_fingerprint(url: str, size: int | None = None) -> tuple[str, int]:
    """``(fingerprint, size)`` of the object at ``url``: a digest of its size, ETag and version id (one HEAD).

    Raises ``UnreadableFile`` when it is gone, ``StorageError`` when the store cannot be used. Where the store
    gives no ETag (a local ``file://`` URL), the size and modification time stand for it.
    """
    import pyarrow.fs as pafs
    fs, where = filesystem(url)
    try:
        if isinstance(fs, pafs.S3FileSystem):
            with fs.open_input_file(where) as f:  # its metadata is the HEAD's headers
                meta = {k.lower(): v for k, v in (f.metadata() or {}).items()}
                size = f.size()
            tag = meta.get("etag", b"")
            version = meta.get("x-amz-version-id", b"") or meta.get("versionid", b"")
            identity = b"etag:" + bytes(tag) + b":" + bytes(version)
        else:
            info = fs.get_file_info(where)
            if info.type != pafs.FileType.File:
                raise UnreadableFile(url, "no such file")
            size = int(info.size or 0)
            identity = f"mtime:{_mtime_ns(info)}".encode()
    except OSError as exc:
        raise storage_error(exc, url) from exc
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"object:{size}:".encode() + identity)
    return digest.hexdigest(), int(size)


def identify(urls: list[str]) -> list[str]:
    """The fingerprints of ``urls`` (``""`` for one that cannot be looked up now: the stage that opens it says
    why), looked up ``_HEADS_AT_ONCE`` at a time."""
    def one(url: str) -> str:
        try:
            return object_fingerprint(url)[0]
        except OSError:
            return ""
    if len(urls) <= 1:
        return [one(u) for u in urls]
    with ThreadPoolExecutor(min(_HEADS_AT_ONCE, len(urls)), thread_name_prefix="framepipe-head") as pool:
        return list(pool.map(one, urls))


def put_file(local: str | os.PathLike[str], url: str) -> int:
    """Upload the file ``local`` to ``url`` (visible there only once whole); returns its size."""
    fs, where = filesystem(url)
    try:
        with open(local, "rb") as src, fs.open_output_stream(where) as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
            size = src.tell()
    except OSError as exc:
        raise storage_error(exc, url) from exc
    return size


def get_file(url: str, local: str | os.PathLike[str]) -> bool:
    """Download ``url`` to ``local``; False when there is no such object."""
    fs, where = filesystem(url)
    try:
        with fs.open_input_stream(where) as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, _COPY_CHUNK)
    except FileNotFoundError:
        return False
    except OSError as exc:
        found = storage_error(exc, url)
        if isinstance(found, UnreadableFile):
            return False
        raise found from exc
    return True


def output_sizes(base: str, rels: Iterable[str]) -> dict[str, int | None]:
    """The size of each output ``rel`` under ``base`` (None: not there); one HEAD each, in one call. A name that
    would leave ``base`` (``..``, absolute: a ledger is read from the bucket) is never looked up: None."""
    import pyarrow.fs as pafs
    sizes: dict[str, int | None] = {r: None for r in rels}
    inside = [r for r in sizes if is_relative_key(r)]
    if not inside:
        return sizes
    fs, where = filesystem(base)
    try:
        infos = fs.get_file_info([f"{where}/{r}" for r in inside])
    except OSError as exc:
        raise storage_error(exc, base) from exc
    sizes.update({r: (int(i.size or 0) if i.type == pafs.FileType.File else None) for r, i in zip(inside, infos)})
    return sizes


def delete_objects(base: str, rels: Iterable[str]) -> list[str]:
    """Delete each ``rel`` under ``base``; returns those deleted (one not there, or refused, is left). A name that
    would leave ``base`` (``..``, absolute: a ledger is read from the bucket) is ignored, as ``remove_stale``
    ignores one that would leave a local OUT."""
    fs, where = filesystem(base)
    gone = []
    for rel in rels:
        if not is_relative_key(rel):
            continue
        try:
            fs.delete_file(f"{where}/{rel}")
        except OSError:
            continue
        gone.append(rel)
    return gone


def check_folder(url: str) -> None:
    """Raise the ``StorageError`` that using ``url`` as an output folder would meet (missing bucket, denied
    access, a dead endpoint), at once, before any file runs; nothing is written."""
    import pyarrow.fs as pafs
    fs, where = filesystem(url)
    try:
        fs.get_file_info(pafs.FileSelector(where, recursive=False, allow_not_found=True))
    except OSError as exc:
        raise storage_error(exc, url) from exc
    _check_bucket(fs, url)


def url_of(base: str, rel: str) -> str:
    """The URL of output ``rel`` under the folder URL ``base``."""
    return join_url(base, rel)
