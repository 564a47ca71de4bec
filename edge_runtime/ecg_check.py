"""Is it ECG? A check that the chosen column of a stream looks like an electrocardiogram.

Nothing in a line of numbers says what it is: a Serial Plotter sketch's first column may be
``millis()``, a test sawtooth, a pulse-oximeter (PPG) curve or an unconnected pin. The model
then answers confidently on a signal it has never seen. So, before the first decision and
continuously after it, the runtime checks the stretch it holds (:func:`assess`) and withholds
every beat and decision until the column has passed (:class:`EcgWatch`, driven by the source
like the rate check, :mod:`.sources.rate`).

The check, on 6-10 s band-passed and taken to 100 Hz (the model's rate), refuses with a reason:

* ``flat`` -- robust peak-to-peak (0.5-40 Hz) under 0.02 mV, or no variation at all (a constant,
  an unconnected pin on a quiet board);
* ``monotonic`` -- more than 85% of the non-zero sample-to-sample steps go the same way: a counter
  or a timestamp (``millis()``) or a sawtooth. An ECG rises and falls about equally (PTB-XL Lead I:
  see ``benchmarks/results/hostile/is_ecg.md``);
* ``no_qrs`` -- the 5-25 Hz band (where the QRS complex is) holds less than :data:`MIN_QRS_SHARE`
  of the 0.5-40 Hz power: a smooth wave such as a PPG, breathing, a slow sine;
* ``no_beats`` -- no run of sharp, similar complexes at 24-220 bpm: the 5-25 Hz envelope's peaks
  stand less than :data:`MIN_PEAKINESS` times above its median (noise, a steady hum), or fewer
  than 3 were found, or their shapes do not repeat (median correlation with the median
  complex under :data:`MIN_TEMPLATE_CORR`);
* ``amplitude`` -- the complexes' peak-to-peak is outside 0.03-20 mV (a plausible QRS range in
  any scale a hobby board produces, counts at 1 µV/count included).

Thresholds were set on PTB-XL Lead I of folds 1-8 and the acceptance is reported on folds 9-10
(``python -m selfmis.benchmarks.is_ecg``; ``benchmarks/results/hostile/is_ecg.md``): a real
Lead I is accepted in >= 99% of records, the synthetic non-ECG signals never.

References: Pan & Tompkins, "A real-time QRS detection algorithm", IEEE TBME 32(3), 1985 (the
5-15/5-25 Hz QRS band); Clifford et al., Physiol. Meas. 33(9), 2012 (signal quality indices:
flat line, kurtosis-like peakiness, template matching).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

from selfmis.preprocess import bandpass

from .stream import Chunk, LinkEvent

__all__ = ["assess", "EcgVerdict", "EcgWatch", "MIN_QRS_SHARE", "MIN_PEAKINESS", "MIN_TEMPLATE_CORR"]

log = logging.getLogger("selfmis.edge_runtime")

_FS = 100.0                # assessed at the model rate: the QRS band is well inside its Nyquist
MIN_FLAT_MV = 0.02
MAX_ONE_WAY = 0.85         # share of non-zero steps going the same way
MIN_QRS_SHARE = 0.08       # 5-25 Hz power / 0.5-40 Hz power
MIN_PEAKINESS = 2.2        # median envelope peak / median envelope
MIN_TEMPLATE_CORR = 0.5
HR_RANGE_BPM = (24.0, 220.0)
AMP_RANGE_MV = (0.03, 20.0)
#: shortest stretch judged (s): a few beats even at 30 bpm
MIN_SECONDS = 6.0


@dataclass
class EcgVerdict:
    """``ok`` or not, the reasons (empty when ok), and the numbers behind them."""

    ok: bool
    reasons: list
    metrics: Dict[str, float] = field(default_factory=dict)


def _bands(x: np.ndarray, fs: float) -> tuple:
    """(0.5-40 Hz, 5-25 Hz) band-passed ``x``, on a 100 Hz grid: filtered at the source rate (one
    FFT each) and then sampled, which is what a resampler would give for these bands at a
    fraction of its cost (the check runs every few seconds per device)."""
    wide = bandpass(x, fs, 0.5, 40.0).astype(np.float64)
    qrs = bandpass(x, fs, 5.0, 25.0).astype(np.float64)
    if abs(fs - _FS) < 1e-6:
        return wide, qrs
    t = np.arange(len(x)) / fs
    grid = np.arange(0.0, t[-1], 1.0 / _FS)
    return np.interp(grid, t, wide), np.interp(grid, t, qrs)


def _envelope_peaks(env: np.ndarray, refractory: int) -> np.ndarray:
    """Local maxima of ``env`` above half its 98th percentile, at least ``refractory`` apart
    (largest first)."""
    thr = 0.5 * float(np.percentile(env, 98))
    cand = np.flatnonzero((env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & (env[1:-1] > thr)) + 1
    free = np.ones(len(env) + 2 * refractory, dtype=bool)  # offset by `refractory`
    taken: list = []
    for i in cand[np.argsort(env[cand])[::-1]]:
        if free[i + refractory]:
            taken.append(int(i))
            free[i + 1: i + 2 * refractory] = False
    return np.sort(np.asarray(taken, dtype=np.int64))


def assess(x, fs: float) -> EcgVerdict:
    """Does ``x`` (a stretch of at least :data:`MIN_SECONDS`, in mV or any linear scale of it)
    look like an ECG at ``fs`` Hz? See the module docstring for the rules."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    x = x[np.isfinite(x)]
    m: Dict[str, float] = {}
    if len(x) < 4 or np.ptp(x) == 0:
        return EcgVerdict(False, ["flat"], {"p2p_mv": 0.0})
    d = np.diff(x)
    nz = d[d != 0]
    m["one_way"] = round(float(max(np.mean(nz > 0), np.mean(nz < 0))), 4)
    if len(x) / fs * _FS < 32:
        return EcgVerdict(False, ["flat"], m)
    wide, qrs = _bands(x, fs)
    ws = np.sort(wide)
    k = int(0.005 * (len(ws) - 1) + 0.5)
    m["p2p_mv"] = round(float(ws[-1 - k] - ws[k]), 5)
    reasons = ["monotonic"] if m["one_way"] > MAX_ONE_WAY else []  # a ramp band-passes to nothing
    if m["p2p_mv"] < MIN_FLAT_MV:
        return EcgVerdict(False, reasons + ["flat"], m)
    m["qrs_share"] = round(float((qrs ** 2).sum() / max((wide ** 2).sum(), 1e-30)), 4)
    if m["qrs_share"] < MIN_QRS_SHARE:
        reasons.append("no_qrs")
    # an RMS envelope over 80 ms of the QRS band, its peaks at least 250 ms apart
    w = 8
    env = np.sqrt(np.convolve(qrs ** 2, np.ones(w) / w, mode="same"))
    peaks = _envelope_peaks(env, refractory=int(0.25 * _FS))
    med = float(np.median(env)) + 1e-12
    m["beats"] = int(len(peaks))
    m["hr_bpm"] = round(60.0 * len(peaks) / (len(wide) / _FS), 1)
    m["peakiness"] = round(float(np.median(env[peaks])) / med, 3) if len(peaks) else 0.0
    corr, amp = _complexes(qrs, wide, peaks)
    m["template_corr"], m["qrs_p2p_mv"] = round(corr, 3), round(amp, 5)
    lo, hi = HR_RANGE_BPM
    if (len(peaks) < 3 or m["peakiness"] < MIN_PEAKINESS or corr < MIN_TEMPLATE_CORR
            or not lo <= m["hr_bpm"] <= hi):
        reasons.append("no_beats")
    elif not AMP_RANGE_MV[0] <= amp <= AMP_RANGE_MV[1]:
        reasons.append("amplitude")
    return EcgVerdict(not reasons, reasons, m)


def _complexes(qrs: np.ndarray, wide: np.ndarray, peaks: np.ndarray) -> tuple:
    """(median correlation of each complex with the median complex, median peak-to-peak in mV)."""
    h = int(0.1 * _FS)
    keep = peaks[(peaks >= h) & (peaks + h < len(qrs))]
    if len(keep) < 3:
        return 0.0, 0.0
    idx = keep[:, None] + np.arange(-h, h + 1)
    seg = qrs[idx]
    tmpl = np.median(seg, axis=0)
    a = seg - seg.mean(1, keepdims=True)
    b = tmpl - tmpl.mean()
    den = np.sqrt((a ** 2).sum(1) * (b ** 2).sum()) + 1e-30
    corr = float(np.median((a @ b) / den))
    raw = wide[idx]
    amp = float(np.median(raw.max(1) - raw.min(1)))
    return corr, amp


class EcgWatch:
    """Per-source gate on top of :func:`assess`; ``process(item)`` -> items to pass on.

    Emits ``signal_unverified`` with the first chunk, then ``signal_ecg`` once a stretch of
    :data:`MIN_SECONDS` passes, or ``signal_not_ecg`` (reasons, metrics and, when another column
    of the stream passes, ``suggest``: the option that picks it). Re-assessed every ``every_s``
    on the last ``window_s``; a verified column is revoked after ``revoke_after`` refusals in a
    row (so one noisy stretch, which the quality gate handles, does not flap it). Lead-off
    stretches are not judged: the window restarts after them. ``alternatives()`` (set by the
    source) returns ``{option: (samples, fs)}`` for the stream's other columns.
    """

    def __init__(self, name: str, window_s: float = 10.0, every_s: float = 5.0, revoke_after: int = 2,
                 column_desc: str = "the chosen column",
                 alternatives: Optional[Callable[[], dict]] = None, max_hold_s: float = 15.0):
        self.name, self.window_s, self.every_s = name, window_s, every_s
        self.max_hold_s = max_hold_s
        self._held: Optional[list] = []  # None once released: nothing is held after the first verdict
        self._held_s = 0.0
        self.revoke_after, self.column_desc = revoke_after, column_desc
        self.alternatives = alternatives
        self.state: Optional[str] = None  # None, "unverified", "ecg", "not_ecg"
        self.last: Optional[EcgVerdict] = None
        self.refusals = 0
        self._told: set = set()
        self.reset()

    def reset(self) -> None:
        self._buf: list = []
        self._n = 0
        self._fs: Optional[float] = None
        self._since_check = 0.0

    def process(self, item) -> list:
        """Items to pass on. Until the first verdict the chunks are held (at most
        ``max_hold_s``), so the verdict precedes them: a stream that is ECG loses no beat to the
        check, only ~6 s of delay at its start (like a rate being measured, :mod:`.sources.rate`)."""
        if not isinstance(item, Chunk):
            if not (isinstance(item, LinkEvent) and (item.discontinuity or item.kind == "end")):
                return [item]  # link news goes ahead of held chunks
            out = self._release(judge=item.kind == "end")
            if item.discontinuity:
                self.reset()
            return out + [item]
        out = []
        if self.state is None:
            self.state = "unverified"
            out.append(LinkEvent("signal_unverified", {"column": self.column_desc}, item.t_arrival))
        out += self._take(item)
        if self._held is None:
            return out + [item]
        self._held.append(item)
        self._held_s += len(item.samples) / item.fs if item.fs else 0.0
        if self.state != "unverified" or self._held_s > self.max_hold_s:
            out += self._release()
        return out

    def _take(self, item: Chunk) -> list:
        """Add a chunk to the judged window; the verdict's events when one is due."""
        if not item.fs or item.lead_off or not len(item.samples):
            if item.lead_off:
                self.reset()  # judged again on what follows the electrodes' return
            return []
        fs = float(item.fs)
        if self._fs is not None and abs(fs - self._fs) > 1e-6:
            self.reset()
        self._fs = fs
        self._buf.append(np.asarray(item.samples, dtype=np.float32))
        self._n += len(item.samples)
        keep = int(self.window_s * fs)
        while self._buf and self._n - len(self._buf[0]) >= keep:
            self._n -= len(self._buf.pop(0))
        self._since_check += len(item.samples) / fs
        due = self._since_check >= (self.every_s if self.state != "unverified" else 1.0)
        if due and self._n >= MIN_SECONDS * fs:
            self._since_check = 0.0
            return self._judge(np.concatenate(self._buf)[-keep:], fs, item.t_arrival)
        return []

    def _release(self, judge: bool = False) -> list:
        """The held chunks (and, at the end of a short stream, a verdict on what there is)."""
        if not self._held:
            self._held = None
            return []
        out = []
        if judge and self.state == "unverified" and self._fs and self._n >= 3 * self._fs:
            out += self._judge(np.concatenate(self._buf), self._fs, self._held[-1].t_arrival)
        out += self._held
        self._held = None
        return out

    def _judge(self, x: np.ndarray, fs: float, t_arrival: float) -> list:
        v = assess(x, fs)
        self.last = v
        if v.ok:
            self.refusals = 0
            if self.state == "ecg":
                return []
            self.state = "ecg"
            log.info("%s: %s looks like ECG (QRS-band share %.2f, %d complexes, %.0f bpm)", self.name,
                     self.column_desc, v.metrics.get("qrs_share", 0), v.metrics.get("beats", 0),
                     v.metrics.get("hr_bpm", 0))
            return [LinkEvent("signal_ecg", {"column": self.column_desc, **v.metrics}, t_arrival)]
        self.refusals += 1
        if self.state == "not_ecg" or (self.state == "ecg" and self.refusals < self.revoke_after):
            return []
        self.state = "not_ecg"
        detail = {"column": self.column_desc, "reasons": v.reasons, **v.metrics}
        suggest = self._suggest()
        if suggest:
            detail["suggest"] = suggest
        key = (tuple(v.reasons), suggest)
        if key not in self._told:  # stderr once per kind of refusal; stdout has every event
            self._told.add(key)
            hint = (f"; {suggest} looks like ECG: pass {suggest}" if suggest else
                    "; check the wiring and the sketch, or pick the ECG with --column N / --label NAME")
            log.warning("%s: %s does not look like ECG (%s): no beats and no decisions%s", self.name,
                        self.column_desc, ", ".join(v.reasons), hint)
        return [LinkEvent("signal_not_ecg", detail, t_arrival)]

    def _suggest(self) -> Optional[str]:
        """The option naming another column that passes, if one does."""
        if self.alternatives is None:
            return None
        try:
            alts = self.alternatives()
        except Exception:  # a hint must never stop the stream
            return None
        for option, (x, fs) in alts.items():
            if fs and len(x) >= MIN_SECONDS * fs and assess(x, fs).ok:
                return option
        return None
