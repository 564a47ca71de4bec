"""Pure statistics helpers: percentiles and latency summaries (no timing here)."""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

__all__ = ["percentile", "summarize", "ratio"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100), ``numpy.percentile``'s default linear interpolation.

    Raises ``ValueError`` on an empty input or q outside [0, 100] (numpy would return NaN or raise
    an IndexError-like message naming neither).
    """
    xs = np.asarray([float(v) for v in values], np.float64)
    if not xs.size:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"q must be in [0, 100], got {q}")
    return float(np.percentile(xs, q))


def summarize(values: Iterable[float], scale: float = 1.0) -> dict:
    """n, mean, std, min, p50, p90, p99, max of ``values`` multiplied by ``scale``.

    ``scale`` converts units (e.g. 1e3 for seconds -> milliseconds).
    """
    xs = [float(v) * scale for v in values]
    if not xs:
        return {"n": 0}
    n = len(xs)
    mean = sum(xs) / n
    var = sum((x - mean) ** 2 for x in xs) / (n - 1) if n > 1 else 0.0
    return {
        "n": n,
        "mean": mean,
        "std": math.sqrt(var),
        "min": min(xs),
        "p50": percentile(xs, 50),
        "p90": percentile(xs, 90),
        "p99": percentile(xs, 99),
        "max": max(xs),
    }


def ratio(num, den):
    """num / den, or None when either is missing or den is not positive."""
    if num is None or den is None:
        return None
    try:
        num, den = float(num), float(den)
    except (TypeError, ValueError):
        return None
    if not den > 0 or math.isnan(num):
        return None
    return num / den
