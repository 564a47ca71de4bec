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
table with its thresholds), while the alarm -- ``status.alarm`` (the labels on,
and since when) and the alarm log (the last :data:`ALARM_LOG` onsets and clears,
``alarms`` in a snapshot, ``new_alarms`` in a tick) -- changes only on a state
change (:class:`~..decision.StateChanges`), never with each beat.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from ..decision import StateChanges

__all__ = ["ViewState", "DISPLAY_HZ", "HISTORY_S", "ALARM_LOG"]

DISPLAY_HZ = 100.0
HISTORY_S = 10.0
#: alarm changes (onset / cleared) kept per device for the page's log
ALARM_LOG = 20

_LINK_STATES = {"connected": "connected", "hello": None, "reconnected": "connected",
                "reconnecting": "reconnecting", "restarting": "reconnecting", "disconnected": "reconnecting",
                "lost": "lost",
                "end": "ended", "rate_mismatch": "rate mismatch"}


class _Device:
    def __init__(self, did: str):
        self.id = did
        self.trace = deque()            # (t, y) display points, last HISTORY_S seconds
        self.new_trace = []             # [t0, dt, [y...]] segments since the last tick
        self.beats = deque()            # beat events of the last HISTORY_S seconds
        self.new_beats = []
        self.alarms = deque(maxlen=ALARM_LOG)  # {"t", "labels", "onset", "cleared", "state"}
        self.new_alarms = []
        self.status = {"link": "starting", "quality": None, "hr": None, "beat_p": None, "decision": None,
                       "alarm": None, "t": 0.0, "t_arrival": None, "fs": None, "error": None,
                       "rate_mismatch": False}
        self._carry = np.zeros(0, np.float32)  # source samples not yet making a whole display block
        self._carry_t0 = 0.0


class ViewState:
    def __init__(self):
        self._lock = threading.Lock()
        self._devices: dict[str, _Device] = {}
        self._changes = StateChanges()
        self.model: dict | None = None

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
                change = self._changes.change(did, e)
                if change is not None:
                    a = {"t": e.get("t"), "labels": list(e.get("labels") or ()), **change, "state": e.get("state")}
                    st["alarm"] = {"labels": a["labels"], "since": a["t"], "state": a["state"]}
                    d.alarms.append(a)
                    d.new_alarms.append(a)
            elif kind == "quality":
                st["quality"] = {"ok": e.get("ok"), "reasons": e.get("reasons", []), "t": e.get("t")}
            elif kind == "link":
                new = _LINK_STATES.get(e.get("kind"))
                if e.get("kind") == "rate_mismatch":
                    st["rate_mismatch"] = True
                elif new is not None:
                    st["link"] = new
            elif kind == "error":
                st["error"] = e.get("message")
                st["link"] = "lost"

    # ---------------------------------------------------------------- server side

    def tick(self) -> dict:
        """What changed since the last tick, for every device (one SSE message)."""
        with self._lock:
            out = {}
            for did, d in self._devices.items():
                out[did] = {"trace": d.new_trace, "beats": d.new_beats, "status": dict(d.status)}
                if d.new_alarms:
                    out[did]["new_alarms"] = d.new_alarms
                d.new_trace, d.new_beats, d.new_alarms = [], [], []
        return {"type": "tick", "t_wall": time.time(), "devices": out}

    def snapshot(self) -> dict:
        """Everything a new viewer needs: the last 10 s of trace and beats, and the status."""
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
                out[did] = {"trace": segs, "beats": list(d.beats), "status": dict(d.status),
                            "alarms": list(d.alarms)}
        return {"type": "snapshot", "t_wall": time.time(), "model": self.model, "devices": out}
