"""Connecting to Ray: a local instance started for this process (``start_local_ray``), or a cluster, joined
quietly from an empty folder of our own so that nothing in the caller's folder shadows a module in the workers.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from typing import Any

import ray

from ...runtime import lifecycle

__all__ = ["start_local_ray", "init_ray"]


def start_local_ray(num_cpus: int | None = None) -> str:
    """Start a Ray instance on this machine for this process (no dashboard), its workers importing what we import;
    returns the empty folder its processes work in (see ``init_ray``).

    Ray's worker processes inherit the environment its daemons are started with: ``PYTHONPATH`` is set to this
    process's ``sys.path`` while they start (a runtime_env would need Ray's agent, which ``ray[default]`` brings).
    """
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    try:
        with lifecycle.tagged():  # its processes end with this one, even killed (lifecycle's watchdog)
            return init_ray(address="local", num_cpus=num_cpus, include_dashboard=False)
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def init_ray(**options: Any) -> str:
    """``ray.init`` quietly, from an empty folder of our own, keeping this process's SIGTERM handler (Ray replaces
    it with its own); returns that folder.

    Ray puts the driver's current folder first on every worker's import path, and a local Ray's processes work
    in it: run from a folder of downloaded footage, a ``numpy.py`` there would run in every worker. So the driver
    stands in a fresh private folder while it connects (task paths are absolute, so nothing else depends on it).
    """
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    here = os.getcwd()
    neutral = tempfile.mkdtemp(prefix="framepipe-ray-")
    atexit.register(shutil.rmtree, neutral, True)  # after Ray's own exit hook, registered later, has run
    os.chdir(neutral)
    try:
        ray.init(log_to_driver=False, logging_level=logging.WARNING, **options)
    finally:
        os.chdir(here)
        if main and sigterm is not None:
            signal.signal(signal.SIGTERM, sigterm)
    return neutral
