"""Replay a stored signal: a WFDB record, a CSV file, or a directory made by ``edge-run --record``.

Real time by default (chunks paced by the wall clock, as a device would send
them); ``fast=True`` delivers as fast as the pipeline consumes (benchmarks,
tests). A recording replays its items exactly as recorded -- same chunking,
same float32 samples, same link events -- so its decisions are reproduced bit
for bit; real-time pacing follows the recorded arrival times.
"""
from __future__ import annotations

import os
import time


from selfmis.readers import RecordError, stream_lead
from ..recording import RecordingError, is_recording, read_meta, read_recording
from .base import Chunk, LinkEvent, Source, SourceNotFound

__all__ = ["ReplaySource"]


class ReplaySource(Source):
    """``path``: WFDB record (with or without extension), ``.csv``, or a recording directory.

    ``chunk_s`` sets the chunk length when pacing in real time (a serial frame
    is ~40 ms); ``fast_chunk_s`` when ``fast`` (larger chunks cost less per sample).
    ``fs`` is needed only for a CSV without a ``# fs=`` line.
    """

    def __init__(self, path, lead: str = "I", fast: bool = False, fs: float | None = None,
                 chunk_s: float = 0.04, fast_chunk_s: float = 5.0, speed: float = 1.0):
        super().__init__()
        self.path = os.fspath(path)
        self.lead, self.realtime, self.speed = lead, not fast, float(speed)
        self.name = f"replay:{os.path.basename(self.path.rstrip('/'))}"
        self.recording = is_recording(self.path)
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
                # read chunk by chunk: an hour-long file never sits in memory whole
                rec_fs, self.record_name, self._lead_chunks = stream_lead(
                    self.path, lead, fast_chunk_s if fast else chunk_s, fs=fs)
            except RecordError as exc:
                raise SourceNotFound(str(exc)) from None
            self.fs = float(rec_fs)

    def describe(self) -> dict:
        return {**super().describe(), "path": self.path}

    def _iter(self):
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
        except RecordingError as exc:
            raise SourceNotFound(str(exc)) from None
        yield LinkEvent("end", {"path": self.path})

    def _chunks(self):
        fs, t0, done = self.fs, time.time(), 0
        for seq, x in enumerate(self._lead_chunks):
            done += len(x)
            # t_arrival here is the schedule: the moment the chunk's last sample exists
            yield Chunk(x, fs, t0 + done / fs, seq=seq)
