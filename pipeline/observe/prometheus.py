"""An optional Prometheus endpoint: ``/metrics`` in the text exposition format, from ``MetricsSnapshot`` s.

``MetricsServer(port, source)`` serves, on each scrape, ``render(source())``
from a daemon thread (``http.server``; no dependency). Figures of one run are
gauges (they start again at each run) except the task, lookup and busy-time
totals, which are counters. Every name starts with ``framepipe_``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..errors import MetricsPortError
from .snapshots import MetricsSnapshot

__all__ = ["MetricsServer", "MetricsPortError", "render", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("framepipe.prometheus")

Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(int(value)) if float(value).is_integer() else repr(float(value))


class _Families:
    """Metric families in the order first seen: name -> (type, help, samples)."""

    def __init__(self) -> None:
        self.items: dict[str, tuple[str, str, list[Sample]]] = {}

    def add(self, name: str, type_: str, help_: str, value: float | None, /, **labels: str) -> None:
        entry = self.items.setdefault(f"framepipe_{name}", (type_, help_, []))
        if value is not None:
            entry[2].append((labels, float(value)))

    def lines(self) -> Iterable[str]:
        for name, (kind, help_, samples) in self.items.items():
            if not samples:
                continue
            yield f"# HELP {name} {help_}"
            yield f"# TYPE {name} {kind}"
            for labels, value in samples:
                text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
                yield f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}"


def render(snapshot: MetricsSnapshot | None) -> str:
    """The exposition text for ``snapshot`` (only ``framepipe_up`` when there is none yet)."""
    f = _Families()
    f.add("up", "gauge", "1 while the endpoint serves.", 1)
    if snapshot is None:
        return "\n".join(f.lines()) + "\n"
    s = snapshot
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
    return "\n".join(f.lines()) + "\n"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?", 1)[0] not in ("/metrics", "/metrics/"):
            self.send_error(404, "only /metrics is served here")
            return
        try:
            body = render(self.server.source()).encode()
        except Exception:  # a scrape must not take the run down; say what broke in the log
            log.exception("could not render the metrics")
            self.send_error(500, "could not render the metrics")
            return
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], source: Callable[[], MetricsSnapshot | None]) -> None:
        super().__init__(address, _Handler)
        self.source = source


class MetricsServer:
    """``/metrics`` on ``host:port`` (``port`` 0: a free one, see ``.port``), served from a daemon thread.

    ``source`` is called on each scrape for the latest snapshot (None: no run
    yet). Use as a context manager, or ``start()`` and ``stop()``.
    """

    def __init__(self, port: int, source: Callable[[], MetricsSnapshot | None], host: str = "127.0.0.1") -> None:
        self.host = host
        self.requested_port = port
        self.source = source
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, when 0 was asked)."""
        return self._server.server_address[1] if self._server is not None else self.requested_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def start(self) -> MetricsServer:
        """Listen and serve (``MetricsPortError`` when the port is taken)."""
        if self._server is None:
            try:
                self._server = _Server((self.host, self.requested_port), self.source)
            except OSError as exc:
                raise MetricsPortError(f"cannot serve metrics on {self.host}:{self.requested_port}: "
                                       f"{exc.strerror or exc}") from exc
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name="framepipe-metrics", daemon=True)
            self._thread.start()
            log.info("serving metrics on %s", self.url, extra={"port": self.port})
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
