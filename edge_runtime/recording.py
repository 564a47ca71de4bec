"""``--record DIR``: every raw item a source delivers, appended and flushed as it arrives.

Layout of a recording directory::

    recording.json   what was recorded (source, lead, rate, start time, format version)
    stream.bin       the items, in arrival order

``stream.bin`` is a sequence of records, each ``u32 length`` (of what follows)
then a one-byte kind:

* ``C`` chunk: ``u8 flags`` (bit 0 lead-off, bit 1 rails present),
  ``i64 seq``, ``f64 t_arrival`` (host wall clock, s), ``f64 fs``,
  ``u32 gap_before``, ``f32 rail_low``, ``f32 rail_high``, ``u32 n``, then ``n``
  float32 samples in mV -- exactly the values the pipeline received, so a replay
  is bit-for-bit;
* ``E`` link event: UTF-8 JSON ``{"kind", "detail", "t_arrival", "discontinuity"}``.

All little-endian. The file is flushed and fsync'ed at least once a second, so a
crash or power cut loses at most about one second; a truncated last record
(the crash case) is skipped with a warning naming its byte offset, anything else
malformed raises :class:`RecordingError` naming the offset.
"""
from __future__ import annotations

import json
import logging
import os
import struct
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .stream import Chunk, LinkEvent

__all__ = ["Recorder", "RecordingError", "read_recording", "is_recording", "FORMAT"]

log = logging.getLogger("selfmis.edge_runtime")

FORMAT = "selfmis-recording"
VERSION = 1
META = "recording.json"
STREAM = "stream.bin"
_LEN = struct.Struct("<I")
_CHUNK = struct.Struct("<BqddIffI")
_MAX_RECORD = 1 << 24


class RecordingError(ValueError):
    """A recording that cannot be read; names the file and byte offset."""


def is_recording(path) -> bool:
    p = Path(path)
    return (p / META).is_file() or (p.name == META and p.is_file())


class Recorder:
    """Append-only writer; ``write(item)`` per chunk/event, ``close()`` at the end."""

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
        self._last_flush = time.monotonic()
        self.items = 0

    def write(self, item) -> None:
        if isinstance(item, Chunk):
            flags = (1 if item.lead_off else 0) | (2 if item.rails is not None else 0)
            lo, hi = item.rails if item.rails is not None else (0.0, 0.0)
            x = np.ascontiguousarray(item.samples, dtype="<f4")
            body = b"C" + _CHUNK.pack(flags, int(item.seq), float(item.t_arrival), float(item.fs),
                                      int(item.gap_before), lo, hi, len(x)) + x.tobytes()
        elif isinstance(item, LinkEvent):
            body = b"E" + json.dumps({"kind": item.kind, "detail": item.detail,
                                      "t_arrival": item.t_arrival,
                                      "discontinuity": item.discontinuity}, default=str).encode()
        else:
            return
        self._fh.write(_LEN.pack(len(body)) + body)
        self.items += 1
        now = time.monotonic()
        if now - self._last_flush >= self.flush_every_s:
            self.flush()
            self._last_flush = now

    def flush(self) -> None:
        self._fh.flush()
        try:
            os.fsync(self._fh.fileno())
        except OSError:  # some filesystems (pipes, tmpfs quirks) refuse; the flush is what matters
            pass

    def close(self) -> None:
        if not self._fh.closed:
            self.flush()
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def read_meta(directory) -> dict:
    p = Path(directory)
    p = p.parent if p.name == META else p
    try:
        meta = json.loads((p / META).read_text())
    except (OSError, ValueError) as exc:
        raise RecordingError(f"{p / META}: cannot read ({exc})") from None
    if meta.get("format") != FORMAT:
        raise RecordingError(f"{p / META}: not a SelfMIS recording (format={meta.get('format')!r})")
    if int(meta.get("format_version", 0)) > VERSION:
        raise RecordingError(f"{p / META}: recording format {meta['format_version']} is newer "
                             f"than this runtime reads ({VERSION})")
    return meta


def read_recording(directory):
    """Yield the recorded :class:`Chunk` / :class:`LinkEvent` items in order."""
    p = Path(directory)
    p = p.parent if p.name == META else p
    read_meta(p)
    path = p / STREAM
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecordingError(f"{path}: cannot read ({exc.strerror})") from None
    pos, n = 0, len(data)
    while pos < n:
        if pos + 4 > n:
            log.warning("%s: truncated record at byte %d (recording was cut short); ignored", path, pos)
            return
        (length,) = _LEN.unpack_from(data, pos)
        if length == 0 or length > _MAX_RECORD:
            raise RecordingError(f"{path}: byte {pos}: impossible record length {length}")
        if pos + 4 + length > n:
            log.warning("%s: truncated record at byte %d (recording was cut short); ignored", path, pos)
            return
        body = data[pos + 4: pos + 4 + length]
        kind = body[:1]
        try:
            if kind == b"C":
                flags, seq, t_arr, fs, gap, lo, hi, cnt = _CHUNK.unpack_from(body, 1)
                off = 1 + _CHUNK.size
                if off + 4 * cnt != length:
                    raise ValueError(f"chunk says {cnt} samples but holds {length - off} bytes")
                x = np.frombuffer(body, dtype="<f4", count=cnt, offset=off).astype(np.float32)
                yield Chunk(x, fs, t_arr, 0.0, seq=seq, lead_off=bool(flags & 1), gap_before=gap,
                            rails=(float(lo), float(hi)) if flags & 2 else None)
            elif kind == b"E":
                d = json.loads(body[1:].decode("utf-8"))
                yield LinkEvent(d["kind"], d.get("detail", {}), d.get("t_arrival", 0.0),
                                bool(d.get("discontinuity", False)))
            else:
                raise ValueError(f"unknown record kind {kind!r}")
        except (ValueError, KeyError, struct.error) as exc:
            raise RecordingError(f"{path}: byte {pos}: {exc}") from None
        pos += 4 + length
