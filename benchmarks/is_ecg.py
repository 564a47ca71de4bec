"""Is it ECG? The runtime's check (:mod:`selfmis.edge_runtime.ecg_check`) on real PTB-XL Lead I
versus what a hobby sketch's first column may be instead.

Positives: Lead I of PTB-XL records (the shared subset), as the runtime would see them: 10 s
at the record's rate, in mV. The thresholds were set on folds 1-8; the acceptance that counts is
on folds 9-10 (``--folds 9 10``, the default). Negatives (synthetic, seeded): sawtooth ramps (0.5,
1, 5 Hz), a PPG-like pulse wave (60-110 bpm, with a dicrotic wave and noise), ``millis()`` counters,
white noise, a constant, a 1.2-Hz sine and mains hum -- at 250 Hz in ADC counts, as a sketch
prints them. Every negative must be refused.

``python -m selfmis.benchmarks.is_ecg --data ../shared/data/ptbxl-subset --n 200 --out
benchmarks/results/hostile`` writes ``is_ecg.json`` and ``is_ecg.md`` (commit, command, data).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from selfmis.edge_runtime.ecg_check import assess
from selfmis.readers import read_record

__all__ = ["negatives", "ptbxl_lead_i", "main"]

SKETCH_FS = 250.0


def negatives(seconds: float = 10.0, fs: float = SKETCH_FS, seed: int = 0) -> dict:
    """{name: samples} of signals a sketch may print that are not ECG (ADC counts, 10-bit)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    out = {}
    for hz in (0.5, 1.0, 5.0):
        out[f"sawtooth_{hz:g}hz"] = np.floor(1023 * ((t * hz) % 1.0)).astype(np.int64)
    out["sawtooth_falling_1hz"] = 1023 - out["sawtooth_1hz"]
    for bpm in (60, 75, 110):
        out[f"ppg_{bpm}bpm"] = _ppg(t, bpm, rng)
    out["millis"] = (12_345 + np.round(t * 1000)).astype(np.int64)
    out["millis_16bit_wrap"] = ((40_000 + np.round(t * 1000)) % 65536).astype(np.int64)
    out["micros"] = (1_000_000 + np.round(t * 1e6)).astype(np.int64)
    out["noise_white"] = np.round(512 + 40 * rng.standard_normal(n)).astype(np.int64)
    out["noise_adc_floor"] = np.round(512 + 1.5 * rng.standard_normal(n)).astype(np.int64)
    out["constant"] = np.full(n, 512, np.int64)
    out["sine_1.2hz"] = np.round(512 + 200 * np.sin(2 * np.pi * 1.2 * t)).astype(np.int64)
    out["mains_50hz"] = np.round(512 + 100 * np.sin(2 * np.pi * 50 * t)
                                 + 3 * rng.standard_normal(n)).astype(np.int64)
    return out


def _ppg(t: np.ndarray, bpm: float, rng) -> np.ndarray:
    """A photoplethysmogram: per beat a systolic wave (fast rise, slow fall) and a smaller
    dicrotic wave 0.3 s later, on a breathing baseline, with a little sensor noise."""
    period = 60.0 / bpm
    beats = np.arange(0, t[-1] + period, period) + rng.uniform(-0.02, 0.02, int(t[-1] / period) + 2)[:1]
    y = np.zeros_like(t)
    for b in beats:
        s = t - b
        y += np.where(s > 0, (s / 0.12) * np.exp(1 - s / 0.12), 0.0)          # systolic
        y += 0.35 * np.exp(-0.5 * ((s - 0.35) / 0.06) ** 2)                   # dicrotic
    y += 0.1 * np.sin(2 * np.pi * 0.25 * t)
    return np.round(400 + 180 * y + 1.0 * rng.standard_normal(len(t))).astype(np.int64)


def ptbxl_lead_i(data: Path, folds, n: int, hr: bool = False):
    """Yield (ecg_id, samples in mV, fs) of Lead I for the first ``n`` records of ``folds``."""
    with open(data / "ptbxl_database.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if int(r["strat_fold"]) in folds]
    key = "filename_hr" if hr else "filename_lr"
    done = 0
    if n <= 0:
        return
    for r in rows:
        path = data / r[key]
        if not (path.with_suffix(".hea")).exists():
            continue
        rec = read_record(str(path), leads=["I"])
        yield r["ecg_id"], np.asarray(rec.lead("I"), dtype=np.float64), float(rec.fs)
        done += 1
        if done >= n:
            return


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.is_ecg", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data/ptbxl-subset"))
    p.add_argument("--folds", type=int, nargs="+", default=[9, 10])
    p.add_argument("--n", type=int, default=200, help="PTB-XL records (first n of the folds, 100 Hz)")
    p.add_argument("--n-hr", type=int, default=50, help="also the first n records at 500 Hz")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    t0 = time.time()
    pos = []
    for hr, n in ((False, a.n), (True, a.n_hr)):
        for eid, x, fs in ptbxl_lead_i(a.data, set(a.folds), n, hr=hr):
            v = assess(x, fs)
            pos.append({"ecg_id": eid, "fs": fs, "ok": v.ok, "reasons": v.reasons, **v.metrics})
    neg = []
    for name, x in negatives().items():
        v = assess(x.astype(np.float64) / 1000.0, SKETCH_FS)  # counts at 1 uV/count, as edge-run's default
        neg.append({"signal": name, "ok": v.ok, "reasons": v.reasons, **v.metrics})
    acc = [r for r in pos if r["ok"]]
    n100 = sum(r["fs"] == 100.0 for r in pos)
    oks = np.asarray([r["ok"] for r in pos], dtype=np.float64)
    boot = np.random.default_rng(0).choice(oks, size=(2000, len(oks))).mean(1) if len(oks) else np.zeros(1)
    res = {
        "commit": _commit(),
        "command": "python -m selfmis.benchmarks.is_ecg " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": f"PTB-XL subset ({a.data.name}), Lead I, folds {a.folds} (thresholds set on folds 1-8): "
                f"{n100} records at 100 Hz (up to {a.n}) and {len(pos) - n100} at 500 Hz (up to {a.n_hr}), "
                f"10 s each, in mV; synthetic negatives at {SKETCH_FS:g} Hz in ADC counts at 1 uV/count, seed 0",
        "accepted": len(acc), "records": len(pos), "acceptance": round(len(acc) / max(1, len(pos)), 4),
        "acceptance_ci95": [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)],
        "negatives_refused": sum(not r["ok"] for r in neg), "negatives": len(neg),
        "refused_records": [r for r in pos if not r["ok"]], "negative_results": neg,
        "seconds": round(time.time() - t0, 1),
        "metric_summary": _metric_summary(pos),
    }
    print(json.dumps({k: res[k] for k in ("accepted", "records", "acceptance", "negatives_refused",
                                          "negatives")}))
    if a.out:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "is_ecg.json").write_text(json.dumps(res, indent=1) + "\n")
        (a.out / "is_ecg.md").write_text(markdown(res))
    return 0 if res["acceptance"] >= 0.99 and res["negatives_refused"] == res["negatives"] else 1


def _metric_summary(pos: list) -> dict:
    """min, 1st percentile, median and max of each check metric over the real records (kept in the JSON)."""
    out = {}
    for key in ("one_way", "qrs_share", "peakiness", "template_corr", "qrs_p2p_mv"):
        v = np.asarray([r[key] for r in pos if key in r], dtype=np.float64)
        if len(v):
            out[key] = {"min": float(v.min()), "p1": float(np.percentile(v, 1)), "median": float(np.median(v)),
                        "max": float(v.max())}
    return out


def markdown(res: dict) -> str:
    """is_ecg.md from is_ecg.json."""
    lines = ["# Is it ECG? The runtime's check on PTB-XL Lead I versus non-ECG columns", "",
             f"- commit `{res['commit']}`", f"- command `{res['command']}`", f"- data: {res['data']}", "",
             f"**Real Lead I accepted: {res['accepted']} of {res['records']} "
             f"({100 * res['acceptance']:.1f}%, bootstrap 95% CI {100 * res['acceptance_ci95'][0]:.1f}-"
             f"{100 * res['acceptance_ci95'][1]:.1f}%, 2,000 resamples of records, seed 0)** (target >= 99%). "
             f"**Non-ECG refused: {res['negatives_refused']} of {res['negatives']}** (target: all).", "",
             "| non-ECG signal | verdict | reasons | one_way | qrs_share | peakiness | template_corr |",
             "|---|---|---|---|---|---|---|"]
    for r in res["negative_results"]:
        lines.append(f"| {r['signal']} | {'ACCEPTED' if r['ok'] else 'refused'} | {', '.join(r['reasons'])} | "
                     f"{r.get('one_way', '')} | {r.get('qrs_share', '')} | {r.get('peakiness', '')} | "
                     f"{r.get('template_corr', '')} |")
    lines += ["", "Real records refused (if any):", ""]
    for r in res["refused_records"]:
        lines.append(f"- ecg_id {r['ecg_id']} ({r['fs']:g} Hz): {', '.join(r['reasons'])}")
    if not res["refused_records"]:
        lines.append("- none")
    for key, m in (res.get("metric_summary") or {}).items():
        lines.append(f"- {key} over the real records: min {m['min']:.3g}, 1st pct "
                     f"{m['p1']:.3g}, median {m['median']:.3g}, max {m['max']:.3g}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
