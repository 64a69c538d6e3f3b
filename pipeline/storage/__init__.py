"""Media on object storage: inputs and outputs named by URL (``s3://bucket/prefix``, ``gs://...``, ``file://...``).

A plain path never comes here: ``is_url`` is a string test, and every other helper hands a path back untouched,
so a local run costs what it did. A URL is served by ``pyarrow.fs`` (fsspec only for a scheme pyarrow lacks):

* ``location``: the file system a URL names, built from the environment as the AWS SDKs read it (credentials,
  ``AWS_REGION``; ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, which pyarrow itself ignores), with short
  connect and request timeouts and a bounded retry, and the one-line ``StorageError`` s its failures become.
* ``reads``: ``open_input`` — a seekable file object over ranged reads, behind a read-ahead buffer, so that a
  metadata pass or a keyframe seek reads the few ranges it needs, never the whole object.
* ``objects``: listing a prefix with a ``FileSelection``, an object's identity (size, ETag, version) as a
  fingerprint, and putting a finished output at its final URL (it appears only once whole).
* ``mirror``: ``RemoteFolder`` — a run into a remote OUT keeps its ledger and reports in a local folder and
  puts them into OUT as it goes (the ledger) and at its end (everything).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .location import is_url
    from .reads import ReadStatistics, input_size, open_input, read_statistics
else:
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        ".location": ("is_url",),
        ".reads": ("ReadStatistics", "input_size", "open_input", "read_statistics"),
    })
    del lazy_exports

__all__ = ["input_size", "is_url", "open_input", "read_statistics", "ReadStatistics"]
