"""What every reader returns: a whole :class:`Record`, or one lead as a bounded :class:`LeadStream`.

Values are float32 millivolts; NaN marks a sample the file declares invalid or
a gap its timestamps reveal (the runtime's gap handling sees NaN as lost).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

__all__ = ["Record", "RecordError", "LeadStream", "unit_scale_to_mv", "is_voltage_unit",
           "rechunk"]

log = logging.getLogger("selfmis.readers")


class RecordError(ValueError):
    """A record that cannot be read (or is refused); the message names the file."""


# Voltage units as files spell them, with the factor that turns them into mV.
_VOLT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "microvolt": 1e-3, "microvolts": 1e-3,
         "v": 1e3, "volt": 1e3, "volts": 1e3, "nv": 1e-6, "millivolt": 1.0, "millivolts": 1.0}


def is_voltage_unit(units: str) -> bool:
    return units.strip().lower() in _VOLT


def unit_scale_to_mv(units: str) -> float:
    """Factor from ``units`` to mV; 1.0 for a unit that is not a voltage (see :func:`is_voltage_unit`)."""
    return _VOLT.get(units.strip().lower(), 1.0)


@dataclass
class Record:
    """One multi-lead recording; voltage leads in mV (other units as the file has them, see ``units``).

    Parameters
    ----------
    name : str
        The record's name (file stem).
    fs : float
        Sample rate (Hz).
    lead_names : list of str
    signal : numpy.ndarray
        (n_samples, n_leads) float32.
    meta : dict
        What the reader learned (format, how rate and units were decided).
    units : list of str
        Per lead, after conversion (``"mV"`` for voltages).

    Example
    -------
    >>> from selfmis.readers import read_record
    >>> read_record("core/sample_data/ptbxl/records100/00000/00057_lr").duration_s
    10.0
    """

    name: str
    fs: float
    lead_names: list
    signal: np.ndarray  # (n_samples, n_leads) float32
    meta: dict = field(default_factory=dict)
    units: list = field(default_factory=list)  # per lead, after conversion ("mV" for voltages)

    def lead(self, name: str) -> np.ndarray:
        """One lead by (case-insensitive) name, as a 1-D float32 array.

        Parameters
        ----------
        name : str
            ``"I"``, ``"ii"``, ``"ECG I"``...

        Returns
        -------
        numpy.ndarray
            (n_samples,) float32, a view into :attr:`signal`.

        Raises
        ------
        RecordError
            The record has no such lead (the message lists those it has).
        """
        names = [n.upper() for n in self.lead_names]
        try:
            return self.signal[:, names.index(name.upper())]
        except ValueError:
            raise RecordError(
                f"{self.name}: no lead {name!r}; leads are {self.lead_names}") from None

    @property
    def duration_s(self) -> float:
        return self.signal.shape[0] / self.fs


@dataclass
class LeadStream:
    """One lead of a file, read piece by piece: iterate for float32 mV arrays.

    ``fs`` is the lead's own rate (a WFDB signal with several samples per frame
    streams at ``spf x`` the frame rate). ``lead`` is the name the file gives
    it, ``format`` what was read (``wfdb-16``, ``csv``, ``polar``, ``edf``...).
    """

    fs: float
    name: str
    lead: str
    format: str
    chunks: Iterator[np.ndarray]
    meta: dict = field(default_factory=dict)

    def __iter__(self):
        return iter(self.chunks)


def rechunk(pieces, n: int):
    """Re-cut an iterator of 1-D arrays into arrays of exactly ``n`` samples (the last shorter)."""
    buf, have = [], 0
    for p in pieces:
        if not len(p):
            continue
        buf.append(p)
        have += len(p)
        if have >= n:
            x = np.concatenate(buf) if len(buf) > 1 else buf[0]
            cut = (len(x) // n) * n
            for i in range(0, cut, n):
                yield x[i:i + n]
            rest = x[cut:]
            buf, have = ([rest], len(rest)) if len(rest) else ([], 0)
    if have:
        yield np.concatenate(buf) if len(buf) > 1 else buf[0]
