"""The supported ranges of every rate and gain, checked in one place wherever a value enters.

A sample rate or a gain reaches the runtime from many doors: a device's HELLO
and DATA frames, a sketch's ``# fs=`` header, the command line (``--fs``,
``--uv-per-lsb``), a WFDB/EDF/CSV file, the model card. Each door calls
:func:`check_rate` / :func:`check_gain` here, so there is one rule and one
wording of the refusal (the source, the field, the value, the range):

=================  ==========================  =====================================
quantity           supported                   why the bounds
=================  ==========================  =====================================
sample rate        50 Hz .. 10 kHz              below 50 Hz a QRS (~100 ms) is a few
                                               samples; above 10 kHz no ECG front end
                                               (and the resampler's filter grows with
                                               the ratio: bounded memory)
gain (uV per LSB)  1e-4 .. 1e5, finite, > 0    an ADS1298 LSB is ~0.05 uV; 0.1 V per
                                               count is no ECG front end
gain (ADC/mV)      1e-3 .. 1e9, finite, > 0    WFDB/EDF: units per physical unit
=================  ==========================  =====================================

NaN, +-inf, 0, negative and out-of-range values are refused with a
:class:`LimitError` (a ``ValueError`` that knows its exit code); never a
traceback, never gigabytes allocated for a ratio nobody can build.
"""
from __future__ import annotations

import math

from .exit_codes import CodedError, ExitCode

__all__ = ["FS_MIN_HZ", "FS_MAX_HZ", "MAX_GAP_FILL_S", "UV_PER_LSB_RANGE", "ADC_PER_UNIT_RANGE", "LimitError",
           "check_rate", "check_gain", "rate_arg", "gain_arg", "describe_limits"]

FS_MIN_HZ = 50.0
FS_MAX_HZ = 10_000.0
#: microvolts per ADC count (the wire's and the ASCII header's ``uv_per_lsb``, ``--uv-per-lsb``)
UV_PER_LSB_RANGE = (1e-4, 1e5)
#: ADC units per physical unit (WFDB ``gain``, EDF digital/physical span)
ADC_PER_UNIT_RANGE = (1e-3, 1e9)
#: The gap policy: samples lost on a link are filled (held, flagged) up to this many seconds;
#: a longer gap restarts the stream (the pipeline) and is never filled -- a sequence number
#: jumping by 32767 frames is not "14.8 days lost" (the framed source).
MAX_GAP_FILL_S = 10.0


class LimitError(CodedError, ValueError):
    """A rate or gain outside the supported range; the message names source, field and value."""

    exit_code = ExitCode.SOURCE


def _number(value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    return x


def _refuse(source: str, field: str, value, rule: str, exc, exit_code) -> None:
    what = f"{field}={value!r}" if field else repr(value)
    msg = f"{source}: {what} {rule}" if source else f"{what} {rule}"
    if exc is LimitError or (isinstance(exc, type) and issubclass(exc, CodedError)):
        raise exc(msg, exit_code)
    raise exc(msg)


def check_rate(value, source: str = "", field: str = "fs", *, exc=LimitError,
               exit_code: ExitCode | None = None) -> float:
    """``value`` as a float sample rate in Hz if it is within 50 Hz .. 10 kHz, else raise ``exc``.

    Parameters
    ----------
    value : the rate as given (a number or a string from a header).
    source : where it came from (``"HELLO frame"``, a file name, ``"--fs"``).
    field : the field's name in that source (``"fs_hz"``, ``"sampling frequency"``).
    exc : the exception class to raise (a reader raises its ``RecordError``).
    exit_code : for a :class:`~selfmis.exit_codes.CodedError` ``exc``: the code (default SOURCE).

    Returns
    -------
    float
    """
    x = _number(value)
    if not (FS_MIN_HZ <= x <= FS_MAX_HZ):  # NaN fails every comparison
        _refuse(source, field, value, f"is not a supported sample rate ({FS_MIN_HZ:g} Hz to "
                f"{FS_MAX_HZ:g} Hz)", exc, exit_code)
    return x


def check_gain(value, source: str = "", field: str = "uv_per_lsb", *, limits=UV_PER_LSB_RANGE,
               unit: str = "uV per ADC count", exc=LimitError, exit_code: ExitCode | None = None) -> float:
    """``value`` as a float gain if it is finite, positive and within ``limits``, else raise ``exc``.

    ``limits`` is :data:`UV_PER_LSB_RANGE` (default) or :data:`ADC_PER_UNIT_RANGE`;
    the other parameters are those of :func:`check_rate`.
    """
    x = _number(value)
    lo, hi = limits
    if not (lo <= x <= hi):
        _refuse(source, field, value, f"is not a supported gain ({lo:g} to {hi:g} {unit})", exc, exit_code)
    return x


def rate_arg(text: str) -> float:
    """argparse ``type=`` for ``--fs``: a usage error (exit 2) naming the option and the range."""
    import argparse
    try:
        return check_rate(text, "", "")
    except LimitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def gain_arg(text: str) -> float:
    """argparse ``type=`` for ``--uv-per-lsb``."""
    import argparse
    try:
        return check_gain(text, "", "")
    except LimitError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def describe_limits() -> dict:
    """The ranges, for ``--help`` texts, the README and the run summary."""
    return {"fs_hz": [FS_MIN_HZ, FS_MAX_HZ], "uv_per_lsb": list(UV_PER_LSB_RANGE),
            "adc_per_unit": list(ADC_PER_UNIT_RANGE)}
