"""The engine knows nothing of video: its tests never import the video library, and it imports without PyAV."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
VIDEO = {"stages", "av"}
"""Top-level modules of the video library and of PyAV."""
VIDEO_HELPERS = {"support.clips", "support.video", "support.stream_clips", "support.interlaced_clips",
                 "support.hdr_clips", "support.decode_tasks"}
"""Test helpers that import the video library."""
VIDEO_FIXTURES = {"clip_dir", "batch", "footage"}
"""conftest fixtures that make or read video."""


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, anywhere in it (top level or inside a function)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def video_imports(path: Path) -> set[str]:
    return {m for m in imported_modules(path)
            if m.split(".")[0] in VIDEO or m in VIDEO_HELPERS or m == "conftest"}


def engine_modules() -> list[Path]:
    """The engine's test modules, and the support modules they import (by name, transitively)."""
    seen: dict[Path, None] = {}
    todo = sorted((TESTS / "pipeline").rglob("*.py"))
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = None
        for module in imported_modules(path):
            candidate = TESTS / (module.replace(".", "/") + ".py")
            if module.startswith("support.") and candidate.is_file():
                todo.append(candidate)
    return sorted(seen)


def test_no_engine_test_imports_the_video_library_or_its_helpers() -> None:
    offenders = {p.relative_to(TESTS).as_posix(): sorted(video_imports(p)) for p in engine_modules()}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) > 20  # the scan saw the engine's tests (and the helpers they use)


def test_no_engine_test_asks_for_a_video_fixture() -> None:
    asked: dict[str, list[str]] = {}
    for path in sorted((TESTS / "pipeline").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                names = {a.arg for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]}
                if names & VIDEO_FIXTURES:
                    asked.setdefault(path.name, []).append(node.name)
    assert asked == {}


def test_the_engine_and_its_command_import_with_the_video_library_and_pyav_blocked() -> None:
    # sys.modules[name] = None makes `import name` fail as if it were not installed. The command's parser
    # loads the `framepipe.commands` entry points, which the video library provides: without it, those
    # commands are left out with a warning and the engine's own (run, presets, cache) remain.
    code = ("import sys\n"
            "for name in ('av', 'stages'):\n"
            "    sys.modules[name] = None\n"
            "import pipeline, pipeline.cli, pipeline.run, pipeline.executors.local.scheduler\n"
            "import pipeline.cache, pipeline.dataplane, pipeline.executors, pipeline.observe, pipeline.runtime\n"
            "import pipeline.executors.inline, pipeline.tuning\n"
            "for package in (pipeline, pipeline.cache, pipeline.dataplane, pipeline.executors, pipeline.observe,\n"
            "                pipeline.runtime, pipeline.tuning):\n"
            "    [getattr(package, name) for name in package.__all__]  # each loads its module on first use\n"
            "parser = pipeline.cli.build_parser()\n"
            "commands = parser._subparsers._group_actions[0].choices\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('av', 'stages') and sys.modules[m]))\n"
            "print(sorted(c for c in ('run', 'presets', 'cache', 'samples', 'bench') if c in commands))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["[]", "['cache', 'presets', 'run']"]  # samples and bench left out
