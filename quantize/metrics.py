"""Comparisons between two versions of one model (fp32 vs int8, teacher vs student).

Per-task scoring (AUROC with bootstrap CIs, thresholds) is
``selfmis.train.evaluate``'s job and is used as is; what is here is only what
the evaluator does not do: decision agreement and logit differences.
"""
from __future__ import annotations

import numpy as np

from selfmis.edge_runtime.interpreter import sigmoid  # one definition, on the edge side

__all__ = ["sigmoid", "logit", "decision_agreement", "logit_differences"]


def logit(p):
    p = np.clip(np.asarray(p, np.float64), 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def decision_agreement(scores_a, scores_b, thresholds: dict, tasks) -> dict:
    """Per task, the fraction of records where both score sets fall on the same side of the threshold.

    ``thresholds`` are logits (the evaluator's convention); tasks without one are skipped.
    """
    out = {}
    for j, t in enumerate(tasks):
        if thresholds.get(t) is None:
            continue
        th = thresholds[t]
        out[t] = float(np.mean((scores_a[:, j] >= th) == (scores_b[:, j] >= th)))
    return out


def logit_differences(a, b) -> dict:
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return {"max_abs": float(d.max()), "mean_abs": float(d.mean())}
