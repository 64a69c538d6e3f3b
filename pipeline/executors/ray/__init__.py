"""The Ray executor: the same pipeline on a Ray cluster, frames through Ray's object store.

    driver (this process)                          Ray cluster (any node)
    ---------------------                          ----------------------
    the pipeline, pickled once (cloudpickle)
    per free file actor: run_file(task)  ───────►  FileActor (cpus_per_file CPUs; Ray restarts it when killed)
                                                     no map stages: FileRunner.run(file), the whole graph here
                                                     map stages: a FileSession that pauses for credits, and
    ray.wait on the files in flight  ◄──────────     each frame ray.put once -> map_batch tasks on any node,
    a file whose actor died is run again             batch_size frames each, the higher priority's first, at
    (``retries``), counted in FileResult.attempts    most max_in_flight frames per file (backpressure),
                                                     results taken oldest first, so frames stay in order
    each tick: progress() of each file   ◄ ─ ─ ─     answered on the actor's own progress thread

Frames cross as numpy arrays in ``ArrayRef`` s (the Ray executor's ``FrameRef``): pickled once into the object
store with the array out of band, read back on the same node as a read-only view of the store's shared memory,
with no copy. A fan-out (one frame for two map stages) shares that one object.

Ray is imported only when this package is, and this package only when the ``ray`` executor is asked for. The
parts: ``driver`` (``RayExecutor``, the run loop in this process), ``actor`` (what runs in Ray's workers: file
actors, map tasks, ``ArrayRef``), ``feeding`` (a file's map batches, their order, their niceness), ``progress``
(the files' live progress, asked of their actors), ``cluster`` (starting or joining Ray), ``tracing`` (what a
traced run sends back of its work, and its place on the driver's clock).
"""

from ...errors import MissingExtra

try:
    import ray  # noqa: F401  (each part imports it again; this is where its absence is told)
except ImportError as exc:  # the extra is not installed
    raise MissingExtra("the ray executor needs `pip install framepipe[ray]`") from exc

from .actor import ArrayRef
from .cluster import start_local_ray
from .driver import RayExecutor

__all__ = ["RayExecutor", "ArrayRef", "start_local_ray"]
