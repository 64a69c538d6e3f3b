"""The local streaming executor with map stages: same frames as one process, bounded slots, order, failures."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline import FRAME, Pipeline, PipelineDefinitionError, Stage, run
from pipeline.executors.local import LocalExecutor
from stages import ClipSpec, Decode, make_clip, read_frame_marker


class Invert(Stage):
    """A numpy map stage: 255 - pixels, written straight into the output slot."""

    accepts = (FRAME,)
    emits = (FRAME,)
    stateful = False

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        rgb = item.array()
        out = ctx.output_array(rgb.shape, rgb.dtype) if hasattr(ctx, "output_array") else np.empty_like(rgb)
        np.subtract(255, rgb, out=out)
        yield item.with_pixels(out, "rgb24")


class Boom(Stage):
    """A map stage that fails on the frames of files whose name contains 'bad'."""

    accepts = (FRAME,)
    emits = (FRAME,)
    stateful = False

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        if "bad" in ctx.file.name and item.index == 3:
            raise RuntimeError("cannot process frame 3")
        yield item


class Record(Stage):
    """A stateful sink: records each frame's number, marker and a hash of its pixels, in arrival order."""

    accepts = (FRAME,)

    def begin(self, ctx):  # noqa: ANN001, ANN201
        ctx.state["seen"] = []

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        rgb = item.array()
        marker = read_frame_marker(255 - rgb if ctx.stage.startswith("inv") else rgb)
        ctx.state["seen"].append((item.index, marker, hashlib.md5(rgb.tobytes()).hexdigest()[:12]))

    def end(self, ctx):  # noqa: ANN001, ANN201
        ctx.record(**{f"{ctx.stage}_seen": ctx.state["seen"]})


def graph(with_boom: bool = False) -> Pipeline:
    p = Pipeline("streaming", extensions=[".mp4"])
    decode = p.add(Decode(pixel_format="rgb24", audio=False))
    src = p.add(Boom(), after=decode) if with_boom else decode
    inverted = p.add(Invert(), after=src)
    p.add(Record(name="inv_record"), after=inverted)  # fed by a map stage: must see frames in order
    p.add(Record(name="raw_record"), after=decode)  # fan-out: the same frames, untouched
    return p


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stream-clips")
    make_clip(root / "a.mp4", ClipSpec("a.mp4", 192, 108, 2.0, fps=25), seed=1)
    make_clip(root / "b.mp4", ClipSpec("b.mp4", 160, 96, 1.0, fps=30), seed=2)
    return root


def test_map_stages_give_the_same_frames_in_the_same_order_as_one_process(clips: Path, tmp_path: Path) -> None:
    inline = run(graph(), clips, tmp_path / "inline", executor="inline")
    local = run(graph(), clips, tmp_path / "local", executor="local", workers=2)
    for a, b in zip(inline.files, local.files):
        assert a.ok and b.ok, (a.error, b.error)
        assert a.record["inv_record_seen"] == b.record["inv_record_seen"]
        assert a.record["raw_record_seen"] == b.record["raw_record_seen"]
        seen = b.record["inv_record_seen"]
        assert [i for i, _, _ in seen] == list(range(len(seen)))  # in order
        assert [m for _, m, _ in seen] == list(range(len(seen)))  # the right pixels for each number
    stats = {s.name: s for s in local.stages}
    assert stats["invert"].where == "map:default" and stats["invert"].items_in == 50 + 30
    assert stats["inv_record"].where == "file"


def test_peak_slot_use_stays_bounded_on_a_clip_ten_times_longer_than_the_cap(tmp_path: Path) -> None:
    make_clip(tmp_path / "long.mp4", ClipSpec("long.mp4", 128, 72, 4.0, fps=30), seed=3)  # 120 frames
    ex = LocalExecutor(workers=2, credits_per_file=8)
    p = graph()
    from pipeline.executors.base import FileTask
    from pipeline.items import FileItem
    from pipeline.observe.progress import SilentProgress
    task = FileTask(FileItem.from_path(tmp_path / "long.mp4", tmp_path), tmp_path / "out", "long")
    [result] = ex.run(p, [task], SilentProgress()).results
    assert result.ok, result.error
    assert len(result.record["inv_record_seen"]) == 120
    assert ex.peak_slots <= 8 + 2  # the file's cap, plus one output slot per running map task


def test_a_failing_map_stage_fails_its_file_alone_with_stage_and_reason(clips: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "in" / name).write_bytes((clips / name).read_bytes())
    (tmp_path / "in" / "bad.mp4").write_bytes((clips / "a.mp4").read_bytes())
    result = run(graph(with_boom=True), tmp_path / "in", tmp_path / "out", executor="local", workers=2)
    by_name = {r.file.relpath: r for r in result.files}
    assert by_name["bad.mp4"].status == "failed"
    assert by_name["bad.mp4"].error == "[boom] RuntimeError: cannot process frame 3"
    assert "cannot process frame 3" in (by_name["bad.mp4"].traceback or "")
    assert by_name["a.mp4"].ok and by_name["b.mp4"].ok


def test_a_stage_naming_an_undeclared_pool_is_rejected_by_name() -> None:
    p = graph()
    p.stages["invert"].pool = "gpu"
    with pytest.raises(PipelineDefinitionError, match="stage 'invert': names pool 'gpu'"):
        p.validate()


SIGINT_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    from test_streaming import graph
    from pipeline import run
    from pipeline.observe.progress import ConsoleProgress
    run(graph(), sys.argv[1], sys.argv[3], executor="local", workers=2,
        events=ConsoleProgress(1, stream=sys.stdout, live=False))
""")


def test_sigint_during_a_map_pipeline_exits_130_and_leaves_no_segment(tmp_path: Path) -> None:
    make_clip(tmp_path / "long.mp4", ClipSpec("long.mp4", 320, 180, 6.0, fps=30), seed=4)
    runner = tmp_path / "runner.py"
    runner.write_text(SIGINT_SCRIPT + "\n")
    cmd = [sys.executable, "-c", f"import runpy, sys; sys.argv = sys.argv[1:]; "
           f"code = open({str(runner)!r}).read(); exec(code)",
           "x", str(tmp_path / "long.mp4"), str(Path(__file__).parent), str(tmp_path / "out")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # the event: the file has started
        if line.startswith("start"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "Interrupted" in err
    assert not list(Path("/dev/shm").glob(f"framepipe_{proc.pid}_*"))
