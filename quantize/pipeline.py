"""The whole chain: teacher -> distilled student -> ONNX -> TFLite fp32/int8 -> checks -> bundle + table.

:func:`run_pipeline` is what ``selfmis quantize`` runs: the stages of :mod:`selfmis.quantize.stages`, one
after the other, each taking and returning data. Every stage checks its output (ONNX vs torch, fp32 TFLite
vs torch, int8 vs fp32 on the test fold) and raises with the numbers when a check fails; the int8 bundle
is written once, with ``selfmis.bundle.write_bundle``, and validated through the runtime's own
``TFLiteModel``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from selfmis.preprocess import PreprocessSpec
from selfmis.provenance import scrub_paths

from .distill import DistillConfig
from .report import write_results
from .stages import (MAX_INT8_BYTES, bundle_stage, calibrate_stage, convert_stage, data_stage, distil_stage,
                     export_stage, ready_teacher, report_of, say, teacher_stage, verify_stage)
from .student import StudentConfig

__all__ = ["PipelineOptions", "run_pipeline", "MAX_INT8_BYTES"]

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


def run_pipeline(opts: PipelineOptions) -> dict:
    """Run every stage; returns the report that is also written as JSON + Markdown to ``opts.results``
    (default ``<work>/results``). Raises ``TeacherError`` or ``ValidationError`` naming what failed."""
    import torch

    t0 = time.time()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    work, out = Path(opts.work), Path(opts.out)
    work.mkdir(parents=True, exist_ok=True)
    spec = PreprocessSpec()

    teacher = teacher_stage(opts, work)
    data = data_stage(teacher.folds, opts)
    teacher = ready_teacher(teacher, data, opts)
    student = distil_stage(teacher, data, opts, work)
    exported = export_stage(student, data, work, spec)
    converted = convert_stage(exported, student, data, opts, work, spec)
    verified = verify_stage(teacher, student, exported, converted, data, opts, spec)
    calibration = calibrate_stage(verified, data, opts)
    shipped = bundle_stage(out, teacher, student, converted, verified, calibration, data, opts, spec)

    report = report_of(opts, teacher, student, converted, verified, shipped, time.time() - t0)
    j, m = write_results(scrub_paths(report), opts.results or work / "results")
    say(f"table: {m} and {j}")
    return report
