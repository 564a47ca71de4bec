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
from collections import deque
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .protocol import DecodeError

__all__ = ["AsciiHeader", "ColumnNames", "LeadOff", "SampleRun", "AsciiLineDecoder", "pick_column_by_name",
           "MAX_ABS_VALUE"]


@dataclass
class AsciiHeader:
    """``# fs=250 lead=I uv_per_lsb=3.22`` -- all keys optional."""

    offset: int
    fs_hz: Optional[float] = None
    lead: Optional[str] = None
    uv_per_lsb: Optional[float] = None
    extra: Dict[str, str] = field(default_factory=dict)


@dataclass
class ColumnNames:
    """A line of column names (``time_ms,ecg,lo``): applied to the data lines that have as many
    values (so a start-up banner such as ``AD8232 ready`` never names single-value lines)."""

    offset: int
    names: List[str]


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
#: the largest magnitude a sample may have: whole numbers are exact in float64 below 2**53
#: (``millis()`` and 32-bit counters fit); a 20-digit integer is a garbled line, not a sample
MAX_ABS_VALUE = float(2 ** 53)
_NAME = re.compile(r"^[A-Za-z_\[(][\w\[\]().+/-]*$")
#: names that say "this is the ECG" (any case; a name containing ecg/ekg counts too)
_ECG_NAMES = frozenset({"i", "lead_i", "leadi", "lead1", "lead_1", "lead-i", "lead i"})
#: another lead's name is never taken for lead I (pass it by name to use it knowingly)
_OTHER_LEAD = re.compile(r"^(lead[ _-]?)?(ii|iii|2|3|avr|avl|avf|v[1-6]|ml(i{1,3}|[123]))$")
#: names of columns that are never the ECG: clocks and counters
_TIME_NAME = re.compile(r"^(t|ts|s|ms|us|time.*|.*[_-](ms|us|s|sec)|millis.*|micros.*|timestamp.*|sec|secs|"
                        r"seconds|seq.*|n|count.*|index|idx|sample_?(no|num|n|index)?|frame.*)$")
_NOT_INTEGER_LINE = re.compile(rb"[^0-9\-\r\n]")
#: consecutive lead-off lines (what :meth:`AsciiLineDecoder._parse_line` takes for one, whitespace
#: around it included): a sketch prints one per sample while the electrodes are off, so a run is
#: taken in one C-level match instead of a Python call per line (8x slower)
_LEAD_OFF_RUN = re.compile(rb"(?:[ \t\r]*(?:![^\n]{0,126}|(?i:lo!?|lead[ _-]?off|leads off!?))[ \t\r]*\n)+")


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
      uv_per_lsb=4.44 units=mV``; a ``#`` line without pairs is a comment); empty lines;
    * a line of names (``time_ms,ecg,lo``; :class:`ColumnNames`) -- names the values of the
      data lines with as many values, as if they were ``label:value`` pairs.

    Without ``column`` or ``label``, a line whose values have names picks the ECG by name when
    that is unambiguous (:func:`pick_column_by_name`: the one name with ``ecg``/``ekg`` in it or
    naming lead I; else the one name that is not a clock or a counter), else the first value.
    Numbers beyond :data:`MAX_ABS_VALUE` are decode errors (a garbled line, never a sample).

    Anything else is a :class:`DecodeError` naming the byte offset where the
    line started. Lines longer than ``max_line`` bytes are reported and
    discarded up to the next newline, which bounds memory on a binary or
    mis-set baud stream.

    :meth:`feed` returns one message per line (int/float, :class:`LeadOff`,
    :class:`AsciiHeader`, :class:`DecodeError`); :meth:`feed_runs` returns the
    same with consecutive sample slots batched into :class:`SampleRun` and a
    vectorised path for blocks of bare integers -- what a live reader should use.
    """

    def __init__(self, max_line: int = 128, column: Optional[int] = None, label: Optional[str] = None,
                 keep_rows: int = 6000, lead_off_runs: bool = True):
        if column is not None and column < 0:
            raise ValueError("column must be >= 0")
        self.max_line = max_line
        #: :meth:`feed_runs` takes a run of lead-off lines in one match (False: line by line, the
        #: same messages; ``benchmarks/ascii_lines.py`` times both)
        self.lead_off_runs = bool(lead_off_runs)
        self.column = column
        self.label = label.lower() if label else None
        self._buf = bytearray()
        self._line_start = 0     # absolute offset of _buf[0]
        self._discarding = False
        self.samples = 0
        self.errors = 0
        #: names from a header line, or the labels of ``label:value`` lines (None: none seen)
        self.names: Optional[list] = None
        self._pending_names: Optional[list] = None
        self._auto: dict = {}    # key tuple -> index picked by name (no --column/--label)
        #: the column the ECG is read from, in words (for logs): "column 0", "'ecg' (column 1)"
        self.chosen = f"column {column}" if column is not None else (f"{label!r}" if label else "column 0")
        self.chosen_index = column or 0
        #: the last lines with several values (all of them, lead-off slots excluded), for
        #: the ECG check's "another column looks like ECG" hint: rows of floats, and their keys
        self.rows: deque = deque(maxlen=keep_rows)
        self.row_keys: Optional[list] = None
        #: a sample had a decimal point (a sketch printing mV or V, not ADC counts)
        self.decimals = False

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
            if isinstance(m, ColumnNames):
                self._pending_names = m.names
            out.append(m)
        return out

    def feed_runs(self, data: bytes) -> list:
        """Like :meth:`feed`, but runs of sample slots come as one :class:`SampleRun`."""
        out: list = []
        start, block = self._take(data, out)
        if not block:
            return out
        if self.label is not None or self.column or self.names is not None:
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
            off = _LEAD_OFF_RUN.match(block, cut) if self.lead_off_runs else None
            if off is not None:
                self._lead_off_run(start + cut, block.count(b"\n", cut, off.end()), out)
                pos = off.end()
                continue
            end = block.find(b"\n", m.start()) + 1
            self._runs_slow(start + cut, block[cut:end], out)
            pos = end
        return out

    @staticmethod
    def _lead_off_run(start: int, n: int, out: list) -> None:
        """``n`` lead-off slots at once, as :meth:`_runs_slow` would add them one by one."""
        run = out[-1] if out and isinstance(out[-1], SampleRun) else None
        if run is None:
            run = SampleRun(start, [])
            out.append(run)
        if run.lead_off is None:
            run.lead_off = [False] * len(run.values)
        run.values.extend([0] * n)
        run.lead_off.extend([True] * n)

    def _runs_fast(self, start: int, block: bytes, out: list) -> bool:
        try:
            vals = [int(v) for v in block.split()]
        except ValueError:  # a lone "-" or "1-2": let the line parser name it
            return False
        if vals and not (-MAX_ABS_VALUE <= min(vals) and max(vals) <= MAX_ABS_VALUE):
            return False  # the line parser names the offending line
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
            if isinstance(m, ColumnNames):
                self._pending_names = m.names
                continue
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
        if self.label is None and not self.column and self.names is None:
            try:
                value = int(line)  # int() accepts b"-12"
            except ValueError:
                pass
            else:
                if abs(value) <= MAX_ABS_VALUE:
                    self.samples += 1
                    return value
        return self._parse_fields(line, start)

    def _parse_fields(self, line: bytes, start: int):
        """A number, Serial-Plotter fields (``503,0`` / ``ecg:503 lo:0``), or a names line."""
        fields = [f for f in _FIELD_SEPARATORS.split(line) if f]
        shown = line[:32].decode("ascii", "backslashreplace")
        names = _names_line(fields)
        if names is not None:
            return ColumnNames(start, names)
        parsed = []
        for f in fields:
            name, sep, text = f.rpartition(b":")
            key = name.decode("ascii", "replace").strip().lower() if sep else None
            try:
                parsed.append((key, _number(text)))
            except ValueError as exc:
                return DecodeError(start, f"{exc} in {shown!r}")
        if self._pending_names is not None and len(self._pending_names) == len(parsed) > 1 \
                and all(k is None for k, _ in parsed):
            self.names, self._pending_names = self._pending_names, None
        if self.names is not None and len(self.names) == len(parsed) and all(k is None for k, _ in parsed):
            parsed = [(k, v) for k, (_, v) in zip(self.names, parsed)]
        values, lead_off = [], False
        for key, v in parsed:
            if key in _LEAD_OFF_LABELS and key != self.label:
                lead_off = lead_off or v != 0
                continue
            values.append((key, v))
        if lead_off:
            return LeadOff(start)
        idx = self._pick(values)
        if isinstance(idx, str):
            return DecodeError(start, f"{idx} in {shown!r}")
        value = values[idx][1]
        if isinstance(value, float):
            self.decimals = True
        if len(values) > 1:
            self.rows.append([float(v) for _, v in values])
            self.row_keys = [k for k, _ in values]
        self.samples += 1
        return value

    def _pick(self, values: list):
        """Index of the ECG among ``values``, or a reason (str) why there is none."""
        if not values:
            return "no value"
        if self.label is not None:
            for i, (k, _) in enumerate(values):
                if k == self.label:
                    self.chosen, self.chosen_index = f"{self.label!r} (column {i})", i
                    return i
            return f"no {self.label!r} field"
        if self.column is not None:
            if self.column >= len(values):
                return f"no column {self.column} ({len(values)} values)"
            return self.column
        keys = tuple(k for k, _ in values)
        if not any(keys) or len(keys) < 2:
            return 0
        if keys not in self._auto:
            i = pick_column_by_name(list(keys))
            self._auto[keys] = 0 if i is None else i
            self.chosen = f"{keys[self._auto[keys]]!r} (column {self._auto[keys]})"
        self.chosen_index = self._auto[keys]
        return self._auto[keys]

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
                elif key in ("units", "unit"):
                    hdr.extra["units"] = value
                else:
                    hdr.extra[key] = value
            except ValueError:
                return DecodeError(start, f"header value {key}={value!r} is not a number")
        return hdr


def _number(text: bytes):
    """int when it is one (ADC counts), else a finite float (a sketch printing mV or volts);
    ValueError (with the reason) for anything else, or beyond :data:`MAX_ABS_VALUE`."""
    text = text.strip()
    try:
        v = int(text)
    except ValueError:
        try:
            v = float(text)
        except ValueError:
            raise ValueError("not a number") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("not a finite number") from None
    if abs(v) > MAX_ABS_VALUE:
        raise ValueError("number out of range")
    return v


def _names_line(fields: list) -> Optional[list]:
    """The column names when every field is a name (``time_ms``, ``ecg``, ``[uV]`` joins the
    name before it) and there are at least two, else None (one word is not a header)."""
    names: list = []
    for f in fields:
        try:
            t = f.decode("ascii")
        except UnicodeDecodeError:
            return None
        if not _NAME.match(t) or b":" in f:
            return None
        if t[0] in "[(" and names:
            names[-1] += t
        else:
            names.append(t.lower())
    return names if len(names) > 1 else None


def pick_column_by_name(names: list) -> Optional[int]:
    """Index of the ECG among column ``names`` when the names make it unambiguous, else None:
    the one name containing ``ecg``/``ekg`` or naming lead I; else the one name that is not a
    clock, a counter (``time_ms``, ``millis``, ``t``, ``seq``...), a lead-off flag or another lead
    (``II``, ``V5``, ``MLII``). The one rule for ASCII lines and text files."""
    base = [re.sub(r"[\[(].*$", "", (n or "")).strip().lower() for n in names]
    ecg = [i for i, n in enumerate(base) if "ecg" in n or "ekg" in n or n in _ECG_NAMES]
    if len(ecg) == 1:
        return ecg[0]
    if ecg:
        return None
    rest = [i for i, n in enumerate(base) if n and not _TIME_NAME.match(n) and n not in _LEAD_OFF_LABELS
            and not _OTHER_LEAD.match(n)]
    return rest[0] if len(rest) == 1 else None
