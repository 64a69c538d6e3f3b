"""framepipe's engine: pipelines of stages over folders of files, on process pools.

The engine knows nothing of video; the ``stages`` package builds the video
library on this public API.
"""

from .dataplane.buffers import BufferPool, FrameRef, SlotLease
from .dataplane.frame_pools import BufferConfig, VideoBufferPool
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
from .graph import Pipeline
from .items import AUDIO, FILE, FRAME, FileItem, SharedItem, fingerprint
from .observe.metrics import StageStats
from .outputs import PartialOutput, atomic_output, safe_join, write_atomic
from .presets import build_preset, load_preset
from .results import FileResult, RunResult
from .run import run
from .runtime.pool import CoreBudget, Priority, TaskPoolConfig, WorkerPool
from .sources import FileSelection, find_files, read_file_list
from .stage import FileRun, Stage, StageContext, stage
from .tuning.coordinator import RuntimeCoordinator
from .tuning.performance import PerformanceConfig

__all__ = [  # sorted; tests/test_public_api.py keeps it so
    "atomic_output", "AUDIO", "BufferConfig", "BufferPool", "BufferPoolExhausted", "build_preset", "CoreBudget",
    "CorruptMedia", "DiskFull", "EmptyStream", "FILE", "FileItem", "FileResult", "FileRun", "FileSelection",
    "FileTimeout", "find_files", "fingerprint", "FRAME", "FramepipeError", "FrameRef", "InputError", "InvalidOption",
    "load_preset", "OutputError", "OutputFolderInUse", "OutputIsLink", "OutputNotWritable", "PartialOutput",
    "PerformanceConfig", "Pipeline", "PipelineDefinitionError", "PoolFull", "PoolUnavailable", "PresetNotFound",
    "Priority", "read_file_list", "ResourceExhausted", "run", "RunResult", "RuntimeCoordinator", "safe_join",
    "SharedItem", "SlotLease", "Stage", "stage", "StageContext", "StageError", "StageStats", "StaleFrameRef",
    "TaskPoolConfig", "TaskTimeout", "TruncatedMedia", "UndecodableStream", "UnreadableFile", "UnsupportedMedia",
    "VideoBufferPool", "WorkerCrashed", "WorkerPool", "write_atomic",
]
