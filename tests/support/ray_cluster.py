"""A Ray cluster of several nodes on this machine (Ray's own test cluster, ``ray.cluster_utils.Cluster``): a head
and worker nodes, each its own raylet with its own CPUs and object store, that a test can remove and add while a
batch runs.

Its processes are started as a local Ray's are (``start_local_ray``): tagged for the watchdog, so that they die
with the test process even when it is SIGKILLed, and with this process's ``sys.path`` as ``PYTHONPATH``, so that
Ray's workers import the code under test and ``support`` modules (tests/ is on the suite's path).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import ray
from ray.cluster_utils import Cluster

from pipeline.executors.ray.cluster import init_ray
from pipeline.runtime import lifecycle

__all__ = ["LocalCluster", "ray_processes"]


@contextmanager
def _daemon_environment() -> Iterator[None]:
    """What Ray's daemons started now inherit: this run's tag (the watchdog's) and this process's import path."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in sys.path if p and os.path.isdir(p)))
    try:
        with lifecycle.tagged():
            yield
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


# How soon the head takes a node whose raylet died for dead: a check every second, dead after 3 missed, each
# given 3 s to answer (a loaded 2-core machine must not lose a live node). Ray's defaults, every 3 s and 5
# missed, keep a lost node "alive" for 15 s or more, and each test after one that removed a node waited so.
_HEALTH_CHECKS = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 1000,
                  "health_check_timeout_ms": 3000, "health_check_failure_threshold": 3}


class LocalCluster:
    """A head node and ``workers`` worker nodes of ``cpus`` CPUs each, this process connected to the head as the
    driver (``ray.init``, as ``init_ray`` does it). ``shutdown`` ends every node and disconnects."""

    def __init__(self, workers: int = 2, cpus: int = 1) -> None:
        self.cpus = cpus
        with _daemon_environment():
            self.cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": cpus, "include_dashboard": False, "_system_config": _HEALTH_CHECKS})
        try:
            for _ in range(workers):
                self.add_node()
            self.workdir = init_ray(address=self.address)
        except BaseException:
            self.cluster.shutdown()
            raise

    @property
    def address(self) -> str:
        """The head's GCS address (``host:port``): what ``--address`` and ``ray.init(address=...)`` take."""
        return str(self.cluster.address)

    @property
    def head(self) -> Any:
        return self.cluster.head_node

    @property
    def workers(self) -> list[Any]:
        """The worker nodes, in the order they were added."""
        return sorted(self.cluster.worker_nodes, key=lambda n: self._order[n.node_id])

    _order: dict[str, int] = {}

    def add_node(self) -> Any:
        """A new worker node of ``cpus`` CPUs, returned once it has joined (registered with the head)."""
        with _daemon_environment():
            node = self.cluster.add_node(num_cpus=self.cpus, wait=True)
        self._order[node.node_id] = len(self._order)
        return node

    def remove_node(self, node: Any) -> None:
        """Kill a worker node's processes at once (no graceful drain: a lost machine), returned once they are dead."""
        self.cluster.remove_node(node, allow_graceful=False)

    def reshape(self, workers: int) -> None:
        """Add or remove worker nodes until there are ``workers`` (for the next test, after one changed them)."""
        while len(self.cluster.worker_nodes) < workers:
            self.add_node()
        for node in self.workers[workers:]:
            self.remove_node(node)
        self.cluster.wait_for_nodes()  # the head has seen each node go or come before the next test counts CPUs

    def shutdown(self) -> None:
        """Disconnect and end every node (waiting for their processes to exit)."""
        try:
            ray.shutdown()
        finally:
            self.cluster.shutdown()


def short_id(node: Any) -> str:
    """A node's id as ``FileResult.node`` and the trace's tracks name it: its first 8 hex digits."""
    return str(node.node_id)[:8]


def ray_processes() -> list[psutil.Process]:
    """This process's descendants that are Ray's daemons or workers (not a loky worker of another test)."""
    return [p for p in psutil.Process().children(recursive=True) if _is_ray(p)]


def _is_ray(process: psutil.Process) -> bool:
    try:
        argv = process.cmdline()[:3]
    except psutil.Error:
        return False
    home = os.path.dirname(ray.__file__)
    return bool(argv) and (argv[0].startswith("ray::") or any(a.startswith(home) for a in argv))
