"""The pipeline's last stages, per beat: 4. a beat -> 5. its window scored -> 6. the rolling decision.

Split from :mod:`.pipeline` (a mixin of :class:`~.pipeline.Pipeline`, whose state it uses:
the window buffer and its flags, the quality gate, the decider); also the ``decision`` event
of a DECISION frame made on the wearable itself.
"""
from __future__ import annotations

import numpy as np

from selfmis.preprocess import preprocess_window

__all__ = ["BeatScoring", "device_decision_event", "F_LEAD_OFF", "F_GAP", "F_SAT", "LATENCY_KEEP"]

F_LEAD_OFF, F_GAP, F_SAT = 1, 2, 4
#: decisions whose latency the summary's percentiles cover (the most recent ones)
LATENCY_KEEP = 100_000


def device_decision_event(f, labels: list, card_id) -> dict:
    """A DECISION frame (decided on the wearable) as the gateway's own ``decision`` event,
    marked ``on_device``; labels are the card's when the device runs the same bundle."""
    names = labels if card_id == f.bundle_id and len(labels) == len(f.probabilities) else \
        [f"label{j}" for j in range(len(f.probabilities))]
    ev = {"type": "decision", "t": round(f.t_s, 3),
          "probabilities": dict(zip(names, [round(p, 6) for p in f.probabilities])),
          "labels": [n for j, n in enumerate(names) if f.active >> j & 1], "n_beats": f.n_beats,
          "state": f.state, "operating_point": f.operating_point or None, "hr": f.hr,
          "quality": "ok", "latency_ms": None, "on_device": True, "seq": f.seq}
    if names is not labels:
        ev["warning"] = (f"the device's bundle (id {f.bundle_id:08x}) is not this gateway's model card; "
                         "labels by position")
    return ev


def _median(values) -> float:
    v = sorted(values)  # a handful of RR intervals: plain Python beats np.median's overhead
    m = len(v)
    return 0.5 * (v[(m - 1) // 2] + v[m // 2])


class BeatScoring:
    """Per-beat scoring and decisions (see the module doc); mixed into :class:`~.pipeline.Pipeline`."""

    def _beat(self, r: int) -> list:
        events = []
        if self.rate_state != "ok" or self.signal_state != "ok":
            # heart rate and windows are wrong by the rate's error, and a column that is not ECG
            # has no beats: report nothing
            reason = f"rate_{self.rate_state}" if self.rate_state != "ok" else f"signal_{self.signal_state}"
            self.suppressed[reason] = self.suppressed.get(reason, 0) + 1
            self._last_beat = None
            self._rr.clear()
            return events
        t = self._t(r)
        tail = self._tail_reasons(r + self.post)  # the not yet assessed end, judged once per beat
        reasons = self.quality.window_reasons(r - self.post, r + self.post, tail=tail)
        if reasons:
            # a "beat" found in a bad stretch is not reported; RR restarts after it
            self._last_beat = None
            self._rr.clear()
            return events
        rr = None
        if self._last_beat is not None:
            rr = (r - self._last_beat) / self.fs
            if 0.25 <= rr <= 3.0:
                self._rr.append(rr)
            else:
                self._rr.clear()
        self._last_beat = r
        hr = 60.0 / _median(self._rr) if self._rr else None
        self.n_beats += 1
        beat = {"type": "beat", "t": round(t, 3), "rr": None if rr is None else round(rr, 3),
                "hr": None if hr is None else round(hr, 1)}
        events.append(beat)
        if self.keep_signal:
            self.beat_log.append({"t": t})
        if self.model is None:
            return events
        w0 = r - self.O
        if w0 < 0 or w0 < self._buf_start or r + self.post > self._n:
            return events  # not enough history yet (the first 4.5 s of a segment)
        self._eligible += 1
        if (self._eligible - 1) % self.every_k:
            return events
        reasons = self.quality.window_reasons(w0, r + self.post, tail=tail)
        if self.max_gap is not None:
            i0 = w0 - self._buf_start
            filled = int(np.count_nonzero(self._flags[i0:i0 + self.W] & F_GAP))
            if filled > self.max_gap:
                reasons = reasons + ["gap"]
        if reasons:
            self.decider.reset()
            for q in reasons:
                self.suppressed[q] = self.suppressed.get(q, 0) + 1
            return events
        proba = self._ahead.get(r)
        if proba is None:
            window = self._buf[w0 - self._buf_start: w0 - self._buf_start + self.W]
            proba = self.model.predict_proba(preprocess_window(window, self.spec)[None])[0]
        self.n_scored += 1
        beat["p"] = dict(zip(self.labels, np.round(proba.astype(np.float64), 6).tolist()))
        if self.keep_signal:
            self.beat_log[-1]["p"] = beat["p"]
        d = self.decider.add(proba, t)
        if d is None:
            return events
        t_complete = self._completed_at(r + self.post)
        latency = (self.clock() - t_complete) * 1e3 if t_complete is not None else None
        if latency is not None:
            self._lat_ms[self._n_lat % LATENCY_KEEP] = latency
            self._n_lat += 1
        self.n_decisions += 1
        dec = {"type": "decision", "t": round(t, 3), **d, "hr": beat["hr"], "quality": "ok",
               "latency_ms": None if latency is None else round(latency, 3)}
        self.last_decision = dec
        events.append(dec)
        return events

    def _score_ahead(self, beats: list) -> dict:
        """{beat: probabilities} for the beats of one chunk whose windows are complete, as one
        batch: a chunk of several beats (replay, a burst after a stall) then pays numpy's and
        the interpreter wrapper's per-call costs once. Each row is bit-identical to scoring
        its window alone (row-wise filtering and standardising; the model sees one window per
        invoke either way); whether a beat is scored is still decided, in order, by _beat."""
        rows = [r for r in beats if r - self.O >= max(0, self._buf_start) and r + self.post <= self._n]
        if len(rows) < 2:
            return {}
        i0 = np.asarray(rows) - self.O - self._buf_start
        windows = self._buf[i0[:, None] + np.arange(self.W)]
        proba = self.model.predict_proba(preprocess_window(windows, self.spec))
        return dict(zip(rows, proba))

    def _tail_reasons(self, stop: int):
        """Verdict on the one block's worth of samples ending at ``stop`` when the gate has
        not assessed up to ``stop`` yet (None when it has)."""
        if stop <= self.quality.n_done:
            return None
        i1 = min(len(self._buf), stop - self._buf_start)
        i0 = max(0, i1 - self.quality.block)
        return self.quality.assess(self._buf[i0:i1], self._flags[i0:i1])

    def _completed_at(self, n_needed: int):
        """t_mono of the chunk whose arrival made sample ``n_needed - 1`` available."""
        # newest chunks are at the right; the one we need is almost always among the last few
        found = None
        for n_end, t_mono in reversed(self._arrivals):
            if n_end < n_needed:
                break
            found = t_mono
        return found

