"""What the web view shows, per device, kept from the gateway's events and chunks.

:class:`ViewState` is fed on the gateway's processing thread (``on_event``,
``on_chunk``) and read every 100 ms by the server's broadcaster (``tick``) and
by ``/api/status`` (``snapshot``); one lock guards both sides, held only for
list appends and copies, so a pipeline never waits on a viewer.

The trace is decimated for display to about :data:`DISPLAY_HZ` samples a
second: each block of ``fs / DISPLAY_HZ`` source samples is shown by its sample
of largest magnitude, so R peaks stay visible (plain sub-sampling would cut
their tips). Only the last :data:`HISTORY_S` seconds are kept.

Decisions: ``status.decision`` is the latest rolling decision (the probability
table with its thresholds), while the alarm -- ``status.alarm`` (the alarm labels
on, and since when: signal time ``since`` and Unix time ``since_wall``) and the
alarm log (the last :data:`ALARM_LOG` onsets and clears, ``alarms`` in a
snapshot, ``new_alarms`` in a tick) -- changes only on a state change
(:class:`~..decision.StateChanges`), never with each beat. Only alarm labels
count (:func:`..labels.is_alarm`): ``NORM`` going on is not an alarm.

Three states are kept apart, because they mean different things to a carer:

* **link / staleness**: ``silent_s`` (seconds since the last sample arrived,
  computed at each tick) -- at :data:`STALE_S` the page greys the device and
  calls its alarm "last known";
* **signal quality**: the quality gate's verdict on the samples (lead-off,
  noise, flat line), ``status.quality``;
* **sample rate**: ``status.rate`` -- ``checking`` (a declared rate not yet
  confirmed by arrival times), ``ok`` or ``mismatch``, with the words to show
  and, for a mismatch, the exact fix (:func:`rate_status`). Decisions are held
  while it is not ``ok``; the quality badge never says "ok" for a rate.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from ..decision import StateChanges
from ..labels import is_alarm

__all__ = ["ViewState", "DISPLAY_HZ", "HISTORY_S", "ALARM_LOG", "STALE_S", "rate_status"]

DISPLAY_HZ = 100.0
HISTORY_S = 10.0
#: alarm changes (onset / cleared) kept per device for the page's log
ALARM_LOG = 20
#: seconds without a sample after which a device is shown as having no signal. Live sources
#: deliver every <= 0.5 s (BLE notifications at 130 Hz carry ~0.55 s: still under 2 s), and the page
#: must say so within 3 s of the last sample (it ticks every 0.1 s).
STALE_S = 2.0

_LINK_STATES = {"connected": "connected", "hello": None, "reconnected": "connected",
                "reconnecting": "reconnecting", "restarting": "reconnecting", "disconnected": "reconnecting",
                "lost": "lost", "end": "ended"}
_RATE_KINDS = ("rate_unverified", "rate_ok", "rate_locked", "rate_mismatch")


def rate_status(kind: str, e: dict, source_kind: str | None = None) -> dict:
    """What the page says about a device's sample rate after a ``rate_*`` link event.

    ``source_kind`` decides the fix of a mismatch: an ASCII stream's rate is whatever
    ``--fs`` says (it overrides a ``# fs=`` header), while a framed device declares its
    own in its HELLO, so only its firmware (or, for a recording streamed faster than
    real time, ``--trust-rate``) can change it."""
    def hz(v):
        return f"{float(v):.0f}" if v is not None else "?"
    declared, measured = e.get("declared_hz"), e.get("measured_hz")
    if kind == "rate_unverified":
        return {"state": "checking", "declared_hz": declared,
                "text": f"checking the sample rate (device says {hz(declared)} Hz): decisions held until "
                        "arrival times confirm it", "fix": None}
    if kind == "rate_ok":
        return {"state": "ok", "declared_hz": declared, "measured_hz": measured,
                "text": f"{hz(declared)} Hz, confirmed by arrival times", "fix": None}
    if kind == "rate_locked":
        return {"state": "ok", "declared_hz": e.get("fs"), "measured_hz": measured,
                "text": f"{hz(e.get('fs'))} Hz, measured (no rate declared)", "fix": None}
    fs = e.get("suggested_fs") or measured
    if source_kind == "ascii":
        fix = f"run with --fs {hz(fs)} (gateway.json: \"fs\": {hz(fs)})"
    else:
        fix = (f"the device's clock or declared rate is wrong: correct its firmware to {hz(declared)} Hz "
               "(a recording streamed faster than real time: add --trust-rate)")
    return {"state": "mismatch", "declared_hz": declared, "measured_hz": measured, "suggested_fs": fs,
            "text": f"device says {hz(declared)} Hz, measured {hz(measured)} Hz: decisions held", "fix": fix}


class _Device:
    def __init__(self, did: str):
        self.id = did
        self.trace = deque()            # (t, y) display points, last HISTORY_S seconds
        self.new_trace = []             # [t0, dt, [y...]] segments since the last tick
        self.beats = deque()            # beat events of the last HISTORY_S seconds
        self.new_beats = []
        self.alarms = deque(maxlen=ALARM_LOG)  # {"t", "labels", "onset", "cleared", "state"}
        self.new_alarms = []
        self.source_kind = None         # ascii, serial, ble, replay, simulate (the fix of a wrong rate)
        self.status = {"link": "starting", "quality": None, "hr": None, "beat_p": None, "decision": None,
                       "alarm": None, "t": 0.0, "t_arrival": None, "fs": None, "error": None,
                       "rate": None, "lead_off": False, "silent_s": None, "source": None}
        self._carry = np.zeros(0, np.float32)  # source samples not yet making a whole display block
        self._carry_t0 = 0.0


class ViewState:
    def __init__(self):
        self._lock = threading.Lock()
        self._devices: dict[str, _Device] = {}
        self._changes = StateChanges()
        self.model: dict | None = None

    def describe(self, did: str, source: str | None, source_kind: str | None) -> None:
        """The device's source as people know it (the port's full name) and its kind."""
        with self._lock:
            d = self._dev(did)
            d.status["source"], d.source_kind = source, source_kind

    def _dev(self, did: str) -> _Device:
        d = self._devices.get(did)
        if d is None:
            d = self._devices[did] = _Device(did)
        return d

    # ---------------------------------------------------------------- gateway side

    def on_chunk(self, did: str, chunk, t_end: float) -> None:
        x = np.asarray(chunk.samples, np.float32)
        fs = float(chunk.fs)
        k = max(1, int(round(fs / DISPLAY_HZ)))
        with self._lock:
            d = self._dev(did)
            t0 = t_end - len(x) / fs
            if len(d._carry) and abs(d._carry_t0 + len(d._carry) / fs - t0) > 1.5 / fs:
                d._carry = np.zeros(0, np.float32)  # a jump in time (reconnect): start afresh
            if not len(d._carry):
                d._carry_t0 = t0
            x = np.concatenate([d._carry, x])
            n = len(x) // k * k
            blocks = x[:n].reshape(-1, k)
            ys = blocks[np.arange(len(blocks)), np.argmax(np.abs(blocks), axis=1)] if n else x[:0]
            seg_t0 = d._carry_t0
            d._carry, d._carry_t0 = x[n:], d._carry_t0 + n / fs
            if len(ys):
                ys = np.round(ys.astype(np.float64), 4).tolist()
                dt = k / fs
                d.new_trace.append([round(seg_t0, 4), dt, ys])
                d.trace.extend((seg_t0 + i * dt, y) for i, y in enumerate(ys))
                horizon = t_end - HISTORY_S
                while d.trace and d.trace[0][0] < horizon:
                    d.trace.popleft()
            st = d.status
            st["t"], st["t_arrival"], st["fs"] = round(t_end, 3), chunk.t_arrival, fs
            if st["link"] in ("starting", "reconnecting"):
                st["link"] = "connected"
            st["lead_off"] = bool(chunk.lead_off)

    def on_event(self, did: str, e: dict) -> None:
        kind = e.get("type")
        with self._lock:
            d = self._dev(did)
            st = d.status
            if kind == "beat":
                b = {"t": e["t"], "hr": e.get("hr")}
                if "p" in e:
                    b["p"] = e["p"]
                    st["beat_p"] = e["p"]
                d.beats.append(b)
                d.new_beats.append(b)
                while d.beats and d.beats[0]["t"] < st["t"] - HISTORY_S:
                    d.beats.popleft()
                if e.get("hr") is not None:
                    st["hr"] = e["hr"]
            elif kind == "decision":
                st["decision"] = {k: v for k, v in e.items() if k not in ("type", "device")}
                alarms = [l for l in (e.get("labels") or ()) if is_alarm(l)]  # NORM on is not an alarm
                change = self._changes.change(did, {"labels": alarms})
                if change is not None:
                    a = {"t": e.get("t"), "wall": round(time.time(), 3), "labels": alarms, **change,
                         "state": e.get("state")}
                    st["alarm"] = {"labels": alarms, "since": a["t"], "since_wall": a["wall"], "state": a["state"]}
                    d.alarms.append(a)
                    d.new_alarms.append(a)
            elif kind == "quality":
                reasons = list(e.get("reasons") or [])
                # the pipeline reports rate verdicts as quality events too: they are the rate's state
                if not ("declared_hz" in e or "measured_hz" in e or any(r.startswith("rate_") for r in reasons)):
                    st["quality"] = {"ok": e.get("ok"), "reasons": reasons, "t": e.get("t")}
            elif kind == "link":
                lk = e.get("kind")
                new = _LINK_STATES.get(lk)
                if lk in _RATE_KINDS:
                    st["rate"] = rate_status(lk, e, d.source_kind)
                elif new is not None:
                    st["link"] = new
            elif kind == "error":
                st["error"] = e.get("message")
                st["link"] = "lost"

    # ---------------------------------------------------------------- server side

    @staticmethod
    def _status(d: _Device, now: float) -> dict:
        st = dict(d.status)
        st["silent_s"] = round(max(0.0, now - st["t_arrival"]), 2) if st["t_arrival"] else None
        return st

    def tick(self) -> dict:
        """What changed since the last tick, for every device (one SSE message)."""
        now = time.time()
        with self._lock:
            out = {}
            for did, d in self._devices.items():
                out[did] = {"trace": d.new_trace, "beats": d.new_beats, "status": self._status(d, now)}
                if d.new_alarms:
                    out[did]["new_alarms"] = d.new_alarms
                d.new_trace, d.new_beats, d.new_alarms = [], [], []
        return {"type": "tick", "t_wall": now, "devices": out}

    def snapshot(self) -> dict:
        """Everything a new viewer needs: the last 10 s of trace and beats, and the status."""
        now = time.time()
        with self._lock:
            out = {}
            for did, d in self._devices.items():
                pts = list(d.trace)
                segs = []
                if pts:
                    # one segment per run of evenly spaced points (a reconnect breaks a run)
                    t0, ys, dt = pts[0][0], [pts[0][1]], None
                    for (ta, _), (tb, yb) in zip(pts, pts[1:]):
                        step = tb - ta
                        if dt is None:
                            dt = step
                        if abs(step - dt) > 1e-6:
                            segs.append([round(t0, 4), dt, ys])
                            t0, ys, dt = tb, [yb], None
                        else:
                            ys.append(yb)
                    segs.append([round(t0, 4), dt or 1.0 / DISPLAY_HZ, ys])
                out[did] = {"trace": segs, "beats": list(d.beats), "status": self._status(d, now),
                            "alarms": list(d.alarms)}
        return {"type": "snapshot", "t_wall": now, "stale_s": STALE_S, "model": self.model, "devices": out}
