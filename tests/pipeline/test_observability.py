"""Observability: log records through ``logging`` (text or JSON lines), metrics snapshots, the Prometheus endpoint
and Pushgateway pushes."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import runtime_tasks as rt
from support.arrays import array_pipeline, write_frames, write_pipeline_file
from support.cli import framepipe

from pipeline import FILE, Pipeline, Stage, StageContext, run
from pipeline.executors import FileTask
from pipeline.executors.local import LocalExecutor
from pipeline.observe.logs import configure_logging
from pipeline.observe.progress import SilentProgress
from pipeline.observe.prometheus import MetricsServer, parse_address, render
from pipeline.observe.pushgateway import MetricsPusher
from pipeline.observe.snapshots import MetricsSnapshot
from pipeline.run import collect_inputs, output_keys

SAMPLE = re.compile(r'^(framepipe_[a-z_]+)(?:\{((?:[a-z_]+="[^"]*",?)*)\})? (-?[0-9.e+-]+|NaN|[+-]Inf)$')


def parse_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by metric name; fails on any line that is not a comment, a blank or a sample."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("gauge", "counter"), line
            typed.add(name)
            continue
        if not line or line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        assert m.group(1) in typed, f"{m.group(1)} has no # TYPE line"
        labels = dict(re.findall(r'([a-z_]+)="([^"]*)"', m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, float(m.group(3))))
    return out


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    matching = [v for lb, v in samples[name] if all(lb.get(k) == x for k, x in labels.items())]
    assert len(matching) == 1, (name, labels, samples.get(name))
    return matching[0]


# Pipelines ------------------------------------------------------------------------------------------------


class WaitAtGate(Stage):
    """Holds each file until the file ``gate`` exists (the test's event), then writes nothing."""

    accepts = (FILE,)

    def __init__(self, gate: str) -> None:
        super().__init__()
        self.gate = gate

    def process(self, item: Any, ctx: StageContext) -> None:
        rt.wait_for(self.gate)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two inputs of 30 numpy frames each (engine-only stand-ins for clips)."""
    root = tmp_path_factory.mktemp("observed_clips")
    for i in range(2):
        write_frames(root / f"c{i}.npy", 30, seed=i)
    return root


@pytest.fixture(scope="module")
def pipeline_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``framepipe run -P`` this: the array pipeline, named ``arrays``."""
    return write_pipeline_file(tmp_path_factory.mktemp("pipeline_file") / "arrays.py")


# Logging --------------------------------------------------------------------------------------------------


def test_verbose_shows_info_records_and_the_default_does_not(clips: Path, pipeline_file: Path,
                                                            tmp_path: Path) -> None:
    args = ("run", clips, "-o", tmp_path / "out", "-q", "-P", pipeline_file, "--executor", "inline", "--no-cache",
            "--fresh")  # the same OUT three times: each run does every file again
    quiet = framepipe(*args)
    assert quiet.returncode == 0, quiet.stderr
    assert "framepipe info" not in quiet.stderr
    loud = framepipe("-v", *args)
    assert loud.returncode == 0, loud.stderr
    assert "framepipe info [run] run arrays: 2 file(s) on the inline executor" in loud.stderr
    assert "framepipe info [run] run arrays ended: 2 ok, 0 failed" in loud.stderr
    assert "framepipe debug" not in loud.stderr
    assert "framepipe debug [run] file started: c0.npy" in framepipe("-vv", *args).stderr


def test_log_json_lines_parse_and_carry_level_logger_message_and_fields(clips: Path, pipeline_file: Path,
                                                                        tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "c0.npy").write_bytes((clips / "c0.npy").read_bytes())
    (tmp_path / "in" / "broken.npy").write_bytes(b"not an array at all")
    proc = framepipe("--log-json", "-v", "run", tmp_path / "in", "-o", tmp_path / "out", "-P", pipeline_file,
                     "--executor", "inline", "--no-cache")
    assert proc.returncode == 1
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]  # every line is JSON
    assert lines and all({"time", "level", "logger", "message"} <= set(doc) for doc in lines)
    started = [d for d in lines if d["logger"] == "framepipe.run" and d["message"].startswith("run arrays:")]
    assert started and started[0]["level"] == "INFO" and started[0]["files"] == 2
    failed = [d for d in lines if d["level"] == "WARNING"]
    assert [(d["logger"], d["file"]) for d in failed] == [("framepipe.run", "broken.npy")]
    assert "Traceback" not in proc.stderr


def test_an_expected_error_is_one_line_never_a_traceback(tmp_path: Path) -> None:
    proc = framepipe("--log-json", "run", tmp_path, "-o", tmp_path / "out", "-p", "no-such-preset")
    assert proc.returncode == 2
    (doc,) = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert doc["level"] == "ERROR" and doc["logger"] == "framepipe.cli" and "no-such-preset" in doc["message"]
    plain = framepipe("run", tmp_path, "-o", tmp_path / "out", "-p", "no-such-preset")
    assert plain.stderr.startswith("framepipe: ") and "Traceback" not in plain.stderr


def test_configure_logging_sets_the_level_and_replaces_its_handler() -> None:
    stream = io.StringIO()
    try:
        configure_logging(0, json=True, stream=stream)
        configure_logging(1, json=True, stream=stream)  # replaces the first: one line per record
        logging.getLogger("framepipe.test").info("hello %s", "there", extra={"n": 3})
        logging.getLogger("framepipe.test").debug("not shown")
        (doc,) = [json.loads(line) for line in stream.getvalue().splitlines()]
        assert (doc["level"], doc["logger"], doc["message"], doc["n"]) == ("INFO", "framepipe.test", "hello there", 3)
    finally:
        configure_logging(0, stream=io.StringIO())
        logger = logging.getLogger("framepipe")
        for h in [h for h in logger.handlers if getattr(h, "_framepipe", False)]:
            logger.removeHandler(h)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


# Snapshots ------------------------------------------------------------------------------------------------


def test_a_snapshot_after_a_local_run_adds_up(clips: Path, tmp_path: Path) -> None:
    items = collect_inputs(clips)
    tasks = [FileTask(i, tmp_path, k) for i, k in zip(items, output_keys(items))]
    ex = LocalExecutor(2)
    assert ex.snapshot() is None
    results = ex.run(array_pipeline(), tasks, SilentProgress()).results
    assert all(r.ok for r in results)
    snap = ex.snapshot()
    assert isinstance(snap, MetricsSnapshot) and not snap.running
    assert (snap.files_total, snap.files_done, snap.files_failed, snap.files_in_flight) == (2, 2, 0, 0)
    assert snap.files_waiting == 0 and snap.elapsed_s > 0
    pools = {p.name: p for p in snap.pools}
    assert pools["files"].kind == "files" and pools["files"].workers == ex.actor_count
    assert pools["files"].executed >= 2 * 2  # at least a start and a finish call per file
    assert pools["default"].kind == "map" and pools["default"].workers == 2
    assert pools["default"].executed > 0 and pools["default"].failed == 0
    assert all(p.running == 0 and p.queued == 0 and p.utilization == 0 for p in snap.pools)
    assert all(0 <= p.p50_s <= p.p95_s for p in snap.pools)
    mem = snap.memory
    assert mem is not None and mem.budget_bytes == ex.buffer_bytes
    assert mem.slots_in_use == 0 and mem.bytes_in_use == 0 and mem.peak_slots == ex.peak_slots >= 1
    assert mem.reserved_bytes == sum(b.slot_size * b.slots for b in mem.buffers) > 0
    assert sum(b.allocations for b in mem.buffers) >= mem.peak_slots
    (memo,) = [c for c in snap.caches if c.name == "stage_memo"]
    assert memo.hits + memo.misses >= 0
    json.dumps(snap.to_dict())  # JSON-ready
    assert snap.to_dict()["files_done"] == 2


# The Prometheus endpoint ----------------------------------------------------------------------------------


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def test_the_endpoint_serves_a_run_in_progress_and_is_gone_after_it(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        (inputs / f"f{i}.txt").write_text(str(i))
    gate = tmp_path / "gate"
    pipeline = Pipeline("gated", extensions=[".txt"])
    pipeline.add(WaitAtGate(str(gate)))

    # run(metrics_address="127.0.0.1:0") logs the port it picked: the test learns it from that record.
    told: dict[str, int] = {}
    listening = threading.Event()

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if hasattr(record, "port"):
                told["port"] = record.port  # type: ignore[attr-defined]
                listening.set()

    logger = logging.getLogger("framepipe.prometheus")
    catch, before = Catch(), logger.level
    logger.addHandler(catch)
    logger.setLevel(logging.INFO)
    outcome: dict[str, Any] = {}

    def go() -> None:
        try:
            outcome["result"] = run(pipeline, inputs, tmp_path / "out", workers=2, cache=False,
                                    metrics_address="127.0.0.1:0")
        except BaseException as exc:  # noqa: BLE001  (reported by the test below)
            outcome["error"] = exc

    thread = threading.Thread(target=go)
    thread.start()
    try:
        assert listening.wait(120), "the endpoint never said where it listens"
        url = f"http://127.0.0.1:{told['port']}/metrics"
        # Files cannot finish while the gate is shut: wait until the scheduler's snapshot shows them in flight.
        for _ in range(1200):
            samples = parse_exposition(scrape(url))
            if "framepipe_files_in_flight" in samples and value(samples, "framepipe_files_in_flight") >= 1:
                break
            time.sleep(0.05)  # a polling interval: the loop ends on the condition, not on time
        else:
            pytest.fail("no file was ever in flight")
        assert value(samples, "framepipe_up") == 1 and value(samples, "framepipe_run_running") == 1
        assert value(samples, "framepipe_files_inputs") == 3
        assert value(samples, "framepipe_files_done") == 0 and value(samples, "framepipe_files_failed") == 0
        assert value(samples, "framepipe_files_in_flight") + value(samples, "framepipe_files_waiting") == 3
        assert value(samples, "framepipe_pool_workers", pool="files", kind="files") == 2
        assert value(samples, "framepipe_slots_budget_bytes") > 0
        assert "framepipe_pool_tasks_executed_total" in samples and "framepipe_cache_hits_total" in samples
    finally:
        gate.write_text("open")
        thread.join(300)
        logger.removeHandler(catch)
        logger.setLevel(before)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].exit_code == 0 and len(outcome["result"].files) == 3
    with pytest.raises(urllib.error.URLError):
        scrape(url)  # stopped with the run


def test_render_without_a_run_and_a_server_on_a_taken_port(tmp_path: Path) -> None:
    assert parse_exposition(render(None)) == {"framepipe_up": [({}, 1.0)]}
    with MetricsServer.at("127.0.0.1:0", lambda: None) as first:
        assert parse_exposition(scrape(first.url))["framepipe_up"] == [({}, 1.0)]
        from pipeline.errors import FramepipeError
        with pytest.raises(FramepipeError, match="cannot serve metrics"):
            MetricsServer(first.port, lambda: None).start()


@pytest.mark.parametrize("text, address", [
    ("127.0.0.1:9100", ("127.0.0.1", 9100)), ("0.0.0.0:0", ("0.0.0.0", 0)), (":9100", ("0.0.0.0", 9100)),
    ("[::1]:9100", ("::1", 9100)), ("9100", ("127.0.0.1", 9100)), ("localhost:80", ("localhost", 80)),
])
def test_an_address_is_host_and_port(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize("text", ["host:", "host:http", "host:70000", "", "a:-1"])
def test_a_bad_address_says_what_an_address_is(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)


def test_metrics_port_and_address_are_one_or_the_other(tmp_path: Path) -> None:
    pipeline, inputs, _ = gated_inputs(tmp_path)
    with pytest.raises(ValueError, match="not both"):
        run(pipeline, inputs, tmp_path / "out", metrics_port=0, metrics_address="127.0.0.1:0")
    assert not (tmp_path / "out").exists()  # refused before anything was done


# Pushes to a Pushgateway ----------------------------------------------------------------------------------


class Gateway:
    """A stand-in Pushgateway on loopback: records each push (method, path, body) and signals each one."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, str, str]] = []
        self.pushed = threading.Condition()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                with gateway.pushed:
                    gateway.pushes.append((self.command, self.path, body))
                    gateway.pushed.notify_all()
                self.send_response(200)
                self.end_headers()

            do_POST = do_PUT  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for_pushes(self, n: int, limit_s: float = 120.0) -> None:
        with self.pushed:
            assert self.pushed.wait_for(lambda: len(self.pushes) >= n, limit_s), f"fewer than {n} pushes came"

    def figures(self, push: int = -1) -> dict[str, list[tuple[dict[str, str], float]]]:
        """The samples of one push, by name, read with prometheus_client's own parser."""
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(self.pushes[push][2]):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
        return out


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    g.thread.start()
    yield g
    g.server.shutdown()
    g.server.server_close()


@contextmanager
def records_of(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records the logger ``name`` emits in the block (whatever handlers and levels are set elsewhere)."""
    caught: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record)

    logger, keep = logging.getLogger(name), Keep()
    before = logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    try:
        yield caught
    finally:
        logger.removeHandler(keep)
        logger.setLevel(before)


def gated_inputs(tmp_path: Path, files: int = 3) -> tuple[Pipeline, Path, Path]:
    """A pipeline that holds each file until the gate file exists, its input folder, and the gate."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(files):
        (inputs / f"f{i}.txt").write_text(str(i))
    gate = tmp_path / "gate"
    pipeline = Pipeline("gated", extensions=[".txt"])
    pipeline.add(WaitAtGate(str(gate)))
    return pipeline, inputs, gate


def test_a_run_pushes_its_final_figures_to_the_gateway_at_the_end(tmp_path: Path, gateway: Gateway) -> None:
    pipeline, inputs, gate = gated_inputs(tmp_path)
    gate.write_text("open")
    result = run(pipeline, inputs, tmp_path / "out", workers=2, cache=False, metrics_push=gateway.url)
    assert result.exit_code == 0
    gateway.wait_for_pushes(1)
    method, path, _ = gateway.pushes[-1]
    assert method == "PUT" and path.startswith("/metrics/job/framepipe/")
    parts = path.removeprefix("/metrics/job/framepipe/").split("/")
    group = dict(zip(parts[::2], parts[1::2]))  # grouped by pipeline and output folder (a path: base64)
    assert group["pipeline"] == "gated"
    assert base64.urlsafe_b64decode(group["out@base64"]).decode() == str((tmp_path / "out").resolve())
    final = gateway.figures()
    assert final["framepipe_run_running"] == [({}, 0.0)]
    assert final["framepipe_files_inputs"] == [({}, 3.0)] and final["framepipe_files_done"] == [({}, 3.0)]
    assert final["framepipe_files_failed"] == [({}, 0.0)] and final["framepipe_files_in_flight"] == [({}, 0.0)]
    executed = {lb["pool"]: v for lb, v in final["framepipe_pool_tasks_executed_total"]}
    assert executed["files"] >= 3


def test_the_pusher_pushes_while_running_then_once_more_at_stop(gateway: Gateway) -> None:
    figures = iter(range(1, 1000))
    last: list[int] = []

    def source() -> MetricsSnapshot:
        last.append(next(figures))
        return MetricsSnapshot(time.time(), 1.0, True, files_total=last[-1], files_done=0, files_failed=0,
                               files_in_flight=0)

    pusher = MetricsPusher(gateway.url, source, {"pipeline": "p"}, every_s=0.01).start()
    gateway.wait_for_pushes(2)  # two periodic pushes, while it runs
    pusher.stop()
    assert pusher.pushes == len(gateway.pushes) >= 3
    assert gateway.figures()["framepipe_files_inputs"] == [({}, float(last[-1]))]  # the last push: the last figures
    assert all(path == "/metrics/job/framepipe/pipeline/p" for _, path, _ in gateway.pushes)


def test_a_push_that_fails_is_one_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    pipeline, inputs, gate = gated_inputs(tmp_path)
    gate.write_text("open")
    with records_of("framepipe.prometheus") as records:
        result = run(pipeline, inputs, tmp_path / "out", workers=2, cache=False,
                     metrics_push=f"http://127.0.0.1:{closed}")
    assert result.exit_code == 0 and len(result.files) == 3
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "could not push metrics" in warnings[0].getMessage()
