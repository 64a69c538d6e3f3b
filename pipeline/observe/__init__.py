"""Observation: what a run tells about itself while it runs and after.

Per-stage statistics and the bottleneck (``metrics``), moment-by-moment
figures (``snapshots``), the Chrome trace (``trace``) and its chart
(``chart``), the Prometheus endpoint (``prometheus``), the live display
(``progress``, fed by ``board``), logging (``logs``) and the per-file report
(``report``). ``chart`` and ``prometheus`` load Pillow and ``http.server``;
import them only where needed. This package's top imports nothing of the
runtime, so the runtime's pools can use ``metrics`` (``percentile``).
"""

from .metrics import Bottleneck, StageStats, find_bottleneck, percentile, text_table
from .progress import ConsoleProgress, SilentProgress
from .trace import RunTrace, Span

__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "Bottleneck", "ConsoleProgress", "find_bottleneck", "percentile", "RunTrace",
    "SilentProgress", "Span", "StageStats", "text_table",
]
