"""In-process virtual device: a record encoded into the SelfMIS wire protocol and decoded again.

For demos and tests without a serial port. The lead is quantised to ADC
counts (``uv_per_lsb``), cut into DATA frames with a HELLO in front, exactly
as firmware would send them (:func:`~selfmis.protocol.encode_frame`),
and decoded by the same path as the serial source (:class:`~.framed.FramedStream`).
Faults can be injected to exercise the quality gate and the link handling:
lead-off intervals, flat-line intervals, saturation, added noise, dropped frames
and corrupted bytes.
"""
from __future__ import annotations

import time

import numpy as np

from selfmis.readers import RecordError, read_record
from .base import LinkEvent, Source, SourceNotFound
from .framed import FramedStream

__all__ = ["SimulatedSource"]


class SimulatedSource(Source):
    """Stream ``record`` (a path or a :class:`~..records.Record`) as a virtual device.

    ``speed``: 1.0 real time, 10 ten times faster, 0 as fast as consumed.
    Fault injection (times in seconds of the record): ``lead_off=[(t0, t1)]``,
    ``flat=[(t0, t1)]``, ``saturate=[(t0, t1)]``, ``noise_mv`` (white-noise SD
    added everywhere, or only in ``noise_spans``), ``drop_every`` (drop every
    n-th frame), ``corrupt_every`` (flip a byte in every n-th frame).
    """

    def __init__(self, record, lead: str = "I", speed: float = 0.0, frame_samples: int | None = None,
                 uv_per_lsb: float = 1.0, lead_off=(), flat=(), saturate=(), noise_mv: float = 0.0,
                 noise_spans=None, drop_every: int = 0, corrupt_every: int = 0, seed: int = 0,
                 repeat: int = 1):
        super().__init__()
        try:
            rec = read_record(record) if not hasattr(record, "signal") else record
            x = np.asarray(rec.lead(lead), dtype=np.float64)
        except RecordError as exc:
            raise SourceNotFound(str(exc)) from None
        self.lead, self.fs, self.speed = lead, float(rec.fs), float(speed)
        self.realtime = self.speed > 0
        self.name = f"simulated:{rec.name}"
        # default: 10 frames a second, like the reference firmware
        self.frame_samples = int(frame_samples or max(1, round(self.fs / 10)))
        self.uv_per_lsb = float(uv_per_lsb)
        x = np.tile(np.nan_to_num(x), int(repeat))
        rng = np.random.default_rng(seed)
        t = np.arange(len(x)) / self.fs

        def mask(spans):
            m = np.zeros(len(x), bool)
            for a, b in spans:
                m |= (t >= a) & (t < b)
            return m

        if noise_mv:
            m = mask(noise_spans) if noise_spans else np.ones(len(x), bool)
            x = x + m * rng.normal(0.0, noise_mv, len(x))
        counts = np.round(x * 1000.0 / self.uv_per_lsb)
        fm = mask(flat)
        counts[fm] = 0
        sm = mask(saturate)
        counts[sm] = np.where(np.arange(sm.sum()) % 100 < 50, 32767, -32768)
        self.counts = np.clip(counts, -32768, 32767).astype(np.int32)
        self.lead_off_mask = mask(lead_off)
        self.drop_every, self.corrupt_every = int(drop_every), int(corrupt_every)
        self._framed = FramedStream(lead, 1.0, self.stats)

    def frames(self):
        """The byte stream a device would send: HELLO, then DATA frames (after faults)."""
        from selfmis import protocol as p
        yield 0, p.encode_hello(p.Hello(fs_hz=self.fs, lead=self.lead, uv_per_lsb=self.uv_per_lsb,
                                        sample_format=p.FMT_INT16_LE, firmware_version="sim",
                                        device_id="in-process"))
        n = self.frame_samples
        for k, i in enumerate(range(0, len(self.counts), n)):
            flags = p.FLAG_LEAD_OFF if self.lead_off_mask[i:i + n].any() else 0
            raw = p.encode_frame(p.DataFrame(seq=k, samples=self.counts[i:i + n], flags=flags,
                                             fs_hz=self.fs, sample_format=p.FMT_INT16_LE))
            if self.drop_every and k % self.drop_every == self.drop_every - 1:
                continue
            if self.corrupt_every and k % self.corrupt_every == self.corrupt_every - 1:
                raw = bytearray(raw)
                raw[len(raw) // 2] ^= 0x5A
                raw = bytes(raw)
            yield min(i + n, len(self.counts)), raw

    def _iter(self):
        yield LinkEvent("connected", {"device": self.name})
        t0 = time.monotonic()
        for end, raw in self.frames():
            if self._closed:
                return
            if self.realtime:
                wait = end / self.fs / self.speed - (time.monotonic() - t0)
                if wait > 0:
                    time.sleep(wait)
            yield from self._framed.feed(raw)
        yield LinkEvent("end", {"device": self.name})
