"""``StageMemo``: what a stage made for a file — its outputs and report columns — kept across runs.

A stage that declares ``cacheable = True`` promises that what it writes and
records depends only on the file's content, its own parameters and what its
upstream stages give it. Its results are kept in a persistent cache under the
file's fingerprint (size, mtime, first and last MiB) and output key (its outputs
and columns name it: a copy or hard link under another name is not the same
entry), the classes, parameters and ``cache_version`` of it and of every stage
upstream, and the engine's version. On a later run over the same
file the engine writes the outputs back (atomically) and sets the columns
instead of running the stage; a producer (a decoder) whose every consumer was
replayed does not run at all.

An entry is an Arrow table (one row per output file: its name under the
output folder and its bytes) with the report columns as JSON in the schema's
metadata: nothing is unpickled.

Only what was read from a stable file is kept: before storing, the memo
stats and fingerprints the file again (once per file), and a file whose size,
mtime, first or last MiB — or inode change time, since the memo first looked
it up — moved during the attempt is remembered neither as done nor as failed.
A copy still in progress, or a file truncated and restored while a run read
it, costs the next run a miss, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import types
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import errors
from ..errors import InputError
from ..graph import Pipeline
from ..items import FileItem, fingerprint
from ..outputs import safe_join, write_atomic
from ..stage import FileRun, Stage
from ..storage.location import is_url

if TYPE_CHECKING:  # pyarrow is loaded where an entry is read or made: a run that resumes every file needs none
    import pyarrow as pa

__all__ = ["StageMemo", "Replay", "memo_key", "memo_dir", "lineages", "pipeline_digest", "KeyValueStore"]

_RECORD = b"framepipe.record"
_log = logging.getLogger("framepipe.cache")


class KeyValueStore(Protocol):
    """What a memo needs of a cache: values are Arrow tables here."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def set(self, key: str, value: Any, ttl: float | None = None) -> None: ...


@cache
def _engine_version() -> str:
    try:
        return version("framepipe")
    except PackageNotFoundError:
        return "dev"


def _code_digest(code: types.CodeType) -> str:
    digest = hashlib.blake2b(code.co_code, digest_size=8)
    for const in code.co_consts:  # nested code by content (its repr holds an address); sets in a fixed order
        if isinstance(const, types.CodeType):
            text = _code_digest(const)
        else:
            text = repr(sorted(map(repr, const))) if isinstance(const, frozenset) else repr(const)
        digest.update(text.encode())
    digest.update(repr(code.co_names).encode())
    return digest.hexdigest()


def _function_name(value: Any) -> str:
    """A function as ``module.name/code digest`` (anything else as its repr)."""
    if isinstance(value, types.FunctionType):
        return f"{value.__module__}.{value.__qualname__}/{_code_digest(value.__code__)}"
    return repr(value)


def _param_form(value: Any) -> str:
    """A parameter's stable form: a function by its name, code, defaults and closure (its repr has an address)."""
    if not isinstance(value, types.FunctionType):
        return repr(value)
    cells = []
    for cell in value.__closure__ or ():
        try:
            cells.append(cell.cell_contents)
        except ValueError:  # a cell not filled yet
            cells.append(None)
    # One level deep: a function in the closure or defaults counts by its name and code alone.
    around = json.dumps([value.__defaults__, cells], sort_keys=True, default=_function_name)
    return f"{_function_name(value)}/{around}"


def _stage_digest(stage: Stage) -> str:
    kind = f"{type(stage).__module__}.{type(stage).__qualname__}"
    params = json.dumps(stage.cache_params(), sort_keys=True, default=_param_form)
    return f"{kind}/v{stage.cache_version}/{params}"


def lineages(pipeline: Pipeline) -> dict[str, str]:
    """Per stage, a digest of it and of every stage upstream of it (their classes and parameters).

    A thumbnail depends on how its frames were decoded as much as on its own
    width: the key covers the whole chain. A stage whose parameters have no
    stable form makes a key that never repeats: a miss, never a wrong answer.
    A function is known by its name, code, defaults and closure, as a
    stage class is by its name and parameters.
    """
    out: dict[str, str] = {}
    for name in pipeline.order():
        parts = [_stage_digest(pipeline.stages[name])] + sorted(out[i] for i in pipeline.inputs(name))
        out[name] = hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()
    return out


def pipeline_digest(pipeline: Pipeline) -> str:
    """One digest of the pipeline's name, the engine's version and every stage's lineage: what made a result."""
    parts = [pipeline.name, _engine_version(), *(f"{k}={v}" for k, v in sorted(lineages(pipeline).items()))]
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=16).hexdigest()


def memo_key(stage: Stage, file: FileItem, lineage: str, output_key: str) -> str:
    """The cache key of ``stage``'s results for ``file``: its lineage x the file's content x the engine's version
    x the file's output key.

    The output key is part of it because what a stage writes and records names it (``thumbnails/<key>/...``):
    two inputs of the same content (a copy, a hard link) under other names must not replay each other's outputs.
    """
    where = hashlib.blake2b(output_key.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"stage/{stage.name}/{_engine_version()}/{lineage}/{file.fingerprint}/{where}"


@dataclass(frozen=True, slots=True)
class Replay:
    """A stage's remembered results for one file: outputs and columns, or the input error it raised."""

    record: dict[str, Any]
    outputs: dict[str, bytes]

    def apply(self, run: FileRun) -> None:
        """Write the outputs under the run's folder (atomically), set the report columns, repeat the warnings.

        A remembered input error (a corrupt file stays corrupt until its content
        changes, and then its fingerprint does) is raised again.
        """
        failure = self.record.get("__input_error__")
        if failure is not None:
            raise _input_error(failure["type"], run.file.path, failure["reason"])
        for rel, data in self.outputs.items():
            parts = rel.split("/")
            write_atomic(safe_join(run.out_dir, *parts), data)
            run.outputs.append(rel)
        record = dict(self.record)
        run.warnings.extend(record.pop("__warnings__", []))
        run.record.update(record)

    def to_table(self) -> pa.Table:
        import pyarrow as pa
        schema = pa.schema([("name", pa.string()), ("data", pa.large_binary())],
                           metadata={_RECORD: json.dumps(self.record).encode()})
        return pa.table({"name": list(self.outputs), "data": list(self.outputs.values())}, schema=schema)

    @classmethod
    def from_table(cls, table: pa.Table) -> Replay:
        meta = table.schema.metadata or {}
        if _RECORD not in meta:
            raise ValueError("not a stage memo entry")
        record = json.loads(meta[_RECORD])
        names = table.column("name").to_pylist()
        data = table.column("data").to_pylist()
        if not isinstance(record, dict) or not all(isinstance(d, bytes) for d in data):
            raise ValueError("not a stage memo entry")
        if not all(map(_is_output_name, names)):
            raise ValueError("not a stage memo entry: an output name that would leave the output folder")
        return cls(record, dict(zip(names, data)))


def _is_output_name(name: object) -> bool:
    """Whether ``name`` is one a stage could have written: relative, ``/``-separated, no ``..`` or empty part."""
    return isinstance(name, str) and "\\" not in name and "\0" not in name and \
        all(part not in ("", ".", "..") for part in name.split("/"))


@dataclass
class StageMemo:
    """Remembered stage results in a persistent store; ``None`` store means nothing is kept."""

    store: KeyValueStore
    _errors: list[str] = field(default_factory=list)
    # Per file (path, fingerprint): its inode change time when first looked up and whether it still had its
    # listed size and mtime then; whether it was found unchanged after its attempt. A memo lives for one file's
    # session (or one run's replays): these stay small.
    _listed: dict[tuple[str, str], tuple[int | None, bool]] = field(default_factory=dict)
    _stable: dict[tuple[str, str], bool] = field(default_factory=dict)

    def lookup(self, stage: Stage, file: FileItem, lineage: str, output_key: str) -> Replay | None:
        """The remembered results of ``stage`` for ``file`` under ``output_key``, or None (a damaged entry is a
        miss, and so is a file no longer the size and mtime it was listed with)."""
        if not file.fingerprint or not self._still_listed(file):
            return None
        try:
            value = self.store.get(memo_key(stage, file, lineage, output_key))
        except Exception as exc:  # the cache must never fail a file: a store that errs is a miss
            self._note(stage, "not looked up", exc)
            value = None
        import pyarrow as pa
        if isinstance(value, pa.Table):
            try:
                replay = Replay.from_table(value)
            except (ValueError, KeyError, json.JSONDecodeError):
                replay = None
            if replay is not None:
                return replay
        return None

    def remember(self, stage: Stage, file: FileItem, lineage: str, run: FileRun, record: dict[str, Any],
                 outputs: list[str]) -> None:
        """Keep what ``stage`` recorded and wrote for ``file`` (outputs read back from the run's folder), if the
        file did not change while it ran."""
        if not file.fingerprint or not self.unchanged(file):
            return
        try:
            data = {rel: (run.out_dir / rel).read_bytes() for rel in outputs}
            json.dumps(record)  # only JSON-able columns can be replayed
        except (OSError, TypeError, ValueError) as exc:
            self._note(stage, "not remembered", exc)
            return
        self._put(stage, memo_key(stage, file, lineage, run.output_key), Replay(record, data))

    def remember_failure(self, stage: Stage, file: FileItem, lineage: str, output_key: str, exc: InputError) -> None:
        """Keep that ``stage`` found ``file`` unusable (an input error depends on the content alone), if the file
        did not change while it ran: a file cut short by a copy in progress is not corrupt once the copy ends.

        A file that could not be read (``UnreadableFile``: permissions, too many open files, an I/O error) is
        never remembered: that depends on the machine, not on the content, and costs little to find again.
        """
        if isinstance(exc, errors.UnreadableFile):
            return
        if file.fingerprint and self.unchanged(file):
            record = {"__input_error__": {"type": type(exc).__name__, "reason": exc.reason}}
            self._put(stage, memo_key(stage, file, lineage, output_key), Replay(record, {}))

    def unchanged(self, file: FileItem) -> bool:
        """Whether ``file`` is still what its fingerprint says: the same size, mtime and first and last MiB (one
        stat and 2 MiB hashed from the page cache), and no inode change since this memo first looked it up.

        Asked after the attempt, once per file: every stage of a file that ran is kept, or none.
        """
        key = (file.path, file.fingerprint)
        verdict = self._stable.get(key)
        if verdict is None:
            seen = self._listed.get(key)
            verdict = self._stable[key] = self._check(file, seen[0] if seen else None)
        return verdict

    def _still_listed(self, file: FileItem) -> bool:
        """Whether ``file`` had the size and mtime it was listed with when first looked up (one stat a file).

        Its inode change time is noted then: it moves on every write, truncation and ``utime``, so a file cut
        and restored with the same bytes and mtime during the attempt shows it, where its fingerprint would not.
        """
        key = (file.path, file.fingerprint)
        seen = self._listed.get(key)
        if seen is None and is_url(file.path):  # an object has no inode: its fingerprint (ETag) is checked after
            seen = self._listed[key] = (None, True)
        if seen is None:
            try:
                st = os.stat(file.path)
            except OSError:  # gone since it was listed: nothing remembered for it applies
                return False
            seen = self._listed[key] = (st.st_ctime_ns, (st.st_size, st.st_mtime_ns) == (file.size, file.mtime_ns))
        return seen[1]

    @staticmethod
    def _check(file: FileItem, ctime_ns: int | None) -> bool:
        if is_url(file.path):  # an object: still the same size, ETag and version (one HEAD)
            from ..storage.objects import object_unchanged
            return object_unchanged(file.path, file.fingerprint)
        try:
            st = os.stat(file.path)
            if (st.st_size, st.st_mtime_ns) != (file.size, file.mtime_ns):
                return False
            if ctime_ns is not None and st.st_ctime_ns != ctime_ns:
                return False
            return fingerprint(file.path, st.st_size, st.st_mtime_ns) == file.fingerprint
        except OSError:  # gone or unreadable now: nothing said about it can be trusted
            return False

    def _put(self, stage: Stage, key: str, replay: Replay) -> None:
        try:
            self.store.set(key, replay.to_table())
        except Exception as exc:  # a full disk or a locked index costs the next run a miss, nothing more
            self._note(stage, "not remembered", exc)

    def _note(self, stage: Stage, what: str, exc: BaseException) -> None:
        self._errors.append(f"{stage.name}: {what} ({type(exc).__name__}: {exc})")
        _log.warning("cache: %s %s: %s", stage.name, what, exc)

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> StageMemo | None:
        """The memo kept in ``directory`` (one store per process and folder); None if it cannot be opened.

        A cache that cannot be opened (a read-only folder, a full disk) costs
        the run its cache, never a file: the run goes on without one.
        """
        try:
            return cls(_open_store(str(Path(directory))))
        except Exception as exc:
            _log.warning("cache: cannot open %s (%s: %s); running without it", directory, type(exc).__name__, exc)
            return None


def _input_error(name: str, path: str, reason: str) -> InputError:
    kind = getattr(errors, name, None)
    if not (isinstance(kind, type) and issubclass(kind, InputError)):
        kind = InputError
    return kind(path, reason)


def memo_dir(cache: bool | str | os.PathLike[str] | None) -> str | None:
    """Where a run keeps stage results: ``cache`` as a folder, the default cache folder for None/True,
    nowhere for False (or ``FRAMEPIPE_CACHE=off`` when not given)."""
    if cache is False:
        return None
    if cache is None or cache is True:
        from ..cache.location import caching_disabled, default_cache_dir
        if cache is None and caching_disabled():
            return None
        return str(default_cache_dir())
    return str(Path(cache))


@cache
def _open_store(directory: str) -> KeyValueStore:
    from ..cache.disk import DiskCache  # the persistent tier; imported where a memo is used
    return DiskCache(directory, name="stages")
