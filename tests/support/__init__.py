"""Helpers the test modules share: inputs they make, stages they run, commands they start.

Worker processes (loky, forkserver, spawn, Ray) unpickle the stages and task functions defined here by
reference (``support.<module>.<name>``): ``tests/`` is on their import path because it is on the suite's
(``pythonpath`` in pyproject.toml), which loky and multiprocessing hand to the workers they start and the
Ray executor passes to its daemons as ``PYTHONPATH``.

Modules by what they hold:

- ``text``, ``arrays``: engine-only stages and inputs (text files, numpy frames); what ``tests/pipeline`` uses.
- ``runtime_tasks``, ``ray_stages``: task functions and stages the executors' tests send to workers.
- ``runs``, ``cli``: reading a run's results and outputs; starting the ``framepipe`` command.
- ``clips``, ``video``, ``stream_clips``, ``interlaced_clips``, ``hdr_clips``, ``gop_clips``, ``decode_tasks``:
  the video library's (they import ``stages`` and PyAV; ``tests/pipeline`` never imports them).
"""
