"""Replay a stored signal: any file :mod:`selfmis.readers` reads (WFDB, EDF/BDF, CSV/TSV/semicolon
text, Polar Sensor Logger export), or a directory made by ``edge-run --record``.

Files are read one chunk at a time (:func:`selfmis.readers.open_lead`), so a
day-long recording replays in bounded memory. Samples a file marks invalid, or
that its timestamps show missing, arrive as NaN, which the pipeline treats as
lost (gap) samples.

Real time by default (chunks paced by the wall clock, as a device would send
them); ``fast=True`` delivers as fast as the pipeline consumes (benchmarks,
tests). A recording replays its items exactly as recorded -- same chunking,
same float32 samples, same link events -- so its decisions are reproduced bit
for bit; real-time pacing follows the recorded arrival times.
"""
from __future__ import annotations

import logging
import os
import time

from selfmis.readers import RecordError, open_lead
from ..ecg_check import EcgWatch
from ..recording import RecordingError, is_recording, read_meta, read_recording
from .base import Chunk, LinkEvent, Source, SourceNotFound

__all__ = ["ReplaySource"]

log = logging.getLogger("selfmis.edge_runtime")


class ReplaySource(Source):
    """``path``: a record file (WFDB with or without extension, EDF, text) or a recording directory.

    ``chunk_s`` sets the chunk length when pacing in real time (a serial frame
    is ~40 ms); ``fast_chunk_s`` when ``fast`` (larger chunks cost less per sample).
    ``fs``, ``units`` and ``uv_per_lsb`` matter for text files only (a file that
    says its rate or units wins over nothing, loses to these); ``format`` names
    the format where the content cannot tell (``recording`` or one of
    :data:`selfmis.readers.FORMATS`).
    """

    def __init__(self, path, lead: str = "I", fast: bool = False, fs: float | None = None,
                 chunk_s: float = 0.04, fast_chunk_s: float = 5.0, speed: float = 1.0,
                 format: str | None = None, units: str | None = None,
                 uv_per_lsb: float | None = None):
        super().__init__()
        self.path = os.fspath(path)
        self.lead, self.realtime, self.speed = lead, not fast, float(speed)
        self.name = f"replay:{os.path.basename(self.path.rstrip('/'))}"
        self.recording = is_recording(self.path)
        if format == "recording" and not self.recording:
            raise SourceNotFound(f"{self.path}: not a recording directory (no recording.json)")
        if self.recording and format not in (None, "recording"):
            raise SourceNotFound(f"{self.path}: a recording directory, not {format}")
        self._lead_chunks = None
        if self.recording:
            try:
                meta = read_meta(self.path)
            except RecordingError as exc:
                raise SourceNotFound(str(exc)) from None
            self.fs = meta.get("fs")
            self.lead = meta.get("lead", lead)
        else:
            if os.path.isdir(self.path):
                raise SourceNotFound(f"{self.path}: a directory without recording.json is not a "
                                     "recording")
            try:
                # read chunk by chunk: a day-long file never sits in memory whole
                stream = open_lead(self.path, lead, fast_chunk_s if fast else chunk_s, fs=fs,
                                   format=format, units=units, uv_per_lsb=uv_per_lsb)
            except RecordError as exc:
                raise SourceNotFound(str(exc)) from None
            self.record_name, self._lead_chunks = stream.name, stream.chunks
            self.fs, self.lead, self.file_info = float(stream.fs), stream.lead, stream.meta
            if stream.format in ("csv", "tsv", "semicolon", "text"):
                # a text file's column is a guess (a name, the only one): checked like a sketch's
                self.ecg_watch = EcgWatch(self.name, column_desc=f"column {stream.meta.get('column')!r}")
            log.info("replay %s: %s, lead %s at %g Hz%s", self.path, stream.format, stream.lead,
                     self.fs, "".join(f", {k.replace('_how', '')} {v}" for k, v in stream.meta.items()
                                      if k.endswith("_how")))

    def describe(self) -> dict:
        return {**super().describe(), "path": self.path}

    def _steps(self):
        yield LinkEvent("connected", {"path": self.path, "fast": not self.realtime})
        items = read_recording(self.path) if self.recording else self._chunks()
        t0_wall, t0_rec = time.monotonic(), None
        try:
            for item in items:
                if self._closed:
                    return
                if self.realtime:
                    t_rec = item.t_arrival
                    if t0_rec is None:
                        t0_rec = t_rec
                    wait = (t_rec - t0_rec) / self.speed - (time.monotonic() - t0_wall)
                    if wait > 0:
                        time.sleep(wait)
                if isinstance(item, Chunk):
                    item.t_mono = time.perf_counter()
                    if not self.recording:
                        item.t_arrival = time.time()
                yield item
        except (RecordingError, RecordError) as exc:  # a file malformed further in
            raise SourceNotFound(str(exc)) from None
        yield LinkEvent("end", {"path": self.path})

    def _chunks(self):
        fs, t0, done = self.fs, time.time(), 0
        for seq, x in enumerate(self._lead_chunks):
            done += len(x)
            # t_arrival here is the schedule: the moment the chunk's last sample exists
            yield Chunk(x, fs, t0 + done / fs, seq=seq)
