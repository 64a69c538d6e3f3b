"""Observation: what a run tells about itself while it runs and after.

Per-stage statistics and the bottleneck (``metrics``), moment-by-moment
figures (``snapshots``), the Chrome trace (``trace``) and its chart
(``chart``), Prometheus metrics (``prometheus``, ``pushgateway``), the live
display (``progress`` over ``tally``, fed by ``board``), logging (``logs``)
and the per-file report (``report``). ``chart`` loads matplotlib,
``prometheus`` prometheus_client, and ``progress`` rich once it draws;
import them only where needed. This package's top imports nothing (each name
loads its module when first used), so the runtime's pools can use ``metrics``
(``percentile``).
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .metrics import Bottleneck, StageStats, find_bottleneck, percentile, text_table
    from .progress import ConsoleProgress, SilentProgress
    from .report import card_field
    from .trace import RunTrace, Span
else:  # a module of this package loads alone (``results`` needs ``metrics``, and ``progress`` needs ``results``)
    from .._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        ".metrics": ("Bottleneck", "StageStats", "find_bottleneck", "percentile", "text_table"),
        ".progress": ("ConsoleProgress", "SilentProgress"),
        ".report": ("card_field",),
        ".trace": ("RunTrace", "Span"),
    })
    del lazy_exports

__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "Bottleneck", "card_field", "ConsoleProgress", "find_bottleneck", "percentile", "RunTrace",
    "SilentProgress", "Span", "StageStats", "text_table",
]
