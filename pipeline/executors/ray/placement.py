"""Where file actors go: over the nodes in proportion to their CPUs, when their CPUs do not place them.

An actor that holds CPUs (a pipeline without map stages or parts) is placed by them: one per CPU the cluster
has. One that holds none (its map tasks or its file's parts need the CPUs, and it waits for them) fits on any
node, and Ray puts such actors where it likes, often all on one node: on a two-node test cluster, two actors
shared one node in 2 tries of 3, even with Ray's best-effort ``SPREAD``. Each file still decodes and encodes in
its actor, so every file then shares that node's cores while the others idle. So the driver names a node for
each such actor, the one with the fewest actors per CPU, as a *soft* ``NodeAffinitySchedulingStrategy``: where
that node is gone (or was never there), Ray places the actor elsewhere, and restarts it elsewhere when it dies.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

__all__ = ["NodeSpread"]


class NodeSpread:
    """Names a node for each new actor: the live node with CPUs that has the fewest actors per CPU so far."""

    def __init__(self) -> None:
        self.assigned: Counter[str] = Counter()

    def options(self, count: int) -> list[dict[str, Any]]:
        """Ray ``options`` for ``count`` new actors, each with its node (none where the cluster lists no node
        with a CPU: Ray places it)."""
        cpus = {n["NodeID"]: float(n["Resources"].get("CPU", 0)) for n in ray.nodes()
                if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1}
        chosen: list[dict[str, Any]] = []
        for _ in range(count):
            if not cpus:
                chosen.append({})
                continue
            node = min(cpus, key=lambda n: ((self.assigned[n] + 1) / cpus[n], n))
            self.assigned[node] += 1
            chosen.append({"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=True)})
        return chosen
