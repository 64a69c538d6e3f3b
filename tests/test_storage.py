"""Media on object storage: inputs and outputs as ``s3://`` URLs, against a local S3 server (moto's).

Every test talks to a real server process over HTTP (``support.object_store``); nothing of pyarrow, boto3 or
PyAV is patched. What a run into ``s3://`` leaves must be what a run into a folder leaves.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.clips import BROKEN, CLIPS, assert_same_outputs
from support.object_store import MotoServer

from pipeline import FileSelection, run
from pipeline.errors import BucketNotFound, StorageAccessDenied
from pipeline.run import collect_inputs
from pipeline.storage import read_statistics

CLIP = "landscape_audio.mp4"
FRAMES = round(CLIPS[CLIP].seconds * CLIPS[CLIP].fps)


def _thumbnails() -> object:
    from stages import presets
    return presets.thumbnails(thumb_every=1.0, thumb_width=160)


def _download(server: MotoServer, bucket: str, prefix: str, folder: Path) -> Path:
    """Every object under ``prefix`` as a file under ``folder`` (the same relative names)."""
    s3 = server.client()
    for key in server.keys(bucket, prefix + "/"):
        dst = folder / key[len(prefix) + 1:]
        dst.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(dst))
    return folder


def _cards(out: Path) -> list[dict[str, Any]]:
    """The cards of the report page in ``out`` (its ``index_files/cards-NNNN.js``), in order."""
    found = []
    for path in sorted((out / "index_files").glob("cards-*.js")):
        body = re.fullmatch(r"framepipeCards\(\d+,(.*)\);\n", path.read_text(encoding="utf-8"), re.S)
        assert body, path
        found += json.loads(body.group(1))
    return found


@pytest.fixture
def bucket(s3: MotoServer, request: pytest.FixtureRequest) -> str:
    """A bucket of this test's own (the server is the module's)."""
    words = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{words}-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:8]}"
    s3.client().create_bucket(Bucket=name)
    return name


# Walking -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("select", [
    FileSelection(),
    FileSelection(include=("*.mp4",)),
    FileSelection(exclude=("sub/*", "broken*")),
    FileSelection(recursive=False),
    FileSelection(hidden=True),
], ids=["all", "include", "exclude", "top-level", "hidden"])
def test_a_prefix_is_walked_by_the_rules_of_a_folder(s3: MotoServer, bucket: str, clip_dir: Path,
                                                     tmp_path: Path, select: FileSelection) -> None:
    local = tmp_path / "in"
    shutil.copytree(clip_dir, local)
    (local / ".hidden.mp4").write_bytes((clip_dir / CLIP).read_bytes())
    (local / "notes.txt").write_text("not a video")
    elsewhere = local / "old_run"  # another run's output folder: outputs are never inputs
    elsewhere.mkdir()
    (elsewhere / "ledger.jsonl").write_text("")
    (elsewhere / "report.parquet").write_text("")
    (elsewhere / "proxy.mp4").write_bytes((clip_dir / CLIP).read_bytes())
    s3.put_folder(bucket, "in", local)

    remote = collect_inputs(f"s3://{bucket}/in", (".mp4", ".webm"), select=select)
    here = collect_inputs(local, (".mp4", ".webm"), select=select)

    assert [i.relpath for i in remote] == [i.relpath for i in here] != []
    assert [i.path for i in remote] == [f"s3://{bucket}/in/{i.relpath}" for i in remote]
    assert [i.size for i in remote] == [i.size for i in here]
    assert all(i.fingerprint for i in remote)


def test_a_missing_bucket_or_prefix_is_one_line(s3: MotoServer, bucket: str, tmp_path: Path) -> None:
    with pytest.raises(BucketNotFound) as missing:
        collect_inputs("s3://no-such-bucket/in")
    assert str(missing.value) == "s3://no-such-bucket/in: no such bucket 'no-such-bucket'"
    with pytest.raises(OSError, match=rf"^s3://{bucket}/nothing: no such file or folder$"):
        collect_inputs(f"s3://{bucket}/nothing")
    with pytest.raises(BucketNotFound, match="^s3://no-such-bucket/out: no such bucket"):
        run(_thumbnails(), tmp_path, "s3://no-such-bucket/out")  # before any work


def test_denied_access_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = MotoServer(auth=True).start()  # IAM checks on: the keys "testing" are nobody's
    try:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        with pytest.raises(StorageAccessDenied) as denied:
            collect_inputs("s3://media/in")
        message = str(denied.value)
        assert message.startswith("s3://media/in: access denied (") and "\n" not in message
        with pytest.raises(StorageAccessDenied, match="^s3://media/out: access denied"):
            run(_thumbnails(), tmp_path, "s3://media/out")
    finally:
        server.stop()


# Reading by ranges ---------------------------------------------------------------------------------------


def test_a_metadata_pass_reads_a_small_part_of_the_object(s3: MotoServer, bucket: str, tmp_path: Path) -> None:
    from stages import ClipSpec, make_clip
    from stages.metadata import probe

    big = make_clip(tmp_path / "big.mkv", ClipSpec("big.mkv", 640, 360, 4.0, fps=30, codec="ffv1"), seed=7)
    size = big.stat().st_size
    s3.put_folder(bucket, "in", tmp_path, ["big.mkv"])

    before = read_statistics()
    info = probe(f"s3://{bucket}/in/big.mkv")
    read = read_statistics() - before

    assert (info.width, info.height, info.size_bytes) == (640, 360, size)
    print(f"metadata pass: {read.requests} requests, {read.bytes} of {size} bytes ({read.bytes / size:.1%})")
    assert 0 < read.bytes < size / 10  # measured: 512 KiB of 18.3 MB, in 4 requests (the HEAD counted)
    assert read.requests < 12


# Runs ----------------------------------------------------------------------------------------------------


def test_a_run_from_s3_to_s3_leaves_what_a_local_run_leaves(s3: MotoServer, bucket: str, clip_dir: Path,
                                                            tmp_path: Path) -> None:
    from stages import presets

    local = tmp_path / "in"
    local.mkdir()
    for name in (CLIP, BROKEN):
        shutil.copy(clip_dir / name, local / name)
    s3.put_folder(bucket, "in", local)
    pipeline = presets.default(thumb_every=1.0, thumb_width=160)

    remote = run(pipeline, f"s3://{bucket}/in", f"s3://{bucket}/out", workers=2)
    reference = run(pipeline, local, tmp_path / "ref", workers=2)

    assert [(r.file.relpath, r.status) for r in remote.files] == [(r.file.relpath, r.status)
                                                                  for r in reference.files]
    broken = next(r for r in remote.files if r.file.relpath == BROKEN)
    assert broken.error is not None and "\n" not in broken.error
    out = _download(s3, bucket, "out", tmp_path / "out")
    assert_same_outputs(out, tmp_path / "ref", FRAMES)  # images byte for byte, the proxy frame for frame
    for name in ("ledger.jsonl", "report.parquet", "report.json", "index.html"):
        assert (out / name).is_file(), name
    # The report page is drawn from the outputs at their URLs (none is in the run's local stand-in for OUT): its
    # cards show what a local run's do, the sprite scrubber (the WebVTT's tiles, the sheets' sizes) included.
    cards, reference_cards = _cards(out), _cards(tmp_path / "ref")
    assert [c["name"] for c in cards] == [c["name"] for c in reference_cards] == sorted([CLIP, BROKEN])
    clip_card = cards[[c["name"] for c in cards].index(CLIP)]
    assert clip_card["tiles"] and clip_card["sheets"] and all(w > 0 and h > 0 for w, h in clip_card["sizes"])
    assert "poster" in clip_card and clip_card["strip"]
    for card, ref in zip(cards, reference_cards):
        assert {k: v for k, v in card.items() if k not in ("path", "wall_s")} == {
            k: v for k, v in ref.items() if k not in ("path", "wall_s")}
    assert not list(out.rglob(".framepipe*")), "no staging folder or lock in OUT"
    assert not remote.out_dir.exists(), "the local stand-in for OUT is removed"


def test_an_unchanged_object_is_resumed_and_a_changed_one_runs_again(s3: MotoServer, bucket: str,
                                                                     clip_dir: Path, tmp_path: Path) -> None:
    names = [CLIP, "portrait_rot90.mp4"]
    s3.put_folder(bucket, "in", clip_dir, names)
    src, out = f"s3://{bucket}/in", f"s3://{bucket}/out"
    first = run(_thumbnails(), src, out, workers=1, cache=False)
    assert all(r.ok and not r.resumed for r in first.files)

    again = run(_thumbnails(), src, out, workers=1, cache=False)  # the ledger is read back from OUT
    assert [r.resumed for r in again.files] == [True, True]

    s3.client().upload_file(str(clip_dir / "web_vp9.webm"), bucket, f"in/{CLIP}")  # new content, same name
    changed = {i.relpath: i.fingerprint for i in collect_inputs(src, (".mp4",))}
    assert changed[CLIP] != {r.file.relpath: r.file.fingerprint for r in first.files}[CLIP]
    assert changed["portrait_rot90.mp4"] == {r.file.relpath: r.file.fingerprint for r in first.files}[
        "portrait_rot90.mp4"]
    third = run(_thumbnails(), src, out, workers=1, cache=False)
    assert {r.file.relpath: r.resumed for r in third.files} == {CLIP: False, "portrait_rot90.mp4": True}
    assert all(r.ok for r in third.files)

    data = bytearray((clip_dir / "portrait_rot90.mp4").read_bytes())
    data[len(data) // 2] ^= 0xFF  # the same size, one byte other: only the ETag tells
    s3.client().put_object(Bucket=bucket, Key="in/portrait_rot90.mp4", Body=bytes(data))
    edited = {i.relpath: i.fingerprint for i in collect_inputs(src, (".mp4",))}
    assert edited["portrait_rot90.mp4"] != changed["portrait_rot90.mp4"] and edited[CLIP] == changed[CLIP]


def test_the_stage_cache_is_keyed_by_the_objects_etag(s3: MotoServer, bucket: str, clip_dir: Path,
                                                      tmp_path: Path) -> None:
    s3.put_folder(bucket, "in", clip_dir, [CLIP])
    src, cache = f"s3://{bucket}/in", tmp_path / "cache"
    first = run(_thumbnails(), src, f"s3://{bucket}/a", workers=1, cache=cache)
    second = run(_thumbnails(), src, f"s3://{bucket}/b", workers=1, cache=cache)  # another OUT: no ledger
    assert [r.replayed for r in first.files] == [False] and [r.replayed for r in second.files] == [True]
    assert s3.keys(bucket, "a/thumbnails") == [k.replace("b/", "a/", 1) for k in s3.keys(bucket, "b/thumbnails")]
    s3.client().upload_file(str(clip_dir / "portrait_rot90.mp4"), bucket, f"in/{CLIP}")
    third = run(_thumbnails(), src, f"s3://{bucket}/c", workers=1, cache=cache)
    assert [r.replayed for r in third.files] == [False]


def test_no_output_name_read_from_the_bucket_reaches_outside_out(s3: MotoServer, bucket: str) -> None:
    from pipeline.storage.objects import delete_objects, output_sizes

    client = s3.client()
    for key in ("victim.txt", "out/x.jpg"):
        client.put_object(Bucket=bucket, Key=key, Body=b"12345")
    hostile = ["../victim.txt", "/victim.txt", "a/../../victim.txt", "./x.jpg", ""]
    base = f"s3://{bucket}/out"
    assert output_sizes(base, hostile + ["x.jpg"]) == {**dict.fromkeys(hostile), "x.jpg": 5}
    assert delete_objects(base, hostile + ["x.jpg"]) == ["x.jpg"]
    assert [k for k in s3.keys(bucket) if not k.endswith("/")] == ["victim.txt"]  # (a folder marker may stay)


def test_a_ledger_line_naming_an_output_outside_out_is_not_trusted(s3: MotoServer, bucket: str,
                                                                   clip_dir: Path) -> None:
    s3.put_folder(bucket, "in", clip_dir, [CLIP])
    src, out = f"s3://{bucket}/in", f"s3://{bucket}/out"
    assert all(r.ok for r in run(_thumbnails(), src, out, workers=1, cache=False).files)
    client = s3.client()
    client.put_object(Bucket=bucket, Key="victim.txt", Body=b"12345")
    # A tampered ledger: the file's line lists an output outside OUT and says its input changed since, so
    # that the run does it again and would remove what the line lists and the new run does not make.
    entry = json.loads(s3.get(bucket, "out/ledger.jsonl"))
    entry["outputs"]["../victim.txt"] = [5, "0" * 32]
    entry["fingerprint"] = "changed"
    client.put_object(Bucket=bucket, Key="out/ledger.jsonl", Body=(json.dumps(entry) + "\n").encode())

    again = run(_thumbnails(), src, out, workers=1, cache=False)
    assert [(r.ok, r.resumed) for r in again.files] == [(True, False)]
    assert s3.get(bucket, "victim.txt") == b"12345"
    assert "../victim.txt" not in s3.get(bucket, "out/ledger.jsonl").decode()


def test_a_ledger_line_held_back_by_the_push_interval_is_put_when_it_has_passed(s3: MotoServer, bucket: str,
                                                                                 tmp_path: Path) -> None:
    from pipeline.storage.mirror import RemoteFolder

    now = [100.0]  # the folder's clock: it moves only when the test moves it
    folder = RemoteFolder(f"s3://{bucket}/out", tmp_path, push_every=1.0, clock=lambda: now[0])
    ledger = tmp_path / "ledger.jsonl"
    try:
        ledger.write_bytes(b"one\n")
        folder.push_ledger()  # the first line: put at once
        assert s3.get(bucket, "out/ledger.jsonl") == b"one\n" and not folder.pending
        with ledger.open("ab") as f:
            f.write(b"two\n")
        folder.push_ledger()  # within the interval: held back, not lost until the next file ends
        assert folder.pending and s3.get(bucket, "out/ledger.jsonl") == b"one\n"
        now[0] += 1.0  # the interval has passed: the flusher puts it, no other call needed
        assert folder.wait_pushed(timeout=120), "the held-back line was never put"  # (a safety net, not a timing)
        assert s3.get(bucket, "out/ledger.jsonl") == b"one\ntwo\n"

        with ledger.open("ab") as f:
            f.write(b"three\n")
        folder.push_ledger()  # held back again (the clock stands still) ...
        assert folder.pending
    finally:
        folder.close()  # ... and put by the last push when the folder closes
    assert s3.get(bucket, "out/ledger.jsonl") == b"one\ntwo\nthree\n"
    assert not tmp_path.exists()


class _KillAfterFirst:
    """Run events that kill the server once the first file is done (and in the ledger): the rest lose it."""

    def __init__(self, server: MotoServer) -> None:
        self.server = server
        self.done = 0

    def file_started(self, task: object) -> None:
        pass

    def file_progress(self, index: int, stage: str, done: int, total: int | None) -> None:
        pass

    def file_done(self, result: object) -> None:
        self.done += 1
        if self.done == 1:
            self.server.stop()


def test_a_server_lost_mid_batch_fails_those_files_in_one_line_and_a_rerun_completes_them(
        clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = MotoServer().start()  # its own: this test kills it
    try:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        names = sorted(CLIPS)
        server.put_folder("media", "in", clip_dir, names)
        out = tmp_path / "out"  # the ledger stays here while the server is gone
        first = run(_thumbnails(), "s3://media/in", out, workers=1, events=_KillAfterFirst(server))
        failed = [r for r in first.files if not r.ok]
        assert first.files[0].ok and failed, [r.summary_line() for r in first.files]
        for r in failed:
            assert r.error is not None and "\n" not in r.error
            assert f"s3://media/in/{r.file.relpath}: cannot reach the store" in r.error, r.error

        server.restart()  # the same port, empty: the inputs are put back (the same bytes, so the same ETags)
        server.put_folder("media", "in", clip_dir, names)
        second = run(_thumbnails(), "s3://media/in", out, workers=1)
        assert all(r.ok for r in second.files), [r.summary_line() for r in second.files]
        assert {r.file.relpath for r in second.files if not r.resumed} == {r.file.relpath for r in failed}
    finally:
        server.stop()


def test_a_store_lost_before_the_last_push_keeps_the_result_and_the_reports_locally(
        clip_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    server = MotoServer().start()  # its own: this test kills it
    kept: Path | None = None
    try:
        for key, value in server.env.items():
            monkeypatch.setenv(key, value)
        server.put_folder("media", "in", clip_dir, [CLIP])
        # The one file is done and in the ledger; then the store goes, before the reports are put into OUT.
        result = run(_thumbnails(), "s3://media/in", "s3://media/out", workers=1, cache=False,
                     events=_KillAfterFirst(server))
        kept = result.out_dir
        assert [r.ok for r in result.files] == [True]  # the run's result is not lost to the failed push
        assert result.out_url == "s3://media/out"
        for name in ("ledger.jsonl", "report.parquet", "report.json", "index.html"):
            assert (kept / name).is_file(), name  # what was not put into OUT is kept, and named
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and str(kept) in errors[0] and "s3://media/out" in errors[0], errors
        assert "\n" not in errors[0]
    finally:
        server.stop()
        if kept is not None:
            shutil.rmtree(kept, ignore_errors=True)


def test_the_command_runs_from_s3_to_s3(s3: MotoServer, bucket: str, clip_dir: Path) -> None:
    s3.put_folder(bucket, "in", clip_dir, [CLIP, BROKEN])
    proc = subprocess.run([sys.executable, "-m", "pipeline", "run", f"s3://{bucket}/in", "-o", f"s3://{bucket}/out",
                           "--preset", "thumbnails", "-O", "thumb_width=160", "-j", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr  # the broken file failed; the batch went on
    assert f"FAILED {BROKEN}" in proc.stderr + proc.stdout
    keys = s3.keys(bucket, "out/")
    assert f"out/thumbnails/{CLIP[:-4]}/poster.jpg" in keys and "out/ledger.jsonl" in keys
    missing = subprocess.run([sys.executable, "-m", "pipeline", "run", "s3://no-such-bucket/in", "-o",
                              f"s3://{bucket}/out2"], capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].endswith("s3://no-such-bucket/in: no such bucket 'no-such-bucket'")


@pytest.mark.ray
def test_the_ray_executor_runs_from_s3_to_s3(s3: MotoServer, bucket: str, clip_dir: Path, tmp_path: Path,
                                             local_ray: None) -> None:
    s3.put_folder(bucket, "in", clip_dir, [CLIP, "portrait_rot90.mp4"])
    on_ray = run(_thumbnails(), f"s3://{bucket}/in", f"s3://{bucket}/ray", executor="ray", cache=False)
    run(_thumbnails(), f"s3://{bucket}/in", tmp_path / "local", workers=2, cache=False)
    assert all(r.ok for r in on_ray.files), [r.summary_line() for r in on_ray.files]
    out = _download(s3, bucket, "ray", tmp_path / "ray")
    assert_same_outputs(out, tmp_path / "local", FRAMES)


# The driver's settings, in a worker ----------------------------------------------------------------------


def test_a_worker_takes_the_drivers_storage_settings_in_place_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.storage.location import STORAGE_VARIABLES, adopt_environment, storage_environment

    for key in STORAGE_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "driver")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    sent = storage_environment()  # what this run's driver has: two set, the rest not
    assert dict(sent) == {k: {"AWS_ACCESS_KEY_ID": "driver", "AWS_REGION": "eu-west-1"}.get(k)
                          for k in STORAGE_VARIABLES}

    # A long-lived worker, as an earlier run's driver left it: an endpoint, a profile, a token of its own.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "earlier")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_PROFILE", "earlier")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "earlier")
    monkeypatch.delenv("AWS_REGION")
    adopt_environment(sent)
    assert {k: v for k, v in os.environ.items() if k in STORAGE_VARIABLES} == {
        "AWS_ACCESS_KEY_ID": "driver", "AWS_REGION": "eu-west-1"}

    adopt_environment(())  # a run that uses no URL leaves the worker's settings alone
    assert {k: v for k, v in os.environ.items() if k in STORAGE_VARIABLES} == {
        "AWS_ACCESS_KEY_ID": "driver", "AWS_REGION": "eu-west-1"}


def test_a_tasks_repr_leaves_the_credentials_out(tmp_path: Path) -> None:
    from pipeline.executors import FileTask
    from pipeline.items import FileItem

    item = FileItem("s3://media/in/a.mp4", "a.mp4", 1, 0, "fp", 0)
    task = FileTask(item, tmp_path, "a", storage_env=(("AWS_SECRET_ACCESS_KEY", "testing-secret"),))
    assert "testing-secret" not in repr(task) and "testing-secret" not in str(task)
    assert "a.mp4" in repr(task)
