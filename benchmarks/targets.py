"""The issue's targets and their verdicts: each printed beside its figure, met or not."""
from __future__ import annotations

__all__ = ["TARGETS", "verdict", "evaluate_targets", "format_verdict"]

# key -> (description, comparison, threshold, unit)
TARGETS = {
    "int8_speedup_vs_torch": ("int8 TFLite >= 10x faster than torch eager fp32 per window (1 thread)",
                              ">=", 10.0, "x"),
    "streaming_rtf": ("streaming real-time factor >= 2000x on one core", ">=", 2000.0, "x"),
    "decision_latency_p99_ms": ("decision latency p99 <= 20 ms after the window completes", "<=", 20.0, "ms"),
    "runtime_import_s": ("runtime import <= 0.3 s", "<=", 0.3, "s"),
    "rss_peak_mb": ("peak RSS <= 80 MB", "<=", 80.0, "MB"),
}


def verdict(value, op: str, threshold: float):
    """True / False, or None when the value was not measured."""
    if value is None:
        return None
    if op == ">=":
        return float(value) >= threshold
    if op == "<=":
        return float(value) <= threshold
    raise ValueError(f"unknown comparison {op!r}")


def interval_verdict(interval, op: str, threshold: float) -> str | None:
    """Where a 95% interval lies against the target: "all of it meets", "straddles", "none of it meets"."""
    if not interval:
        return None
    ends = [verdict(x, op, threshold) for x in interval]
    return "all of it meets" if all(ends) else ("none of it meets" if not any(ends) else "straddles the target")


def evaluate_targets(values: dict, sources: dict | None = None, intervals: dict | None = None) -> list:
    """One dict per target: key, target text, value, unit, met (True/False/None: the *point*), source, and,
    where the figure has one, its 95% interval and where that interval lies against the target."""
    sources, intervals = sources or {}, intervals or {}
    out = []
    for key, (text, op, thr, unit) in TARGETS.items():
        v = values.get(key)
        row = {"key": key, "target": text, "op": op, "threshold": thr, "unit": unit,
               "value": v, "met": verdict(v, op, thr), "source": sources.get(key, "")}
        if intervals.get(key):
            row["interval"] = list(intervals[key])
            row["interval_verdict"] = interval_verdict(intervals[key], op, thr)
        out.append(row)
    return out


def format_verdict(row: dict) -> str:
    v = row["value"]
    if row["met"] is None:
        word = "NOT MEASURED"
        shown = "n/a"
    else:
        word = "MET" if row["met"] else "NOT MET"
        shown = f"{v:.4g} {row['unit']}"
    text = f"{word}: {shown} (target {row['op']} {row['threshold']:g} {row['unit']})"
    if row.get("interval"):  # the claim is about the point; say where its interval lies
        lo, hi = row["interval"]
        text += f"; point estimate; 95% CI {lo:.4g}-{hi:.4g} {row['unit']}: {row['interval_verdict']}"
    return text
