"""Compare two :mod:`~selfmis.benchmarks.pi_probe` dumps (x86 vs an arm64 image) event by event.

Pure functions (no tree, no interpreter), unit-tested in ``tests/test_target_pi.py``.

What must be *equal* for a record: every event of ``edge-run --replay`` after the
volatile fields are dropped (``latency_ms``, ``wall_s``, ``cpu_s``, ... measure the
machine, not the decision) and the probabilities are set aside: beats (t, rr, hr),
quality and link events, decisions (t, labels, state, n_beats, operating point) and
the alarm states. The probabilities and the raw int8 outputs are *measured*: the
largest int8 difference in LSB, the share of output values that differ, and the
largest calibrated-probability difference.
"""
from __future__ import annotations

import json
from collections import Counter

__all__ = ["VOLATILE", "load_dump", "normalise", "compare_rows", "compare_dumps", "lsb_summary"]

# fields that measure the machine or the run, not what was decided
VOLATILE = frozenset({"latency_ms", "wall_s", "cpu_s", "realtime_factor", "startup_s", "path"})
PROBABILITY_KEYS = ("p", "probabilities")


def load_dump(lines) -> dict:
    """JSON Lines of a probe (an iterable of lines, or a path) -> ``{platform, rows, end}``;
    ``rows`` maps ``(bundle, record name)`` to the record line."""
    if isinstance(lines, (str, bytes)) or hasattr(lines, "__fspath__"):
        with open(lines) as fh:
            lines = fh.read().splitlines()
    dump = {"platform": None, "rows": {}, "end": None}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"probe dump line {n}: not JSON ({exc})") from None
        kind = obj.get("type")
        if kind == "platform":
            dump["platform"] = obj
        elif kind == "record":
            dump["rows"][(obj["bundle"], record_name(obj["record"]))] = obj
        elif kind == "end":
            dump["end"] = obj
    return dump


def record_name(path: str) -> str:
    """``.../records500/00000/00001_hr`` -> ``records500/00000/00001_hr`` (machine paths differ)."""
    parts = str(path).replace("\\", "/").rstrip("/").split("/")
    return "/".join(parts[-3:])


def normalise(event: dict) -> tuple:
    """(the event without volatile fields and probabilities, {label: p} or {})."""
    probs = {}
    out = {}
    for k, v in event.items():
        if k in VOLATILE:
            continue
        if k in PROBABILITY_KEYS and isinstance(v, dict):
            probs = v
            continue
        if isinstance(v, dict):
            v, inner = normalise(v)
            probs = probs or inner
        out[k] = v
    return out, probs


def lsb_summary(a_rows, b_rows) -> dict:
    """Raw int8 outputs of the same invokes on two machines -> LSB statistics."""
    if len(a_rows) != len(b_rows):
        return {"comparable": False, "invokes": [len(a_rows), len(b_rows)]}
    hist = Counter()
    differing_invokes = 0
    for x, y in zip(a_rows, b_rows):
        if len(x) != len(y):
            return {"comparable": False, "invokes": [len(a_rows), len(b_rows)]}
        d = [abs(int(u) - int(v)) for u, v in zip(x, y)]
        hist.update(d)
        differing_invokes += any(d)
    values = sum(hist.values())
    return {"comparable": True, "invokes": len(a_rows), "values": values,
            "max_lsb": max(hist) if hist else 0,
            "values_differing": values - hist.get(0, 0),
            "invokes_differing": differing_invokes,
            "histogram": {str(k): hist[k] for k in sorted(hist)}}


def compare_rows(a: dict, b: dict) -> dict:
    """One record, one bundle, on two machines."""
    ev_a, ev_b = a["events"], b["events"]
    first = None
    max_dp = 0.0
    for i in range(max(len(ev_a), len(ev_b))):
        if i >= len(ev_a) or i >= len(ev_b):
            first = first or {"index": i, "a": ev_a[i] if i < len(ev_a) else None,
                              "b": ev_b[i] if i < len(ev_b) else None}
            break
        na, pa = normalise(ev_a[i])
        nb, pb = normalise(ev_b[i])
        if na != nb and first is None:
            first = {"index": i, "a": na, "b": nb}
        for label in set(pa) & set(pb):
            if pa[label] is not None and pb[label] is not None:
                max_dp = max(max_dp, abs(float(pa[label]) - float(pb[label])))
    kinds = Counter(e.get("type") for e in ev_a)
    decisions_a = [normalise(e)[0] for e in ev_a if e.get("type") == "decision"]
    decisions_b = [normalise(e)[0] for e in ev_b if e.get("type") == "decision"]
    states = lambda ds: [(d.get("t"), d.get("state"), tuple(d.get("labels") or ())) for d in ds]  # noqa: E731
    return {"events_equal": first is None and a["exit"] == b["exit"],
            "decisions_equal": decisions_a == decisions_b,
            "states_equal": states(decisions_a) == states(decisions_b),
            "exit": [a["exit"], b["exit"]],
            "events": len(ev_a), "beats": kinds.get("beat", 0), "decisions": kinds.get("decision", 0),
            "alarm_on": sum(1 for d in decisions_a if d.get("state") not in (None, "off")),
            "first_difference": first, "max_prob_diff": round(max_dp, 6),
            "int8": lsb_summary(a["int8"], b["int8"])}


def compare_dumps(ref: dict, other: dict) -> dict:
    """Every (bundle, record) both dumps hold -> per-bundle totals and the records that differ."""
    keys = sorted(set(ref["rows"]) & set(other["rows"]))
    missing = sorted(set(ref["rows"]) ^ set(other["rows"]))
    bundles = {}
    for key in keys:
        bundle, rec = key
        c = compare_rows(ref["rows"][key], other["rows"][key])
        t = bundles.setdefault(bundle, {"records": 0, "events": 0, "beats": 0, "decisions": 0,
                                        "alarm_on_decisions": 0, "records_events_equal": 0,
                                        "records_decisions_equal": 0, "records_states_equal": 0,
                                        "records_int8_identical": 0, "max_lsb": 0, "max_prob_diff": 0.0,
                                        "values": 0, "values_differing": 0, "differences": [],
                                        "lsb_per_record": {}})
        t["records"] += 1
        for k in ("events", "beats", "decisions"):
            t[k] += c[k]
        t["alarm_on_decisions"] += c["alarm_on"]
        t["records_events_equal"] += c["events_equal"]
        t["records_decisions_equal"] += c["decisions_equal"]
        t["records_states_equal"] += c["states_equal"]
        q = c["int8"]
        if q["comparable"]:
            t["records_int8_identical"] += q["values_differing"] == 0
            t["max_lsb"] = max(t["max_lsb"], q["max_lsb"])
            t["values"] += q["values"]
            t["values_differing"] += q["values_differing"]
            t["lsb_per_record"][rec] = q["max_lsb"]
        t["max_prob_diff"] = max(t["max_prob_diff"], c["max_prob_diff"])
        if not (c["events_equal"] and q["comparable"]):
            t["differences"].append({"record": rec, **{k: c[k] for k in
                                                      ("events_equal", "decisions_equal", "states_equal",
                                                       "first_difference", "exit")}})
    for t in bundles.values():
        t["all_equal"] = t["records_events_equal"] == t["records"] and not t["differences"]
        t["lsb_records_histogram"] = dict(sorted(Counter(str(v) for v in t["lsb_per_record"].values()).items()))
    return {"bundles": bundles, "missing": [list(k) for k in missing],
            "all_equal": bool(bundles) and not missing and all(t["all_equal"] for t in bundles.values())}
