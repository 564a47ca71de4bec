"""EDF, EDF+ and BDF (ambulatory ECG devices, patches, EDFbrowser exports), streamed.

Read through pyedflib (the ``edf`` extra; C-backed EDFlib), a signal a few
seconds at a time, so a day-long file replays in bounded memory. pyedflib
refuses files whose header breaks the standard (e.g. a non-ASCII unit such as
``°``); those are read through edfio when it is installed (same extra), which
maps the file into memory (not bounded for a long file; the log says so).
A discontinuous EDF+D/BDF+D file is refused: its gaps live in annotations that
a continuous stream would silently close.

Reference: Kemp & Olivan (2003), European data format 'plus' (EDF+),
Clin Neurophysiol 114:1755-61; https://www.edfplus.info/specs/
"""
from __future__ import annotations

import logging
import os

import numpy as np

from ..limits import check_rate
from .record import LeadStream, Record, RecordError, is_voltage_unit, rechunk, unit_scale_to_mv

__all__ = ["open_edf_lead", "read_edf", "is_edf"]

log = logging.getLogger("selfmis.readers")
_HINT = "install the edf extra (pip install 'selfmis-edge[edf]': pyedflib, edfio)"


def is_edf(head: bytes) -> bool:
    """EDF/EDF+ start with ``0`` and 7 spaces; BDF with byte 255 and ``BIOSEMI``."""
    return head[:8] == b"0       " or head[:8] == b"\xffBIOSEMI"


class _Signals:
    """Labels, rates, units and a ``read(i, start, n)`` from whichever library opened the file."""

    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as fh:
                head = fh.read(256)
        except OSError as exc:
            raise RecordError(f"{path}: cannot read ({exc.strerror})") from None
        if not is_edf(head):
            raise RecordError(f"{path}: not an EDF/BDF file (no EDF or BIOSEMI signature)")
        kind = head[192:197].decode("latin-1")
        if kind in ("EDF+D", "BDF+D"):
            raise RecordError(f"{path}: a discontinuous {kind} file: its gaps are not replayed; "
                              "export it as EDF+C (EDFbrowser: Tools > Convert EDF+D to EDF+C)")
        self.kind = "bdf" if head[:1] == b"\xff" else "edf"
        try:
            import pyedflib
        except ImportError:
            raise RecordError(f"{path}: reading EDF/BDF needs pyedflib; {_HINT}") from None
        try:
            self._f = pyedflib.EdfReader(path)
        except OSError as exc:
            self._edfio(path, exc)
            return
        f = self._f
        self.labels = [s.strip() for s in f.getSignalLabels()]
        self.fs = [float(x) for x in f.getSampleFrequencies()]
        self.n = [int(x) for x in f.getNSamples()]
        self.units = [f.getPhysicalDimension(i).strip() for i in range(len(self.labels))]
        self.library = "pyedflib"
        self.read = lambda i, start, n: f.readSignal(i, start, n)

    def _edfio(self, path, exc):
        try:
            import edfio
        except ImportError:
            raise RecordError(f"{exc}; pyedflib refuses it and edfio (lenient) is not "
                              f"installed: {_HINT}") from None
        log.warning("%s: pyedflib refuses it (%s); reading it through edfio, which maps the "
                    "whole file", path, str(exc).split(": ")[-1])
        try:
            e = edfio.read_edf(path, lazy_load_data=True)
        except Exception as exc2:  # edfio raises several kinds for a broken header
            raise RecordError(f"{path}: not readable as EDF ({exc2})") from None
        self._f = None
        sig = list(e.signals)
        self.labels = [s.label.strip() for s in sig]
        self.fs = [float(s.sampling_frequency) for s in sig]
        self.n = [int(round(e.duration * s.sampling_frequency)) for s in sig]
        self.units = [s.physical_dimension.strip() for s in sig]
        self.library = "edfio"

        def read(i, start, n):
            fs = self.fs[i]
            return sig[i].get_data_slice(start / fs, (start + n) / fs)
        self.read = read

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None

    def find(self, lead: str) -> int:
        if not self.labels:
            raise RecordError(f"{self.path}: no signals (annotations only)")
        up = [lb.upper() for lb in self.labels]
        for i, lb in enumerate(up):
            if lead.upper() in (lb, lb.removeprefix("ECG ").strip(), lb.removeprefix("EKG ").strip()):
                return i
        ecg = [i for i, lb in enumerate(up) if lb.startswith(("ECG", "EKG"))]
        if len(ecg) == 1 and is_voltage_unit(self.units[ecg[0]]):
            log.info("%s: one ECG signal %r, used as lead %s", self.path, self.labels[ecg[0]], lead)
            return ecg[0]
        raise RecordError(f"{self.path}: no lead {lead!r}; signals are {self.labels}")


def open_edf_lead(path: str, lead: str = "I", chunk_s: float = 1.0) -> LeadStream:
    """One signal of an EDF/BDF file, read ``chunk_s`` seconds at a time (mV)."""
    s = _Signals(path)
    try:
        i = s.find(lead)
        if not is_voltage_unit(s.units[i]):
            raise RecordError(f"{path}: signal {s.labels[i]!r} is in {s.units[i]!r}, not a voltage")
    except RecordError:
        s.close()
        raise
    fs, total, scale = s.fs[i], s.n[i], unit_scale_to_mv(s.units[i])
    check_rate(fs, path, f"sample rate of signal {s.labels[i]!r}", exc=RecordError)
    step = max(1, int(round(chunk_s * fs)))

    def chunks():
        try:
            for a in range(0, total, step):
                yield (np.asarray(s.read(i, a, min(step, total - a)), np.float64) * scale
                       ).astype(np.float32)
        finally:
            s.close()

    meta = {"path": path, "format": s.kind, "library": s.library, "units": s.units[i]}
    return LeadStream(fs, os.path.splitext(os.path.basename(path))[0], s.labels[i], s.kind,
                      rechunk(chunks(), step), meta)


def read_edf(path: str, leads=None) -> Record:
    """The chosen (default: all voltage) signals of one rate, in memory."""
    s = _Signals(path)
    try:
        idx = [s.find(ld) for ld in leads] if leads else \
            [i for i in range(len(s.labels)) if is_voltage_unit(s.units[i])]
        if not idx:
            raise RecordError(f"{path}: no voltage signals (signals {s.labels}, units {s.units})")
        rates = {s.fs[i] for i in idx}
        if len(rates) > 1:
            raise RecordError(f"{path}: signals at different rates "
                              f"({', '.join(f'{s.labels[i]} {s.fs[i]:g} Hz' for i in idx)}); "
                              "choose leads of one rate")
        cols = [(np.asarray(s.read(i, 0, s.n[i]), np.float64) * unit_scale_to_mv(s.units[i])
                 ).astype(np.float32) for i in idx]
    finally:
        s.close()
    return Record(name=os.path.splitext(os.path.basename(path))[0], fs=s.fs[idx[0]],
                  lead_names=[s.labels[i] for i in idx], signal=np.stack(cols, axis=1),
                  meta={"path": path, "format": s.kind, "library": s.library},
                  units=["mV"] * len(idx))
