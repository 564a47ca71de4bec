"""The runtime's online beat detector and quality gate beside the field's reference implementations.

    python -m selfmis.benchmarks.beat_reference            # record 100 whole, 100 PTB-XL records
    python -m selfmis.benchmarks.beat_reference --quick    # first 2 min of record 100, 10 PTB-XL records

Detectors compared (each on the same signal, at the record's own rate):

* ``runtime pipeline``: ``selfmis.edge_runtime.pipeline.Pipeline`` without a model, fed 0.1-s
  chunks at the source rate as a serial device would (resampled to 100 Hz inside, beats in
  stretches the quality gate rejects are not reported) -- what a user of ``edge-run`` gets;
* ``runtime detector``: ``StreamingBeatDetector`` alone on the pipeline's 100 Hz stream, fed in
  0.1-s chunks (``detect_beats``) -- the detector without the quality gate;
* ``nk:<method>``: ``neurokit2.ecg_peaks`` after ``neurokit2.ecg_clean`` with the same method's
  cleaning where NeuroKit2 has one (else its default cleaning) -- Makowski et al., "NeuroKit2: A
  Python toolbox for neurophysiological signal processing", Behav. Res. Methods 53, 2021;
* ``xqrs``: ``wfdb.processing.xqrs_detect`` (the WFDB toolbox's QRS detector).

Studies:

(a) against the cardiologists' beat annotations of MIT-BIH Arrhythmia Database record 100 (Moody &
    Mark, IEEE Eng. Med. Biol. 20(3), 2001; 360 Hz, channel MLII): a detection matches an annotated
    beat within 150 ms (the ANSI/AAMI EC57 matching window), one to one; sensitivity
    Se = TP / (TP + FN), positive predictivity PPV = TP / (TP + FP);
(b) agreement on Lead I of real PTB-XL records at 500 Hz (Wagner et al., Sci. Data 7, 2020): Se/PPV
    of each detector against XQRS and against NeuroKit2's default, the same matching (no ground
    truth: a disagreement may be the reference's error);
(c) the runtime's quality gate (1-s blocks) against ``neurokit2.ecg_quality(method="zhao2018")``
    (Zhao & Zhang, "SQI quality evaluation mechanism of single-lead ECG signal based on simple
    heuristic fusion and fuzzy comprehensive evaluation", Front. Physiol. 9, 2018) per record, as
    recorded and with faults of the project's one simulator added (white noise, a flat stretch),
    beside PTB-XL's own noise annotations (which may concern other leads than Lead I).

Beats in the first and last second of a record are not scored (the runtime does not search its
first 0.5 s; XQRS learns on the start). The runtime stays numpy-only: only this benchmark imports
neurokit2 and wfdb.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from selfmis.edge_runtime.beats import detect_beats
from selfmis.edge_runtime.pipeline import Pipeline
from selfmis.edge_runtime.stream import Chunk, LinkEvent
from selfmis.provenance import git_commit
from selfmis.readers import read_record
from selfmis.simulate import VirtualDevice

__all__ = ["NK_METHODS", "TOL_S", "match_beats", "runtime_beats", "reference_beats", "mitdb_study",
           "ptbxl_study", "run", "markdown", "main"]

_HERE = Path(__file__).resolve().parent
_SHARED = _HERE.parent.parent / "shared" / "data"
DEFAULT_MITDB = _SHARED / "wfdb-conformance" / "100"
DEFAULT_PTBXL = _SHARED / "ptbxl-subset"
DEFAULT_OUT = _HERE / "results" / "beats"

#: NeuroKit2 detectors compared (``emrich2023`` needs ts2vg; never ``ecg_simulate(method="ecgsyn")``: it hangs)
NK_METHODS = ("neurokit", "pantompkins1985", "hamilton2002", "elgendi2010", "engzeemod2012", "christov2004",
              "kalidas2017", "rodrigues2021")
#: matching window (ANSI/AAMI EC57: 150 ms)
TOL_S = 0.15
#: seconds not scored at each end of a record
EDGE_S = 1.0
#: chunk the runtime is fed (a serial device's frame)
FRAME_S = 0.1
#: MIT-BIH annotation symbols that are beats (the others mark rhythm changes, noise, ...)
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")
PTBXL_NOISE = ("baseline_drift", "static_noise", "burst_noise", "electrodes_problems")
#: study (c) also runs on the same records with these faults of the project's one simulator
#: (``selfmis.simulate.VirtualDevice`` option names and units; spans are (start_s, duration_s))
FAULTS = {"as recorded": {},
          "white noise 300 uV, 3-7 s": {"noise_uv": 300.0, "noise_spans": [(3.0, 4.0)]},
          "amplifier stuck (flat), 3-6 s": {"flat": [(3.0, 3.0)]}}
RUNTIME = ("runtime pipeline", "runtime detector")


# --------------------------------------------------------------------------- matching

def match_beats(ref, det, tol: float = TOL_S, lo: float = -np.inf, hi: float = np.inf) -> dict:
    """One-to-one matching of detected beat times ``det`` to reference times ``ref`` (seconds).

    Reference beats in ``[lo, hi]`` are scored: each takes the nearest free detection within
    ``tol`` (in time order). A detection in ``[lo, hi]`` left unmatched is a false positive unless it
    is within ``tol`` of a reference beat outside the scored span (an edge effect, not an error).
    Returns tp, fn, fp and the matched detections' offsets (det - ref, seconds).
    """
    ref, det = np.sort(np.asarray(ref, float)), np.sort(np.asarray(det, float))
    used = np.zeros(len(det), bool)
    tp, offsets = 0, []
    for r in ref[(ref >= lo) & (ref <= hi)]:
        a, b = np.searchsorted(det, r - tol, "left"), np.searchsorted(det, r + tol, "right")
        free = [i for i in range(a, b) if not used[i]]
        if free:
            i = min(free, key=lambda i: abs(det[i] - r))
            used[i] = True
            tp += 1
            offsets.append(det[i] - r)
    n_ref = int(((ref >= lo) & (ref <= hi)).sum())
    outside = ref[(ref < lo) | (ref > hi)]
    fp = 0
    for i in np.flatnonzero(~used & (det >= lo) & (det <= hi)):
        if not (len(outside) and np.abs(outside - det[i]).min() <= tol):
            fp += 1
    return {"tp": tp, "fn": n_ref - tp, "fp": fp, "offsets_s": offsets}


def _scores(c: dict) -> dict:
    tp, fn, fp = c["tp"], c["fn"], c["fp"]
    out = {"tp": tp, "fn": fn, "fp": fp, "se": tp / (tp + fn) if tp + fn else None,
           "ppv": tp / (tp + fp) if tp + fp else None}
    off = np.asarray(c.get("offsets_s", []))
    if len(off):
        out["offset_ms_median"] = float(np.median(off) * 1e3)
        out["abs_offset_ms_p95"] = float(np.quantile(np.abs(off), 0.95) * 1e3)
    return out


def _add(acc: dict, c: dict) -> None:
    for k in ("tp", "fn", "fp"):
        acc[k] = acc.get(k, 0) + c[k]
    acc.setdefault("offsets_s", []).extend(c["offsets_s"])


# --------------------------------------------------------------------------- detectors

def runtime_beats(x: np.ndarray, fs: float, frame_s: float = FRAME_S) -> dict:
    """Beat times (s) of the runtime, and its quality-gate block counts, on one lead ``x`` (mV) at ``fs``.

    The pipeline is fed ``frame_s`` chunks at the source rate, as ``edge-run`` is by a device;
    the detector alone runs on the pipeline's own resampled stream, fed in the same chunk size.
    """
    p = Pipeline(None, keep_signal=True)
    n = max(1, int(round(frame_s * fs)))
    events = []
    for i in range(0, len(x), n):
        events += p.handle(Chunk(np.asarray(x[i:i + n], np.float32), fs))
    events += p.handle(LinkEvent("end"))
    y = np.concatenate(p.signal) if p.signal else np.zeros(0, np.float32)
    t0 = p.signal_t0[0] if p.signal_t0 else 0.0
    det = detect_beats(y, p.fs, chunk_s=frame_s)
    gate = p.quality
    n_blocks = gate.n_done // gate.block
    bad = sum(gate.counts.values())  # one reason per block without device flags
    return {"runtime pipeline": np.array([e["t"] for e in events if e["type"] == "beat"]),
            "runtime detector": t0 + det / p.fs,
            "quality": {"blocks": n_blocks, "bad_blocks": bad,
                        "reasons": {k: v for k, v in gate.counts.items() if v}}}


def nk_beats(x: np.ndarray, fs: float, method: str) -> tuple:
    """(beat times s, cleaning method used) of ``neurokit2.ecg_peaks(method=...)``."""
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NeuroKit2 warns about short signals and sampling rates
        try:
            clean, how = nk.ecg_clean(x, sampling_rate=fs, method=method), method
        except ValueError:  # no cleaning of its own: NeuroKit2's default
            clean, how = nk.ecg_clean(x, sampling_rate=fs), "neurokit"
        _, info = nk.ecg_peaks(clean, sampling_rate=fs, method=method)
    return np.asarray(info["ECG_R_Peaks"], float) / fs, how


def xqrs_beats(x: np.ndarray, fs: float) -> np.ndarray:
    import wfdb.processing as wp

    return np.asarray(wp.xqrs_detect(np.asarray(x, float), fs=fs, verbose=False), float) / fs


def reference_beats(x: np.ndarray, fs: float, methods=NK_METHODS) -> tuple:
    """{detector: (beat times s, seconds it took)} for XQRS and the NeuroKit2 methods, and the cleaning used."""
    out, cleaning = {}, {}
    t = time.perf_counter()
    out["xqrs"] = (xqrs_beats(x, fs), time.perf_counter() - t)
    for m in methods:
        t = time.perf_counter()
        beats, cleaning[m] = nk_beats(x, fs, m)
        out[f"nk:{m}"] = (beats, time.perf_counter() - t)
    return out, cleaning


def all_beats(x: np.ndarray, fs: float, methods=NK_METHODS) -> tuple:
    """{detector: beat times}, {detector: compute seconds}, cleaning, runtime quality counts."""
    t = time.perf_counter()
    rt = runtime_beats(x, fs)
    dt = time.perf_counter() - t
    beats = {k: rt[k] for k in RUNTIME}
    secs = {k: dt for k in RUNTIME}  # one run produces both
    ref, cleaning = reference_beats(x, fs, methods)
    for k, (b, s) in ref.items():
        beats[k], secs[k] = b, s
    return beats, secs, cleaning, rt["quality"]


# --------------------------------------------------------------------------- studies

def read_mitdb(path, seconds: float | None = None, channel: str = "MLII") -> tuple:
    """(signal mV, fs, annotated beat times s) of an MIT-BIH record (``path`` without extension)."""
    import wfdb

    rec = read_record(str(path))
    x = rec.lead(channel).astype(np.float64)
    ann = wfdb.rdann(str(path), "atr")
    beats = np.array([s for s, sym in zip(ann.sample, ann.symbol) if sym in BEAT_SYMBOLS], float) / rec.fs
    if seconds is not None:
        x = x[:int(round(seconds * rec.fs))]
        beats = beats[beats < len(x) / rec.fs]
    return x, rec.fs, beats


def mitdb_study(path=DEFAULT_MITDB, seconds: float | None = None, methods=NK_METHODS) -> dict:
    """Every detector against the annotated beats of one MIT-BIH record."""
    x, fs, ann = read_mitdb(path, seconds)
    beats, secs, cleaning, quality = all_beats(x, fs, methods)
    lo, hi = EDGE_S, len(x) / fs - EDGE_S
    rows = {k: dict(_scores(match_beats(ann, b, TOL_S, lo, hi)), compute_s=round(secs[k], 3))
            for k, b in beats.items()}
    return {"record": Path(path).name, "fs": fs, "channel": "MLII", "seconds": len(x) / fs,
            "annotated_beats_scored": int(((ann >= lo) & (ann <= hi)).sum()), "tolerance_s": TOL_S,
            "scored_span_s": [lo, hi], "detectors": rows, "nk_cleaning": cleaning, "runtime_quality": quality,
            "_beats": beats, "_signal": x, "_annotations": ann}


def ptbxl_records(root, n: int) -> list:
    """The first ``n`` PTB-XL records (by ecg_id) with a 500 Hz file: (ecg_id, path, noise annotations)."""
    root = Path(root)
    out = []
    with open(root / "ptbxl_database.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(float(r["ecg_id"])))
    for r in rows:
        p = root / r["filename_hr"]
        if Path(str(p) + ".hea").is_file():
            noise = {k: r[k].strip() for k in PTBXL_NOISE if r.get(k, "").strip(" ,")}
            out.append((int(float(r["ecg_id"])), p, noise))
        if len(out) >= n:
            break
    return out


def with_fault(x: np.ndarray, fs: float, seed: int = 0, **fault) -> np.ndarray:
    """``x`` (mV) as the simulated device's ADC delivers it with ``fault`` (1 uV per count)."""
    if not fault:
        return x
    dev = VirtualDevice(x, fs, uv_per_lsb=1.0, seed=seed, **fault)  # int16: +-32 mV
    return dev.counts(np.random.default_rng(seed)) * (dev.uv_per_lsb / 1000.0)


def zhao2018(x: np.ndarray, fs: float) -> str:
    import neurokit2 as nk

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(nk.ecg_quality(nk.ecg_clean(x, sampling_rate=fs), sampling_rate=fs, method="zhao2018",
                                  approach="simple"))


def gate_class(q: dict) -> str:
    """The runtime gate's verdict on a record from its 1-s blocks."""
    b = q["bad_blocks"]
    return "all blocks ok" if b == 0 else ("1-2 blocks bad" if b <= 2 else ">=3 blocks bad")


GATE_CLASSES = ("all blocks ok", "1-2 blocks bad", ">=3 blocks bad")
ZHAO_CLASSES = ("Excellent", "Barely acceptable", "Unacceptable")


def ptbxl_study(root=DEFAULT_PTBXL, n: int = 100, methods=NK_METHODS, refs=("xqrs", "nk:neurokit")) -> dict:
    """Pairwise detector agreement and the quality comparison on Lead I of ``n`` PTB-XL records."""
    recs = ptbxl_records(root, n)
    acc = {ref: {} for ref in refs}
    per_record, secs_total = [], {}
    table = {f: {g: {z: 0 for z in ZHAO_CLASSES} for g in GATE_CLASSES} for f in FAULTS}
    noise_table = {g: {"noise annotated": 0, "not annotated": 0} for g in GATE_CLASSES}
    for eid, path, noise in recs:
        rec = read_record(str(path))
        x, fs = rec.lead("I").astype(np.float64), rec.fs
        beats, secs, _, quality = all_beats(x, fs, methods)
        for k, s in secs.items():
            secs_total[k] = secs_total.get(k, 0.0) + s
        lo, hi = EDGE_S, len(x) / fs - EDGE_S
        for ref in refs:
            for k, b in beats.items():
                _add(acc[ref].setdefault(k, {}), match_beats(beats[ref], b, TOL_S, lo, hi))
        verdicts = {}
        for f, kw in FAULTS.items():
            xf = with_fault(x, fs, seed=eid, **kw)
            q = runtime_beats(xf, fs)["quality"] if kw else quality
            z, g = zhao2018(xf, fs), gate_class(q)
            table[f][g][z] = table[f][g].get(z, 0) + 1
            verdicts[f] = {"gate": q, "zhao2018": z}
        noise_table[gate_class(quality)]["noise annotated" if noise else "not annotated"] += 1
        per_record.append({"ecg_id": eid, "n_beats": {k: int(len(b)) for k, b in beats.items()},
                           "quality": verdicts, "ptbxl_noise": noise})
    return {"records": len(recs), "ecg_ids": [r[0] for r in recs], "fs": 500, "lead": "I",
            "tolerance_s": TOL_S, "edge_s": EDGE_S,
            "agreement": {ref: {k: _scores(c) for k, c in a.items()} for ref, a in acc.items()},
            "compute_s_total": {k: round(v, 3) for k, v in secs_total.items()},
            "quality_vs_zhao2018": table, "quality_vs_ptbxl_noise": noise_table, "per_record": per_record}


# --------------------------------------------------------------------------- output

def _pct(v):
    return "–" if v is None else f"{100 * v:.2f}"


def markdown(res: dict, level: int = 1) -> str:
    """The result as Markdown (``level``: heading level of the title; 2 inside ``selfmis bench``)."""
    h = "#" * level
    L = [f"{h} Beat detection and signal quality: the runtime beside NeuroKit2 and WFDB", "",
         (f"Commit `{res['commit']}`, command" if res.get("commit") else "Command") + f": `{res['command']}`; neurokit2 {res['versions'].get('neurokit2')}, "
         f"wfdb {res['versions'].get('wfdb')}. Matching: one to one within {TOL_S * 1e3:.0f} ms "
         f"(ANSI/AAMI EC57); the first and last {EDGE_S:g} s of each record are not scored.", ""]
    m = res.get("mitdb")
    if m:
        L += [f"{h}# (a) MIT-BIH record {m['record']} ({m['channel']}, {m['fs']:g} Hz, {m['seconds']:.0f} s, "
              f"{m['annotated_beats_scored']} annotated beats scored)", "",
              "| detector | Se % | PPV % | TP | FN | FP | median offset ms | p95 abs offset ms | compute s |",
              "|---|---|---|---|---|---|---|---|---|"]
        for k, r in m["detectors"].items():
            L.append(f"| {k} | {_pct(r['se'])} | {_pct(r['ppv'])} | {r['tp']} | {r['fn']} | {r['fp']} | "
                     f"{r.get('offset_ms_median', float('nan')):+.0f} | {r.get('abs_offset_ms_p95', float('nan')):.0f}"
                     f" | {r['compute_s']:.2f} |")
        L += ["", "Offsets: detection minus annotation (the annotations mark the R peak; the runtime works at "
              "100 Hz, so its times are on a 10-ms grid). Runtime pipeline: beats in stretches its quality gate "
              f"rejects are not reported (gate: {m['runtime_quality']['bad_blocks']} of "
              f"{m['runtime_quality']['blocks']} 1-s blocks bad, {m['runtime_quality']['reasons']}). Compute: wall "
              "time of each detector's call on this machine; the two runtime rows share one measurement (the "
              "pipeline with resampling and gate, plus the detector again on its stream).", ""]
        if res.get("png"):
            L += [f"![beats of each detector]({res['png']})", ""]
    p = res.get("ptbxl")
    if p:
        L += [f"{h}# (b) Agreement on PTB-XL Lead I ({p['records']} records, 500 Hz, ecg_id "
              f"{min(p['ecg_ids'])}-{max(p['ecg_ids'])}; no ground truth)", "",
              "| detector | " + " | ".join(f"Se % vs {r} | PPV % vs {r}" for r in p["agreement"]) + " | compute s |",
              "|---|" + "---|---|" * len(p["agreement"]) + "---|"]
        for k in next(iter(p["agreement"].values())):
            L.append(f"| {k} | " + " | ".join(f"{_pct(a[k]['se'])} | {_pct(a[k]['ppv'])}"
                                              for a in p["agreement"].values())
                     + f" | {p['compute_s_total'][k]:.2f} |")
        L += ["", f"{h}# (c) Quality: the runtime's gate (1-s blocks) vs `nk.ecg_quality(method=\"zhao2018\")` "
              "per record", "",
              "Records: the same PTB-XL records as recorded, and with a fault of the project's simulator "
              "(`selfmis.simulate.VirtualDevice`) added; counts of records.", "",
              "| signal | runtime gate \\ zhao2018 | " + " | ".join(ZHAO_CLASSES) + " |",
              "|---|---|" + "---|" * len(ZHAO_CLASSES)]
        for f, tab in p["quality_vs_zhao2018"].items():
            for g in GATE_CLASSES:
                if sum(tab[g].values()):
                    L.append(f"| {f} | {g} | " + " | ".join(str(tab[g].get(z, 0)) for z in ZHAO_CLASSES) + " |")
        L += ["", "| runtime gate (as recorded) | PTB-XL noise annotated | not annotated |", "|---|---|---|"]
        for g in GATE_CLASSES:
            L.append(f"| {g} | {p['quality_vs_ptbxl_noise'][g]['noise annotated']} | "
                     f"{p['quality_vs_ptbxl_noise'][g]['not annotated']} |")
        L += ["", "PTB-XL's noise annotations (baseline drift, static/burst noise, electrode problems) are per "
              "record and may concern other leads than Lead I.", ""]
    return "\n".join(L)


def _errors(ann: np.ndarray, det: np.ndarray) -> list:
    """Times of annotated beats with no detection, and of detections with no annotated beat, within TOL_S."""
    def far(a, b):
        return [v for v in a if not len(b) or np.abs(b - v).min() > TOL_S]
    return far(ann, det) + far(det, ann)


def plot_record(m: dict, path: Path, start_s: float | None = None, span_s: float = 10.0) -> Path:
    """The MIT-BIH signal with the annotated beats and each detector's beats (misses and false
    detections marked) over ``span_s`` seconds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, fs, ann, beats = m["_signal"], m["fs"], m["_annotations"], m["_beats"]
    if start_s is None:  # around the first error of any detector, else a minute in
        start_s = max(EDGE_S, min(60.0, len(x) / fs - span_s - EDGE_S))
        errors = [e for b in beats.values() for e in _errors(ann, b)
                  if EDGE_S <= e <= len(x) / fs - EDGE_S]
        if errors:
            start_s = max(0.0, min(min(errors) - span_s / 2, len(x) / fs - span_s))
    t = np.arange(len(x)) / fs
    sl = (t >= start_s) & (t < start_s + span_s)
    fig, (a0, a1) = plt.subplots(2, 1, figsize=(12, 2.2 + 0.32 * len(beats)), sharex=True,
                                 gridspec_kw={"height_ratios": [2, 0.32 * len(beats) + 0.4]})
    a0.plot(t[sl], x[sl], "k", lw=0.8)
    ins = ann[(ann >= start_s) & (ann < start_s + span_s)]
    a0.plot(ins, np.interp(ins, t, x), "v", color="tab:green", label="annotated beats")
    a0.set_ylabel(f"{m['channel']} (mV)")
    a0.legend(loc="upper right", fontsize=8)
    a0.set_title(f"MIT-BIH record {m['record']}: beats of each detector (green: matched within "
                 f"{TOL_S * 1e3:.0f} ms, red x: false, grey |: annotated beat missed)", fontsize=9)
    names = list(beats)
    for row, k in enumerate(names):
        b = beats[k][(beats[k] >= start_s) & (beats[k] < start_s + span_s)]
        ok = np.array([len(ann) and np.abs(ann - v).min() <= TOL_S for v in b], bool)
        a1.plot(b[ok], np.full(ok.sum(), row), "o", color="tab:green", ms=4)
        a1.plot(b[~ok], np.full((~ok).sum(), row), "x", color="tab:red", ms=7)
        miss = [v for v in ins if not len(beats[k]) or np.abs(beats[k] - v).min() > TOL_S]
        a1.plot(miss, np.full(len(miss), row), "|", color="0.5", ms=10)
    a1.set_yticks(range(len(names)), names, fontsize=8)
    a1.invert_yaxis()
    a1.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run(quick: bool = False, out_dir=DEFAULT_OUT, mitdb=DEFAULT_MITDB, ptbxl=DEFAULT_PTBXL,
        n_records: int | None = None, mitdb_seconds: float | None = None, command: str = "",
        log=print) -> dict:
    """Both studies; writes beats.json, beats.md and beats.png into ``out_dir``; returns the result."""
    import neurokit2
    import wfdb

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_records = n_records if n_records is not None else (10 if quick else 100)
    mitdb_seconds = mitdb_seconds if mitdb_seconds is not None else (120.0 if quick else None)
    res = {"format": "selfmis-beat-reference", "version": 1, "quick": quick, "command": command,
           "commit": git_commit(),
           "versions": {"neurokit2": neurokit2.__version__, "wfdb": wfdb.__version__},
           "tolerance_s": TOL_S, "edge_s": EDGE_S, "frame_s": FRAME_S, "notes": []}
    t0 = time.perf_counter()
    if Path(str(mitdb) + ".hea").is_file() and Path(str(mitdb) + ".atr").is_file():
        log(f"beats: MIT-BIH {Path(mitdb).name} ({f'first {mitdb_seconds:g} s' if mitdb_seconds else 'whole record'}) ...")
        m = mitdb_study(mitdb, mitdb_seconds)
        try:
            res["png"] = plot_record(m, out_dir / "beats.png").name
        except ImportError as exc:
            res["notes"].append(f"beats.png not drawn ({exc})")
        res["mitdb"] = {k: v for k, v in m.items() if not k.startswith("_")}
    else:
        res["notes"].append(f"{mitdb}: MIT-BIH record (.hea/.atr) not found; study (a) skipped")
    if (Path(ptbxl) / "ptbxl_database.csv").is_file():
        log(f"beats: PTB-XL Lead I, {n_records} records ...")
        res["ptbxl"] = ptbxl_study(ptbxl, n_records)
    else:
        res["notes"].append(f"{ptbxl}: PTB-XL subset not found; studies (b), (c) skipped")
    res["elapsed_s"] = round(time.perf_counter() - t0, 1)
    (out_dir / "beats.json").write_text(json.dumps(res, indent=1) + "\n")
    (out_dir / "beats.md").write_text(markdown(res) + "\n")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.beat_reference",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="first 2 min of the MIT-BIH record, 10 PTB-XL records")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: %(default)s)")
    ap.add_argument("--mitdb", default=str(DEFAULT_MITDB), help="MIT-BIH record with .atr (default: %(default)s)")
    ap.add_argument("--ptbxl", default=str(DEFAULT_PTBXL), help="PTB-XL folder (default: %(default)s)")
    ap.add_argument("--records", type=int, help="PTB-XL records (default 100, quick 10)")
    ap.add_argument("--seconds", type=float, help="seconds of the MIT-BIH record (default: all, quick 120)")
    a = ap.parse_args(argv)
    cmd = "python -m selfmis.benchmarks.beat_reference " + " ".join(sys.argv[1:] if argv is None else argv)
    res = run(a.quick, a.out, a.mitdb, a.ptbxl, a.records, a.seconds, cmd.strip(),
              log=lambda s: print(s, file=sys.stderr, flush=True))
    for n in res["notes"]:
        print(f"note: {n}", file=sys.stderr)
    if "mitdb" not in res and "ptbxl" not in res:
        return 1
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
