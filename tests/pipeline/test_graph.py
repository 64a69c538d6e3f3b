"""Pipeline graphs: how they are built, ordered and validated."""

from __future__ import annotations

import pytest

from pipeline import FILE, FRAME, Pipeline, PipelineDefinitionError, Stage, stage


class Source(Stage):
    accepts = (FILE,)
    emits = (FRAME,)

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        return None


class FrameSink(Stage):
    accepts = (FRAME,)

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        return None


def test_stage_name_defaults_to_snake_case_of_its_class() -> None:
    assert FrameSink().name == "frame_sink"
    assert FrameSink(name="thumbs").name == "thumbs"


def test_function_stage_takes_the_function_name_and_declared_kinds() -> None:
    @stage(accepts=FRAME, emits=(FRAME,))
    def brighten(item, ctx):  # noqa: ANN001, ANN202
        return [item]

    assert brighten.name == "brighten"
    assert brighten.accepts == (FRAME,)
    assert brighten.emits == (FRAME,)


def test_order_is_topological_and_children_follow_edges() -> None:
    p = Pipeline()
    src = p.add(Source())
    a = p.add(FrameSink(name="a"), after=src)
    p.add(FrameSink(name="b"), after=src)
    assert p.order() == ["source", "a", "b"]
    assert p.children("source") == ["a", "b"]
    assert p.inputs(a.name) == ["source"]


def test_kind_mismatch_names_the_stage() -> None:
    p2 = Pipeline()
    meta = p2.add(_FileOnly())
    p2.add(FrameSink(name="thumbs"), after=meta)
    with pytest.raises(PipelineDefinitionError, match="thumbs.*accepts frame but its input 'file_only' emits nothing"):
        p2.validate()


class _FileOnly(Stage):
    accepts = (FILE,)

    def process(self, item, ctx):  # noqa: ANN001, ANN201
        return None


def test_a_stage_that_needs_frames_cannot_take_files() -> None:
    p = Pipeline()
    p.add(FrameSink(name="orphan"))
    with pytest.raises(PipelineDefinitionError, match="'orphan'.*has no input"):
        p.validate()


def test_cycles_are_rejected() -> None:
    class Loop(Stage):
        accepts = (FILE, FRAME)
        emits = (FRAME,)

    p = Pipeline()
    a = p.add(Loop(name="a"))
    b = p.add(Loop(name="b"), after=a)
    p.connect(b, a)
    with pytest.raises(PipelineDefinitionError, match="cycle"):
        p.order()


def test_duplicate_and_unknown_stages_are_rejected() -> None:
    p = Pipeline()
    p.add(Source())
    with pytest.raises(PipelineDefinitionError, match="already"):
        p.add(Source())
    with pytest.raises(PipelineDefinitionError, match="unknown stage 'nope'"):
        p.add(FrameSink(), after="nope")
    with pytest.raises(PipelineDefinitionError, match="not a Stage"):
        p.add(lambda item, ctx: None)  # type: ignore[arg-type]


def test_empty_pipeline_is_invalid() -> None:
    with pytest.raises(PipelineDefinitionError, match="no stages"):
        Pipeline("empty").validate()
