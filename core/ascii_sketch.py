"""The line-oriented text that hobby ECG sketches print: one sample slot per line.

``Serial.println(analogRead(A0))`` is the de-facto AD8232 example code (SparkFun
"Heart_Rate_Display" sketch); Arduino's Serial Plotter format (several values,
optionally ``label:value``) and ``#`` header lines are understood too. Sketches
that can, should send the binary frames of :mod:`selfmis.protocol` instead.

References
----------
* SparkFun AD8232 Heart Rate Monitor hookup guide (lead-off pins LO+/LO-).
* Arduino Serial Plotter: values separated by comma, space or tab; ``label:value`` pairs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Optional

from .protocol import DecodeError

__all__ = ["AsciiHeader", "LeadOff", "SampleRun", "AsciiLineDecoder"]


@dataclass
class AsciiHeader:
    """``# fs=250 lead=I uv_per_lsb=3.22`` -- all keys optional."""

    offset: int
    fs_hz: Optional[float] = None
    lead: Optional[str] = None
    uv_per_lsb: Optional[float] = None
    extra: Dict[str, str] = field(default_factory=dict)


@dataclass
class LeadOff:
    """A lead-off line (``!``, ``LO``) or a non-zero ``lo:`` field: an electrode is off."""

    offset: int


@dataclass
class SampleRun:
    """Consecutive sample slots from :meth:`AsciiLineDecoder.feed_runs`.

    ``values`` are the numbers the device printed (ADC counts, or whatever unit
    the sketch uses); ``lead_off`` is None when no slot of the run is lead-off,
    else one bool per value (a lead-off slot's value is 0 and means nothing).
    ``offset`` is the byte offset of the run's first line.
    """

    offset: int
    values: list
    lead_off: Optional[list] = None


#: What hobby sketches print when the AD8232's LO+/LO- pin is high (SparkFun prints ``!``).
_LEAD_OFF_LINES = frozenset({b"!", b"lo", b"lo!", b"leadoff", b"lead off", b"leads off", b"leads off!",
                             b"lead-off", b"lead_off"})
#: ``label:value`` fields that carry a lead-off flag (non-zero = off)
_LEAD_OFF_LABELS = frozenset({"lo", "lo+", "lo-", "leadoff", "lead_off", "lead-off", "off"})
_FIELD_SEPARATORS = re.compile(rb"[,\t ;]+")
_NOT_INTEGER_LINE = re.compile(rb"[^0-9\-\r\n]")


class AsciiLineDecoder:
    """Decoder for the line-oriented text that hobby ECG sketches print.

    One sample slot per line, ended by ``\\n`` (a ``\\r`` before it is dropped:
    Arduino's ``println`` sends ``\\r\\n``). Understood lines:

    * a number -- ``Serial.println(analogRead(A0))``, the SparkFun AD8232
      example (integers or decimals);
    * Arduino Serial Plotter lines -- several values separated by commas,
      spaces or tabs, optionally as ``label:value`` pairs (``ecg:503,lo:0``);
      ``column`` (0-based) or ``label`` picks the ECG value (default: the first
      value); a non-zero ``lo``/``leadoff`` field marks the slot lead-off;
    * ``!`` or ``LO`` (any case) -- lead-off: the AD8232's LO+/LO- pin is high;
    * ``#`` followed by ``key=value`` pairs -- a header (``# fs=250 lead=I
      uv_per_lsb=3.22``; a ``#`` line without pairs is a comment); empty lines.

    Anything else is a :class:`DecodeError` naming the byte offset where the
    line started. Lines longer than ``max_line`` bytes are reported and
    discarded up to the next newline, which bounds memory on a binary or
    mis-set baud stream.

    :meth:`feed` returns one message per line (int/float, :class:`LeadOff`,
    :class:`AsciiHeader`, :class:`DecodeError`); :meth:`feed_runs` returns the
    same with consecutive sample slots batched into :class:`SampleRun` and a
    vectorised path for blocks of bare integers -- what a live reader should use.
    """

    def __init__(self, max_line: int = 128, column: Optional[int] = None, label: Optional[str] = None):
        if column is not None and column < 0:
            raise ValueError("column must be >= 0")
        self.max_line = max_line
        self.column = column
        self.label = label.lower() if label else None
        self._buf = bytearray()
        self._line_start = 0     # absolute offset of _buf[0]
        self._discarding = False
        self.samples = 0
        self.errors = 0

    @property
    def offset(self) -> int:
        """Total number of bytes fed so far."""
        return self._line_start + len(self._buf)

    # -- line splitting ------------------------------------------------------

    def _take(self, data: bytes, out: list):
        """Append ``data``; return (offset, bytes of the whole lines now complete)."""
        if data:
            self._buf += data
        nl = self._buf.rfind(b"\n")
        if nl < 0:
            if len(self._buf) > self.max_line:
                if not self._discarding:
                    self._error(out, self._line_start, f"line longer than {self.max_line} bytes")
                    self._discarding = True
                self._line_start += len(self._buf)
                self._buf.clear()
            return self._line_start, b""
        block = bytes(self._buf[:nl + 1])
        del self._buf[:nl + 1]
        start = self._line_start
        self._line_start += nl + 1
        if self._discarding:  # the rest of an overlong line
            self._discarding = False
            cut = block.index(b"\n") + 1
            block, start = block[cut:], start + cut
        return start, block

    def _lines(self, start: int, block: bytes, out: list):
        """Yield (offset, message) for each line of ``block`` (None messages skipped)."""
        pos = start
        for line in block.split(b"\n")[:-1]:
            at, pos = pos, pos + len(line) + 1
            if len(line) > self.max_line:
                self._error(out, at, f"line longer than {self.max_line} bytes")
                continue
            m = self._parse_line(line.strip(), at)
            if m is not None:
                yield at, m

    def feed(self, data: bytes) -> list:
        """Return one message per line: samples (int or float), :class:`LeadOff`,
        :class:`AsciiHeader`, :class:`DecodeError`."""
        out: list = []
        start, block = self._take(data, out)
        for _at, m in self._lines(start, block, out):
            if isinstance(m, DecodeError):
                self.errors += 1
            out.append(m)
        return out

    def feed_runs(self, data: bytes) -> list:
        """Like :meth:`feed`, but runs of sample slots come as one :class:`SampleRun`."""
        out: list = []
        start, block = self._take(data, out)
        if not block:
            return out
        if self.label is not None or self.column:
            self._runs_slow(start, block, out)
            return out
        # bare integers, the common case: one C-level split and int() per line; a header,
        # a '!' or a bad line in between goes through the line parser on its own
        pos = 0
        while pos < len(block):
            m = _NOT_INTEGER_LINE.search(block, pos)
            cut = len(block) if m is None else max(pos, block.rfind(b"\n", pos, m.start()) + 1)
            if cut > pos and not self._runs_fast(start + pos, block[pos:cut], out):
                self._runs_slow(start + pos, block[pos:cut], out)
            if m is None:
                break
            end = block.find(b"\n", m.start()) + 1
            self._runs_slow(start + cut, block[cut:end], out)
            pos = end
        return out

    def _runs_fast(self, start: int, block: bytes, out: list) -> bool:
        try:
            vals = [int(v) for v in block.split()]
        except ValueError:  # a lone "-" or "1-2": let the line parser name it
            return False
        if vals and not (-(1 << 31) <= min(vals) and max(vals) < (1 << 31)):
            return False
        if vals:
            self.samples += len(vals)
            prev = out[-1] if out else None
            if isinstance(prev, SampleRun) and prev.lead_off is None:
                prev.values.extend(vals)
            else:
                out.append(SampleRun(start, vals))
        return True

    def _runs_slow(self, start: int, block: bytes, out: list) -> None:
        run = out[-1] if out and isinstance(out[-1], SampleRun) else None
        for at, m in self._lines(start, block, out):
            if isinstance(m, (int, float)) or isinstance(m, LeadOff):
                if run is None:
                    run = SampleRun(at, [])
                    out.append(run)
                off = isinstance(m, LeadOff)
                if off and run.lead_off is None:
                    run.lead_off = [False] * len(run.values)
                run.values.append(0 if off else m)
                if run.lead_off is not None:
                    run.lead_off.append(off)
                continue
            run = None
            if isinstance(m, DecodeError):
                self.errors += 1
            out.append(m)

    def flush(self) -> list:
        """End of stream: parse a last line without its newline."""
        return self.feed(b"\n") if self._buf else []

    def _error(self, out: list, offset: int, reason: str) -> None:
        self.errors += 1
        out.append(DecodeError(offset, reason))

    # -- one line ------------------------------------------------------------

    def _parse_line(self, line: bytes, start: int):
        if not line:
            return None
        if line[:1] == b"#":
            return self._parse_header(line[1:], start)
        if line[:1] == b"!" or line.lower() in _LEAD_OFF_LINES:
            return LeadOff(start)
        if self.label is None and not self.column:
            try:
                value = int(line)  # int() accepts b"-12"
                self.samples += 1
                return value
            except ValueError:
                pass
        return self._parse_fields(line, start)

    def _parse_fields(self, line: bytes, start: int):
        """A number, or Serial-Plotter fields (``503,0`` / ``ecg:503 lo:0``)."""
        fields = [f for f in _FIELD_SEPARATORS.split(line) if f]
        values, lead_off = [], False
        for f in fields:
            name, sep, text = f.rpartition(b":")
            key = name.decode("ascii", "replace").strip().lower() if sep else None
            try:
                v = _number(text)
            except ValueError:
                shown = line[:32].decode("ascii", "backslashreplace")
                return DecodeError(start, f"not a number in {shown!r}")
            if key in _LEAD_OFF_LABELS and key != self.label:
                lead_off = lead_off or v != 0
                continue
            values.append((key, v))
        if lead_off:
            return LeadOff(start)
        shown = line[:32].decode("ascii", "backslashreplace")
        if self.label is not None:
            hit = [v for k, v in values if k == self.label]
            if not hit:
                return DecodeError(start, f"no {self.label!r} field in {shown!r}")
            value = hit[0]
        else:
            col = self.column or 0
            if col >= len(values):
                return DecodeError(start, f"no column {col} in {shown!r} ({len(values)} values)")
            value = values[col][1]
        self.samples += 1
        return value

    @staticmethod
    def _parse_header(text: bytes, start: int):
        try:
            s = text.decode("utf-8")
        except UnicodeDecodeError:
            return DecodeError(start, "header line is not valid UTF-8")
        pairs = [tok.split("=", 1) for tok in s.split() if "=" in tok]
        if not pairs:
            return None  # a plain comment
        hdr = AsciiHeader(start)
        for key, value in pairs:
            key = key.strip().lower()
            try:
                if key in ("fs", "fs_hz"):
                    hdr.fs_hz = float(value)
                elif key in ("uv_per_lsb", "uv"):
                    hdr.uv_per_lsb = float(value)
                elif key == "lead":
                    hdr.lead = value
                else:
                    hdr.extra[key] = value
            except ValueError:
                return DecodeError(start, f"header value {key}={value!r} is not a number")
        return hdr


def _number(text: bytes):
    """int when it is one (ADC counts), else a finite float (a sketch printing volts)."""
    text = text.strip()
    try:
        return int(text)
    except ValueError:
        v = float(text)  # ValueError propagates
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("not finite") from None
        return v
