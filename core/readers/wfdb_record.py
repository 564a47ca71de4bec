"""WFDB records with numpy alone: every format in :data:`~.wfdb_header.FORMATS`, byte offsets,
several samples per frame, skew, signals over several files, headers without a sample count.

A signal file is read a block of frames at a time, so a lead streams in bounded
memory (a day-long record keeps one block, not the file). What the reader does
not implement (multi-segment records, compressed formats) goes to the ``wfdb``
library when it is importable (training machines); on a gateway without it the
error says what the record needs.

Values equal ``wfdb.rdrecord(..., physical=True, smooth_frames=False)`` up to
float32 rounding, units converted to mV (tests/test_readers_conformance.py).
Sample ``k`` of a signal with skew ``s`` is frame ``k + s`` of its file; the
last ``s`` frames, beyond the record, are invalid (NaN), as in wfdb.
"""
from __future__ import annotations

import logging
import math
import os

import numpy as np

from .record import LeadStream, Record, RecordError, is_voltage_unit, rechunk, unit_scale_to_mv
from .wfdb_formats import SPECS
from .wfdb_header import Unsupported, WfdbHeader, parse_header

__all__ = ["read_wfdb", "open_wfdb_lead", "wfdb_base"]

log = logging.getLogger("selfmis.readers")

# Frames per block when streaming: ~0.5 MB of int32 for 12 leads; small enough for a Pi,
# large enough that numpy's per-call cost is noise.
BLOCK_FRAMES = 8192
_WFDB_HINT = ("install the wfdb library (the training extra: pip install 'selfmis-edge[train]') to "
              "read it through wfdb, or convert it on a workstation with "
              "wfdb.wrsamp(..., fmt=['16'])")


def wfdb_base(path: str) -> str | None:
    """The record name (path without extension) when ``path`` names a WFDB record, else None."""
    if os.path.exists(path + ".hea"):
        return path
    stem, ext = os.path.splitext(path)
    if ext and os.path.exists(stem + ".hea") and ext.lower() in (".hea", ".dat", ".mat", ".xyz"):
        return stem
    return None


class _File:
    """The signals stored in one signal file, decoded a block of frames at a time."""

    def __init__(self, hdr: WfdbHeader, fname: str, idx: list, nframes: int | None):
        sigs = [hdr.signals[i] for i in idx]
        self.hdr, self.idx, self.sigs = hdr, idx, sigs
        self.path = os.path.join(hdr.dir, fname)
        for what in ("fmt", "offset"):
            vals = {getattr(s, what) for s in sigs}
            if len(vals) > 1:
                raise RecordError(f"{hdr.path}: signals in {fname} disagree on {what} "
                                  f"({sorted(map(str, vals))}); a WFDB file has one of each")
        self.fmt, self.offset = sigs[0].fmt, sigs[0].offset
        self.spec = SPECS[self.fmt]
        self.tspf = sum(s.spf for s in sigs)
        self.cols = np.cumsum([0] + [s.spf for s in sigs])
        try:
            size = os.path.getsize(self.path)
        except OSError as exc:
            raise RecordError(f"{self.path}: cannot read signal file ({exc.strerror})") from None
        data = max(0, size - self.offset)
        in_file = (data * self.spec.pack) // (self.spec.group_bytes * self.tspf)
        self.nframes = in_file if nframes is None else nframes
        if in_file < self.nframes and self._bytes_for(self.nframes * self.tspf) > data:
            raise RecordError(f"{self.path}: truncated: {in_file} of {self.nframes} frames "
                              f"({size} bytes, {self.offset} before the samples)")
        # frames per block: a multiple of what keeps 212/310/311 groups whole
        unit = self.spec.pack // math.gcd(self.tspf, self.spec.pack)
        self.block = max(unit, (BLOCK_FRAMES // unit) * unit)

    def _bytes_for(self, n: int) -> int:
        """Bytes holding ``n`` samples (a trailing partial group needs only its own bytes)."""
        full, r = divmod(n, self.spec.pack)
        tail = {0: 0, 1: 2, 2: 3 if self.fmt == "311" else 4}[r] if self.spec.pack > 1 else 0
        if self.fmt == "212" and r == 1:
            tail = 2
        return full * self.spec.group_bytes + tail

    def blocks(self, block: int | None = None):
        """Yield ``(frames, tspf)`` integer arrays from frame 0 to ``nframes``."""
        block = block or self.block
        sp = self.spec
        state = None
        if sp.difference:  # format 8: running value per signal, from the header's initial value
            state = np.array([s.init or 0 for s in self.sigs], dtype=np.int64)
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            done = 0
            while done < self.nframes:
                k = min(block, self.nframes - done)
                n = k * self.tspf
                want = -(-n // sp.pack) * sp.group_bytes
                raw = fh.read(want)
                if len(raw) < self._bytes_for(n):
                    raise RecordError(f"{self.path}: truncated at byte {fh.tell()} (frame "
                                      f"{done + len(raw) * sp.pack // sp.group_bytes // self.tspf}"
                                      f" of {self.nframes})")
                buf = np.frombuffer(raw + bytes(want - len(raw)), dtype=np.uint8)
                vals = sp.decode(buf)[:n].reshape(k, self.tspf)
                if state is not None:
                    vals = vals.astype(np.int64)
                    for j in range(len(self.sigs)):
                        a, b = self.cols[j], self.cols[j + 1]
                        seg = vals[:, a:b].reshape(-1).cumsum() + state[j]
                        state[j] = seg[-1]
                        vals[:, a:b] = seg.reshape(k, b - a)
                yield vals
                done += k

    def signal_samples(self, j: int, block: int | None = None):
        """Samples of this file's ``j``-th signal (own rate), block by block."""
        a, b = self.cols[j], self.cols[j + 1]
        for vals in self.blocks(block):
            yield vals[:, a:b].reshape(-1)


def _physical(d: np.ndarray, sig, invalid) -> np.ndarray:
    # float64 arithmetic as wfdb's dac(), one rounding to float32 at the end
    x = ((d - float(sig.baseline)) / sig.gain * unit_scale_to_mv(sig.units)).astype(np.float32)
    if invalid is not None:
        x[d == invalid] = np.nan
    return x


def _files(hdr: WfdbHeader) -> dict:
    order = {}
    for i, s in enumerate(hdr.signals):
        order.setdefault(s.file, []).append(i)
    return order


def _record_frames(hdr: WfdbHeader) -> int | None:
    if hdr.nsamp is not None:
        return hdr.nsamp
    # no sample count: the first signal file's size decides, as in wfdb
    f = _File(hdr, hdr.signals[0].file, _files(hdr)[hdr.signals[0].file], None)
    return f.nframes


def _checksum(hdr, sig, total: int, lead: str):
    if sig.checksum is not None and (total - sig.checksum) % 65536:
        log.warning("%s: signal %s: checksum %d in the header, %d in the file: the file may be "
                    "damaged", hdr.path, lead, sig.checksum, (total + 32768) % 65536 - 32768)
        return False
    return True


def _open_file(hdr: WfdbHeader, i: int, nframes: int) -> _File:
    """The signal file of signal ``i``, checked now (size, format) rather than mid-stream."""
    return _File(hdr, hdr.signals[i].file, _files(hdr)[hdr.signals[i].file], nframes)


def _signal_pieces(hdr: WfdbHeader, i: int, f: _File, nframes: int, meta: dict, block=None):
    """Digital samples of signal ``i`` at its own rate, skew applied (invalid past the end)."""
    sig = hdr.signals[i]
    j = f.idx.index(i)
    skip = sig.skew * sig.spf
    total = 0
    for d in f.signal_samples(j, block):
        total += int(d.sum(dtype=np.int64))
        if skip:
            cut = min(skip, len(d))
            d, skip = d[cut:], skip - cut
        if len(d):
            yield d
    meta["checksum_ok"] = _checksum(hdr, sig, total, sig.description) and meta.get("checksum_ok", True)
    if sig.skew:
        # skewed past the record's end: no sample there (wfdb: invalid value)
        fill = f.spec.invalid if f.spec.invalid is not None else 0
        yield np.full(min(sig.skew, nframes) * sig.spf, fill, dtype=np.int64)


def _find(hdr: WfdbHeader, lead: str) -> int:
    names = [s.description.upper() for s in hdr.signals]
    if lead.upper() not in names:
        raise RecordError(f"{hdr.path}: no lead {lead!r}; leads are "
                          f"{[s.description for s in hdr.signals]}")
    return names.index(lead.upper())


def _fallback(base: str, exc: Unsupported):
    try:
        import wfdb  # noqa: F401  (lazy: training machines only)
    except ImportError:
        raise RecordError(f"{exc}; {_WFDB_HINT}") from None
    log.info("%s; reading it through the wfdb library", exc)
    return wfdb


def open_wfdb_lead(base: str, lead: str, chunk_s: float = 1.0) -> LeadStream:
    """One lead of a WFDB record, streamed at its own rate in chunks of ``chunk_s`` seconds."""
    try:
        hdr = parse_header(base)
        i = _find(hdr, lead)
    except Unsupported as exc:
        return _wfdb_lib_lead(base, lead, chunk_s, _fallback(base, exc))
    sig = hdr.signals[i]
    if not is_voltage_unit(sig.units):
        raise RecordError(f"{hdr.path}: lead {sig.description!r} is in {sig.units!r}, not a "
                          "voltage; choose an ECG lead")
    nframes = _record_frames(hdr)
    fs = hdr.fs * sig.spf
    invalid = SPECS[sig.fmt].invalid
    meta = {"path": base, "format": f"wfdb-{sig.fmt}", "units": sig.units, **hdr.meta()}
    f = _open_file(hdr, i, nframes)
    pieces = (_physical(d, sig, invalid) for d in _signal_pieces(hdr, i, f, nframes, meta))
    n = max(1, int(round(chunk_s * fs)))
    return LeadStream(fs, hdr.name, sig.description, f"wfdb-{sig.fmt}", rechunk(pieces, n), meta)


def read_wfdb(base: str, leads=None) -> Record:
    """The whole record (or the named ``leads``) in memory; all chosen leads must share one rate."""
    try:
        hdr = parse_header(base)
        idx = [_find(hdr, ld) for ld in leads] if leads else list(range(hdr.nsig))
    except Unsupported as exc:
        return _wfdb_lib_record(base, leads, _fallback(base, exc))
    rates = {hdr.signals[i].spf for i in idx}
    if len(rates) > 1:
        raise RecordError(
            f"{hdr.path}: signals at different rates ("
            + ", ".join(f"{hdr.signals[i].description} {hdr.fs * hdr.signals[i].spf:g} Hz"
                        for i in idx)
            + "); read leads of one rate with read_record(path, leads=[...]) or stream one lead")
    nframes = _record_frames(hdr)
    meta = {"path": base, "format": "wfdb-" + "/".join(sorted({hdr.signals[i].fmt for i in idx})),
            **hdr.meta()}
    cols = []
    for i in idx:
        sig = hdr.signals[i]
        d = list(_signal_pieces(hdr, i, _open_file(hdr, i, nframes), nframes, meta,
                                block=max(nframes, 1)))
        d = np.concatenate(d) if d else np.zeros(0, np.int64)
        cols.append(_physical(d, sig, SPECS[sig.fmt].invalid))
    signal = np.stack(cols, axis=1) if cols else np.zeros((0, 0), np.float32)
    sigs = [hdr.signals[i] for i in idx]
    return Record(name=hdr.name, fs=hdr.fs * sigs[0].spf, lead_names=[s.description for s in sigs],
                  signal=signal, meta=meta,
                  units=["mV" if is_voltage_unit(s.units) else s.units for s in sigs])


# --- the wfdb library, for what the numpy reader refuses (lazy; never on the gateway) ---

def _wfdb_lib_record(base, leads, wfdb) -> Record:
    r = wfdb.rdrecord(base, physical=True, smooth_frames=False)
    idx = list(range(r.n_sig))
    if leads:
        up = [n.upper() for n in r.sig_name]
        missing = [ld for ld in leads if ld.upper() not in up]
        if missing:
            raise RecordError(f"{base}: no lead {missing[0]!r}; leads are {r.sig_name}")
        idx = [up.index(ld.upper()) for ld in leads]
    spf = {r.samps_per_frame[i] for i in idx}
    if len(spf) > 1:
        raise RecordError(f"{base}: signals at different rates; read one lead at a time")
    cols = [(r.e_p_signal[i] * unit_scale_to_mv(r.units[i])).astype(np.float32) for i in idx]
    return Record(name=r.record_name, fs=float(r.fs) * spf.pop(),
                  lead_names=[r.sig_name[i] for i in idx], signal=np.stack(cols, axis=1),
                  meta={"path": base, "format": "wfdb (via the wfdb library)"},
                  units=["mV" if is_voltage_unit(r.units[i]) else r.units[i] for i in idx])


def _wfdb_lib_lead(base, lead, chunk_s, wfdb) -> LeadStream:
    h = wfdb.rdrecord(base, sampto=1, physical=True, smooth_frames=False)  # names, units, rates
    h.sig_len = wfdb.rdheader(base).sig_len
    names = [n.upper() for n in h.sig_name]
    if lead.upper() not in names:
        raise RecordError(f"{base}: no lead {lead!r}; leads are {h.sig_name}")
    j = names.index(lead.upper())
    units = h.units[j]
    if not is_voltage_unit(units):
        raise RecordError(f"{base}: lead {h.sig_name[j]!r} is in {units!r}, not a voltage")
    spf = (h.samps_per_frame or [1] * h.n_sig)[j] or 1
    frames = max(1, int(round(chunk_s * h.fs)))
    scale = unit_scale_to_mv(units)

    def chunks():
        for a in range(0, h.sig_len, frames):
            r = wfdb.rdrecord(base, sampfrom=a, sampto=min(h.sig_len, a + frames), channels=[j],
                              physical=True, smooth_frames=False)
            yield (r.e_p_signal[0] * scale).astype(np.float32)

    return LeadStream(float(h.fs) * spf, h.record_name, h.sig_name[j], "wfdb (via the wfdb library)",
                      chunks(), {"path": base})
