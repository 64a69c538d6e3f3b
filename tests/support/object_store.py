"""A local S3 server for the storage tests: moto's, run as a separate process on a free loopback port.

``python -m moto.server`` serves in the process it starts (werkzeug without its reloader: no child process),
so killing that process kills the server. Readiness is the port accepting a connection and the server
answering a request, waited on with a deadline, never a fixed sleep. Its state lives in its memory: a server
started again (``restart``, on the same port) is empty, and the test puts back what it needs.

``auth=True`` starts it with moto's IAM checks on from the first request (``INITIAL_NO_AUTH_ACTION_COUNT=0``):
any key it was not given is refused, which is how the tests see a store deny access.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"
_START_S = 60.0  # the most a server may take to answer (an import of moto on a loaded 2-core machine)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class MotoServer:
    """One moto server process on ``port``; ``env`` is what a client of it needs in its environment."""

    def __init__(self, port: int | None = None, *, auth: bool = False, log: Path | None = None) -> None:
        self.port = port or free_port()
        self.auth = auth
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION,
                "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": self.endpoint}

    def start(self) -> MotoServer:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        if self.auth:
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - closed by the child's exit
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + _START_S
        while not _connectable(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited ({self.proc.returncode}) before it listened on {self.port}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not listen on {self.port} within {_START_S:.0f} s")
            time.sleep(0.05)  # (polling the port: the server says nothing else when it is ready)
        return self

    def stop(self) -> None:
        """Kill the server process and wait for it (its port is free again)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def restart(self) -> MotoServer:
        """A fresh, empty server on the same port."""
        self.stop()
        return self.start()

    def client(self) -> Any:
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def put_folder(self, bucket: str, prefix: str, folder: Path, names: Iterable[str] | None = None) -> list[str]:
        """Create ``bucket`` (if need be) and upload ``folder``'s files (or those ``names``) under ``prefix``;
        returns the keys."""
        s3 = self.client()
        if bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
            s3.create_bucket(Bucket=bucket)
        keys = []
        chosen = sorted(names) if names is not None else sorted(
            p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        for rel in chosen:
            key = f"{prefix.rstrip('/')}/{rel}" if prefix else rel
            s3.upload_file(str(folder / rel), bucket, key)
            keys.append(key)
        return keys

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))
