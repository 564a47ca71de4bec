"""Export a ``--record`` directory to formats other tools open: EDF+, WFDB, CSV.

Every export carries the one lead in mV at the recorded rate, the beats (R
peaks) and the model's decisions where the pipeline had them, and marks the
stretches where nothing arrived (gaps, reconnects) and where the electrodes
were off:

* **EDF+** (EDFbrowser, MNE, edfio, pyedflib): 16-bit samples, 1-s data
  records; annotations ``N`` at each beat, ``decision: <labels>`` at each
  decision, ``gap`` and ``lead-off`` with their durations, ``quality ...`` on
  changes. Gaps hold 0 mV (EDF+C has no missing value). Written by pyedflib
  (``pip install 'selfmis-edge[edf]'``), record by record.
* **WFDB** (wfdb, PhysioNet tools): ``.hea`` + format-16 ``.dat`` written with
  numpy, gaps as the WFDB invalid sample (-32768, NaN in ``wfdb.rdrecord``);
  ``.atr`` with ``N`` at each beat, decisions and quality changes as notes
  (``"``), gaps and lead-off as ``~`` (subtype -1 = unreadable, 0 = clean again)
  (:mod:`.mit_annotations`).
* **CSV**: ``time_s, ecg_mv[, counts], lead_off, gap`` after a ``# fs=... lead=... units=mV``
  line, gaps as empty fields; and
  ``*.events.csv`` with the beats, decisions, quality changes, gaps and lead-off.

When every chunk carried device counts at one scale that fits 16 bits, the
counts are written as the digital values (gain = 1000 / µV-per-count): the
export holds exactly what the wire carried. Otherwise the mV are quantised to
16 bits over the recording's range.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from .mit_annotations import NOISE, NORMAL, NOTE, write_annotations
from .recording import RecordingError
from .recording_timeline import GAP, LEAD_OFF, Timeline, iter_blocks, scan

__all__ = ["export", "FORMATS", "DigitalScale", "digital_scale", "decision_text", "ExportError"]

FORMATS = ("edf", "wfdb", "csv")
_BLOCK_S = 600  # seconds of signal per block written


class ExportError(RecordingError):
    """An export that cannot be made (the message names the recording or the output)."""


@dataclass
class DigitalScale:
    """16-bit digital values: ``mV = digital * uv_per_adu / 1000``."""

    uv_per_adu: float
    from_counts: bool   # digital values are the device's own counts

    @property
    def adu_per_mv(self) -> float:
        return 1000.0 / self.uv_per_adu

    def digital(self, mv: np.ndarray, counts) -> np.ndarray:
        if self.from_counts:
            return counts.astype(np.int32)
        d = np.round(np.nan_to_num(mv) * (1000.0 / self.uv_per_adu))
        return np.clip(d, -32767, 32767).astype(np.int32)


def digital_scale(tl: Timeline) -> DigitalScale:
    uv = tl.counts_scale
    if uv and tl.count_range and -32767 <= tl.count_range[0] and tl.count_range[1] <= 32767:
        return DigitalScale(uv, True)
    lo, hi = tl.mv_range or (-1.0, 1.0)
    peak = max(abs(lo), abs(hi), 1e-3)
    raw = peak * 1000.0 / 32000.0            # µV per step with a little headroom
    e = 10.0 ** (math.floor(math.log10(raw)) - 2)
    return DigitalScale(math.ceil(raw / e) * e, False)  # 3 significant digits, rounded up


def decision_text(labels, probabilities: str, full: bool = True) -> str:
    """``decision: MI,IMI | MI=0.834 IMI=0.412 ...`` (``full=False``: the labels only)."""
    head = "decision: " + (",".join(labels) if labels else "none")
    return head + " | " + probabilities if full and probabilities else head


def _out(tl: Timeline, out, ext: str) -> Path:
    if out is None:
        out = tl.path / "export" / tl.path.name
    out = Path(out)
    if ext and out.suffix.lower() == ext:
        out = out.with_suffix("")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def export(directory, to: str, out=None) -> dict:
    """Export recording ``directory`` to ``to`` (edf, wfdb, csv); returns what was written."""
    if to not in FORMATS:
        raise ExportError(f"unknown export format {to!r} ({', '.join(FORMATS)})")
    tl = scan(directory)
    if not tl.n_samples:
        raise ExportError(f"{tl.path}: the recording holds no samples")
    files = {"edf": export_edf, "wfdb": export_wfdb, "csv": export_csv}[to](tl, out)
    return {"format": to, "files": [str(f) for f in files], "fs": tl.fs, "samples": tl.n_samples,
            "duration_s": round(tl.duration_s, 3), "beats": len(tl.beats),
            "decisions": len(tl.decisions), "gaps": len(tl.gaps), "lead_off": len(tl.lead_off)}


# ---------------------------------------------------------------- WFDB

def export_wfdb(tl: Timeline, out=None) -> list:
    base = _out(tl, out, ".hea")
    name = base.name
    scale = digital_scale(tl)
    checksum, first = 0, None
    with open(base.with_suffix(".dat"), "wb") as fh:
        for _, mv, fl, ct in iter_blocks(tl, int(_BLOCK_S * tl.fs), counts=scale.from_counts):
            d = scale.digital(mv, ct)
            d[(fl & GAP) > 0] = -32768  # WFDB's invalid sample
            d16 = d.astype("<i2")
            if first is None:
                first = int(d16[0])
            checksum += int(d16.astype(np.int64).sum())
            fh.write(d16.tobytes())
    checksum = (checksum + 32768) % 65536 - 32768
    start = datetime.fromtimestamp(tl.t0) if tl.t0 else None
    when = f" {start:%H:%M:%S.%f}"[:13] + f" {start:%d/%m/%Y}" if start else ""
    lead = tl.meta.get("lead") or "I"
    lines = [f"{name} 1 {tl.fs:.12g} {tl.n_samples}{when}",
             f"{name}.dat 16 {scale.adu_per_mv:.12g}(0)/mV 16 0 {first} {checksum} 0 ECG {lead}"]
    lines += [f"# {c}" for c in _comments(tl, scale)]
    base.with_suffix(".hea").write_text("\n".join(lines) + "\n")
    atr = base.with_suffix(".atr")
    write_annotations(atr, _wfdb_annotations(tl))
    return [base.with_suffix(".hea"), base.with_suffix(".dat"), atr]


def _comments(tl: Timeline, scale: DigitalScale) -> list:
    dev = tl.device()
    out = [f"SelfMIS recording {tl.path.name} (exported by selfmis recording export)"]
    out += [f"{k}: {v}" for k, v in dev.items()]
    out.append("digital values are the device's counts" if scale.from_counts
               else f"quantised from mV at {scale.uv_per_adu:g} uV per step")
    out.append(f"gaps: {len(tl.gaps)} ({sum(b - a for a, b in tl.gaps) / tl.fs:.3f} s), "
               f"lead-off: {len(tl.lead_off)} ({sum(b - a for a, b in tl.lead_off) / tl.fs:.3f} s)")
    return out


def _in_order(items, key=lambda a: a):
    """``items`` as they are when already sorted (the usual case: no copy), else sorted."""
    prev = None
    for it in items:
        if prev is not None and key(it) < prev:
            return sorted(items, key=key)
        prev = key(it)
    return items


def _wfdb_annotations(tl: Timeline):
    """All annotations in sample order, merged lazily (a day holds ~200k)."""
    spans = sorted([(a, b, "gap") for a, b in tl.gaps] + [(a, b, "lead-off") for a, b in tl.lead_off])
    streams = [
        ((pos, NORMAL, 0, "") for pos in _in_order(tl.beats)),
        ((pos, NOTE, 0, decision_text(labels, probs))
         for pos, labels, probs in _in_order(tl.decisions, key=lambda d: d[0])),
        ((pos, NOTE, 0, "quality ok" if ok else "quality bad: " + ",".join(reasons))
         for pos, ok, reasons in sorted(tl.quality, key=lambda q: q[0])),
        sorted([(a, NOISE, -1, what) for a, b, what in spans]
               + [(b, NOISE, 0, what + " end") for a, b, what in spans], key=lambda x: x[0]),
    ]
    return heapq.merge(*streams, key=lambda a: a[0])


# ---------------------------------------------------------------- EDF+

def _record_duration(fs: float) -> float:
    """The shortest data-record duration (<= 60 s, 0.01-s steps) holding a whole number of samples."""
    for k in range(100, 6001):
        d = k / 100.0
        if abs(fs * d - round(fs * d)) < 1e-6:
            return d
    for k in range(1, 100):
        d = k / 100.0
        if abs(fs * d - round(fs * d)) < 1e-6:
            return d
    raise ExportError(f"{fs:g} Hz has no EDF data-record length holding whole samples")


def _edf_number(v: float) -> float:
    """``v`` as EDF's 8-character header field will hold it."""
    for digits in range(8, 0, -1):
        s = f"{v:.{digits}g}"
        if len(s) <= 8:
            return float(s)
    raise ExportError(f"{v} does not fit an EDF header field")


def export_edf(tl: Timeline, out=None) -> list:
    try:
        import pyedflib
    except ImportError:
        raise ExportError("EDF export needs pyedflib: pip install 'selfmis-edge[edf]'") from None
    path = _out(tl, out, ".edf").with_suffix(".edf")
    scale = digital_scale(tl)
    rec_s = _record_duration(tl.fs)
    spr = int(round(tl.fs * rec_s))
    n_records = -(-tl.n_samples // spr)
    pad = n_records * spr - tl.n_samples
    n_annots = (len(tl.beats) + len(tl.decisions) + len(tl.quality) + len(tl.gaps)
                + len(tl.lead_off) + 1)
    w = pyedflib.EdfWriter(str(path), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        # annotations go one per data record and annotation signal: give them room
        w.set_number_of_annotation_signals(min(64, max(1, -(-n_annots // n_records) + 1)))
        if rec_s != 1.0:
            w.setDatarecordDuration(rec_s)
        pmax = _edf_number(32767 * scale.uv_per_adu / 1000.0)
        dev = tl.device()
        w.setSignalHeader(0, {"label": f"ECG {tl.meta.get('lead') or 'I'}", "dimension": "mV",
                              "sample_frequency": tl.fs, "physical_max": pmax,
                              "physical_min": -pmax, "digital_max": 32767, "digital_min": -32767,
                              "transducer": "", "prefilter": ""})
        if tl.t0:
            w.setStartdatetime(datetime.fromtimestamp(tl.t0).replace(microsecond=0))
        w.setEquipment(str(dev.get("device_id") or dev.get("source") or "").replace(" ", "_")[:60])
        w.setRecordingAdditional(f"selfmis_{tl.path.name}".replace(" ", "_")[:60])
        for onset, duration, text in _edf_annotations(tl):
            w.writeAnnotation(onset, duration, text)
        if pad:
            w.writeAnnotation(tl.n_samples / tl.fs, pad / tl.fs, "gap (end padding)")
        block = spr * max(1, int(_BLOCK_S / rec_s))
        for start, mv, fl, ct in iter_blocks(tl, block, counts=scale.from_counts):
            d = scale.digital(mv, ct)
            d[(fl & GAP) > 0] = 0
            if len(d) % spr:
                d = np.concatenate([d, np.zeros(spr - len(d) % spr, np.int32)])
            d = np.ascontiguousarray(d, dtype=np.int32)
            for r in range(0, len(d), spr):  # one call writes one data record
                w.blockWriteDigitalSamples(d[r:r + spr])
    finally:
        w.close()
    return [path]


def _edf_annotations(tl: Timeline):
    fs = tl.fs
    for pos in tl.beats:
        yield pos / fs, -1, "N"
    for pos, labels, probs in tl.decisions:
        yield pos / fs, -1, decision_text(labels, probs, full=False)
    for pos, ok, reasons in tl.quality:
        yield pos / fs, -1, "quality ok" if ok else ("quality bad: " + ",".join(reasons))[:40]
    for what, spans in (("gap", tl.gaps), ("lead-off", tl.lead_off)):
        for a, b in spans:
            yield a / fs, (b - a) / fs, what


# ---------------------------------------------------------------- CSV

def _time_decimals(fs: float) -> int:
    """Decimals that write i / fs exactly when they can (500 Hz: 3), else 6."""
    for k in range(0, 7):
        if abs(10 ** k / fs - round(10 ** k / fs)) < 1e-9:
            return k
    return 6


def _fixed(v: np.ndarray, dec: int, valid=None) -> np.ndarray:
    """int64 ``v`` (the number times 10**dec) -> (n, width) ASCII matrix, right-aligned, padded
    with spaces (removed later); rows where ``valid`` is False stay blank."""
    n = len(v)
    a = np.abs(v)
    n_int = max(1, len(str(int(a.max()) // 10 ** dec)) if n else 1)
    width = 1 + n_int + (1 + dec if dec else 0)
    out = np.full((n, width), 32, np.uint8)
    col, rem = width - 1, a.copy()
    for _ in range(dec):
        out[:, col] = rem % 10 + 48
        rem //= 10
        col -= 1
    if dec:
        out[:, col] = 46  # '.'
        col -= 1
    ndig = np.ones(n, np.int64)
    for j in range(n_int):
        if j:
            more = rem > 0
            out[more, col] = (rem[more] % 10 + 48).astype(np.uint8)
            ndig += more
        else:
            out[:, col] = rem % 10 + 48
        rem //= 10
        col -= 1
    neg = v < 0
    if neg.any():
        rows = np.flatnonzero(neg)
        out[rows, (width - 1 - (dec + 1 if dec else 0) - ndig[neg])] = 45  # '-'
    if valid is not None:
        out[~valid] = 32
    return out


def _mv_decimals(scale: DigitalScale) -> int:
    if not scale.from_counts:
        return 6
    step_mv = scale.uv_per_adu / 1000.0
    for k in range(3, 10):   # exact when the step is a whole number of 10**-k mV
        if abs(step_mv * 10 ** k - round(step_mv * 10 ** k)) < 1e-6:
            return k
    return 7


def export_csv(tl: Timeline, out=None) -> list:
    base = _out(tl, out, ".csv")
    path = base.with_suffix(".csv")
    events = base.with_suffix(".events.csv")
    scale = digital_scale(tl)
    with_counts = scale.from_counts
    tdec, vdec = _time_decimals(tl.fs), _mv_decimals(scale)
    comma, nl = np.full((1, 1), 44, np.uint8), np.full((1, 1), 10, np.uint8)
    with open(path, "wb") as fh:
        fh.write(f"# fs={tl.fs:.12g} lead={tl.meta.get('lead') or 'I'} units=mV\n".encode())
        fh.write(("time_s,ecg_mv" + (",counts" if with_counts else "") + ",lead_off,gap\n").encode())
        for start, mv, fl, ct in iter_blocks(tl, 1 << 18, counts=with_counts):
            n = len(mv)
            ok = ((fl & GAP) == 0) & np.isfinite(mv)
            i = np.arange(start, start + n, dtype=np.int64)
            t = np.round(i * (10 ** tdec / tl.fs)).astype(np.int64)
            cols = [_fixed(t, tdec), comma.repeat(n, 0),
                    _fixed(np.round(np.nan_to_num(mv).astype(np.float64) * 10 ** vdec).astype(np.int64),
                           vdec, ok), comma.repeat(n, 0)]
            if with_counts:
                cols += [_fixed(ct, 0, ok), comma.repeat(n, 0)]
            cols += [((fl & LEAD_OFF) > 0).astype(np.uint8)[:, None] + 48, comma.repeat(n, 0),
                     ((fl & GAP) > 0).astype(np.uint8)[:, None] + 48, nl.repeat(n, 0)]
            m = np.concatenate(cols, axis=1).ravel()
            fh.write(m[m != 32].tobytes())
    rows = []
    fs = tl.fs
    for pos in tl.beats:
        rows.append((pos, "beat", 0, "N"))
    for pos, labels, probs in tl.decisions:
        rows.append((pos, "decision", 0, decision_text(labels, probs)))
    for pos, ok, reasons in tl.quality:
        rows.append((pos, "quality", 0, "ok" if ok else "bad: " + ",".join(reasons)))
    for what, spans in (("gap", tl.gaps), ("lead_off", tl.lead_off)):
        rows += [(a, what, b - a, "") for a, b in spans]
    rows.sort(key=lambda r: r[0])
    with open(events, "w") as fh:
        fh.write("time_s,sample,type,duration_s,text\n")
        for pos, kind, dur, text in rows:
            fh.write(f"{pos / fs:.{tdec}f},{pos},{kind},{dur / fs:.{tdec}f},\"{text}\"\n")
    return [path, events]
