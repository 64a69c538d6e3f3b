"""framepipe's engine: pipelines of stages over folders of files, on process pools.

The engine knows nothing of video; the ``stages`` package builds the video
library on this public API. Here is what a pipeline author needs; the layers
below have their own documented subpackages: ``pipeline.dataplane`` (frames in
shared memory), ``pipeline.runtime`` (worker pools), ``pipeline.tuning``,
``pipeline.observe``, ``pipeline.cache``, ``pipeline.executors``, and every
error in ``pipeline.errors``.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what type checkers and editors see; at run time each name's module loads on first use
    from .errors import FramepipeError, InputError, InvalidOption, OutputError, PipelineDefinitionError, StageError
    from .graph import Pipeline
    from .items import AUDIO, FILE, FRAME, FileItem, SharedItem, fingerprint
    from .outputs import PartialOutput, atomic_output, safe_join, write_atomic
    from .presets import build_preset, load_preset
    from .results import FileResult, RunResult
    from .run import run
    from .sources import FileSelection, find_files, read_file_list
    from .stage import FilePart, FileRun, Piece, Stage, StageContext, stage
    from .tuning.performance import PerformanceConfig
else:  # `import pipeline` (and `framepipe --version`) loads none of numpy, pyarrow or loky
    from ._lazy import lazy_exports

    __getattr__, __dir__ = lazy_exports(__name__, {
        ".errors": ("FramepipeError", "InputError", "InvalidOption", "OutputError", "PipelineDefinitionError",
                    "StageError"),
        ".graph": ("Pipeline",),
        ".items": ("AUDIO", "FILE", "FRAME", "FileItem", "SharedItem", "fingerprint"),
        ".outputs": ("PartialOutput", "atomic_output", "safe_join", "write_atomic"),
        ".presets": ("build_preset", "load_preset"),
        ".results": ("FileResult", "RunResult"),
        ".run": ("run",),
        ".sources": ("FileSelection", "find_files", "read_file_list"),
        ".stage": ("FilePart", "FileRun", "Piece", "Stage", "StageContext", "stage"),
        ".tuning.performance": ("PerformanceConfig",),
    })
    del lazy_exports

__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "atomic_output", "AUDIO", "build_preset", "FILE", "FileItem", "FilePart", "FileResult", "FileRun",
    "FileSelection", "find_files", "fingerprint", "FRAME", "FramepipeError", "InputError", "InvalidOption",
    "load_preset", "OutputError", "PartialOutput", "PerformanceConfig", "Piece", "Pipeline",
    "PipelineDefinitionError", "read_file_list", "run", "RunResult", "safe_join", "SharedItem", "Stage", "stage",
    "StageContext", "StageError", "write_atomic",
]
