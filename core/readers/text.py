"""Delimited text ECG files, streamed: CSV, TSV, semicolon (also with decimal commas), whitespace,
with or without a header row, and the Polar Sensor Logger ECG export.

The file is parsed a block of bytes at a time (bounded memory whatever its
length). A block of plain numbers is parsed by numpy in C; anything else (quoted
cells, text columns, blank or comment lines) goes line by line, so a malformed
row is reported as ``file:line``.

Units: ``units=`` (``mV``, ``uV``, ``counts`` with ``uv_per_lsb``) wins, then a
unit in the column name (``ecg [uV]``, ``I (mV)``, ``lead_uv``), then a
``# units=`` line; with none, values are taken as mV but refused when they
cannot be mV (an ECG in mV stays within +-30 mV), naming what to pass.
Rate: ``fs=``, then a ``# fs=`` line, then a time column (``time`` in s,
``... [ms]``, ``sensor timestamp [ns]``...), whose gaps become NaN samples.

Polar Sensor Logger export (Polar H10 owners): ``;``-separated,
``Phone timestamp;sensor timestamp [ns];timestamp [ms];ecg [uV]``, ~130 Hz: the
rate comes from the strap's own clock (sensor timestamps), not the phone's,
whose timestamps arrive in bursts.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..ascii_sketch import pick_column_by_name
from ..limits import check_gain, check_rate
from .record import LeadStream, Record, RecordError, rechunk

__all__ = ["TextTable", "open_text_lead", "read_text", "DELIMITERS", "UNITS"]

log = logging.getLogger("selfmis.readers")

DELIMITERS = {"csv": ",", "tsv": "\t", "semicolon": ";", "polar": ";"}
UNITS = ("mV", "uV", "counts")
BLOCK_BYTES = 1 << 18  # 256 KiB per parse: ~40,000 values, a few MB of temporaries
MAX_MV = 30.0  # |ECG| in mV beyond this is not mV (a 10-bit ADC count or µV is)
_UNIT_RE = re.compile(r"\s*[\[(]\s*(mv|uv|µv|μv|v|ns|us|µs|ms|s|counts?|adu|lsb)\s*[\])]\s*$", re.I)
_SUFFIX_RE = re.compile(r"[_ ](mv|uv|ms|ns|us|s)$", re.I)
_TIME_NAMES = {"time", "t", "timestamp", "sec", "secs", "seconds", "elapsed", "time_s",
               "sensor timestamp", "phone timestamp", "ts", "zeit", "tiempo", "temps", "tempo"}
_TIME_SCALE = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_COUNT_UNITS = {"count", "counts", "adu", "lsb"}
_GENERIC = {"ecg", "ekg", "signal", "value", "values", "sample", "samples", "lead", "adc",
            "voltage", "raw", "ch1", "channel1", "channel 1", "ecg1", "data"}


@dataclass
class _Column:
    index: int
    raw: str
    name: str
    unit: str | None  # as declared in the name, lower-case
    numeric: bool = True

    @property
    def time_scale(self) -> float | None:
        """Seconds per unit when this is a time column, else None."""
        if self.name.lower() not in _TIME_NAMES and not self.name.lower().startswith("time"):
            return None
        return _TIME_SCALE.get(self.unit or "s", None) if self.unit not in ("mv", "uv") else None


def _split_unit(raw: str):
    m = _UNIT_RE.search(raw) or _SUFFIX_RE.search(raw)
    if m:
        return raw[:m.start()].strip(), m.group(1).lower().replace("μ", "u").replace("µ", "u")
    return raw.strip(), None


def _is_num(cell: str, decimal_comma: bool) -> bool:
    try:
        float(cell.replace(",", ".") if decimal_comma else cell)
        return True
    except ValueError:
        return False


@dataclass
class TextTable:
    """What a text file holds, from its first lines: delimiter, columns, units, rate."""

    path: str
    delimiter: str | None          # None: whitespace
    columns: list
    header: bool
    data_line: int                 # 1-based line number of the first data row
    data_offset: int               # byte offset of the first data row
    decimal_comma: bool = False
    comment_fs: float | None = None
    comment_units: str | None = None
    polar: bool = False
    single: bool = False  # one column: a header cell may contain spaces ("I [uV]")
    meta: dict = field(default_factory=dict)

    # ---- sniffing ----
    @classmethod
    def sniff(cls, path: str, delimiter: str | None = None, polar: bool | None = None):
        try:
            with open(path, "rb") as fh:
                head = fh.read(1 << 16)
        except OSError as exc:
            raise RecordError(f"{path}: cannot read ({exc.strerror})") from None
        if b"\x00" in head:
            raise RecordError(f"{path}: not a text file (NUL bytes); for a binary format name it "
                              "with --format")
        bom = 3 if head.startswith(b"\xef\xbb\xbf") else 0
        lines, offset = [], bom
        for i, raw in enumerate(head[bom:].split(b"\n")):
            # offsets count bytes of the file (a latin-1 'µ' is one byte, not U+FFFD's three)
            try:
                ln = raw.decode("utf-8")
            except UnicodeDecodeError:
                ln = raw.decode("latin-1")
            lines.append((i + 1, offset, ln.rstrip("\r")))
            offset += len(raw) + 1
        if len(head) == 1 << 16:
            lines = lines[:-1]  # the last one may be cut
        comment_fs = comment_units = None
        body = []
        for no, off, ln in lines:
            s = ln.strip()
            if not s:
                continue
            if s.startswith("#"):
                for tok in s[1:].replace(",", " ").split():
                    k, _, v = tok.partition("=")
                    if k.lower() == "fs" and v:
                        try:
                            comment_fs = check_rate(v, f"{path}:{no}", "# fs", exc=RecordError)
                        except ValueError as exc:
                            if isinstance(exc, RecordError):
                                raise
                            raise RecordError(f"{path}:{no}: fs {v!r} is not a number") from None
                    elif k.lower() == "units" and v:
                        comment_units = v
                continue
            body.append((no, off, ln))
        if not body:
            raise RecordError(f"{path}: no data rows")
        sample = [ln for _, _, ln in body[:50]]
        if delimiter is None:
            for d in (";", "\t", ","):
                counts = {ln.count(d) for ln in sample[1:] or sample}
                if len(counts) == 1 and counts != {0}:
                    delimiter = d
                    break
        single = delimiter is None and all(len(ln.split()) == 1 for ln in sample[1:] or sample)
        split = ((lambda ln: ln.split(delimiter)) if delimiter else
                 (lambda ln: [ln.strip()]) if single else (lambda ln: ln.split()))
        first = [c.strip().strip('"').strip("'") for c in split(body[0][2])]
        rest = [[c.strip().strip('"') for c in split(ln)] for ln in sample[1:]]
        decimal_comma = delimiter != "," and any(
            "," in c and "." not in c and _is_num(c, True) for row in rest[:5] for c in row)
        header = not all(_is_num(c, decimal_comma) for c in first)
        if header:
            names, data = first, body[1:]
        else:
            names, data = [f"sig{i}" for i in range(len(first))], body
        if not data:
            raise RecordError(f"{path}: a header but no data rows")
        row0 = [c.strip().strip('"') for c in split(data[0][2])]
        if len(row0) != len(names):
            raise RecordError(f"{path}:{data[0][0]}: {len(row0)} fields, the header has "
                              f"{len(names)}")
        cols = []
        for i, raw in enumerate(names):
            name, unit = _split_unit(raw) if header else (raw, None)
            cols.append(_Column(i, raw, name, unit, _is_num(row0[i], decimal_comma)))
        low = {c.raw.lower() for c in cols}
        is_polar = ("sensor timestamp [ns]" in low and "ecg [uv]" in low) if polar is None else polar
        if polar and not ("sensor timestamp [ns]" in low and any(c.name.lower() == "ecg" for c in cols)):
            raise RecordError(f"{path}: not a Polar Sensor Logger ECG export (needs the columns "
                              "'sensor timestamp [ns]' and 'ecg [uV]'; got "
                              f"{[c.raw for c in cols]})")
        return cls(path, delimiter, cols, header, data[0][0], data[0][1], decimal_comma,
                   comment_fs, comment_units, is_polar, single=single)

    # ---- columns ----
    @property
    def clock(self) -> _Column | None:
        """The time column to take the rate and gaps from: the finest numeric one."""
        times = [c for c in self.columns if c.numeric and c.time_scale is not None]
        return min(times, key=lambda c: c.time_scale) if times else None

    @property
    def signals(self) -> list:
        return [c for c in self.columns if c.numeric and c.time_scale is None]

    def pick(self, lead: str) -> _Column:
        """The column for ``lead``; a single unnamed or generic column stands for it (logged)."""
        sigs = self.signals
        for c in sigs:
            if lead.upper() in (c.raw.upper(), c.name.upper()):
                return c
        names = [c.raw for c in sigs]
        if len(sigs) == 1 and (not self.header or self.polar or sigs[0].name.lower() in _GENERIC):
            log.info("%s: one signal column %r, used as lead %s", self.path, sigs[0].raw, lead)
            return sigs[0]
        by_name = pick_column_by_name([c.name for c in sigs]) if self.header and lead.upper() == "I" else None
        if by_name is not None:  # `millis,value`, `saw,ecg`: the one the names make the ECG
            log.info("%s: column %r picked by its name as lead %s (of %s)", self.path, sigs[by_name].raw, lead,
                     names)
            return sigs[by_name]
        if not self.header:
            raise RecordError(f"{self.path}: no header row and {len(sigs)} columns; pass --lead "
                              f"{'|'.join(names)} (columns counted from 0), or add a header row")
        raise RecordError(f"{self.path}: no lead {lead!r}; columns are {names} (pass --lead NAME)")

    def scale_to_mv(self, col: _Column, units: str | None, uv_per_lsb: float | None):
        """(factor to mV, how the units were decided)."""
        u = units or (col.unit if col.unit in ("mv", "uv", "v") or col.unit in _COUNT_UNITS else None) \
            or self.comment_units
        how = "given" if units else "declared in the file" if u else "assumed"
        u = (u or "mV").lower().replace("µ", "u").replace("μ", "u")
        if u in ("count", "counts", "adu", "lsb"):
            if uv_per_lsb is None:
                raise RecordError(f"{self.path}: values are ADC counts; pass --uv-per-lsb "
                                  "(microvolts per count) to scale them")
            return check_gain(uv_per_lsb, self.path, "--uv-per-lsb", exc=RecordError) * 1e-3, how, "counts"
        if u not in ("mv", "uv", "v"):
            raise RecordError(f"{self.path}: unknown units {u!r}; use mV, uV or counts")
        return {"mv": 1.0, "uv": 1e-3, "v": 1e3}[u], how, {"mv": "mV", "uv": "uV", "v": "V"}[u]

    # ---- parsing ----
    def blocks(self, usecols: list):
        """Yield ``(first_line_no, float64 array (rows, len(usecols)))`` over the whole file."""
        ncols = len(self.columns)
        fast = all(c.numeric for c in self.columns)
        d = self.delimiter
        table = bytes.maketrans(((d or " ") + "\r" + ("," if self.decimal_comma else "")).encode(),
                                (" " + " " + ("." if self.decimal_comma else "")).encode())
        line = self.data_line
        with open(self.path, "rb") as fh:
            fh.seek(self.data_offset)
            rest = b""
            while True:
                got = fh.read(BLOCK_BYTES)
                buf = rest + got
                if not got:
                    if not buf.strip():
                        return
                    if not buf.endswith(b"\n"):
                        buf += b"\n"
                    rest = b""
                else:
                    cut = buf.rfind(b"\n") + 1
                    if cut == 0:
                        rest = buf
                        continue
                    buf, rest = buf[:cut], buf[cut:]
                rows = buf.count(b"\n")
                vals = self._fast(buf, rows, ncols, table) if fast else None
                if vals is not None:
                    vals = vals[:, usecols]
                else:
                    vals = self._slow(buf, line, usecols)
                yield line, vals
                line += rows
                if not got:
                    return

    def _fast(self, buf: bytes, rows: int, ncols: int, table: bytes):
        """numpy's C parser over a block of plain numbers; None when the block needs a closer look."""
        if b"#" in buf or b'"' in buf:
            return None
        if self.delimiter and ncols > 1:
            a = np.frombuffer(buf, dtype=np.uint8)
            nl = np.flatnonzero(a == 10)
            dl = np.flatnonzero(a == ord(self.delimiter))
            per_line = np.diff(np.searchsorted(dl, nl), prepend=0)
            if (per_line != ncols - 1).any():
                return None
        if ncols > 1 or self.decimal_comma or b"\r" in buf:
            buf = buf.translate(table)  # delimiters (and CR) to spaces: one separator for numpy
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                v = np.fromstring(buf, dtype=np.float64, sep=" ")
            except (DeprecationWarning, ValueError):
                return None
        if v.size != rows * ncols:
            return None
        return v.reshape(rows, ncols)

    def _slow(self, buf: bytes, line: int, usecols: list):
        out = []
        ncols = len(self.columns)
        for i, raw in enumerate(buf.decode("utf-8", errors="replace").split("\n")[:-1]):
            s = raw.strip()
            if not s or s.startswith("#"):
                continue
            cells = s.split(self.delimiter) if self.delimiter else [s] if self.single else s.split()
            if len(cells) != ncols:
                raise RecordError(f"{self.path}:{line + i}: {len(cells)} fields, expected {ncols}"
                                  f": {s[:80]!r}")
            try:
                out.append([float(cells[j].strip().strip('"').replace(",", ".")
                                  if self.decimal_comma else cells[j].strip().strip('"'))
                            for j in usecols])
            except ValueError:
                bad = next(cells[j] for j in usecols if not _is_num(cells[j].strip().strip('"'),
                                                                       self.decimal_comma))
                raise RecordError(f"{self.path}:{line + i}: not a number: {bad!r} in {s[:80]!r}") \
                    from None
        return np.asarray(out, dtype=np.float64).reshape(len(out), len(usecols))


def _rate(table: TextTable, fs: float | None, clock_vals: np.ndarray | None, first_line: int):
    """The sample rate: given, from a ``# fs=`` line, or measured on the time column."""
    measured = None
    if clock_vals is not None and len(clock_vals) > 2:
        t = clock_vals * table.clock.time_scale
        dt = np.diff(t)
        if (dt <= 0).any():
            k = int(np.flatnonzero(dt <= 0)[0])
            raise RecordError(f"{table.path}:{first_line + k + 1}: time column "
                              f"{table.clock.raw!r} does not increase")
        med = float(np.median(dt))
        ok = dt < 3 * med  # leave gaps out of the estimate
        measured = float(ok.sum() / dt[ok].sum())
    declared = fs if fs is not None else table.comment_fs
    if declared is not None:
        declared = check_rate(declared, table.path, "--fs" if fs is not None else "# fs", exc=RecordError)
        if measured is not None and abs(measured / declared - 1) > 0.02:
            raise RecordError(f"{table.path}: the rate is declared {declared:g} Hz but the time "
                              f"column {table.clock.raw!r} says {measured:.3f} Hz; pass the right "
                              "--fs (or none, to use the time column)")
        return float(declared), "declared"
    if measured is None:
        raise RecordError(f"{table.path}: sample rate unknown; pass --fs, add a '# fs=...' line "
                          "or a time column")
    check_rate(round(measured, 3), table.path, f"rate measured on the time column {table.clock.raw!r}",
               exc=RecordError)
    return round(measured, 3), f"measured on {table.clock.raw!r}"


def _signal(table: TextTable, col, fs, scale, how, clock_needed: bool):
    """Pieces of one column in mV (NaN across gaps in the time column), and the rate."""
    use = [col.index] + ([table.clock.index] if clock_needed else [])
    it = table.blocks(use)
    head = []  # enough rows to measure the rate on (and to judge the units)
    for blk in it:
        head.append(blk)
        if sum(len(v) for _, v in head) >= 2000:
            break
    if not head or not sum(len(v) for _, v in head):
        raise RecordError(f"{table.path}: no data rows")
    line0 = head[0][0]
    first = np.concatenate([v for _, v in head])
    rate, rate_how = _rate(table, fs, first[:, 1] if clock_needed else None, line0)
    if how == "assumed":
        x = first[:, 0]
        x = x[np.isfinite(x)]
        if len(x) and np.percentile(np.abs(x), 99) > MAX_MV:
            raise RecordError(
                f"{table.path}: column {col.raw!r} reaches {np.percentile(np.abs(x), 99):.0f}: not "
                f"an ECG in mV; pass --units uV, or --units counts --uv-per-lsb N for ADC counts")

    def pieces():
        last_t = None
        period = 1.0 / rate
        for line, v in _chain(head, it):
            x = v[:, 0] * scale
            if clock_needed and len(v):
                t = v[:, 1] * table.clock.time_scale
                dt = np.diff(t, prepend=t[0] - period if last_t is None else last_t)
                if (dt <= 0).any():
                    k = int(np.flatnonzero(dt <= 0)[0])
                    raise RecordError(f"{table.path}:{line + k}: time column "
                                      f"{table.clock.raw!r} goes back or repeats")
                missing = np.maximum(np.rint(dt / period).astype(np.int64) - 1, 0)
                missing[dt < 1.5 * period] = 0
                if missing.any():
                    # lost samples (a BLE drop): NaN keeps time continuous and marks them lost
                    x = np.insert(x, np.repeat(np.arange(len(x)), missing), np.nan)
                last_t = t[-1]
            yield x.astype(np.float32)

    return rate, rate_how, pieces()


def _chain(head, it):
    yield from head
    yield from it


def _prepare(path, delimiter, polar, units, uv_per_lsb, lead):
    table = TextTable.sniff(path, delimiter, polar)
    col = table.pick(lead)
    scale, how, u = table.scale_to_mv(col, units, uv_per_lsb)
    return table, col, scale, how, u


def open_text_lead(path: str, lead: str = "I", chunk_s: float = 1.0, fs: float | None = None,
                   delimiter: str | None = None, polar: bool | None = None,
                   units: str | None = None, uv_per_lsb: float | None = None) -> LeadStream:
    """One column of a text file, streamed in chunks of ``chunk_s`` seconds (mV)."""
    table, col, scale, how, u = _prepare(path, delimiter, polar, units, uv_per_lsb, lead)
    rate, rate_how, pieces = _signal(table, col, fs, scale, how, table.clock is not None)
    fmt = "polar" if table.polar else {",": "csv", "\t": "tsv", ";": "semicolon"}.get(
        table.delimiter, "text")
    meta = {"path": path, "format": fmt, "units": u, "units_how": how, "rate_how": rate_how,
            "column": col.raw}
    name = os.path.splitext(os.path.basename(path))[0]
    n = max(1, int(round(chunk_s * rate)))
    return LeadStream(rate, name, col.name, fmt, rechunk(pieces, n), meta)


def read_text(path: str, fs: float | None = None, delimiter: str | None = None,
              polar: bool | None = None, units: str | None = None,
              uv_per_lsb: float | None = None) -> Record:
    """Every signal column of a text file in memory (one pass per column)."""
    table = TextTable.sniff(path, delimiter, polar)
    cols, names = [], []
    rate = None
    for c in table.signals:
        scale, how, _ = table.scale_to_mv(c, units, uv_per_lsb)
        rate, _, pieces = _signal(table, c, fs, scale, how, table.clock is not None)
        cols.append(np.concatenate(list(pieces)))
        names.append(c.name)
    if not cols:
        raise RecordError(f"{path}: no signal columns (columns: {[c.raw for c in table.columns]})")
    fmt = "polar" if table.polar else {",": "csv", "\t": "tsv", ";": "semicolon"}.get(
        table.delimiter, "text")
    return Record(name=os.path.splitext(os.path.basename(path))[0], fs=float(rate),
                  lead_names=names, signal=np.ascontiguousarray(np.stack(cols, axis=1)),
                  meta={"path": path, "format": fmt}, units=["mV"] * len(cols))

