"""A recording laid out on one sample axis: where every chunk, gap, lead-off stretch, beat and
decision sits, as the pipeline saw it.

:func:`scan` reads the recording once (without keeping samples) and returns a
:class:`Timeline`; :func:`iter_blocks` reads it again and yields the signal in
fixed-size blocks on that axis, gaps filled with NaN and flagged. Exporters
(:mod:`.recording_export`) and ``selfmis recording info`` share both, so a day
at 500 Hz is exported in bounded memory.

The axis is the pipeline's sample clock: sample 0 is the first sample of the
first chunk; ``gap_before`` samples (lost frames) take their place on it; time
lost over a reconnect is taken from the recorded ``P`` records (the pipeline's
own clock), so beat and decision times ``t`` (seconds of signal) map to sample
``round(t * fs)`` on this axis.
"""
from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .recording import (PipelineOutput, RecordingError, STREAM, decode_record, iter_records,
                        read_meta)
from .stream import Chunk, LinkEvent

__all__ = ["Timeline", "scan", "iter_blocks", "GAP", "LEAD_OFF"]

GAP, LEAD_OFF = 1, 2  # per-sample flags in the blocks


@dataclass
class Timeline:
    """Everything about a recording but its samples. Positions are sample indices at ``fs``."""

    path: Path
    meta: dict
    fs: float = 0.0
    n_samples: int = 0
    n_chunks: int = 0
    t0: float | None = None                      # host wall clock (s) of sample 0
    jumps: dict = field(default_factory=dict)    # chunk index -> start (clock jumps)
    gaps: list = field(default_factory=list)     # (start, stop) samples nothing arrived for
    lead_off: list = field(default_factory=list)  # (start, stop)
    beats: array = field(default_factory=lambda: array("q"))
    decisions: list = field(default_factory=list)  # (pos, positive labels, "MI=0.834 IMI=0.412 ...")
    quality: list = field(default_factory=list)    # (pos, ok, reasons)
    links: list = field(default_factory=list)      # (pos, kind, detail)
    uv_per_lsb: set = field(default_factory=set)   # scales of the chunks that carried counts
    chunks_without_counts: int = 0
    count_range: tuple | None = None
    mv_range: tuple | None = None
    has_outputs: bool = False                    # format 2: beats/decisions were recorded

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.fs if self.fs else 0.0

    @property
    def counts_scale(self) -> float | None:
        """The one µV-per-count scale when every chunk carried counts at that scale, else None."""
        if self.chunks_without_counts or len(self.uv_per_lsb) != 1:
            return None
        return next(iter(self.uv_per_lsb))

    def device(self) -> dict:
        """What the recording says about the device: its HELLO(s) and the source."""
        hello = [d for _, k, d in self.links if k == "hello"]
        out = {k: self.meta[k] for k in ("source", "lead", "port", "path", "address") if k in self.meta}
        if hello:
            h = hello[-1]
            out.update({k: h[k] for k in ("device_id", "firmware", "protocol_version", "lead")
                        if h.get(k) not in (None, "")})
        if self.uv_per_lsb:
            out["uv_per_lsb"] = sorted(self.uv_per_lsb)
        return out


def _add(intervals: list, a: int, b: int) -> None:
    """Append [a, b), merging with the last interval when they touch."""
    if b <= a:
        return
    if intervals and intervals[-1][1] >= a:
        intervals[-1] = (intervals[-1][0], max(intervals[-1][1], b))
    else:
        intervals.append((a, b))


def _records(path):
    """(byte offset, decoded item) for each record, errors naming the byte."""
    stream = Path(path) / STREAM
    for off, kind, body in iter_records(path):
        try:
            yield off, decode_record(kind, body)
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise RecordingError(f"{stream}: byte {off}: {exc}") from None


def scan(directory) -> Timeline:
    """Read a recording once and lay it out (no samples kept)."""
    p = Path(directory)
    p = p.parent if p.name == "recording.json" else p
    tl = Timeline(p, read_meta(p))
    pos, last = 0, None  # last: (index, start, gap start) of the latest chunk
    cmin = cmax = None
    vmin, vmax = np.inf, -np.inf
    label_sets = {}
    for off, item in _records(p):
        if isinstance(item, Chunk):
            n, gap = len(item.samples), int(item.gap_before)
            if not tl.fs:
                tl.fs = float(item.fs)
            elif abs(item.fs - tl.fs) > 1e-6:
                raise RecordingError(f"{p / STREAM}: byte {off}: the rate changes from {tl.fs:g} "
                                     f"to {item.fs:g} Hz; one rate per export (split the recording)")
            start = pos + gap
            _add(tl.gaps, pos, start)
            if item.lead_off:
                _add(tl.lead_off, start, start + n)
            if tl.t0 is None:
                tl.t0 = item.t_arrival - (gap + n) / tl.fs
            last = (tl.n_chunks, start, pos)
            pos = start + n
            tl.n_chunks += 1
            if item.counts is not None:
                tl.uv_per_lsb.add(item.uv_per_lsb)
                if n:
                    lo, hi = int(item.counts.min()), int(item.counts.max())
                    cmin = lo if cmin is None else min(cmin, lo)
                    cmax = hi if cmax is None else max(cmax, hi)
            else:
                tl.chunks_without_counts += 1
            fin = item.samples[np.isfinite(item.samples)]
            if len(fin):
                vmin, vmax = min(vmin, float(fin.min())), max(vmax, float(fin.max()))
        elif isinstance(item, LinkEvent):
            tl.links.append((pos, item.kind, item.detail))
        elif isinstance(item, PipelineOutput):
            tl.has_outputs = True
            end = int(round(item.t * tl.fs)) if tl.fs else 0
            if last is not None and end > pos:
                # the pipeline's clock ran ahead: time lost over a reconnect, before the last chunk
                i, start, gap_from = last
                shift = end - pos
                if tl.gaps and tl.gaps[-1][1] == start:
                    gap_from = min(gap_from, tl.gaps.pop()[0])
                if tl.lead_off and tl.lead_off[-1][0] == start:
                    a, b = tl.lead_off.pop()
                    _add(tl.lead_off, a + shift, b + shift)
                _add(tl.gaps, gap_from, start + shift)
                tl.jumps[i] = start + shift
                last, pos = (i, start + shift, gap_from), end
            for e in item.events:
                at = int(round(float(e.get("t", 0.0)) * tl.fs))
                kind = e.get("type")
                if kind == "beat":
                    tl.beats.append(at)
                elif kind == "decision":
                    # compact: a day holds ~50k decisions; one shared tuple per label set
                    labels = tuple(e.get("labels", []))
                    labels = label_sets.setdefault(labels, labels)
                    probs = " ".join(f"{k}={float(v):.3f}" for k, v in e.get("probabilities", {}).items())
                    tl.decisions.append((at, labels, probs))
                elif kind == "quality":
                    tl.quality.append((at, bool(e.get("ok")), list(e.get("reasons", []))))
    tl.n_samples = pos
    if cmin is not None:
        tl.count_range = (cmin, cmax)
    if vmin <= vmax:
        tl.mv_range = (vmin, vmax)
    return tl


def iter_blocks(tl: Timeline, block: int, counts: bool = False):
    """Yield ``(start, mv, flags, counts)`` blocks of ``block`` samples covering the timeline.

    ``mv`` float32 (NaN where nothing arrived), ``flags`` uint8 (:data:`GAP`,
    :data:`LEAD_OFF`), ``counts`` int64 (0 in gaps; only with ``counts=True``,
    else None). The last block is shorter.
    """
    n_total = tl.n_samples
    start = 0
    mv = np.full(min(block, n_total), np.nan, np.float32)
    fl = np.full(len(mv), GAP, np.uint8)
    ct = np.zeros(len(mv), np.int64) if counts else None

    def emit(upto):
        """Yield full blocks while the write head has passed them."""
        nonlocal start, mv, fl, ct
        while start + len(mv) <= upto and start < n_total:
            yield start, mv, fl, ct
            start += len(mv)
            m = min(block, n_total - start)
            mv = np.full(m, np.nan, np.float32)
            fl = np.full(m, GAP, np.uint8)
            ct = np.zeros(m, np.int64) if counts else None

    pos, idx = 0, 0
    for _, item in _records(tl.path):
        if not isinstance(item, Chunk):
            continue
        a = tl.jumps.get(idx, pos + int(item.gap_before))
        idx += 1
        x = item.samples
        c = item.counts if counts else None
        pos = a + len(x)
        done = 0
        while done < len(x):
            yield from emit(a + done)
            if start >= n_total:
                return
            i = a + done - start
            k = min(len(x) - done, len(mv) - i)
            mv[i:i + k] = x[done:done + k]
            fl[i:i + k] = LEAD_OFF if item.lead_off else 0
            if c is not None:
                ct[i:i + k] = c[done:done + k]
            done += k
        yield from emit(pos)
    if start < n_total:
        yield start, mv, fl, ct
