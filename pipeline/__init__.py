"""framepipe's engine: pipelines of stages over folders of files, on process pools.

The engine knows nothing of video; the ``stages`` package builds the video
library on this public API.
"""

from .errors import (
    CorruptMedia,
    FramepipeError,
    InputError,
    OutputError,
    PipelineDefinitionError,
    PresetNotFound,
    StageError,
    UnreadableFile,
    UnsupportedMedia,
    WorkerCrashed,
)
from .graph import Pipeline
from .items import AUDIO, FILE, FRAME, FileItem, fingerprint
from .metrics import StageStats
from .outputs import PartialOutput, atomic_output, safe_join, write_atomic
from .presets import build_preset, load_preset
from .results import FileResult, RunResult
from .run import run
from .sources import find_files
from .stage import FileRun, Stage, StageContext, stage

__all__ = [
    "AUDIO", "FILE", "FRAME",
    "CorruptMedia", "FileItem", "FileResult", "FileRun", "FramepipeError", "InputError", "OutputError",
    "PartialOutput", "Pipeline", "PipelineDefinitionError", "PresetNotFound", "RunResult", "Stage", "StageContext",
    "StageError", "StageStats", "UnreadableFile", "UnsupportedMedia", "WorkerCrashed",
    "atomic_output", "build_preset", "find_files", "fingerprint", "load_preset", "run", "safe_join",
    "stage", "write_atomic",
]
