"""Which file system a URL names, built once per process, and what its failures mean in one line.

S3 is configured from the environment as the AWS SDKs read it: credentials (``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``, a profile, an instance role: pyarrow's SDK does that
itself) and the region (``AWS_REGION``, else ``AWS_DEFAULT_REGION``). pyarrow does not read the endpoint
variables boto3 honours, so they are read here: ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``
(``http://127.0.0.1:9000`` for MinIO or a test server) become ``endpoint_override`` and ``scheme``.

A dead endpoint must fail in seconds, not minutes: connects time out after ``CONNECT_TIMEOUT_S``, requests
after ``REQUEST_TIMEOUT_S``, and a failed request is retried ``MAX_ATTEMPTS`` times in all (the SDK's
standard strategy, with its back-off).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import (
    BucketNotFound,
    OutputError,
    StorageAccessDenied,
    StorageError,
    StorageUnreachable,
    UnreadableFile,
)

if TYPE_CHECKING:
    import pyarrow.fs as pafs

__all__ = ["CONNECT_TIMEOUT_S", "REQUEST_TIMEOUT_S", "MAX_ATTEMPTS", "STORAGE_VARIABLES", "is_url", "split_url",
           "join_url", "is_relative_key", "join_inside", "filesystem", "storage_error", "s3_settings",
           "storage_environment", "adopt_environment"]

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 3

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PYARROW_SCHEMES = frozenset({"s3", "gs", "gcs", "file", "hdfs", "viewfs", "abfs", "abfss"})


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL (``s3://...``); a plain path (str or ``Path``) is not. A string test, nothing more."""
    return isinstance(path, str) and _URL.match(path) is not None


def split_url(url: str) -> tuple[str, str]:
    """``(scheme, path in its file system)``: ``s3://bucket/a/b`` -> ``("s3", "bucket/a/b")``; ``file:///x`` ->
    ``("file", "/x")``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        return scheme, parts.path
    return scheme, (parts.netloc + parts.path).rstrip("/")


def join_url(base: str, rel: str) -> str:
    """``base`` (a URL of a folder) and the relative POSIX path ``rel`` below it."""
    return f"{base.rstrip('/')}/{rel.lstrip('/')}" if rel else base


def is_relative_key(rel: str) -> bool:
    """Whether ``rel`` names something below a folder: a relative POSIX path with no empty, ``.`` or ``..`` part.

    The one test for an output's name read from somewhere else (a ledger in the bucket, a worker's result) before
    it is joined to OUT's URL: an object store has no ``..``, but a URL joined with one is another key, outside OUT.
    """
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in rel.split("/"))


def join_inside(base: str, rel: str) -> str:
    """``join_url(base, rel)``, refused (``OutputError``) when ``rel`` would name a key outside ``base``."""
    if not is_relative_key(rel):
        raise OutputError(f"output path {rel!r} would land outside {base}")
    return join_url(base, rel)


def s3_settings(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``S3FileSystem`` keywords the environment asks for (endpoint, scheme, region), and the timeouts."""
    env = os.environ if environ is None else environ
    settings: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "request_timeout": REQUEST_TIMEOUT_S}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        settings["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        settings["scheme"] = parts.scheme or "https"
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if region:
        settings["region"] = region
    return settings


STORAGE_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                     "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                     "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "GOOGLE_APPLICATION_CREDENTIALS")
"""The variables that say which store to use and as whom; the driver's travel with each file (``FileTask``)."""


def storage_environment() -> tuple[tuple[str, str | None], ...]:
    """Every one of ``STORAGE_VARIABLES`` as this process has it (None: not set), to hand to the workers of a run.

    A worker may have started before they were set (the forkserver's workers, a Ray started earlier), and a
    long-lived one may hold what an earlier run's driver set: what the driver sees, set or not, is what its files
    are read and written with. The tuple is never empty, so a run that uses URLs always sends one.
    """
    return tuple((k, os.environ.get(k)) for k in STORAGE_VARIABLES)


def adopt_environment(env: tuple[tuple[str, str | None], ...]) -> None:
    """In a worker: take the driver's ``storage_environment``, replacing this process's: each variable set as the
    driver has it, or removed where the driver has none (file systems are built anew when it changes).

    ``()`` (a run that uses no URL) leaves the environment as it is.
    """
    for key, value in env:
        if value is None:
            os.environ.pop(key, None)
        elif os.environ.get(key) != value:
            os.environ[key] = value


_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")
_LOCK = threading.Lock()
_MADE: dict[tuple[int, str, tuple[tuple[str, Any], ...]], pafs.FileSystem] = {}


def filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """The file system that serves ``url`` and the path to pass it; one file system per scheme and settings in a
    process (a forked child builds its own: the SDK's connections are not shared across a fork)."""
    scheme, path = split_url(url)
    settings = s3_settings() if scheme == "s3" else {}
    who = hashlib.blake2b("\0".join(os.environ.get(v, "") for v in _CREDENTIALS).encode()).hexdigest()
    key = (os.getpid(), scheme, tuple(sorted(settings.items())) + (("credentials", who),))
    with _LOCK:
        fs = _MADE.get(key)
        if fs is None:
            fs = _MADE[key] = _make(scheme, url, settings)
    return fs, path


def _make(scheme: str, url: str, settings: dict[str, Any]) -> pafs.FileSystem:
    import pyarrow.fs as pafs
    if scheme == "s3":
        return pafs.S3FileSystem(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=MAX_ATTEMPTS),
                                 **settings)
    if scheme == "file":
        return pafs.LocalFileSystem()
    if scheme in ("gs", "gcs"):
        return pafs.GcsFileSystem(retry_limit_seconds=CONNECT_TIMEOUT_S * MAX_ATTEMPTS)
    if scheme in _PYARROW_SCHEMES:
        return pafs.FileSystem.from_uri(url)[0]
    try:  # a scheme pyarrow has no file system for: fsspec's, when it is installed
        import fsspec  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except ImportError:
        raise StorageError(url, f"no file system for {scheme}:// URLs (pip install fsspec and its {scheme} "
                                "package)") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec.filesystem(scheme)))


# What the SDK says -> what happened. pyarrow raises OSError with the SDK's error name in its text
# ("AWS Error NO_SUCH_BUCKET during ListObjectsV2 operation: ...", "curlCode: 7, Could not connect").
_DENIED = ("ACCESS_DENIED", "INVALID_ACCESS_KEY_ID", "SIGNATURE_DOES_NOT_MATCH", "EXPIRED_TOKEN",
           "INVALID_CLIENT_TOKEN_ID", "UNRECOGNIZED_CLIENT", "AccessDenied", "HTTP response code: 403")
_UNREACHABLE = ("NETWORK_CONNECTION", "curlCode", "REQUEST_TIMEOUT", "Couldn't connect", "Could not connect",
                "Connection refused", "SLOW_DOWN", "SERVICE_UNAVAILABLE", "INTERNAL_FAILURE")


def storage_error(exc: BaseException, url: str) -> StorageError | UnreadableFile:
    """What ``exc`` (an ``OSError`` from the file system of ``url``) means, as one line naming ``url``.

    A key that is not there is the input's own problem (``UnreadableFile``: no such file); a missing bucket,
    refused credentials and a dead or lost connection are the store's (``StorageError`` and kin).
    """
    if isinstance(exc, StorageError | UnreadableFile):
        return exc
    text = str(exc)
    if "NO_SUCH_BUCKET" in text or "NoSuchBucket" in text:
        found: StorageError | UnreadableFile = BucketNotFound(url, f"no such bucket {_bucket(url)!r}")
    elif any(code in text for code in _DENIED):
        found = StorageAccessDenied(url, f"access denied ({_detail(text, _DENIED)})")
    elif any(code in text for code in _UNREACHABLE):
        found = StorageUnreachable(url, f"cannot reach the store ({_detail(text, _UNREACHABLE)})")
    elif isinstance(exc, FileNotFoundError) or "NO_SUCH_KEY" in text or "Path does not exist" in text:
        found = UnreadableFile(url, "no such file")
    else:
        found = StorageError(url, _first_line(text))
    found.__cause__ = exc
    return found


def _bucket(url: str) -> str:
    return split_url(url)[1].split("/", 1)[0]


def _detail(text: str, codes: tuple[str, ...]) -> str:
    """The part of the SDK's text that says what happened: the error name and its words, without request ids."""
    code = next(c for c in codes if c in text)
    at = text.find(code)
    rest = text[at:].split("(Request ID", 1)[0].split("; Details:", 1)
    said = rest[0].strip().rstrip(".")
    detail = rest[1].strip().rstrip(")").strip() if len(rest) > 1 else ""
    said = re.sub(r" during \w+ operation", "", said)
    return _first_line(f"{said}: {detail}" if detail else said)


def _first_line(text: str) -> str:
    return (text.strip().splitlines() or [text])[0].strip()
