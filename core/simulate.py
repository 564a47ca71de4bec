"""The one simulated ECG wearable: a recorded lead, an emulated ADC, faults, and the bytes on the wire.

Every simulated stream in the project comes from :class:`VirtualDevice`: ``edge-run --simulate``
(in-process, :class:`selfmis.edge_runtime.sources.simulated.SimulatedSource`), ``selfmis sim`` /
``selfmis-sim`` (which only adds the transports: pty, TCP, file, stdout, in
:mod:`selfmis.firmware_bridge.virtual_device`), the demo, the benchmarks and the tests. So there is
one set of option names and units for the faults:

========================  ==========================================================================
option                    meaning (spans are ``(start_s, duration_s)`` in stream time, across passes)
========================  ==========================================================================
``uv_per_lsb``            ADC resolution at the electrodes in µV per count (1.0 keeps PTB-XL's integers)
``adc_bits``              clip counts to a signed N-bit range (an ESP32's 12-bit ADC: 12)
``noise_uv``              white noise SD in µV, everywhere or only inside ``noise_spans``
``mains_uv``/``mains_hz`` mains hum amplitude (µV) and frequency (Hz)
``wander_uv``/``wander_hz`` baseline wander from breathing: a sine of this amplitude (µV) and rate (Hz)
``motion`` / ``motion_uv`` electrode-motion artefact in these spans: noise below ~5 Hz of this SD (µV)
``lead_off``              electrodes off: counts 0 and the lead-off flag (``!`` in ASCII)
``flat``                  amplifier stuck: counts 0, no lead-off flag
``saturate``              amplifier railed: counts alternate between the ADC limits every 50 samples
``drop_rate``             probability that a frame (or ASCII block) never arrives
``corrupt_rate``          probability that one bit of a frame flips (a UART/BLE bit error)
``duplicate_rate``        probability that a frame arrives twice
``loop`` / ``passes``     restart at the end (forever / this many passes); sequence numbers continue
========================  ==========================================================================

It behaves like the reference firmware (``firmware_bridge/firmware/ad8232_serial``): a HELLO at the
start and every ``hello_every_s``, DATA frames of ``samples_per_frame`` counts with a wrapping
sequence number -- or, with ``ascii=True``, one integer per line like the hobby AD8232 sketches,
with a ``# fs=... lead=...`` header repeated as often as the HELLO, so a reader that opens the port
late still learns the rate. Faults are drawn from one seeded generator, so a stream is reproducible.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from selfmis import protocol as P
from selfmis.readers import read_record

__all__ = ["VirtualDevice", "WireChunk", "StreamStats", "quantize", "synthetic_ecg", "FIRMWARE_VERSION"]

FIRMWARE_VERSION = "selfmis-sim 1"

Spans = Sequence[Tuple[float, float]]


def quantize(signal_mv: np.ndarray, uv_per_lsb: float, lo: int, hi: int) -> np.ndarray:
    """mV -> integer ADC counts (round half to even), clipped like a saturating ADC."""
    counts = np.rint(np.asarray(signal_mv, dtype=np.float64) * 1000.0 / uv_per_lsb)
    return np.clip(counts, lo, hi).astype(np.int32)


def synthetic_ecg(bpm: float, seconds: float, fs: float = 500.0, seed: int = 0, noise_mv: float = 0.01):
    """Lead-I-like ECG at an exact heart rate: P, Q, R, S, T Gaussians per beat (mV), float32.

    A cheap stand-in for a record where the true beat times must be known (benchmarks, rate tests,
    synthetic datasets); R peaks fall at 0.4 s + k * 60 / bpm. For realistic morphology stream a
    real record with :class:`VirtualDevice` instead."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    x = np.zeros(n)
    rr = 60.0 / bpm
    # (offset from R in s, amplitude mV, width s); T and P move a little with RR (QT shortens)
    waves = [(-0.2 * min(1.0, rr), 0.12, 0.025), (-0.03, -0.1, 0.008), (0.0, 1.1, 0.010),
             (0.03, -0.25, 0.010), (0.28 * math.sqrt(rr), 0.3, 0.045)]
    half = int(0.5 * fs)
    for r in np.arange(0.4, seconds, rr):
        c = int(round(r * fs))
        lo, hi = max(0, c - half), min(n, c + half)
        tt = t[lo:hi] - r
        for off, amp, w in waves:
            x[lo:hi] += amp * np.exp(-0.5 * ((tt - off) / w) ** 2)
    x += 0.05 * np.sin(2 * np.pi * 0.25 * t)          # breathing baseline
    x += rng.normal(0, noise_mv, n)
    return x.astype(np.float32)


@dataclass
class WireChunk:
    """Bytes the device puts on the wire once the sample at ``t`` (s) is acquired."""

    t: float
    data: bytes
    kind: str  # "hello", "data", "ascii"


@dataclass
class StreamStats:
    """What the device did (the runtime's counters are checked against these in tests)."""

    frames: int = 0
    bytes: int = 0
    dropped: int = 0
    corrupted: int = 0
    duplicated: int = 0
    passes: int = 0


def _spans(spans: Spans, name: str) -> list:
    out = []
    for span in spans:
        try:
            start, dur = (float(v) for v in span)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected (start_s, duration_s) pairs, got {span!r}") from None
        if dur <= 0:
            raise ValueError(f"{name}: duration must be positive, got {span!r}")
        out.append((start, dur))
    return out


class VirtualDevice:
    """Emulated AD8232 wearable fed from a recorded signal (see the module docstring for the options).

    ``signal_mv``: 1-D array of the lead in mV (NaN = invalid, sent as lead-off); ``fs`` in Hz.
    ``sample_format``: ``P.FMT_INT16_LE`` / ``FMT_INT24_LE`` / ``FMT_INT32_LE``.
    ``samples_per_frame``: default ``fs / 10`` (10 frames a second, like the firmware).
    """

    def __init__(self, signal_mv, fs: float, lead: str = "I", *, uv_per_lsb: float = 1.0,
                 sample_format: int = P.FMT_INT16_LE, adc_bits: Optional[int] = None,
                 samples_per_frame: Optional[int] = None, ascii: bool = False,
                 noise_uv: float = 0.0, noise_spans: Spans = (), mains_uv: float = 0.0,
                 mains_hz: float = 50.0, wander_uv: float = 0.0, wander_hz: float = 0.25,
                 motion: Spans = (), motion_uv: float = 300.0,
                 lead_off: Spans = (), flat: Spans = (), saturate: Spans = (),
                 drop_rate: float = 0.0, corrupt_rate: float = 0.0, duplicate_rate: float = 0.0,
                 seed: int = 0, loop: bool = False, passes: int = 1, hello_every_s: float = 5.0,
                 device_id: str = "virtual-0001", firmware_version: str = FIRMWARE_VERSION):
        sig = np.asarray(signal_mv, dtype=np.float64)
        if sig.ndim != 1 or sig.size == 0:
            raise ValueError(f"signal must be a non-empty 1-D array, got shape {sig.shape}")
        if not fs > 0:
            raise ValueError(f"fs must be positive, got {fs}")
        if not uv_per_lsb > 0:
            raise ValueError(f"uv_per_lsb must be positive, got {uv_per_lsb}")
        for name, rate in (("drop_rate", drop_rate), ("corrupt_rate", corrupt_rate),
                           ("duplicate_rate", duplicate_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {rate}")
        if int(passes) < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        self.signal_mv = sig
        self.fs = float(fs)
        self.lead = lead
        # what the host sees in HELLO is float32: quantise with that very value
        self.uv_per_lsb = float(np.float32(uv_per_lsb))
        self.sample_format = sample_format
        lo, hi = P.sample_range(sample_format)
        if adc_bits is not None:
            if not 2 <= adc_bits <= 8 * P.sample_width(sample_format):
                raise ValueError(f"adc_bits={adc_bits} does not fit sample format 0x{sample_format:02X}")
            lo, hi = -(1 << (adc_bits - 1)), (1 << (adc_bits - 1)) - 1
        self.range = (lo, hi)
        self.samples_per_frame = int(samples_per_frame or max(1, round(self.fs / 10)))
        if not 1 <= self.samples_per_frame <= 255:
            raise ValueError("samples_per_frame must be in 1..255")
        self.ascii = ascii
        self.noise_uv, self.mains_uv, self.mains_hz = float(noise_uv), float(mains_uv), float(mains_hz)
        self.noise_spans = _spans(noise_spans, "noise_spans")
        self.wander_uv, self.wander_hz = float(wander_uv), float(wander_hz)
        self.motion, self.motion_uv = _spans(motion, "motion"), float(motion_uv)
        self.lead_off = _spans(lead_off, "lead_off")
        self.flat = _spans(flat, "flat")
        self.saturate = _spans(saturate, "saturate")
        self.drop_rate, self.corrupt_rate, self.duplicate_rate = drop_rate, corrupt_rate, duplicate_rate
        self.seed = seed
        self.loop, self.passes = bool(loop), int(passes)
        self.hello_every_s = hello_every_s
        self.device_id, self.firmware_version = device_id, firmware_version
        self.stats = StreamStats()

    # -- constructors ------------------------------------------------------------

    @classmethod
    def from_record(cls, record, lead: str = "I", **kw) -> "VirtualDevice":
        """From a :class:`selfmis.readers.Record` (one lead by name)."""
        return cls(record.lead(lead), record.fs, lead=lead, **kw)

    @classmethod
    def from_path(cls, path, lead: str = "I", **kw) -> "VirtualDevice":
        """From a record path (WFDB without extension, CSV, ...: whatever :func:`read_record` reads)."""
        return cls.from_record(read_record(str(path)), lead=lead, **kw)

    # -- the analogue side and the ADC --------------------------------------------

    def hello(self) -> P.Hello:
        return P.Hello(fs_hz=self.fs, lead=self.lead, uv_per_lsb=self.uv_per_lsb,
                       sample_format=self.sample_format, firmware_version=self.firmware_version,
                       device_id=self.device_id)

    def _mask(self, spans, t0: float = 0.0) -> np.ndarray:
        """Samples of the pass starting at stream time ``t0`` that fall inside ``spans``."""
        t = t0 + np.arange(self.signal_mv.size) / self.fs
        mask = np.zeros(self.signal_mv.size, bool)
        for start, dur in spans:
            mask |= (t >= start) & (t < start + dur)
        return mask

    def lead_off_mask(self, t0: float = 0.0) -> np.ndarray:
        """True where the electrodes are off in the pass starting at ``t0``: injected spans, NaN samples."""
        return self._mask(self.lead_off, t0) | ~np.isfinite(self.signal_mv)

    def counts(self, rng: Optional[np.random.Generator] = None, t0: float = 0.0) -> np.ndarray:
        """The ADC counts of the pass starting at stream time ``t0`` (0 while lead-off or flat).
        Deterministic without noise."""
        n = self.signal_mv.size
        uv = np.nan_to_num(self.signal_mv, nan=0.0) * 1000.0
        if self.mains_uv:
            uv = uv + self.mains_uv * np.sin(2 * np.pi * self.mains_hz * (t0 + np.arange(n) / self.fs))
        t = t0 + np.arange(n) / self.fs
        if self.wander_uv:
            # breathing moves the baseline: a slow sine (its phase is the stream time, so passes join up)
            uv = uv + self.wander_uv * np.sin(2 * np.pi * self.wander_hz * t)
        if self.motion:
            inside = self._mask(self.motion, t0)
            if inside.any():
                # electrode motion: large, slow (below ~5 Hz), in bursts -- white noise through a
                # 0.2-s moving average (first null at 5 Hz), rescaled to the requested SD
                rng = rng if rng is not None else np.random.default_rng(self.seed)
                k = max(1, int(round(0.2 * self.fs)))
                m = np.convolve(rng.normal(0.0, 1.0, n), np.ones(k) / np.sqrt(k), mode="same")
                uv = uv + self.motion_uv * m * inside
        if self.noise_uv:
            rng = rng if rng is not None else np.random.default_rng(self.seed)
            noise = rng.normal(0.0, self.noise_uv, n)
            uv = uv + (noise * self._mask(self.noise_spans, t0) if self.noise_spans else noise)
        c = quantize(uv / 1000.0, self.uv_per_lsb, *self.range)
        c[self._mask(self.flat, t0)] = 0
        sat = self._mask(self.saturate, t0)
        lo, hi = self.range
        c[sat] = np.where(np.arange(int(sat.sum())) % 100 < 50, hi, lo)
        c[self.lead_off_mask(t0)] = 0  # the runtime must honour the flag, not the values
        return c

    # -- what goes on the wire ----------------------------------------------------

    def ascii_header(self) -> bytes:
        return (f"# fs={self.fs:g} lead={self.lead} uv_per_lsb={self.uv_per_lsb!r} "
                f"device={self.device_id}\r\n").encode()

    def chunks(self) -> Iterator[WireChunk]:
        """Everything the device sends, in order, with acquisition timestamps (no pacing)."""
        rng = np.random.default_rng(self.seed)
        n, spf = self.signal_mv.size, self.samples_per_frame
        seq, t0, next_hello = 0, 0.0, 0.0
        hello_bytes = self.ascii_header() if self.ascii else P.encode_hello(self.hello())
        hello_kind = "ascii" if self.ascii else "hello"
        kind = "ascii" if self.ascii else "data"
        while True:
            counts, mask = self.counts(rng, t0), self.lead_off_mask(t0)
            self.stats.passes += 1
            for i in range(0, n, spf):
                t_first, t = t0 + i / self.fs, t0 + min(i + spf, n) / self.fs
                if t_first >= next_hello - 1e-9:
                    yield WireChunk(t_first, hello_bytes, hello_kind)
                    next_hello += self.hello_every_s if self.hello_every_s > 0 else float("inf")
                block, off = counts[i:i + spf], mask[i:i + spf]
                if self.ascii:
                    raw = b"".join(b"!\r\n" if o else b"%d\r\n" % int(v) for v, o in zip(block, off))
                else:
                    flags = P.FLAG_LEAD_OFF if off.any() else 0
                    raw = P.encode_frame(P.DataFrame(seq=seq, samples=block, flags=flags,
                                                     fs_hz=self.fs, sample_format=self.sample_format))
                seq = (seq + 1) & 0xFFFF
                self.stats.frames += 1
                if self.drop_rate and rng.random() < self.drop_rate:
                    self.stats.dropped += 1
                    continue
                if self.corrupt_rate and rng.random() < self.corrupt_rate:
                    raw = self._corrupt(raw, rng)
                    self.stats.corrupted += 1
                yield WireChunk(t, raw, kind)
                if self.duplicate_rate and rng.random() < self.duplicate_rate:
                    self.stats.duplicated += 1
                    yield WireChunk(t, raw, kind)
            t0 += n / self.fs
            if not self.loop and self.stats.passes >= self.passes:
                return

    @staticmethod
    def _corrupt(raw: bytes, rng: np.random.Generator) -> bytes:
        """Flip one random bit past the SYNC (a UART/BLE bit error)."""
        b = bytearray(raw)
        pos = int(rng.integers(min(2, len(b) - 1), len(b)))
        b[pos] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)

    def frames(self) -> Iterator[bytes]:
        """Just the bytes of :meth:`chunks`, unpaced."""
        for c in self.chunks():
            yield c.data

    def paced(self, speed: Optional[float] = 1.0, stop: Optional[threading.Event] = None,
              max_seconds: Optional[float] = None) -> Iterator[WireChunk]:
        """:meth:`chunks` released at their acquisition time: ``speed`` 1.0 real time, 2.0 twice as
        fast, ``None`` (or 0) no pacing. Ends at the end of the record (unless looping), when ``stop``
        is set, or after ``max_seconds`` of stream time."""
        start = time.monotonic()
        for chunk in self.chunks():
            if stop is not None and stop.is_set():
                return
            if max_seconds is not None and chunk.t > max_seconds:
                return
            if speed:
                delay = start + chunk.t / speed - time.monotonic()
                if delay > 0:
                    # sleeping on the event (not a busy loop) lets stop() interrupt pacing
                    if stop is not None:
                        if stop.wait(delay):
                            return
                    else:
                        time.sleep(delay)
            yield chunk

    def stream_to(self, out: Union[BinaryIO, Callable[[bytes], object]], speed: Optional[float] = 1.0,
                  stop: Optional[threading.Event] = None, max_seconds: Optional[float] = None) -> StreamStats:
        """Write the paced stream to a binary file object (or a ``write(bytes)`` callable)."""
        write = out if callable(out) and not hasattr(out, "write") else out.write
        flush = getattr(out, "flush", None)
        for chunk in self.paced(speed, stop, max_seconds):
            write(chunk.data)
            if flush is not None:
                flush()
            self.stats.bytes += len(chunk.data)
        return self.stats

    @property
    def duration_s(self) -> float:
        """Length of one pass in seconds."""
        return self.signal_mv.size / self.fs
