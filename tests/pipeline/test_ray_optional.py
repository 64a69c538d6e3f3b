"""Ray is optional: nothing imports it until the ray executor is asked for, and without it that is one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from support.arrays import write_frames, write_pipeline_file

from pipeline.errors import UnsupportedRunOption
from pipeline.executors import get_executor


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_the_engine_the_video_library_and_the_command_do_not_import_ray() -> None:
    proc = _python("import sys, pipeline, pipeline.cli, pipeline.run, stages, stages.presets\n"
                   "[getattr(package, name) for package in (pipeline, stages) for name in package.__all__]\n"
                   "pipeline.cli.build_parser()\n"
                   "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_without_ray_the_ray_executor_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    inputs = write_frames(tmp_path / "in" / "c0.npy", 4).parent
    pipeline_file = write_pipeline_file(tmp_path / "arrays.py")
    # sys.modules["ray"] = None makes `import ray` fail as if it were not installed.
    proc = _python("import sys; sys.modules['ray'] = None\n"
                   "from pipeline.cli import main\n"
                   f"sys.exit(main(['run', {str(inputs)!r}, '-P', {str(pipeline_file)!r}, "
                   f"'-o', {str(tmp_path / 'out')!r}, '--executor', 'ray']))")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == \
        "framepipe: the ray executor needs `pip install framepipe[ray]`"


def test_ray_options_are_refused_by_the_other_executors() -> None:
    with pytest.raises(UnsupportedRunOption, match="address"):
        get_executor("local", address="ray://head:10001")
