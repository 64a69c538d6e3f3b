"""A run's figures for Prometheus (``prometheus_client``): a collector over ``MetricsSnapshot`` s, served on an address.

``SnapshotCollector(source)`` turns ``source()`` (the latest snapshot, or
None before a run) into metric families on each collection; ``MetricsServer``
serves it at ``/metrics`` on the address the user chose, and
``pushgateway.MetricsPusher`` pushes it. Figures of one run are gauges (they
start again at each run) except the task, lookup and busy-time totals, which
are counters. Every name starts with ``framepipe_``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..errors import MetricsPortError
from .snapshots import MetricsSnapshot

__all__ = ["MetricsServer", "MetricsPortError", "SnapshotCollector", "snapshot_registry", "render",
           "parse_address", "CONTENT_TYPE", "LOOPBACK"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LOOPBACK = "127.0.0.1"
log = logging.getLogger("framepipe.prometheus")

SnapshotSource = Callable[[], MetricsSnapshot | None]
Family = GaugeMetricFamily | CounterMetricFamily


class _Families:
    """Metric families in the order first seen, each with its label names fixed by its first sample."""

    def __init__(self) -> None:
        self.items: dict[str, Family] = {}

    def add(self, name: str, type_: str, help_: str, value: float | None, /, **labels: str) -> None:
        full = f"framepipe_{name}"
        family = self.items.get(full)
        if family is None:
            kind = CounterMetricFamily if type_ == "counter" else GaugeMetricFamily
            family = self.items[full] = kind(full, help_, labels=list(labels))
        if value is not None:
            family.add_metric(list(labels.values()), float(value))


def snapshot_families(snapshot: MetricsSnapshot | None) -> list[Family]:
    """The metric families of ``snapshot`` (only ``framepipe_up`` when there is none yet); those without samples
    left out."""
    f = _Families()
    f.add("up", "gauge", "1 while the endpoint serves.", 1)
    if snapshot is not None:
        _add_run(f, snapshot)
    return [family for family in f.items.values() if family.samples]


def _add_run(f: _Families, s: MetricsSnapshot) -> None:
    f.add("run_running", "gauge", "1 while a run is in progress, 0 once it has ended.", int(s.running))
    f.add("run_elapsed_seconds", "gauge", "Seconds since the run started.", s.elapsed_s)
    f.add("files_inputs", "gauge", "Input files of the run.", s.files_total)
    f.add("files_done", "gauge", "Files finished in this run, failed ones included.", s.files_done)
    f.add("files_failed", "gauge", "Files that failed in this run.", s.files_failed)
    f.add("files_in_flight", "gauge", "Files being worked on now.", s.files_in_flight)
    f.add("files_waiting", "gauge", "Files not started yet.", s.files_waiting)
    for p in s.pools:
        lb = {"pool": p.name, "kind": p.kind}
        f.add("pool_workers", "gauge", "Worker processes of the pool (tasks it runs at once).", p.workers, **lb)
        f.add("pool_tasks_running", "gauge", "Tasks running now.", p.running, **lb)
        f.add("pool_tasks_queued", "gauge", "Tasks waiting for a worker.", p.queued, **lb)
        f.add("pool_utilization", "gauge", "Running tasks over workers, now (0..1).", p.utilization, **lb)
        f.add("pool_tasks_executed_total", "counter", "Tasks the pool finished.", p.executed, **lb)
        f.add("pool_tasks_failed_total", "counter", "Tasks that failed.", p.failed, **lb)
        f.add("pool_tasks_retried_total", "counter", "Tasks run again after their worker died.", p.retried, **lb)
        f.add("pool_busy_seconds_total", "counter", "Seconds of task time.", p.busy_s, **lb)
        for q, v in (("0.5", p.p50_s), ("0.95", p.p95_s)):
            f.add("pool_task_duration_seconds", "gauge", "Task duration quantiles of recent tasks.", v,
                  **lb, quantile=q)
    if s.memory is not None:
        m = s.memory
        f.add("slots_budget_bytes", "gauge", "Byte budget of shared-memory frame slots.", m.budget_bytes)
        f.add("slots_reserved_bytes", "gauge", "Bytes of frame slots created.", m.reserved_bytes)
        f.add("slots_in_use", "gauge", "Frame slots leased now.", m.slots_in_use)
        f.add("slots_peak", "gauge", "Most frame slots leased at once in this run.", m.peak_slots)
        f.add("slots_bytes_in_use", "gauge", "Bytes of the frame slots leased now.", m.bytes_in_use)
        for b in m.buffers:
            lb = {"buffer_pool": b.name}
            f.add("buffer_pool_slots", "gauge", "Slots of the buffer pool.", b.slots, **lb)
            f.add("buffer_pool_slot_bytes", "gauge", "Size of one slot.", b.slot_size, **lb)
            f.add("buffer_pool_leased", "gauge", "Slots leased now.", b.leased, **lb)
            f.add("buffer_pool_peak_leased", "gauge", "Most slots leased at once.", b.peak_leased, **lb)
            f.add("buffer_pool_utilization", "gauge", "Leased over all slots (0..1).", b.utilization, **lb)
            f.add("buffer_pool_allocations_total", "counter", "Slots leased so far.", b.allocations, **lb)
            f.add("buffer_pool_allocations_per_second", "gauge", "Slots leased per second since the pool began.",
                  b.allocations_per_s, **lb)
            f.add("buffer_pool_fragmentation", "gauge", "Share of the pool's memory lost to fragmentation.",
                  b.fragmentation, **lb)
    for c in s.caches:
        lb = {"cache": c.name}
        f.add("cache_hits_total", "counter", "Cache lookups that found a value.", c.hits, **lb)
        f.add("cache_misses_total", "counter", "Cache lookups that found none.", c.misses, **lb)
        f.add("cache_entries", "gauge", "Entries the cache holds.", c.entries, **lb)
        f.add("cache_bytes", "gauge", "Bytes the cache holds.", c.bytes, **lb)


class SnapshotCollector(Collector):
    """A ``prometheus_client`` collector of the figures of ``source()``, the latest snapshot, taken at each collection.

    ``source`` is called from the server's (or the pusher's) thread: ``Executor.snapshot`` is safe from any.
    """

    def __init__(self, source: SnapshotSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Family]:
        yield from snapshot_families(self.source())


def snapshot_registry(source: SnapshotSource) -> CollectorRegistry:
    """A registry of its own holding only a ``SnapshotCollector`` over ``source`` (not the process-wide one, whose
    process and platform figures are not the run's)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(source))
    return registry


def render(snapshot: MetricsSnapshot | None) -> str:
    """The exposition text for ``snapshot`` (only ``framepipe_up`` when there is none yet)."""
    return generate_latest(snapshot_registry(lambda: snapshot)).decode()


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as (host, port): ``[::1]:9100`` for IPv6, ``:9100`` for every interface (``0.0.0.0``), a bare
    ``9100`` for loopback only. ``ValueError`` names what is wrong."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = LOOPBACK, text
    elif not host:
        host = "0.0.0.0"  # noqa: S104 (the user asked for every interface)
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (a port from 0 to 65535; 0: a free one)")
    return host, int(port)


class MetricsServer:
    """``/metrics`` on ``host:port`` (``port`` 0: a free one, see ``.port``), served from a daemon thread.

    ``source`` is called on each scrape for the latest snapshot (None: no run
    yet). Use as a context manager, or ``start()`` and ``stop()``.
    """

    def __init__(self, port: int, source: SnapshotSource, host: str = LOOPBACK) -> None:
        self.host = host
        self.requested_port = port
        self.source = source
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def at(cls, address: str, source: SnapshotSource) -> MetricsServer:
        """A server for ``address`` (``HOST:PORT``, see ``parse_address``), not started."""
        host, port = parse_address(address)
        return cls(port, source, host)

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, when 0 was asked)."""
        return int(self._server.server_address[1]) if self._server is not None else self.requested_port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        """Listen and serve (``MetricsPortError`` when the address cannot be bound)."""
        if self._server is None:
            try:
                self._server, self._thread = start_http_server(self.requested_port, self.host,
                                                               snapshot_registry(self.source))
            except OSError as exc:
                raise MetricsPortError(f"cannot serve metrics on {self.host}:{self.requested_port}: "
                                       f"{exc.strerror or exc}") from exc
            log.info("serving metrics on %s", self.url, extra={"host": self.host, "port": self.port})
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (a later scrape is refused)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join()
        log.debug("metrics endpoint closed")

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
