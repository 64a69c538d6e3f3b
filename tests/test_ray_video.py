"""The Ray executor on video: the default preset gives the local executor's outputs, long files' encodes run in
parts as Ray tasks and join to what one worker writes, and a run from inside a
folder of planted Python files imports none of them. One local Ray (2 CPUs) serves the module and is stopped at
its end, leaving no Ray process behind (the engine's Ray cases are in tests/pipeline/test_ray_executor.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("local_ray")]  # one Ray for the module

from support.cli import PLANTED  # noqa: E402
from support.clips import BROKEN, CLIPS  # noqa: E402
from support.gop_clips import GopSpec, make_gop_clip  # noqa: E402
from support.traces import check_events, spans  # noqa: E402

from pipeline import Pipeline, RunResult, run  # noqa: E402
from stages import Decode, Encode, presets, read_frame_marker  # noqa: E402


def _frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_the_default_preset_gives_the_local_executors_outputs(batch: RunResult, clip_dir: Path,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "ray"
    result = run(presets.default(thumb_every=1.0, thumb_width=160), clip_dir, out, executor="ray", cache=False,
                 trace=tmp_path / "t.json")

    assert result.executor == "ray"
    local = {r.file.relpath: r for r in batch.files}
    for r in result.files:
        assert r.status == local[r.file.relpath].status
        assert r.record == local[r.file.relpath].record, r.file.relpath  # metadata, levels, counts
        assert sorted(r.outputs) == sorted(local[r.file.relpath].outputs)
    broken = next(r for r in result.files if r.file.relpath == BROKEN)  # fails alone, as on the local executor
    assert broken.error == local[BROKEN].error and broken.failed_stage == "metadata"
    assert len(result.succeeded) == len(CLIPS)
    for r in result.succeeded:
        for rel in r.outputs:
            if rel.startswith(("thumbnails/", "sprites/")):
                assert (out / rel).read_bytes() == (batch.out_dir / rel).read_bytes(), rel
            elif rel.startswith("proxies/"):
                assert _frames(out / rel) == _frames(batch.out_dir / rel), rel
    ours = {s.name: s for s in result.stages}  # per-stage statistics in the local executor's schema
    for s in batch.stages:
        assert (ours[s.name].where, ours[s.name].files, ours[s.name].frames) == (s.where, s.files, s.frames)
    assert ours["proxy"].busy_s > 0

    trace = json.loads((tmp_path / "t.json").read_text())  # each good file's stages, inside its actor's call
    check_events(trace, result.wall_s)
    work = {(e["args"]["file"], e["name"]) for e in spans(trace) if "stage" in e.get("args", {})}
    for r in result.succeeded:
        for stage in ("decode", "thumbnails", "sprite_sheet", "audio_levels", "proxy"):
            assert (r.file.relpath, stage) in work, (r.file.relpath, stage)


def test_long_files_are_encoded_in_parts_across_the_cluster_and_joined(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):  # two files whose actors wait for their parts at once: none may starve them
        make_gop_clip(src, GopSpec(name, 6.0, x264="keyint=25:min-keyint=25:bframes=3:scenecut=0"))
    p = Pipeline("encode")
    p.add(Encode(preset="veryfast"), after=p.add(Decode(split_s=1.0)))
    ours = run(p, src, tmp_path / "ray", executor="ray", cache=False)
    whole = run(p, src, tmp_path / "whole", workers=1, cache=False)  # one worker never cuts a file
    assert all(r.ok for r in ours.files), [r.error for r in ours.files]
    for r, w in zip(ours.files, whole.files, strict=True):
        assert r.record["decode_plan"] == "parts (4)" and w.record["decode_plan"] == "straight"
        assert _pictures(tmp_path / "ray" / r.outputs[0]) == _pictures(tmp_path / "whole" / w.outputs[0])
    assert not [p for p in (tmp_path / "ray").rglob(".*")]  # no scratch part is left


def _pictures(path: Path) -> list[tuple[int, float]]:
    with av.open(str(path)) as c:
        return [(read_frame_marker(f.to_ndarray(format="gray")), round(float(f.time), 4)) for f in c.decode(video=0)]


@pytest.mark.slow
def test_framepipe_run_on_ray_imports_no_python_file_of_the_input_folder_run_from_inside_it(
        clip_dir: Path, tmp_path: Path) -> None:
    inp, markers = tmp_path / "footage", tmp_path / "markers"
    inp.mkdir()
    markers.mkdir()
    shutil.copy(clip_dir / "web_vp9.webm", inp)
    for module in PLANTED:  # Ray puts the driver's folder first on its workers' import path: not ours
        (inp / f"{module}.py").write_text(f"open({str(markers / module)!r}, 'w').close()\n")
    command = Path(sys.executable).parent / "framepipe"
    proc = subprocess.run([str(command), "run", ".", "-o", str(tmp_path / "out"), "-p", "metadata", "--no-cache",
                           "-q", "--executor", "ray", "-j", "1"], cwd=inp, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "1 of 1 files done" in proc.stdout
    assert sorted(p.name for p in markers.iterdir()) == []
