"""What ``selfmis quantize`` is asked to do: :class:`PipelineOptions` (``run_pipeline``'s one argument)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .distill import DistillConfig
from .student import StudentConfig

__all__ = ["PipelineOptions", "MAX_INT8_BYTES"]

#: The shipped int8 file must fit a smartwatch-class flash budget.
MAX_INT8_BYTES = 64 * 1024


@dataclass
class PipelineOptions:
    out: Path                                   # bundle directory (model.tflite + card.json)
    teacher: Path | None = None                 # SelfMIS checkpoint: a training run's folder or its model.pt
    standin: bool = False                       # train a stand-in teacher instead (never implicitly)
    work: Path = Path("artifacts/quantize")     # intermediates (ONNX, TFLite, logs)
    data: str | None = None                     # PTB-XL folder (default: the shared subset)
    results: Path | None = None                 # where to write the table (JSON + Markdown); None: <work>/results
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    n_calib: int = 400
    keep_ncw: bool = False                      # keep (1, 1, W) input instead of (1, W, 1)
    quant_type: str = "per-channel"
    n_boot: int = 1000
    seed: int = 0
    standin_epochs: int = 12
    progress: bool = True
    strict: bool = False                        # raise when the int8 PTQ budget is exceeded
    command: str = ""                           # how this run was started (recorded in the table)
    select_on_val: bool = True                  # keep the epoch with the best validation MI AUROC
    folds: object = None                        # windows.Folds override (default: the teacher's own split)
    micro_strict: bool = True                   # fail when TFLite Micro disagrees with LiteRT (else: record it)
    max_int8_bytes: int | None = MAX_INT8_BYTES  # the gateway budget; None: no limit (the student front)
    threads: int = 0                            # torch threads for distillation; 0: torch's default (all cores)
