"""Bytes of the SelfMIS wire protocol -> chunks and link events.

Shared by every transport that carries the project's framed protocol (serial
port, the project's BLE GATT profile, the in-process simulator). The codec
itself is the firmware bridge's (:mod:`selfmis.protocol`);
this module only maps its messages onto the runtime's :class:`Chunk` /
:class:`LinkEvent` and keeps the sequence bookkeeping.
"""
from __future__ import annotations

import logging
import time

from selfmis import protocol  # the wire codec, one implementation
from selfmis import sequence
from selfmis.limits import MAX_GAP_FILL_S

from ..output import EventBudget, limit_events

from .base import Chunk, LinkEvent, SourceRefused, coalesce

__all__ = ["FramedStream"]

_DataFrame = protocol.DataFrame

log = logging.getLogger("selfmis.edge_runtime")


class FramedStream:
    """Incremental: ``feed(bytes)`` returns the chunks/events those bytes complete.

    Gain (µV per LSB) comes from the HELLO frame; until one arrives samples are
    scaled by ``default_uv_per_lsb`` and a ``no_hello`` event says so once.
    A sequence gap becomes a ``gap`` event and ``gap_before`` on the next chunk
    (missing frames x this frame's sample count); duplicates and stale frames
    are dropped with an event, never passed on.
    """

    def __init__(self, lead: str = "I", default_uv_per_lsb: float = 1.0, stats: dict | None = None):
        self.p = protocol
        self.lead = lead
        self.decoder = protocol.StreamDecoder()
        self.tracker = sequence.SequenceTracker()
        self.hello = None
        self.uv_per_lsb = float(default_uv_per_lsb)
        self.fs = None
        self.stats = stats if stats is not None else {}
        for k in ("drops", "lost_samples", "duplicates", "stale", "crc_errors", "resyncs",
                  "decode_errors", "frames", "seq_jumps", "events_held_back"):
            self.stats.setdefault(k, 0)
        self._warned_no_hello = False
        self.budget = EventBudget()
        self._rails_key = self._rails_mv = None

    def reset(self) -> None:
        """After a reconnect: drop partial bytes, forget the last sequence number."""
        self.decoder.reset()
        self.tracker.reset()

    def feed(self, data: bytes, t_arrival: float | None = None, t_mono: float | None = None) -> list:
        t_arrival = t_arrival or time.time()
        t_mono = t_mono or time.perf_counter()
        out = []
        crc_before = self.decoder.crc_errors
        self.budget.feed(len(data))
        msgs = self.decoder.feed(data)
        if len(msgs) == 1 and type(msgs[0]) is _DataFrame:
            # the usual read of a real-time stream: one DATA frame. When it makes one chunk and no
            # event, limit_events and coalesce would pass it as is: skipped (this runs ~10 times a
            # second per device)
            out = self._data(msgs[0], t_arrival, t_mono)
            if len(out) == 1 and type(out[0]) is Chunk:  # (one frame decoded: no CRC error in this read)
                return out
            msgs = ()
        for msg in msgs:
            if isinstance(msg, self.p.DataFrame):
                out.extend(self._data(msg, t_arrival, t_mono))
            elif isinstance(msg, self.p.DecisionFrame):
                # decided on the wearable (firmware_bridge/mcu/chain): relayed as a decision
                self.stats["device_decisions"] = self.stats.get("device_decisions", 0) + 1
                out.append(LinkEvent("device_decision", {"frame": msg}, t_arrival))
            elif isinstance(msg, self.p.Hello):
                if msg != self.hello:  # firmware repeats its HELLO every few seconds
                    out.append(self._hello(msg, t_arrival))
            elif isinstance(msg, self.p.DecodeError):
                if msg.refused:  # a rate or gain outside selfmis.limits: never decoded at a wrong rate
                    self.stats["decode_errors"] += 1
                    raise SourceRefused(f"byte {msg.offset}: refused: {msg.reason[len('malformed frame: '):]}")
                if "CRC" in msg.reason:
                    kind = "crc_error"
                elif msg.reason.startswith("malformed"):
                    kind = "decode_error"
                    self.stats["decode_errors"] += 1
                else:  # junk or an impossible header: bytes skipped up to the next SYNC
                    kind = "resync"
                    self.stats["resyncs"] += 1
                out.append(LinkEvent(kind, {"offset": msg.offset, "reason": msg.reason}, t_arrival))
        self.stats["crc_errors"] += self.decoder.crc_errors - crc_before
        return coalesce(limit_events(self.budget, out, self.stats))

    def _hello(self, h, t_arrival) -> LinkEvent:
        first = self.hello is None
        self.hello = h
        self.uv_per_lsb = float(h.uv_per_lsb) or 1.0
        self.fs = float(h.fs_hz)
        detail = {"fs": self.fs, "lead": h.lead, "uv_per_lsb": self.uv_per_lsb,
                  "firmware": h.firmware_version, "device_id": h.device_id,
                  "protocol_version": h.protocol_version}
        if h.lead and h.lead.upper() != self.lead.upper():
            detail["warning"] = f"device streams lead {h.lead!r}, the model expects {self.lead!r}"
            if first:
                log.warning(detail["warning"])
        if first:
            log.info("HELLO from %s (firmware %s): %.1f Hz, lead %s, %.4g uV/LSB",
                     h.device_id or "device", h.firmware_version or "?", self.fs, h.lead, self.uv_per_lsb)
        return LinkEvent("hello", detail, t_arrival)

    def _data(self, f, t_arrival, t_mono) -> list:
        out = []
        self.stats["frames"] += 1
        upd = self.tracker.update(f.seq)
        if upd.duplicate or upd.stale:  # received twice or late: discarded, nothing lost
            self.stats["duplicates" if upd.duplicate else "stale"] += 1
            return [LinkEvent("stale_frame" if upd.stale else "duplicate_frame",
                              {"seq": int(f.seq)}, t_arrival)]
        if self.hello is None and not self._warned_no_hello:
            self._warned_no_hello = True
            # pyserial flushes the input on open, so the HELLO sent at connect is often
            # lost; the firmware repeats it every few seconds
            log.info("no HELLO yet: assuming %g uV/LSB until one arrives", self.uv_per_lsb)
            out.append(LinkEvent("no_hello", {"uv_per_lsb": self.uv_per_lsb}, t_arrival))
        n = len(f.samples)
        gap = upd.missing * n
        cap = int(MAX_GAP_FILL_S * float(f.fs_hz)) + 1
        if gap > cap:
            # more lost than the gap policy fills (a sequence jump of 32767 frames claims days):
            # passed on as just over the policy, so the pipeline restarts the stream (nothing
            # filled, its clock moved by seconds, not by the days the number claims)
            self.stats["seq_jumps"] += 1
            out.append(LinkEvent("seq_jump", {"seq": int(f.seq), "missing_frames": int(upd.missing),
                                              "claimed_s": round(gap / float(f.fs_hz), 3)}, t_arrival))
            self.stats["drops"] += upd.missing
            self.stats["lost_samples"] += cap
            upd.missing, gap = 0, cap
        if upd.missing:
            self.stats["drops"] += upd.missing
            self.stats["lost_samples"] += gap
            out.append(LinkEvent("gap", {"seq": int(f.seq), "missing_frames": int(upd.missing),
                                         "missing_samples": int(gap)}, t_arrival))
        self.fs = float(f.fs_hz)
        # from_counts keeps the wire's integers on the chunk (for --record) and decodes them
        out.append(Chunk.from_counts(f.samples, self.uv_per_lsb, self.fs, t_arrival, t_mono,
                                     seq=int(f.seq), lead_off=f.lead_off, gap_before=gap,
                                     rails=self._rails(f.sample_format)))
        return out

    def _rails(self, sample_format: int) -> tuple:
        """The (low, high) mV a sample format can hold at the current gain (computed once per pair)."""
        key = (sample_format, self.uv_per_lsb)
        if self._rails_key != key:
            k = self.uv_per_lsb / 1000.0
            lo, hi = self.p.sample_range(sample_format)
            self._rails_key, self._rails_mv = key, (float(lo * k), float(hi * k))
        return self._rails_mv
