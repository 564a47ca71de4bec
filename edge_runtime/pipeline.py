"""The streaming pipeline: chunks in, JSON-ready events out.

Per chunk of source samples (any rate):

1. **hold & fill** -- lead-off samples are replaced by the last good value and
   samples lost on the link (``gap_before``) are bridged by a straight line from the
   last good value to the first new one (a step would add a fake edge), both flagged,
   so the sample clock stays continuous and the filters see no rail-to-rail jumps;
2. **resample** to the model rate (:class:`StreamResampler`, primed with the
   first sample so a DC offset does not ring at start-up); its group delay is
   subtracted from every reported time;
3. **quality gate** (:mod:`.quality`) on 1-s blocks; changes are reported;
4. **R-peak detection** (:mod:`.beats`, a causal integer Pan-Tompkins cascade, the same on the
   wearable), guard = the part of the model window after the R peak, so most beats are found
   exactly when their window is complete (those of the detector's learning window and its
   search-backs come later, at most :attr:`~.beats.StreamingBeatDetector.lateness` samples);
5. **beat-aligned window** (R at ``beat_offset_samples``), preprocessed with the
   contract's :func:`preprocess_window`, scored by the model (every k-th beat);
6. **rolling decision** (:mod:`.decision`) -- median, then a persistent alarm at the
   card's operating point; suppressed, and its history cleared,
   while the quality gate objects to any second of the window, while more than
   ``max_gap_s`` of the window was lost on the link and filled (the gap policy,
   :data:`.quality.MAX_FILLED_GAP_S`), and while the source's time base is not
   trusted (``rate_unverified`` / ``rate_mismatch`` link events, :mod:`.sources.rate`):
   a wrong sample rate makes every heart rate and every window wrong, so no
   beat and no decision is reported until the rate is confirmed; and likewise while
   the source has not verified that its column is ECG (``signal_unverified`` /
   ``signal_not_ecg`` link events, :mod:`.ecg_check`).

Events are plain dicts with a ``type``: ``beat``, ``decision``, ``quality``,
``link``; :meth:`Pipeline.summary` gives the final ``summary``. Times ``t`` are
seconds of signal since the start of the run (the source's sample clock, gaps
included, reconnect time excluded from ``signal_s``). Memory is bounded: only the last window, one second and the detector's
lateness are kept (unless ``keep_signal`` is set for ``--plot``).
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque

import numpy as np

from .beats import StreamingBeatDetector
from .decision import RollingDecision
from selfmis.limits import MAX_GAP_FILL_S
from selfmis.preprocess import MODEL_FS, PreprocessSpec, StreamResampler
from .quality import MAX_FILLED_GAP_S, QualityGate
from .scoring import F_GAP, F_LEAD_OFF, F_SAT, LATENCY_KEEP, BeatScoring, device_decision_event
from .stream import Chunk, LinkEvent

__all__ = ["Pipeline", "LATENCY_NOTE"]

log = logging.getLogger("selfmis.edge_runtime")

LATENCY_NOTE = ("latency: from the arrival of the chunk that completed a beat's window "
                "(at the model rate) to the decision being emitted")

_MAX_FILL_S = MAX_GAP_FILL_S  # longer gaps restart the stream instead of being filled (selfmis.limits)
_MIN, _MAX = np.minimum.reduce, np.maximum.reduce  # ndarray.min/max's reductions, without their wrappers


def _flags_or_zeros(flags, n: int) -> np.ndarray:  # None: none flagged (the usual chunk makes no array)
    return np.zeros(n, np.uint8) if flags is None else flags


class Pipeline(BeatScoring):
    """Chunks and link events in, JSON-ready events out: ``handle(item)`` -> list of dicts.

    Parameters
    ----------
    model : TFLiteModel or None
        Anything with ``predict_proba(windows)`` and a ``card``; None runs beats and quality only
        (no scoring; the spec then defaults to :class:`PreprocessSpec`).
    every_k_beats : int
        Score every k-th eligible beat (default 1: every beat).
    n_beats, min_beats : int
        Beats in the rolling median decision, and the fewest before the first decision.
    keep_signal : bool
        Keep the resampled signal and the beats (for ``--plot``; memory grows with the run).
    detector_kwargs, quality_kwargs : dict, optional
        Options of :class:`~.beats.StreamingBeatDetector` and :class:`~.quality.QualityGate`.
    max_gap_s : float
        Seconds of filled (lost) signal tolerated inside one decision window (the gap policy).
    decision_kwargs : dict, optional
        :meth:`~.decision.RollingDecision.from_card` options: ``operating_point``, ``persist_s``,
        ``persist_beats``, ``hysteresis``.
    clock : callable
        The clock of the chunks' ``t_mono`` that latencies are measured on (default
        :func:`time.perf_counter`; a simulated one for algorithmic-delay studies).
    batch_windows : bool
        Score the complete windows of one chunk as one batch (row-identical to one at a time).

    Raises
    ------
    BundleError
        ``decision_kwargs`` names an operating point the card does not have.

    Example
    -------
    >>> from selfmis.edge_runtime.interpreter import TFLiteModel
    >>> from selfmis.edge_runtime.sources.replay import ReplaySource
    >>> pipe = Pipeline(TFLiteModel())                    # the shipped default bundle
    >>> with ReplaySource("core/sample_data/ptbxl/records100/00000/00057_lr", fast=True) as src:
    ...     events = [e for item in src for e in pipe.handle(item)] + pipe.flush()
    >>> [e["type"] for e in events if e["type"] == "decision"][:1], pipe.summary()["beats"]
    (['decision'], 10)
    """

    def __init__(self, model=None, every_k_beats: int = 1, n_beats: int = 8, min_beats: int = 3,
                 keep_signal: bool = False, detector_kwargs: dict | None = None,
                 quality_kwargs: dict | None = None, max_gap_s: float = MAX_FILLED_GAP_S,
                 decision_kwargs: dict | None = None, clock=time.perf_counter,
                 batch_windows: bool = True):
        self.model = model
        #: the clock of the chunks' ``t_mono`` that latencies are measured on (a benchmark of the
        #: algorithmic delay passes a simulated one: :mod:`benchmarks.deferral`)
        self.clock = clock
        #: score the complete windows of one chunk as one batch (row-identical to one by one)
        self.batch_windows = batch_windows
        #: ``on_beat(r, events)``: called for every R peak (model-rate sample index) with the events
        #: it produced -- a public hook for studies that compare beat by beat (the C chain parity)
        self.on_beat = None
        card = getattr(model, "card", None)
        self.spec = card.spec if card is not None else PreprocessSpec()
        if abs(self.spec.fs - MODEL_FS) > 1e-9:
            log.info("model rate %.1f Hz (not %.0f)", self.spec.fs, MODEL_FS)
        self.fs = float(self.spec.fs)
        self.W = self.spec.window_samples
        self.O = self.spec.beat_offset_samples
        self.post = self.W - self.O
        self.labels = list(card.labels) if card is not None else []
        self._card_id = int(card.sha256[:8], 16) if card is not None and card.sha256 else None
        # operating point, persistence, hysteresis: RollingDecision.from_card's options
        dk = {"n_beats": n_beats, "min_beats": min_beats, **(decision_kwargs or {})}
        self.decider = (RollingDecision.from_card(card, **dk) if card is not None
                        else RollingDecision(self.labels, {}, **dk))
        self.every_k = max(1, int(every_k_beats))
        self.detector_kwargs = {"guard_s": max(0.3, self.post / self.fs), **(detector_kwargs or {})}
        self.quality_kwargs = quality_kwargs or {}
        self.keep_signal = keep_signal
        #: filled (lost) model-rate samples tolerated inside one decision window
        self.max_gap = int(round(max_gap_s * self.fs)) if np.isfinite(max_gap_s) else None
        #: time base: "ok" unless the source says otherwise (rate_* link events)
        self.rate_state, self.rate_detail = "ok", {}
        #: is the column ECG: "ok" unless the source checks it (signal_* link events, :mod:`.ecg_check`)
        self.signal_state = "ok"
        self.signal, self.signal_t0, self.beat_log = [], [], []
        self.n_beats = self.n_decisions = self.n_scored = 0
        self.samples_filled = 0  # source samples lost on the link and filled in
        self.suppressed = {}
        # the last LATENCY_KEEP latencies, preallocated: a day-long gateway's memory stays flat
        # (a deque of Python floats grew ~3 MB per device until full; the 24-h soak's RSS slope)
        self._lat_ms = np.zeros(LATENCY_KEEP, np.float32)
        self._n_lat = 0
        self.link_counts = {}
        self.last_decision = None
        self._t_start_wall = self.clock()
        self._t_start_cpu = time.process_time()
        self._signal_s = 0.0           # seconds of signal received (filled gaps included)
        self._timeline_s = 0.0         # event clock: signal plus time spent disconnected
        self._segment_fs = None
        self._t_offset = 0.0
        self._last_arrival = None
        self._pending_reset = False
        self._flushed = False
        self._new_segment(None, 0.0)

    # ------------------------------------------------------------------ segments

    @property
    def signal_s(self) -> float:
        """Seconds of signal received so far (samples lost on the link and filled included)."""
        return self._signal_s

    @property
    def timeline_s(self) -> float:
        """The event clock: :attr:`signal_s` plus the time spent disconnected (reconnects)."""
        return self._timeline_s

    def _new_segment(self, fs_in, t_offset: float) -> None:
        """(Re)start the sample clock: after a reconnect, a rate change or a long gap."""
        self._segment_fs = fs_in
        self._t_offset = t_offset
        self.resampler = StreamResampler(fs_in, self.fs) if fs_in else None
        self._primed = False
        self._discard = 0
        self.detector = StreamingBeatDetector(self.fs, **self.detector_kwargs)
        # bounded memory: the last window, one second, and how late the detector may name a beat
        self._keep = self.W + int(self.fs) + self.detector.lateness
        old = getattr(self, "quality", None)
        self.quality = QualityGate(self.fs, **self.quality_kwargs)
        if old is not None:  # block counts are cumulative over segments
            self.quality.counts = old.counts
        self.decider.reset()
        self._buf, self._flags = np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.uint8)
        self._buf_start = 0            # segment index of _buf[0]
        self._n = self._n_in = 0       # model-rate and source samples in this segment
        self._arrivals = deque(maxlen=4096)  # (segment index end, t_mono) per chunk ending in _buf
        self._last_good = None
        self._last_beat = None
        self._last_r = -10 ** 9        # last R peak handled (de-duplication across detector restarts)
        self._det_offset = 0           # segment index of the detector's sample 0
        self._bad = False              # last quality verdict was bad
        self._rr = deque(maxlen=5)
        self._eligible = 0
        self._ahead = {}               # probabilities scored ahead for this chunk's beats

    def _t(self, i: int) -> float:
        delay = self.resampler.delay_s if self.resampler is not None else 0.0
        return max(self._t_offset, self._t_offset + i / self.fs - delay)

    # ------------------------------------------------------------------ entry point

    def handle(self, item) -> list:
        """Process one source item.

        Parameters
        ----------
        item : Chunk or LinkEvent
            What a :class:`~.sources.base.Source` yields (anything else is ignored).

        Returns
        -------
        list of dict
            The events it caused, in order: ``beat``, ``decision``, ``quality``, ``link``
            (see :mod:`.output` for their fields).
        """
        if isinstance(item, LinkEvent):
            return self._link(item)
        if isinstance(item, Chunk):
            return self._chunk(item)
        return []

    _RATE_STATES = {"rate_unverified": "unverified", "rate_mismatch": "mismatch",
                    "rate_ok": "ok", "rate_locked": "ok"}

    def _link(self, ev: LinkEvent) -> list:
        if ev.kind == "device_decision":
            return [device_decision_event(ev.detail["frame"], self.labels, self._card_id)]
        self.link_counts[ev.kind] = self.link_counts.get(ev.kind, 0) + 1
        if ev.discontinuity:
            self._pending_reset = True
        if ev.detail.get("held_back"):  # a rate-limited event (output.EventBudget): only its reset counts
            return []
        out = {"type": "link", "kind": ev.kind, "t": round(self._timeline_s, 3)}
        out.update({k: v for k, v in ev.detail.items() if k not in out})
        events = self.flush() if ev.kind == "end" else []
        state = self._RATE_STATES.get(ev.kind)
        if state is not None:
            events += self._rate(state, ev.detail)
        state = self._SIGNAL_STATES.get(ev.kind)
        if state is not None and state != self.signal_state:
            self.signal_state = state
            if state != "ok":
                self.decider.reset()
                self._last_beat = None
                self._rr.clear()
            events.append({"type": "quality", "t": round(self._timeline_s, 3),
                           "ok": state == "ok" and self.rate_state == "ok" and not self._bad,
                           "reasons": [] if state == "ok" else [f"signal_{state}"]})
        return events + [out]

    _SIGNAL_STATES = {"signal_unverified": "unverified", "signal_not_ecg": "not_ecg", "signal_ecg": "ok"}

    def _rate(self, state: str, detail: dict) -> list:
        """The source's verdict on its time base; decisions only while it is "ok"."""
        was, self.rate_state = self.rate_state, state
        self.rate_detail = dict(detail, state=state)
        if state == was:
            return []
        if state != "ok":
            self.decider.reset()  # nothing scored on a doubtful clock may count later
            self._last_beat = None
            self._rr.clear()
        return [{"type": "quality", "t": round(self._timeline_s, 3), "ok": state == "ok" and not self._bad,
                 "reasons": [] if state == "ok" else [f"rate_{state}"], **{k: v for k, v in detail.items()}}]

    def flush(self) -> list:
        """End of a finite stream: push the resampler's delay out with the last value
        (as the offline :func:`resample` does), so the last beats get their windows.

        Returns
        -------
        list of dict
            The events of those last beats (empty when there is nothing to flush, or flushed already).
        """
        rs = self.resampler
        if rs is None or rs.identity or self._last_good is None or self._flushed:
            return []
        self._flushed = True
        pad = int(np.ceil(rs.delay_s * rs.fs_in)) + rs.down
        n_signal = int(round(self._n_in / rs.fs_in * self.fs))  # outputs the real input covers
        ev = self._chunk(Chunk(np.full(pad, self._last_good, np.float32), rs.fs_in, t_mono=self.clock()),
                         count_time=False, limit=n_signal + int(round(rs.delay_s * self.fs)))
        return ev

    def _chunk(self, c: Chunk, count_time: bool = True, limit: int | None = None) -> list:
        """One chunk through the stages of the module doc (1. hold & fill ... 6. decisions)."""
        fs_in = float(c.fs)
        if fs_in <= 0:
            return []  # no rate yet (a source holds such chunks until it knows one)
        gap = self._segment(c, fs_in)
        if count_time:
            self._flushed = False
        x, flags = self._hold_and_fill(c, gap)
        if count_time:
            self._n_in += len(x)
            self._signal_s += len(x) / fs_in
            self._timeline_s += len(x) / fs_in
        y, yflags = self._resample(x, flags)  # 2. primed with the first value: the filter starts settled
        if limit is not None:  # flushing: no output beyond what the real signal covers
            y, yflags = y[:max(0, limit - self._n)], yflags[:max(0, limit - self._n)]
        self._append(y, yflags, c.t_mono)
        if not len(y):
            return []
        events, feed = self._quality(y, yflags)
        events += self._beats(feed)
        if len(self._buf) > 2 * self._keep:
            cut = len(self._buf) - self._keep
            self._buf, self._flags = self._buf[cut:], self._flags[cut:]
            self._buf_start += cut
            # chunks ending before the buffer complete no window to come (kept: 0.4 MB a device in 7 min)
            while self._arrivals[0][0] < self._buf_start:
                self._arrivals.popleft()
        return events

    def _segment(self, c: Chunk, fs_in: float) -> int:
        """Restart the sample clock where the stream broke (a reconnect, a long gap, a new rate);
        returns the gap (source samples) still to fill."""
        gap = int(c.gap_before)
        x_len = len(c.samples)
        if gap / fs_in > _MAX_FILL_S or (self._pending_reset and self._segment_fs):
            lost = gap / fs_in
            if self._pending_reset and self._last_arrival is not None:
                # the wall time spent reconnecting moves the event clock, not the signal seconds
                lost = max(lost, c.t_arrival - self._last_arrival - x_len / fs_in)
            self._timeline_s += max(0.0, lost)
            if gap:
                self._signal_s += gap / fs_in
                self.samples_filled += gap
            self._new_segment(fs_in, self._timeline_s)
            gap = 0
        elif self._segment_fs is None or abs(fs_in - self._segment_fs) > 1e-6:
            if self._segment_fs is not None:
                log.warning("sample rate changed %.1f -> %.1f Hz: restarting the stream", self._segment_fs, fs_in)
            self._new_segment(fs_in, self._timeline_s)
        self._pending_reset = False
        self._last_arrival = c.t_arrival
        return gap

    def _hold_and_fill(self, c: Chunk, gap: int):
        """1. Lead-off held at the last good value, NaN and lost samples filled, all flagged."""
        x = np.asarray(c.samples, dtype=np.float32)
        flags = np.full(len(x), F_LEAD_OFF, np.uint8) if c.lead_off else None  # None: none flagged yet
        if c.lead_off:
            x = np.full(len(x), self._last_good if self._last_good is not None else 0.0, np.float32)
        lo_x = hi_x = 0.0
        if len(x):  # the usual chunk: two reductions say it is finite and clear of the rails
            lo_x, hi_x = float(_MIN(x)), float(_MAX(x))  # (NaN and inf propagate to these)
        if not (math.isfinite(lo_x) and math.isfinite(hi_x)):
            bad = ~np.isfinite(x)
            x = x.copy()
            x[bad] = self._last_good if self._last_good is not None else 0.0
            flags = _flags_or_zeros(flags, len(x))
            flags[bad] |= F_GAP
            lo_x, hi_x = float(_MIN(x)), float(_MAX(x))
        if c.rails is not None and len(x):
            lo, hi = c.rails
            tol = 1e-6 * max(abs(lo), abs(hi), 1.0)
            # the per-sample comparison (in float32) only near a rail: 1000 x tol is far wider than
            # float32's rounding of the bounds, so no sample it would flag is missed
            if lo_x <= lo + 1000 * tol or hi_x >= hi - 1000 * tol:
                flags = _flags_or_zeros(flags, len(x))
                flags[(x <= lo + tol) | (x >= hi - tol)] |= F_SAT
        if gap > 0:
            self.samples_filled += gap
            a = self._last_good if self._last_good is not None else (x[0] if len(x) else 0.0)
            b = x[0] if len(x) and not c.lead_off else a
            fill = np.linspace(a, b, gap + 2, dtype=np.float32)[1:-1]
            x = np.concatenate([fill, x])
            flags = np.concatenate([np.full(gap, F_GAP, np.uint8), _flags_or_zeros(flags, len(x) - gap)])
        if len(x) and not c.lead_off:
            self._last_good = float(x[-1])
        return x, flags

    def _append(self, y, yflags, t_mono: float) -> None:
        """Model-rate samples into the window buffer (and the plot's copy)."""
        if self.keep_signal and len(y):
            self.signal.append(y.copy())
            # unclamped: the first outputs precede t=0 by the resampler's delay
            self.signal_t0.append(self._t_offset + self._n / self.fs
                                  - (self.resampler.delay_s if self.resampler is not None else 0.0))
        self._buf = np.concatenate([self._buf, y])
        self._flags = np.concatenate([self._flags, yflags])
        self._n += len(y)
        self._arrivals.append((self._n, t_mono))

    def _quality(self, y, yflags):
        """3. Quality verdicts on 1-s blocks; ``(events, samples to feed the detector)``."""
        events, feed, restart_at = [], y, None
        for start, reasons in self.quality.push(y, yflags):
            events.append({"type": "quality", "t": round(self._t(start), 3), "ok": not reasons,
                           "reasons": reasons})
            if not reasons and self._bad:
                restart_at = start
            self._bad = bool(reasons)
        if restart_at is not None:
            # after a bad stretch the detector starts afresh from the first good block, so
            # a lead-off or saturation transient does not set its threshold for seconds
            self.detector = StreamingBeatDetector(self.fs, **self.detector_kwargs)
            self._det_offset = int(max(restart_at, self._buf_start))
            feed = self._buf[self._det_offset - self._buf_start:]
        return events, feed

    def _beats(self, feed) -> list:
        """4. beats -> 5. windows -> 6. decisions."""
        events, beats = [], []
        for r in self.detector.push(feed):
            r = int(r) + self._det_offset  # plain ints: numpy scalars make every round() below slow
            if r - self._last_r >= self.detector.refractory:
                self._last_r = r
                beats.append(r)
        if len(beats) > 1 and self.model is not None and self.batch_windows:
            self._ahead = self._score_ahead(beats)
        for r in beats:
            ev = self._beat(r)
            if self.on_beat is not None:
                self.on_beat(r, ev)
            events.extend(ev)
        self._ahead = {}
        return events

    def _resample(self, x, flags):
        rs = self.resampler  # flags: None (nothing flagged, the usual chunk) or one per source sample
        if rs.identity:
            return x, _flags_or_zeros(flags, len(x))
        if not self._primed and len(x):
            self._primed = True
            j = -(-rs.k // rs.down)  # whole periods of `down` inputs: output grid unchanged
            produced = len(rs.process(np.full(j * rs.down, x[0])))
            self._discard = j * rs.up - produced
        y = rs.process(x)
        if self._discard > 0:
            d = min(self._discard, len(y))
            y, self._discard = y[d:], self._discard - d
        if not len(y):
            return y, np.zeros(0, np.uint8)
        if flags is None or not flags.any():  # the usual chunk: nothing flagged, nothing to carry over
            return y, np.zeros(len(y), np.uint8)
        # each output inherits the flags of the source samples it mostly depends on
        src = np.minimum(np.arange(len(y)) * len(x) // max(1, len(y)), len(x) - 1) if len(x) else []
        return y, (flags[src] if len(x) else np.zeros(len(y), np.uint8))

    # ------------------------------------------------------------------ summary

    def summary(self, source_stats: dict | None = None, wall_s: float | None = None) -> dict:
        """The run's ``summary`` event.

        Parameters
        ----------
        source_stats : dict, optional
            The source's counters (:data:`~.sources.base.STAT_KEYS`).
        wall_s : float, optional
            Wall seconds of the run (default: since the pipeline was made).

        Returns
        -------
        dict
            Beats, scored windows, decisions, suppressions, latency percentiles, link counters,
            time base, quality blocks, signal and wall seconds, CPU seconds, the last decision.
        """
        wall = wall_s if wall_s is not None else self.clock() - self._t_start_wall
        lat = self._lat_ms[:min(self._n_lat, LATENCY_KEEP)].astype(np.float64)
        st = source_stats or {}
        out = {"type": "summary", "beats": self.n_beats, "scored": self.n_scored,
               "decisions": self.n_decisions, "suppressed": dict(self.suppressed),
               "latency_ms": {"p50": round(float(np.percentile(lat, 50)), 3) if len(lat) else None,
                              "p99": round(float(np.percentile(lat, 99)), 3) if len(lat) else None,
                              "max": round(float(lat.max()), 3) if len(lat) else None},
               "drops": int(st.get("drops", 0)), "lost_samples": int(self.samples_filled),
               "duplicates": int(st.get("duplicates", 0)), "stale": int(st.get("stale", 0)),
               "crc_errors": int(st.get("crc_errors", 0)), "resyncs": int(st.get("resyncs", 0)),
               "decode_errors": int(st.get("decode_errors", 0)),
               "events_held_back": int(st.get("events_held_back", 0)), "seq_jumps": int(st.get("seq_jumps", 0)),
               "reconnects": int(st.get("reconnects", 0)),
               "offline_s": round(float(st.get("offline_s", 0.0)), 3),
               "rate": dict(self.rate_detail) if self.rate_detail else None,
               "quality_blocks": {k: v for k, v in self.quality.counts.items() if v},
               "signal_s": round(self._signal_s, 3), "wall_s": round(wall, 3),
               "realtime_factor": round(self._signal_s / wall, 1) if wall > 0 else None,
               # CPU seconds of the process since the pipeline started (all threads): on a busy
               # machine signal_s / cpu_s is the real-time factor one free core would give
               "cpu_s": round(time.process_time() - self._t_start_cpu, 3),
               "last_decision": None}
        if self.last_decision is not None:
            out["last_decision"] = {k: self.last_decision.get(k) for k in
                                    ("t", "probabilities", "labels", "state", "operating_point")}
        return out
