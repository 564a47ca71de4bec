"""Parse a WFDB header (``.hea``) completely: every field is either used, kept in ``meta``, or refused.

Header syntax (record line, then one line per signal, ``#`` lines are info strings)::

    name[/nseg] nsig [fs[/counterfreq[(basecounter)]] [nsamp [basetime [basedate]]]]
    file fmt[xspf][:skew][+offset] [gain[(baseline)][/units] [adcres [adczero [initval [checksum [blocksize [desc]]]]]]]

What each field does here: rate, sample count, format, samples per frame,
skew, byte offset, gain, baseline, units, initial value (format 8) and the
description (lead name) shape the samples; the checksum is verified (a mismatch
is logged and kept as ``meta['checksum_ok']``); base time/date, counter
frequency and info lines go to ``meta``; ADC resolution and ADC zero are
informational (the baseline defaults to ADC zero, as in WFDB); block size only
matters for reading devices, not files. A record line or signal line with
anything else is refused.

Reference: PhysioNet WFDB header format, https://physionet.org/physiotools/wag/header-5.htm
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..limits import ADC_PER_UNIT_RANGE, FS_MAX_HZ, check_gain, check_rate

from .record import RecordError

__all__ = ["WfdbHeader", "WfdbSignal", "parse_header", "read_header", "FORMATS",
           "Unsupported"]

# Formats the numpy reader decodes (wfdb_formats.py); anything else is refused or goes to wfdb.
FORMATS = ("8", "16", "24", "32", "61", "80", "160", "212", "310", "311")

_FMT = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:\((-?\d+)\))?(?:/(.*))?$")
_FS = re.compile(r"^([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                 r"(?:/((?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?:\((-?[\d.]+)\))?)?$")
_TIME = re.compile(r"^\d{1,2}:\d{1,2}(:\d{1,2}(\.\d*)?)?$")
_DATE = re.compile(r"^\d{1,2}/\d{1,2}/\d{4}$")


class Unsupported(RecordError):
    """A valid WFDB feature the numpy reader does not implement (wfdb may read it)."""


@dataclass
class WfdbSignal:
    file: str
    fmt: str
    spf: int = 1            # samples per frame
    skew: int = 0           # frames this signal is delayed by in the file
    offset: int = 0         # bytes before the first sample in ``file``
    gain: float = 200.0     # ADC units per physical unit
    baseline: int = 0
    units: str = "mV"
    adc_res: int = 0
    adc_zero: int = 0
    init: int | None = None  # initial value (format 8 differences start from it)
    checksum: int | None = None
    block_size: int = 0
    description: str = ""


@dataclass
class WfdbHeader:
    path: str               # the .hea file
    name: str
    nsig: int
    fs: float               # frame rate
    nsamp: int | None       # frames; None when the header omits it (taken from the file size)
    signals: list
    counter_freq: float | None = None
    base_counter: float | None = None
    base_time: str | None = None
    base_date: str | None = None
    comments: list = field(default_factory=list)

    @property
    def dir(self) -> str:
        return os.path.dirname(self.path)

    def meta(self) -> dict:
        return {k: v for k, v in dict(
            base_time=self.base_time, base_date=self.base_date, counter_freq=self.counter_freq,
            base_counter=self.base_counter, comments=self.comments).items() if v}


def _num(tok: str, kind, what: str, hea: str, line: str):
    try:
        return kind(tok)
    except ValueError:
        raise RecordError(f"{hea}: {what} {tok!r} is not a number in {line!r}") from None


def parse_header(path: str) -> WfdbHeader:
    """Parse ``path`` (a record name, or its ``.hea``); :class:`Unsupported` for multi-segment records."""
    hea = path if path.endswith(".hea") else path + ".hea"
    try:
        with open(hea, "r", encoding="latin-1") as fh:
            raw = fh.read().splitlines()
    except OSError as exc:
        raise RecordError(f"{hea}: cannot read header ({exc.strerror})") from None
    comments = [ln.strip()[1:].strip() for ln in raw if ln.strip().startswith("#")]
    lines = [ln.strip() for ln in raw if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise RecordError(f"{hea}: empty header")
    rec = lines[0]
    head = rec.split()
    if len(head) < 2:
        raise RecordError(f"{hea}: malformed record line {rec!r} (needs a name and a signal count)")
    if "/" in head[0]:
        raise Unsupported(f"{hea}: a multi-segment record ({head[0]}): the gateway reader does "
                          "not read multi-segment WFDB records")
    nsig = _num(head[1], int, "signal count", hea, rec)
    if nsig < 1:
        raise RecordError(f"{hea}: record line declares {nsig} signals")
    fs, counter, base_counter = 250.0, None, None  # WFDB default rate when none is given
    if len(head) > 2:
        m = _FS.match(head[2])
        if not m:
            raise RecordError(f"{hea}: malformed sampling frequency {head[2]!r} in {rec!r}")
        fs = float(m.group(1))
        counter = float(m.group(2)) if m.group(2) else None
        base_counter = float(m.group(3)) if m.group(3) else None
        if not 0 < fs <= FS_MAX_HZ:  # the lead's rate (x samples per frame) is checked by the reader
            check_rate(fs, hea, "sampling frequency", exc=RecordError)
    nsamp = _num(head[3], int, "sample count", hea, rec) if len(head) > 3 else None
    base_time = base_date = None
    if len(head) > 4:
        if not _TIME.match(head[4]):
            raise RecordError(f"{hea}: malformed base time {head[4]!r} in {rec!r}")
        base_time = head[4]
    if len(head) > 5:
        if not _DATE.match(head[5]):
            raise RecordError(f"{hea}: malformed base date {head[5]!r} in {rec!r}")
        base_date = head[5]
    if len(head) > 6:
        raise RecordError(f"{hea}: unexpected fields {head[6:]} on the record line")
    if len(lines) < 1 + nsig:
        raise RecordError(f"{hea}: declares {nsig} signals but lists {len(lines) - 1}")
    if len(lines) > 1 + nsig:
        raise RecordError(f"{hea}: {len(lines) - 1 - nsig} line(s) after the {nsig} signal lines "
                          f"(first: {lines[1 + nsig]!r}); not a WFDB single-segment header")
    sigs = [_parse_signal(hea, i, ln) for i, ln in enumerate(lines[1:])]
    return WfdbHeader(hea, head[0], nsig, fs, nsamp, sigs, counter, base_counter, base_time,
                      base_date, comments)


def _parse_signal(hea: str, i: int, ln: str) -> WfdbSignal:
    parts = ln.split(maxsplit=8)
    where = f"signal line {i + 1}"
    if len(parts) < 2:
        raise RecordError(f"{hea}: malformed {where}: {ln!r}")
    if parts[0] == "-":
        raise RecordError(f"{hea}: {where} reads standard input ('-'); not a file to replay")
    m = _FMT.match(parts[1])
    if not m:
        raise RecordError(f"{hea}: malformed format {parts[1]!r} in {where}")
    fmt = m.group(1)
    s = WfdbSignal(file=parts[0], fmt=fmt, spf=int(m.group(2) or 1), skew=int(m.group(3) or 0),
                   offset=int(m.group(4) or 0), description=f"sig{i}")
    if s.spf < 1:
        raise RecordError(f"{hea}: {where}: samples per frame must be >= 1 ({parts[1]!r})")
    if fmt not in FORMATS:
        raise Unsupported(f"{hea}: {where}: WFDB format {fmt} (the gateway reader decodes "
                          f"formats {', '.join(FORMATS)})")
    if fmt == "8" and s.skew:
        raise Unsupported(f"{hea}: {where}: a skew on a format-8 (difference) signal")
    baseline_given = False
    if len(parts) > 2:
        g = _GAIN.match(parts[2])
        if not g:
            raise RecordError(f"{hea}: malformed gain {parts[2]!r} in {where}")
        s.gain = float(g.group(1))
        if s.gain == 0:
            s.gain = 200.0  # WFDB: a gain of 0 means uncalibrated, read with the default 200
        check_gain(abs(s.gain), hea, f"{where} gain", limits=ADC_PER_UNIT_RANGE, unit="ADC units per unit",
                   exc=RecordError)
        if g.group(2) is not None:
            s.baseline, baseline_given = int(g.group(2)), True
        if g.group(3) is not None:
            s.units = g.group(3) or "mV"
    if len(parts) > 3:
        s.adc_res = _num(parts[3], int, "ADC resolution", hea, ln)
    if len(parts) > 4:
        s.adc_zero = _num(parts[4], int, "ADC zero", hea, ln)
        if not baseline_given:
            s.baseline = s.adc_zero  # WFDB: without an explicit baseline it equals adczero
    if len(parts) > 5:
        s.init = _num(parts[5], int, "initial value", hea, ln)
    if len(parts) > 6:
        s.checksum = _num(parts[6], int, "checksum", hea, ln)
    if len(parts) > 7:
        s.block_size = _num(parts[7], int, "block size", hea, ln)
    if len(parts) > 8:
        s.description = parts[8].strip()
    return s


@dataclass
class _Spec:  # the shape read_header returned before the package split
    file: str
    fmt: str
    gain: float
    baseline: int
    units: str
    description: str


def read_header(path: str) -> tuple[dict, list]:
    """``(record fields, per-signal specs)`` of a WFDB header (kept for existing callers).

    Parameters
    ----------
    path : str
        The record, with or without ``.hea``.

    Returns
    -------
    (dict, list)
        ``{"name", "nsig", "fs", "nsamp"}`` and one spec per signal (file, fmt, gain, baseline,
        units, description).

    Raises
    ------
    RecordError
        No header, or one that does not parse (the message names the file and line).

    Example
    -------
    >>> fields, specs = read_header("core/sample_data/ptbxl/records100/00000/00057_lr")
    >>> fields["fs"], fields["nsig"], specs[0].description
    (100.0, 12, 'I')
    """
    h = parse_header(path)
    return ({"name": h.name, "nsig": h.nsig, "fs": h.fs, "nsamp": h.nsamp},
            [_Spec(s.file, s.fmt, s.gain, s.baseline, s.units, s.description) for s in h.signals])
