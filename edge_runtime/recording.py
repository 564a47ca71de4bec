"""``--record DIR``: every raw item a source delivers, and what the pipeline made of it, appended
and flushed as it arrives.

Layout of a recording directory::

    recording.json   what was recorded (source, lead, rate, start time, format version)
    stream.bin       the items, in arrival order

``stream.bin`` is a sequence of records, each ``u32 length`` (of what follows)
then a one-byte kind:

* ``C`` chunk of float samples: ``u8 flags`` (bit 0 lead-off, bit 1 rails present),
  ``i64 seq``, ``f64 t_arrival`` (host wall clock, s), ``f64 fs``,
  ``u32 gap_before``, ``f32 rail_low``, ``f32 rail_high``, ``u32 n``, then ``n``
  float32 samples in mV -- exactly the values the pipeline received, so a replay
  is bit-for-bit (sources without ADC counts: files, simulators fed with mV);
* ``D`` chunk of device counts (format 2): the same header as ``C``, then
  ``f64 uv_per_lsb``, ``u8 count_bytes`` (2, 4 or 8), ``u8 has_mv``, then ``n``
  signed little-endian counts as the wire carried them, then (only if ``has_mv``)
  the ``n`` float32 mV the pipeline used. ``has_mv`` is 0 when
  :func:`~.stream.counts_to_mv` of the counts gives those very bits -- checked when
  writing -- so the usual recording costs 2 bytes a sample and still replays bit for bit;
* ``E`` link event: UTF-8 JSON ``{"kind", "detail", "t_arrival", "discontinuity"}``;
* ``P`` pipeline output (format 2): UTF-8 JSON ``{"t": s, "events": [...]}`` written
  after the item that produced them: the beat, decision and quality events (times
  ``t`` in seconds of signal, as on stdout), and ``t``, the pipeline's sample clock
  after that item. ``P`` is written when there are events or when the clock jumped
  by more than the samples account for (time lost over a reconnect), so an export
  places every sample and beat where the pipeline had them. A replay skips ``P``
  records: it recomputes them.

All little-endian. The file is flushed and fsync'ed at least once a second (by
the writer and, when items stop coming, by a timer), so a crash or power cut
loses at most about one second; a truncated last record (the crash case) is
skipped with a warning naming its byte offset, anything else malformed raises
:class:`RecordingError` naming the offset. Format-1 recordings (``C`` and ``E``
only) read as before.
"""
from __future__ import annotations

import json
import logging
import math
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from selfmis.limits import check_gain, check_rate

from .stream import Chunk, LinkEvent, counts_to_mv

__all__ = ["Recorder", "RecordingError", "PipelineOutput", "read_recording", "read_meta",
           "is_recording", "iter_records", "chunk_record", "FORMAT", "RECORDED_EVENTS"]

log = logging.getLogger("selfmis.edge_runtime")

FORMAT = "selfmis-recording"
VERSION = 2
META = "recording.json"
STREAM = "stream.bin"
_LEN = struct.Struct("<I")
_CHUNK = struct.Struct("<BqddIffI")
_COUNTS = struct.Struct("<dBB")
_MAX_RECORD = 1 << 24
_COUNT_TYPES = {2: "<i2", 4: "<i4", 8: "<i8"}
#: pipeline event types kept in a recording (link events are recorded as they arrive)
RECORDED_EVENTS = ("beat", "decision", "quality")


class RecordingError(ValueError):
    """A recording that cannot be read; names the file and byte offset."""


@dataclass
class PipelineOutput:
    """A ``P`` record: ``events`` the pipeline emitted, ``t`` its sample clock (s) after them."""

    t: float
    events: list = field(default_factory=list)


def is_recording(path) -> bool:
    p = Path(path)
    return (p / META).is_file() or (p.name == META and p.is_file())


def _count_width(counts: np.ndarray) -> int:
    if not len(counts):
        return 2
    lo, hi = int(counts.min()), int(counts.max())
    for width in (2, 4):
        lim = 1 << (8 * width - 1)
        if -lim <= lo and hi < lim:
            return width
    return 8


def chunk_record(c: Chunk) -> bytes:
    """The ``C`` or ``D`` record body of a chunk (without the length prefix)."""
    flags = (1 if c.lead_off else 0) | (2 if c.rails is not None else 0)
    lo, hi = c.rails if c.rails is not None else (0.0, 0.0)
    x = np.ascontiguousarray(c.samples, dtype="<f4")
    head = _CHUNK.pack(flags, int(c.seq), float(c.t_arrival), float(c.fs), int(c.gap_before),
                       lo, hi, len(x))
    counts = None if c.counts is None else np.asarray(c.counts)
    if counts is None or c.uv_per_lsb is None or counts.dtype.kind not in "iu":
        return b"C" + head + x.tobytes()  # counts are integers; anything else is not kept as such
    width = _count_width(counts)
    # store the floats too only when they are not what the counts decode to (never, for the
    # sources in this package: they all decode with counts_to_mv)
    has_mv = counts_to_mv(counts, c.uv_per_lsb).tobytes() != x.tobytes()
    return (b"D" + head + _COUNTS.pack(float(c.uv_per_lsb), width, int(has_mv))
            + counts.astype(_COUNT_TYPES[width]).tobytes() + (x.tobytes() if has_mv else b""))


class Recorder:
    """Append-only writer: ``write(item)`` per chunk/event as it arrives, ``write_outputs(events,
    t)`` after the pipeline handled it, ``close()`` at the end.

    A background timer flushes what was written but not yet on disk once it is
    ``flush_every_s`` old, so a source that goes quiet (a lost BLE link) does not
    leave its last second in a buffer.
    """

    def __init__(self, directory, describe: dict | None = None, flush_every_s: float = 1.0):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        if (self.dir / STREAM).exists() and (self.dir / STREAM).stat().st_size:
            raise RecordingError(f"{self.dir / STREAM}: a recording is already there; "
                                 "choose a new --record directory")
        meta = {"format": FORMAT, "format_version": VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                **(describe or {})}
        (self.dir / META).write_text(json.dumps(meta, indent=2, default=str) + "\n")
        self._fh = open(self.dir / STREAM, "ab", buffering=1 << 16)
        self.flush_every_s = flush_every_s
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._dirty_since = None
        self._clock = 0.0       # seconds of signal the recorded chunks account for
        self._fs = None
        self.items = 0
        #: why the recording stopped early (a failed write: full disk, I/O error), else None
        self.failed: str | None = None
        self._events: list = []  # the `recording` event waiting for take_events()
        self._stop = threading.Event()
        self._timer = threading.Thread(target=self._flush_timer, name="recorder-flush", daemon=True)
        self._timer.start()

    def write(self, item) -> None:
        if self.failed:
            return
        if isinstance(item, Chunk):
            body = chunk_record(item)
            self._fs = float(item.fs)
            self._clock += (len(item.samples) + int(item.gap_before)) / self._fs
        elif isinstance(item, LinkEvent):
            body = b"E" + json.dumps({"kind": item.kind, "detail": item.detail,
                                      "t_arrival": item.t_arrival,
                                      "discontinuity": item.discontinuity}, default=str).encode()
        else:
            return
        self._append(body)

    def write_outputs(self, events, t_signal: float) -> None:
        """Record the pipeline's beat/decision/quality ``events`` for the item just written,
        and its event clock ``t_signal`` (s: signal plus time disconnected, the clock of the events'
        ``t``) when that jumped (time lost over a reconnect)."""
        if self.failed:
            return
        kept = [e for e in events if e.get("type") in RECORDED_EVENTS]
        jumped = self._fs is not None and abs(t_signal - self._clock) * self._fs > 0.5
        if not kept and not jumped:
            return
        self._clock = float(t_signal)
        self._append(b"P" + json.dumps({"t": float(t_signal), "events": kept},
                                       separators=(",", ":"), default=str).encode())

    def _append(self, body: bytes) -> None:
        with self._lock:
            if self.failed:
                return
            try:
                self._fh.write(_LEN.pack(len(body)) + body)
                self.items += 1
                now = time.monotonic()
                if self._dirty_since is None:
                    self._dirty_since = now
                if now - self._last_flush >= self.flush_every_s:
                    self._flush_locked(now)
            except (OSError, ValueError) as exc:  # ENOSPC, EIO, a file closed under us
                self._fail_locked(exc)

    def _fail_locked(self, exc) -> None:
        """A write failed: stop recording (what is on disk stays readable: a cut last record is
        skipped by the reader), say so once on stderr and as a ``recording`` event; detection goes on."""
        if self.failed:
            return
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        self.failed = reason
        self._stop.set()
        try:
            self._fh.close()
        except (OSError, ValueError):  # the buffered tail cannot be written either
            pass
        log.error("--record %s: %s; recording stopped after %d items (detection goes on)",
                  self.dir, reason, self.items)
        self._events.append({"type": "recording", "state": "stopped", "reason": reason,
                             "path": str(self.dir), "items": self.items, "t": round(self._clock, 3)})

    def take_events(self) -> list:
        """The ``recording`` event of a recording that just stopped (once), else []."""
        with self._lock:
            out, self._events = self._events, []
        return out

    def _flush_timer(self) -> None:
        tick = min(0.25, self.flush_every_s / 4)
        while not self._stop.wait(tick):
            with self._lock:
                if (self._dirty_since is not None and not self._fh.closed
                        and time.monotonic() - self._dirty_since >= self.flush_every_s * 0.75):
                    try:
                        self._flush_locked(time.monotonic())
                    except (OSError, ValueError) as exc:
                        self._fail_locked(exc)

    def _flush_locked(self, now: float) -> None:
        self._fh.flush()
        try:
            os.fsync(self._fh.fileno())
        except OSError:  # some filesystems (pipes, tmpfs quirks) refuse; the flush is what matters
            pass
        self._last_flush, self._dirty_since = now, None

    def flush(self) -> None:
        with self._lock:
            if not self._fh.closed:
                try:
                    self._flush_locked(time.monotonic())
                except (OSError, ValueError) as exc:
                    self._fail_locked(exc)

    def close(self) -> None:
        """Flush and close; never raises (a failed last flush stops the recording like any write)."""
        self._stop.set()
        with self._lock:
            if not self._fh.closed:
                try:
                    self._flush_locked(time.monotonic())
                    self._fh.close()
                except (OSError, ValueError) as exc:
                    self._fail_locked(exc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _dir(directory) -> Path:
    p = Path(directory)
    return p.parent if p.name == META else p


def read_meta(directory) -> dict:
    p = _dir(directory)
    try:
        meta = json.loads((p / META).read_text())
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{p / META}: cannot read ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise RecordingError(f"{p / META}: not a SelfMIS recording")
    version = meta.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordingError(f"{p / META}: format_version {version!r} is not an integer")
    if meta.get("fs") is not None:
        check_rate(meta["fs"], str(p / META), "fs", exc=RecordingError)
    if version > VERSION:
        raise RecordingError(f"{p / META}: recording format {meta['format_version']} is newer "
                             f"than this runtime reads ({VERSION})")
    return meta


def iter_records(directory, block: int = 1 << 20):
    """Yield ``(byte_offset, kind, body)`` for each record of ``stream.bin``, reading it in
    blocks (memory stays bounded for a day-long recording). ``body`` excludes the kind byte."""
    p = _dir(directory)
    read_meta(p)
    path = p / STREAM
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        buf, base, pos, eof = b"", 0, 0, False  # buf holds the file from byte `base`
        while True:
            avail = len(buf) - pos
            length = _LEN.unpack_from(buf, pos)[0] if avail >= 4 else 0
            if avail >= 4 and (length == 0 or length > _MAX_RECORD):
                raise RecordingError(f"{path}: byte {base + pos}: impossible record length {length}")
            if avail < 4 + length and not eof:
                more = fh.read(max(block, 4 + length))
                eof = not more
                buf, base, pos = buf[pos:] + more, base + pos, 0
                continue
            if avail == 0:
                return
            if avail < 4 + length:
                log.warning("%s: truncated record at byte %d (recording was cut short); ignored",
                            path, base + pos)
                return
            yield base + pos, buf[pos + 4: pos + 5], memoryview(buf)[pos + 5: pos + 4 + length]
            pos += 4 + length


def _chunk(kind: bytes, body) -> Chunk:
    flags, seq, t_arr, fs, gap, lo, hi, cnt = _CHUNK.unpack_from(body, 0)
    check_rate(fs, "chunk", "fs", exc=ValueError)  # the reader adds the file and byte offset
    if not math.isfinite(t_arr):
        raise ValueError(f"chunk t_arrival={t_arr!r} is not a finite time")
    off = _CHUNK.size
    rails = (float(lo), float(hi)) if flags & 2 else None
    if kind == b"C":
        if off + 4 * cnt != len(body):
            raise ValueError(f"chunk says {cnt} samples but holds {len(body) - off} bytes")
        x = np.frombuffer(body, dtype="<f4", count=cnt, offset=off).astype(np.float32)
        return Chunk(x, fs, t_arr, 0.0, seq=seq, lead_off=bool(flags & 1), gap_before=gap,
                     rails=rails)
    uv, width, has_mv = _COUNTS.unpack_from(body, off)
    check_gain(uv, "chunk", "uv_per_lsb", exc=ValueError)
    off += _COUNTS.size
    if width not in _COUNT_TYPES:
        raise ValueError(f"count width {width} (2, 4 or 8 expected)")
    if off + cnt * (width + 4 * bool(has_mv)) != len(body):
        raise ValueError(f"chunk says {cnt} counts but holds {len(body) - off} bytes")
    counts = np.frombuffer(body, dtype=_COUNT_TYPES[width], count=cnt, offset=off).astype(np.int64)
    if has_mv:
        x = np.frombuffer(body, dtype="<f4", count=cnt, offset=off + width * cnt).astype(np.float32)
    else:
        x = counts_to_mv(counts, uv)
    return Chunk(x, fs, t_arr, 0.0, seq=seq, lead_off=bool(flags & 1), gap_before=gap,
                 rails=rails, counts=counts, uv_per_lsb=float(uv))


def decode_record(kind: bytes, body):
    """One record body -> :class:`Chunk`, :class:`LinkEvent` or :class:`PipelineOutput`."""
    if kind in (b"C", b"D"):
        return _chunk(kind, body)
    if kind == b"E":
        d = json.loads(bytes(body).decode("utf-8"))
        t = d.get("t_arrival", 0.0)
        if (not isinstance(d.get("kind"), str) or not isinstance(d.get("detail", {}), dict)
                or not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t)):
            raise ValueError("link event record without a kind, a detail object and a finite t_arrival")
        return LinkEvent(d["kind"], d.get("detail", {}), float(t), bool(d.get("discontinuity", False)))
    if kind == b"P":
        d = json.loads(bytes(body).decode("utf-8"))
        return PipelineOutput(float(d["t"]), list(d.get("events", [])))
    raise ValueError(f"unknown record kind {kind!r}")


def read_recording(directory, outputs: bool = False):
    """Yield the recorded :class:`Chunk` / :class:`LinkEvent` items in order (what a replay
    feeds the pipeline); with ``outputs`` also the :class:`PipelineOutput` records."""
    path = _dir(directory) / STREAM
    for pos, kind, body in iter_records(directory):
        if kind == b"P" and not outputs:
            continue
        try:
            yield decode_record(kind, body)
        except (ValueError, KeyError, TypeError, AttributeError, struct.error, RecursionError) as exc:
            raise RecordingError(f"{path}: byte {pos}: {exc}") from None
