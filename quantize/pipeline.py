"""The whole chain: teacher -> distilled student -> ONNX -> TFLite fp32/int8 -> checks -> bundle + table.

:func:`run_pipeline` is what ``selfmis quantize`` runs: the stages of :mod:`selfmis.quantize.stages`, one
after the other, each taking and returning data. Every stage checks its output (ONNX vs torch, fp32 TFLite
vs torch, int8 vs fp32 on the test fold) and raises with the numbers when a check fails; the int8 bundle
is written once, with ``selfmis.bundle.write_bundle``, and validated through the runtime's own
``TFLiteModel``.
"""
from __future__ import annotations

import time
from pathlib import Path

from selfmis.preprocess import PreprocessSpec
from selfmis.provenance import scrub_paths

from .options import MAX_INT8_BYTES, PipelineOptions
from .report import write_results
from .stages import (bundle_stage, calibrate_stage, convert_stage, data_stage, distil_stage,
                     export_stage, ready_teacher, report_of, say, teacher_stage, verify_stage)

__all__ = ["PipelineOptions", "run_pipeline", "MAX_INT8_BYTES"]


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
