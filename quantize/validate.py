"""Automatic checks of each conversion step; failures raise :class:`ValidationError` with the numbers.

* fp32 TFLite vs torch: max |logit difference| on real windows <= ``FP32_TOL``.
* int8 TFLite vs fp32 TFLite: per-task AUROC difference and decision agreement on
  the test fold (reported; :func:`check_int8` raises above a tolerance if asked).
"""
from __future__ import annotations

import numpy as np

from .export_onnx import ExportError
from .metrics import decision_agreement, logit_differences

__all__ = ["FP32_TOL", "INT8_MI_AUROC_TOL", "ValidationError", "check_fp32_parity", "compare_int8"]

FP32_TOL = 1e-4
#: PTQ budget of the issue: int8 may lose at most this much MI AUROC before QAT is called for.
INT8_MI_AUROC_TOL = 0.005


class ValidationError(ExportError):
    """A converted model that does not behave like its source."""


def check_fp32_parity(torch_logits: np.ndarray, tflite_logits: np.ndarray, tol: float = FP32_TOL,
                      what: str = "fp32 TFLite") -> float:
    diff = float(np.abs(np.asarray(torch_logits, np.float64) - np.asarray(tflite_logits, np.float64)).max())
    if not diff <= tol:
        raise ValidationError(f"{what} differs from torch by max |dlogit| = {diff:.3g} > {tol:g} "
                              f"on {len(torch_logits)} real windows: the conversion is broken")
    return diff


def compare_int8(res_fp32: dict, res_int8: dict, s_fp32: np.ndarray, s_int8: np.ndarray, thresholds: dict,
                 tasks) -> dict:
    """Per-task AUROC difference (int8 - fp32) and decision agreement at the card's thresholds."""
    agree = decision_agreement(s_fp32, s_int8, thresholds, tasks)
    out = {"per_task": {}, "record_logits": logit_differences(s_fp32, s_int8)}
    for t in tasks:
        a, b = res_fp32.get(t, {}), res_int8.get(t, {})
        d = (b["auroc"] - a["auroc"]) if "auroc" in a and "auroc" in b else None
        out["per_task"][t] = {"auroc_fp32": a.get("auroc"), "auroc_int8": b.get("auroc"),
                              "auroc_diff": d, "decision_agreement": agree.get(t)}
    mi = out["per_task"].get("MI", {})
    out["mi_auroc_loss"] = None if mi.get("auroc_diff") is None else -mi["auroc_diff"]
    out["within_ptq_budget"] = out["mi_auroc_loss"] is not None and out["mi_auroc_loss"] <= INT8_MI_AUROC_TOL
    return out
