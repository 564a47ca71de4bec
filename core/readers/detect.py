"""Which reader a file needs, from its content (``format=`` where content cannot tell), and the
two entry points every caller uses: :func:`read_record` (whole) and :func:`open_lead` (streamed).
"""
from __future__ import annotations

import os

from ..limits import check_rate
from .edf import is_edf, open_edf_lead, read_edf
from .record import LeadStream, Record, RecordError
from .text import DELIMITERS, open_text_lead, read_text
from .wfdb_record import open_wfdb_lead, read_wfdb, wfdb_base

__all__ = ["FORMATS", "detect_format", "read_record", "open_lead", "stream_lead"]

# What ``format=`` (edge-run --format) accepts; "text" lets the delimiter be sniffed.
FORMATS = ("wfdb", "edf", "csv", "tsv", "semicolon", "polar", "text")


def detect_format(path, format: str | None = None) -> tuple[str, str]:
    """Which reader a file needs, from its content (or ``format``).

    Parameters
    ----------
    path : str or os.PathLike
        A WFDB record (with or without ``.hea``/``.dat``), an EDF/BDF file or a text file.
    format : str, optional
        One of :data:`FORMATS` where the content cannot tell (a binary file of no signature).

    Returns
    -------
    (str, str)
        ``(family, path)``: family ``wfdb`` (path without extension), ``edf`` or ``text``.

    Raises
    ------
    RecordError
        No such file, a directory, an unknown ``format``, or binary content of no known format.

    Example
    -------
    >>> detect_format("core/sample_data/ptbxl/records100/00000/00057_lr.hea")
    ('wfdb', 'core/sample_data/ptbxl/records100/00000/00057_lr')
    """
    path = os.fspath(path)
    if format and format not in FORMATS:
        raise RecordError(f"{path}: unknown format {format!r}; one of {', '.join(FORMATS)}")
    base = wfdb_base(path)
    if format == "wfdb" or (format is None and base is not None):
        if base is None:
            raise RecordError(f"{path}: no WFDB header ({path}.hea) next to it")
        return "wfdb", base
    if not os.path.exists(path):
        raise RecordError(f"{path}: no such record or file")
    if os.path.isdir(path):
        raise RecordError(f"{path}: a directory, not a record file")
    if format == "edf":
        return "edf", path
    if format is not None:
        return "text", path
    with open(path, "rb") as fh:
        head = fh.read(256)
    if is_edf(head):
        return "edf", path
    if b"\x00" in head:
        raise RecordError(f"{path}: a binary file of no known format (WFDB needs its .hea next to "
                          "it; EDF/BDF start with their signature); name it with --format")
    return "text", path


def _text_kw(format):
    return {"delimiter": DELIMITERS.get(format), "polar": True if format == "polar" else None}


def read_record(path, fs: float | None = None, leads=None, format: str | None = None,
                units: str | None = None, uv_per_lsb: float | None = None) -> Record:
    """A whole record in memory: WFDB (path with or without extension), EDF/BDF, or text.

    Parameters
    ----------
    path : str or os.PathLike
        The record; its format comes from the content (:func:`detect_format`).
    fs : float, optional
        Sample rate of a text file that does not say it (Hz).
    leads : list of str, optional
        Leads to keep, by case-insensitive name (needed when a record's signals have different rates).
    format : str, optional
        One of :data:`FORMATS` where the content cannot tell.
    units : {"mV", "uV", "counts"}, optional
        Units of a text file's values (default: its header's, else mV).
    uv_per_lsb : float, optional
        Microvolts per count, for ``units="counts"``.

    Returns
    -------
    Record
        ``signal`` (n_samples, n_leads) float32, voltage leads in mV; ``fs``, ``lead_names``, ``units``.

    Raises
    ------
    RecordError
        The file is missing, malformed, at an unsupported rate, or lacks a lead asked for;
        the message names the file.

    Example
    -------
    >>> rec = read_record("core/sample_data/ptbxl/records100/00000/00057_lr")
    >>> rec.fs, rec.lead("I").shape
    (100.0, (1000,))
    """
    family, p = detect_format(path, format)
    if family != "text":
        rec = read_wfdb(p, leads) if family == "wfdb" else read_edf(p, leads)
        _supported_rate(rec.fs, p)
        return rec
    rec = read_text(p, fs=fs, units=units, uv_per_lsb=uv_per_lsb, **_text_kw(format))
    _supported_rate(rec.fs, p)
    if leads:
        up = [n.upper() for n in rec.lead_names]
        for ld in leads:
            rec.lead(ld)  # names the file and the leads it has when one is missing
        cols = [up.index(ld.upper()) for ld in leads]
        rec.signal = rec.signal[:, cols].copy()
        rec.lead_names = [rec.lead_names[c] for c in cols]
        rec.units = [rec.units[c] for c in cols]
    return rec


def open_lead(path, lead: str = "I", chunk_s: float = 1.0, fs: float | None = None,
              format: str | None = None, units: str | None = None,
              uv_per_lsb: float | None = None) -> LeadStream:
    """One lead, streamed in ``chunk_s``-second float32 mV arrays, in bounded memory (the replay path).

    Parameters
    ----------
    path : str or os.PathLike
        The record (any format :func:`read_record` reads).
    lead : str
        Lead name, case-insensitive (default ``"I"``).
    chunk_s : float
        Seconds per chunk.
    fs, format, units, uv_per_lsb
        As for :func:`read_record` (text files only; ``fs`` given for a WFDB/EDF file must match it).

    Returns
    -------
    LeadStream
        ``fs``, ``name``, ``lead``, ``format``, ``meta``; iterate it for the chunks.

    Raises
    ------
    RecordError
        As :func:`read_record`; a file malformed further in raises while iterating.

    Example
    -------
    >>> s = open_lead("core/sample_data/ptbxl/records100/00000/00057_lr", "I", chunk_s=2.0)
    >>> s.fs, [len(x) for x in s][:2]
    (100.0, [200, 200])
    """
    family, p = detect_format(path, format)
    if family != "text":
        if units is not None:
            raise RecordError(f"{p}: a {family.upper()} file declares its own units; --units "
                              "applies to text files")
        s = open_wfdb_lead(p, lead, chunk_s) if family == "wfdb" else open_edf_lead(p, lead, chunk_s)
        _supported_rate(s.fs, p, s.lead)
        if fs is not None and abs(fs - s.fs) > 1e-9 * s.fs:
            raise RecordError(f"{p}: lead {s.lead} is sampled at {s.fs:g} Hz, not {fs:g} Hz; "
                              "--fs applies to text files that do not say their rate")
        return s
    s = open_text_lead(p, lead, chunk_s, fs=fs, units=units, uv_per_lsb=uv_per_lsb, **_text_kw(format))
    _supported_rate(s.fs, p, s.lead)
    return s


def _supported_rate(fs, path, lead: str | None = None) -> None:
    """Every reader's rate passes :func:`selfmis.limits.check_rate` (the one rule), whatever the format."""
    check_rate(fs, str(path), f"sample rate of lead {lead}" if lead else "sample rate", exc=RecordError)


def stream_lead(path, lead: str = "I", chunk_s: float = 1.0, fs: float | None = None):
    """``(fs, name, chunks)`` of :func:`open_lead` (the shape existing callers use).

    Parameters
    ----------
    path, lead, chunk_s, fs
        As for :func:`open_lead`.

    Returns
    -------
    (float, str, iterator of numpy.ndarray)

    Raises
    ------
    RecordError
        As :func:`open_lead`.

    Example
    -------
    >>> fs, name, chunks = stream_lead("core/sample_data/ptbxl/records100/00000/00057_lr")
    >>> fs, name
    (100.0, '00057_lr')
    """
    s = open_lead(path, lead, chunk_s, fs=fs)
    return s.fs, s.name, s.chunks
