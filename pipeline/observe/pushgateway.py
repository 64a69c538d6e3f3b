"""``MetricsPusher``: a run's figures pushed to a Prometheus Pushgateway every few seconds and once at the end.

For batches too short to be scraped. A push replaces the figures of the
group (job ``framepipe`` and the run's grouping key: its pipeline and output
folder). A push that fails is one warning line (then quiet until a push
succeeds again): the gateway being away never fails the run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from prometheus_client import push_to_gateway

from .prometheus import SnapshotSource, snapshot_registry

__all__ = ["MetricsPusher", "PUSH_EVERY_S", "PUSH_TIMEOUT_S", "JOB"]

PUSH_EVERY_S = 5.0
PUSH_TIMEOUT_S = 5.0
JOB = "framepipe"
log = logging.getLogger("framepipe.prometheus")


class MetricsPusher:
    """Pushes ``source()`` to the Pushgateway at ``url`` every ``every_s`` from a daemon thread, and at ``stop()``.

    ``grouping_key``: the labels that name this run's group in the gateway
    (``{"pipeline": ..., "out": ...}``); a later run of the same group replaces its figures.
    """

    def __init__(self, url: str, source: SnapshotSource, grouping_key: Mapping[str, str] | None = None,
                 every_s: float = PUSH_EVERY_S, timeout_s: float = PUSH_TIMEOUT_S) -> None:
        self.url = url
        self.grouping_key = dict(grouping_key or {})
        self.every_s = every_s
        self.timeout_s = timeout_s
        self.pushes = 0  # that succeeded
        self._registry = snapshot_registry(source)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False

    def start(self) -> MetricsPusher:
        """Begin pushing every ``every_s`` (the first push one interval from now)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="framepipe-metrics-push", daemon=True)
            self._thread.start()
            log.info("pushing metrics to %s every %.0f s", self.url, self.every_s,
                     extra={"gateway": self.url, "grouping_key": self.grouping_key})
        return self

    def stop(self) -> None:
        """Stop the periodic pushes, then push once more: the run's final figures."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.push()

    def push(self) -> bool:
        """Push the figures now; False (and a warning, the first time in a row) when the gateway did not take them."""
        try:
            push_to_gateway(self.url, job=JOB, registry=self._registry, grouping_key=self.grouping_key,
                            timeout=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 (any failure to push is the gateway's, never the run's)
            level = logging.DEBUG if self._failing else logging.WARNING
            self._failing = True
            log.log(level, "could not push metrics to %s: %s", self.url, exc, extra={"gateway": self.url})
            return False
        self._failing = False
        self.pushes += 1
        return True

    def _loop(self) -> None:
        while not self._stopping.wait(self.every_s):
            self.push()

    def __enter__(self) -> MetricsPusher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
