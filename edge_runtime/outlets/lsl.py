"""``--lsl``: Lab Streaming Layer outlets per device, for recording with other biosignals (pylsl).

Per device two outlets, opened when its first chunk tells the rate:

* ``ECG`` -- one channel (the lead, e.g. ``I``) in microvolts, float32, nominal
  rate = the source's, ``source_id`` = the device id (LabRecorder and other
  tools find the stream again after a restart by it);
* ``Markers`` -- irregular rate, strings: the beat events and the decisions that
  change an alarm (onset / cleared, :class:`~..decision.StateChanges`, with
  ``onset`` and ``cleared`` added) as JSON, ``source_id`` = ``<device id>-markers``.
  The per-beat decisions in between are not sent (the JSON Lines keep them):
  a marker stream is read as events, and an alarm is one event.

Both are time-stamped on the device's **sample clock**: LSL time = anchor +
signal time, where the anchor is fixed when the first chunk arrives. A marker
at signal time ``t`` (a beat's R peak, a decision's beat) therefore lines up with
the ECG sample it refers to, not with when the host got round to sending it.
Samples the link lost (a sequence gap) are sent as the last value received (the LSL
stream stays regular); a reconnect moves the signal clock on by the time that
passed, like the JSON Lines ``t``.

Pushing to an outlet copies into liblsl's buffer and never blocks.
"""
from __future__ import annotations

import logging
import os
import tempfile

import numpy as np

from ..decision import StateChanges
from ..output import to_json

__all__ = ["LslOutlet"]

log = logging.getLogger("selfmis.edge_runtime")


def _quiet_liblsl() -> None:
    """liblsl logs INFO lines ("Loaded default config", its build) to stderr when it loads: keep
    them for ``--verbose`` only, through its own config (``LSLAPICFG``; a user's file wins)."""
    if "LSLAPICFG" in os.environ or logging.getLogger("selfmis").isEnabledFor(logging.DEBUG):
        return
    path = os.path.join(tempfile.gettempdir(), f"selfmis-liblsl-{os.getuid() if hasattr(os, 'getuid') else 0}.cfg")
    try:
        with open(path, "w") as fh:
            fh.write("[log]\nlevel = -1\n")  # warnings and errors only
    except OSError:
        return
    os.environ["LSLAPICFG"] = path


class LslOutlet:
    """A gateway sink (``on_chunk``, ``on_event``) with an ECG and a marker outlet per device."""

    def __init__(self, name_prefix: str = "SelfMIS"):
        _quiet_liblsl()
        try:
            import pylsl
        except ImportError:
            raise ImportError("pylsl is not installed: pip install 'selfmis-edge[lsl]'") from None
        self.pylsl = pylsl
        self.name_prefix = name_prefix
        self._ecg: dict = {}
        self._markers: dict = {}
        self._anchor: dict = {}
        self._last: dict = {}
        self._changes = StateChanges()
        self.samples_sent: dict = {}

    def _open(self, did: str, chunk, t_start: float) -> None:
        lsl = self.pylsl
        info = lsl.StreamInfo(f"{self.name_prefix} {did} ECG", "ECG", 1, float(chunk.fs), lsl.cf_float32, did)
        ch = info.desc().append_child("channels").append_child("channel")
        ch.append_child_value("label", "I")
        ch.append_child_value("unit", "microvolts")
        ch.append_child_value("type", "ECG")
        info.desc().append_child_value("manufacturer", "SelfMIS Edge")
        self._ecg[did] = lsl.StreamOutlet(info, chunk_size=0, max_buffered=60)
        minfo = lsl.StreamInfo(f"{self.name_prefix} {did} markers", "Markers", 1, lsl.IRREGULAR_RATE,
                               lsl.cf_string, f"{did}-markers")
        self._markers[did] = lsl.StreamOutlet(minfo)
        # LSL time of signal time 0: the first chunk's last sample is "now"
        self._anchor[did] = lsl.local_clock() - t_start
        self.samples_sent[did] = 0
        log.info("LSL outlets for %s: ECG (%g Hz) and markers", did, chunk.fs)

    def on_chunk(self, did: str, chunk, t_end: float) -> None:
        x = np.asarray(chunk.samples, np.float32)
        if not len(x):
            return
        if did not in self._ecg:
            self._open(did, chunk, t_end)
        uv = (x.astype(np.float64) * 1000.0).astype(np.float32)  # float64 product: integer µV stay exact
        if chunk.gap_before and did in self._last:  # samples lost on the link: the held value keeps the clock
            uv = np.concatenate([np.full(int(chunk.gap_before), self._last[did], np.float32), uv])
        self._last[did] = float(uv[-1])
        uv = uv.reshape(-1, 1)
        self._ecg[did].push_chunk(uv, self._anchor[did] + t_end - 1.0 / float(chunk.fs))
        self.samples_sent[did] += len(uv)

    def on_event(self, did: str, event: dict) -> None:
        kind = event.get("type")
        if kind == "decision":
            change = self._changes.change(did, event)  # kept up to date even before the outlet opens
            if change is None:
                return
            event = {**event, **change}
        elif kind != "beat":
            return
        if did not in self._markers:
            return
        self._markers[did].push_sample([to_json(event)],
                                       self._anchor[did] + float(event["t"]))

    def close(self) -> None:
        self._ecg.clear()  # liblsl closes an outlet when its last reference goes
        self._markers.clear()
