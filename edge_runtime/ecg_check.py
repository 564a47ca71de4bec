"""Is it ECG? A check that the chosen column of a stream looks like an electrocardiogram.

Nothing in a line of numbers says what it is: a Serial Plotter sketch's first column may be
``millis()``, a test sawtooth, a pulse-oximeter (PPG) curve or an unconnected pin. The model
then answers confidently on a signal it has never seen. So, before the first decision and
continuously after it, the runtime checks the stretch it holds (:func:`assess`) and withholds
every beat and decision until the column has passed (:class:`EcgWatch`, driven by the source
like the rate check, :mod:`.sources.rate`).

The check, on 8-10 s resampled to 100 Hz (the model's rate), refuses with a reason:

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

from selfmis.preprocess import bandpass, resample

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


def _to_model_rate(x: np.ndarray, fs: float) -> np.ndarray:
    if abs(fs - _FS) < 1e-6:
        return x.astype(np.float64)
    return resample(x, fs, _FS).astype(np.float64)


def _envelope_peaks(env: np.ndarray, refractory: int) -> np.ndarray:
    """Local maxima of ``env`` above half its 98th percentile, at least ``refractory`` apart
    (largest first)."""
    thr = 0.5 * float(np.percentile(env, 98))
    cand = np.flatnonzero((env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & (env[1:-1] > thr)) + 1
    taken: list = []
    for i in cand[np.argsort(env[cand])[::-1]]:
        if all(abs(i - j) >= refractory for j in taken):
            taken.append(int(i))
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
    y = _to_model_rate(x, fs)
    if len(y) < 32:
        return EcgVerdict(False, ["flat"], m)
    wide = bandpass(y, _FS, 0.5, 40.0).astype(np.float64)
    qrs = bandpass(y, _FS, 5.0, 25.0).astype(np.float64)
    ws = np.sort(wide)
    k = int(0.005 * (len(ws) - 1) + 0.5)
    m["p2p_mv"] = round(float(ws[-1 - k] - ws[k]), 5)
    if m["p2p_mv"] < MIN_FLAT_MV:
        return EcgVerdict(False, ["flat"], m)
    reasons = []
    if m["one_way"] > MAX_ONE_WAY:
        reasons.append("monotonic")
    m["qrs_share"] = round(float((qrs ** 2).sum() / max((wide ** 2).sum(), 1e-30)), 4)
    if m["qrs_share"] < MIN_QRS_SHARE:
        reasons.append("no_qrs")
    # an RMS envelope over 80 ms of the QRS band, its peaks at least 250 ms apart
    w = 8
    env = np.sqrt(np.convolve(qrs ** 2, np.ones(w) / w, mode="same"))
    peaks = _envelope_peaks(env, refractory=int(0.25 * _FS))
    med = float(np.median(env)) + 1e-12
    m["beats"] = int(len(peaks))
    m["hr_bpm"] = round(60.0 * len(peaks) / (len(y) / _FS), 1)
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

    def __init__(self, name: str, window_s: float = 10.0, every_s: float = 2.0, revoke_after: int = 3,
                 column_desc: str = "the chosen column",
                 alternatives: Optional[Callable[[], dict]] = None):
        self.name, self.window_s, self.every_s = name, window_s, every_s
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
        if not isinstance(item, Chunk):
            if isinstance(item, LinkEvent) and item.discontinuity:
                self.reset()
            return [item]
        out = []
        if self.state is None:
            self.state = "unverified"
            out.append(LinkEvent("signal_unverified", {"column": self.column_desc}, item.t_arrival))
        if not item.fs or item.lead_off or not len(item.samples):
            if item.lead_off:
                self.reset()  # judged again on what follows the electrodes' return
            out.append(item)
            return out
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
            out += self._judge(np.concatenate(self._buf)[-keep:], fs, item.t_arrival)
        out.append(item)
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
