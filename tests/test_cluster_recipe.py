"""The README's cluster recipe runs as printed: ``ray start`` a head and a second node (both on this machine),
then ``framepipe run s3://... -o s3://... --executor ray --address ...`` against a local S3 server; the outputs
are the local executor's and the report in the bucket names the node of each file.

What the test changes of the recipe, and nothing else: the head's address (this machine, a free port), the token
(the one the first command generated), the bucket (the test's), and which ``ray`` and ``framepipe`` run (this
environment's). ``HOME`` is a folder of the test's (the token is kept there) and ``RAY_TMPDIR`` another (the
daemons' sockets and logs), so that the test finds every process the recipe started and ends them all.
"""

from __future__ import annotations

import io
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")
pytestmark = [pytest.mark.ray, pytest.mark.slow]

from support.clips import frame_hashes  # noqa: E402
from support.object_store import MotoServer, free_port  # noqa: E402
from support.paths import REPO  # noqa: E402
from support.runs import output_files  # noqa: E402

from pipeline import run  # noqa: E402
from pipeline.runtime import lifecycle  # noqa: E402

RAY = Path(sys.executable).parent / "ray"
NAMES = ["landscape_audio.mp4", "portrait_rot90.mp4"]


def recipe() -> list[str]:
    """The commands of the README's cluster recipe (its ``sh`` block that starts a head), comments left out."""
    readme = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```sh\n(.*?)```", readme, re.S) if "ray start --head" in b)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]


class Recipe:
    """Runs the recipe's commands one by one with the test's substitutions; ``end`` stops what they started."""

    def __init__(self, bucket: str, home: Path) -> None:
        self.port = free_port()
        self.bucket = bucket
        self.home = home
        self.ray_tmp = tempfile.mkdtemp(prefix="fp-ray-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        self.token = ""
        with lifecycle.tagged():  # the daemons inherit the tag: they die with this process, even SIGKILLed
            self.env = {**os.environ, "HOME": str(home), "RAY_TMPDIR": self.ray_tmp,
                        "PYTHONPATH": os.pathsep.join(dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)))}

    def command(self, line: str) -> tuple[list[str], dict[str, str]]:
        """The line's argv and environment, substituted."""
        line = (line.replace("head:6379", f"127.0.0.1:{self.port}").replace("--port=6379", f"--port={self.port}")
                .replace("<token>", self.token).replace("s3://media/", f"s3://{self.bucket}/"))
        words = shlex.split(line)
        env = dict(self.env)
        while "=" in words[0]:  # NAME=value before the command
            name, _, value = words.pop(0).partition("=")
            env[name] = value
        program = {"ray": [str(RAY)], "framepipe": [sys.executable, "-m", "pipeline"]}[words[0]]
        return program + words[1:], env

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        argv, env = self.command(line)
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
        token = self.home / ".ray" / "auth_token"
        if not self.token and token.exists():
            self.token = token.read_text().strip()
        return done

    def processes(self) -> list[psutil.Process]:
        """What the recipe started: the daemons that name its folder or its head's port (``:PORT`` or ``=PORT``,
        no digit after), and everything under them."""
        found: set[psutil.Process] = set()
        for p in psutil.process_iter(["cmdline"]):
            argv = " ".join(p.info["cmdline"] or [])
            if p.pid != os.getpid() and (self.ray_tmp in argv or re.search(rf"[:=]{self.port}(?!\d)", argv)):
                found.add(p)
                try:
                    found.update(p.children(recursive=True))
                except psutil.Error:
                    pass
        return list(found)

    def end(self) -> None:
        ours = self.processes()
        for p in ours:
            try:
                p.kill()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(ours, timeout=30)  # waits on their exit, not on a clock
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        assert not alive, f"processes of the recipe left running: {[p.pid for p in alive]}"


@pytest.fixture
def recipe_run(s3: MotoServer, tmp_path: Path) -> Iterator[Recipe]:
    s3.client().create_bucket(Bucket="recipe")
    runner = Recipe("recipe", tmp_path / "home")
    (tmp_path / "home").mkdir()
    try:
        yield runner
    finally:
        runner.end()


def test_the_readme_cluster_recipe_runs_from_s3_to_s3_as_printed(recipe_run: Recipe, s3: MotoServer,
                                                                  clip_dir: Path, tmp_path: Path) -> None:
    *start, job = recipe()
    assert start[0] == "ray get-auth-token --generate" and any("ray start --head" in line for line in start)
    assert job.endswith("framepipe run s3://media/in -o s3://media/out --executor ray --address head:6379")
    s3.put_folder("recipe", "in", clip_dir, NAMES)
    for line in start:
        done = recipe_run.run(line)
        assert done.returncode == 0, (line, done.stderr[-2000:])
    assert recipe_run.token, "the recipe generated no token"

    done = recipe_run.run(job)
    assert done.returncode == 0, done.stderr[-3000:]

    rows = pq.read_table(io.BytesIO(s3.get("recipe", "out/report.parquet"))).to_pylist()
    assert sorted(r["relpath"] for r in rows) == sorted(NAMES) and {r["status"] for r in rows} == {"ok"}
    assert all(re.fullmatch(r".+/[0-9a-f]{8}", r["node"]) for r in rows), [r["node"] for r in rows]  # Ray nodes
    out = tmp_path / "out"
    for key in s3.keys("recipe", "out/"):
        (out / key.removeprefix("out/")).parent.mkdir(parents=True, exist_ok=True)
        (out / key.removeprefix("out/")).write_bytes(s3.get("recipe", key))
    picked = tmp_path / "in"
    picked.mkdir()
    for name in NAMES:
        (picked / name).symlink_to(clip_dir / name)
    from stages import presets
    run(presets.default(), picked, tmp_path / "reference", workers=2, cache=False)
    mine, theirs = output_files(out), output_files(tmp_path / "reference")
    assert set(mine) == set(theirs)
    for rel, path in mine.items():  # pictures byte for byte, proxies picture for picture
        if rel.endswith(".mp4"):
            assert frame_hashes(path) == frame_hashes(theirs[rel]), rel
        else:
            assert path.read_bytes() == theirs[rel].read_bytes(), rel
