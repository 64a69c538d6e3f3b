"""framepipe's engine: pipelines of stages over folders of files, on process pools.

The engine knows nothing of video; the ``stages`` package builds the video
library on this public API.
"""

from .buffers import BufferPool, FrameRef, SlotLease
from .coordinator import RuntimeCoordinator
from .errors import (
    BufferPoolExhausted,
    CorruptMedia,
    DiskFull,
    EmptyStream,
    FileTimeout,
    FramepipeError,
    InputError,
    InvalidOption,
    OutputError,
    OutputFolderInUse,
    OutputIsLink,
    OutputNotWritable,
    PipelineDefinitionError,
    PoolFull,
    PoolUnavailable,
    PresetNotFound,
    ResourceExhausted,
    StageError,
    StaleFrameRef,
    TaskTimeout,
    TruncatedMedia,
    UndecodableStream,
    UnreadableFile,
    UnsupportedMedia,
    WorkerCrashed,
)
from .frame_pools import BufferConfig, VideoBufferPool
from .graph import Pipeline
from .items import AUDIO, FILE, FRAME, FileItem, SharedItem, fingerprint
from .metrics import StageStats
from .outputs import PartialOutput, atomic_output, safe_join, write_atomic
from .performance import PerformanceConfig
from .presets import build_preset, load_preset
from .results import FileResult, RunResult
from .run import run
from .runtime import CoreBudget, Priority, TaskPoolConfig, WorkerPool
from .sources import FileSelection, find_files, read_file_list
from .stage import FileRun, Stage, StageContext, stage

__all__ = [
    "AUDIO", "FILE", "FRAME",
    "BufferConfig", "BufferPool", "CoreBudget", "FrameRef", "Priority", "RuntimeCoordinator", "SlotLease",
    "TaskPoolConfig", "VideoBufferPool", "WorkerPool",
    "BufferPoolExhausted", "PoolFull", "StaleFrameRef", "TaskTimeout",
    "CorruptMedia", "EmptyStream", "TruncatedMedia", "UndecodableStream",
    "FileItem", "FileResult", "FileRun", "SharedItem", "FramepipeError", "InputError", "OutputError",
    "DiskFull", "FileTimeout", "InvalidOption", "OutputFolderInUse", "OutputIsLink", "OutputNotWritable",
    "PoolUnavailable", "ResourceExhausted",
    "PartialOutput", "PerformanceConfig", "Pipeline", "PipelineDefinitionError", "PresetNotFound", "RunResult",
    "Stage", "StageContext",
    "StageError", "StageStats", "UnreadableFile", "UnsupportedMedia", "WorkerCrashed",
    "FileSelection", "atomic_output", "build_preset", "find_files", "read_file_list", "fingerprint", "load_preset",
    "run", "safe_join",
    "stage", "write_atomic",
]
