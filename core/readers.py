"""Read an ECG record (WFDB format 16/212, or CSV) with numpy alone.

The gateway has no wfdb/pandas/scipy, yet it must replay WFDB records and the
virtual device must stream them. PTB-XL and the records shipped with this
package use WFDB format 16 (interleaved little-endian int16); format 212 is
the other common one (MIT-BIH). Anything else raises a clear error that
suggests converting with wfdb on a workstation.

The training side reads PTB-XL with wfdb itself; tests check that both
readers agree sample for sample.

Reference: WFDB header and signal formats,
https://physionet.org/physiotools/wag/header-5.htm and signal-5.htm
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Record", "RecordError", "read_record", "read_header", "stream_lead"]


class RecordError(ValueError):
    """A record that cannot be read; the message names the file."""


@dataclass
class Record:
    """One multi-lead recording in physical units (mV)."""

    name: str
    fs: float
    lead_names: list
    signal: np.ndarray  # (n_samples, n_leads) float32, mV
    meta: dict = field(default_factory=dict)

    def lead(self, name: str) -> np.ndarray:
        """One lead by (case-insensitive) name, as a 1-D float32 array in mV."""
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
class _SignalSpec:
    file: str
    fmt: str
    gain: float
    baseline: int
    units: str
    description: str


def read_header(path: str) -> tuple[dict, list]:
    """Parse a WFDB ``.hea`` file: (record line fields, per-signal specs)."""
    hea = path if path.endswith(".hea") else path + ".hea"
    try:
        with open(hea, "r", encoding="latin-1") as fh:
            lines = [ln.strip() for ln in fh if ln.strip() and not ln.startswith("#")]
    except OSError as exc:
        raise RecordError(f"{hea}: cannot read header ({exc.strerror})") from None
    if not lines:
        raise RecordError(f"{hea}: empty header")
    head = lines[0].split()
    if len(head) < 2:
        raise RecordError(f"{hea}: malformed record line {lines[0]!r}")
    try:
        nsig = int(head[1])
        fs = float(head[2].split("/")[0]) if len(head) > 2 else 250.0
        nsamp = int(head[3]) if len(head) > 3 else None
    except ValueError:
        raise RecordError(f"{hea}: malformed record line {lines[0]!r}") from None
    if len(lines) < 1 + nsig:
        raise RecordError(f"{hea}: declares {nsig} signals but lists {len(lines) - 1}")
    specs = []
    for i, ln in enumerate(lines[1:1 + nsig]):
        parts = ln.split()
        if len(parts) < 2:
            raise RecordError(f"{hea}: malformed signal line {i + 1}: {ln!r}")
        gain, baseline, units = 200.0, 0, "mV"
        if len(parts) > 2:
            g = parts[2]
            if "/" in g:
                g, units = g.split("/", 1)
            if "(" in g:
                g, b = g.split("(", 1)
                baseline = int(b.rstrip(")"))
            gain = float(g) or 200.0  # WFDB: gain 0 means the default 200
        if len(parts) > 4 and "(" not in (parts[2] if len(parts) > 2 else ""):
            baseline = int(parts[4])  # without an explicit baseline it equals adczero
        desc = " ".join(parts[8:]) if len(parts) > 8 else f"sig{i}"
        specs.append(_SignalSpec(parts[0], parts[1].split("x")[0].split(":")[0].split("+")[0],
                                 gain, baseline, units, desc))
    return {"name": head[0], "nsig": nsig, "fs": fs, "nsamp": nsamp}, specs


def _decode_212(raw: np.ndarray, n_values: int) -> np.ndarray:
    """Format 212: two 12-bit two's-complement samples packed in three bytes."""
    raw = raw[: (len(raw) // 3) * 3].reshape(-1, 3).astype(np.int32)
    a = raw[:, 0] | ((raw[:, 1] & 0x0F) << 8)
    b = raw[:, 2] | ((raw[:, 1] & 0xF0) << 4)
    out = np.empty(2 * len(raw), dtype=np.int32)
    out[0::2], out[1::2] = a, b
    out[out > 2047] -= 4096
    return out[:n_values]


def _read_wfdb(path: str) -> Record:
    info, specs = read_header(path)
    files = {s.file for s in specs}
    if len(files) != 1:
        raise RecordError(f"{path}.hea: signals spread over several files {sorted(files)}; "
                          "convert with wfdb on a workstation")
    fmts = {s.fmt for s in specs}
    if len(fmts) != 1 or next(iter(fmts)) not in ("16", "212"):
        raise RecordError(f"{path}.hea: WFDB format {sorted(fmts)} not supported by the "
                          "gateway reader (16 and 212 are); convert with wfdb.wrsamp(fmt=['16'])")
    fmt = fmts.pop()
    dat = os.path.join(os.path.dirname(path), specs[0].file)
    try:
        raw = np.fromfile(dat, dtype=np.uint8)
    except OSError as exc:
        raise RecordError(f"{dat}: cannot read signal file ({exc.strerror})") from None
    nsig = info["nsig"]
    if fmt == "16":
        if len(raw) % 2:
            raw = raw[:-1]
        values = raw.view("<i2").astype(np.int32)
    else:
        values = _decode_212(raw, len(raw) * 2 // 3)
    n = len(values) // nsig
    expected = info["nsamp"]
    if expected is not None and n < expected:
        raise RecordError(f"{dat}: truncated: {n} of {expected} samples per signal "
                          f"({len(raw)} bytes)")
    if expected is not None:
        n = expected
    digital = values[: n * nsig].reshape(n, nsig)
    gain = np.array([s.gain for s in specs], dtype=np.float64)
    base = np.array([s.baseline for s in specs], dtype=np.float64)
    scale = np.array([1e-3 if s.units.lower() in ("uv", "µv") else 1.0 for s in specs])
    sig = ((digital - base) / gain * scale).astype(np.float32)
    sig[digital == -32768] = np.nan  # WFDB's "invalid sample" for format 16
    return Record(name=info["name"], fs=info["fs"], lead_names=[s.description for s in specs],
                  signal=sig, meta={"path": path, "format": fmt})


def _read_csv(path: str, fs: float | None) -> Record:
    """CSV: a header row of lead names (``time`` column optional), one row per sample, mV.

    A comment line ``# fs=250`` sets the rate when ``fs`` is not given.
    """
    names, rows, line_fs = None, [], fs
    with open(path, "r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            if line.startswith("#"):
                for tok in line[1:].replace(",", " ").split():
                    if tok.startswith("fs=") and line_fs is None:
                        line_fs = float(tok[3:])
                continue
            cells = [c.strip() for c in line.split(",")]
            if names is None:
                try:
                    [float(c) for c in cells]
                    names = [f"sig{i}" for i in range(len(cells))]
                except ValueError:
                    names = cells
                    continue
            try:
                rows.append([float(c) for c in cells])
            except ValueError:
                raise RecordError(f"{path}:{lineno}: not a number in {line!r}") from None
    if line_fs is None:
        raise RecordError(f"{path}: sample rate unknown; pass fs= or add a '# fs=...' line")
    data = np.asarray(rows, dtype=np.float32).reshape(len(rows), len(names))
    if names and names[0].lower() in ("time", "t", "time_s"):
        names, data = names[1:], data[:, 1:]
    return Record(name=os.path.splitext(os.path.basename(path))[0], fs=float(line_fs),
                  lead_names=list(names), signal=np.ascontiguousarray(data),
                  meta={"path": path, "format": "csv"})


def read_record(path: str, fs: float | None = None) -> Record:
    """Read a WFDB record (path without extension, or ``.hea``/``.dat``) or a CSV file."""
    path = os.fspath(path)
    if path.lower().endswith(".csv"):
        return _read_csv(path, fs)
    for ext in (".hea", ".dat"):
        if path.endswith(ext):
            path = path[: -len(ext)]
    if not os.path.exists(path + ".hea"):
        raise RecordError(f"{path}.hea: no such record")
    return _read_wfdb(path)


def _whole(rec: Record, lead: str, chunk_s: float):
    x = np.ascontiguousarray(rec.lead(lead), dtype=np.float32)
    n = max(1, int(round(chunk_s * rec.fs)))
    return rec.fs, rec.name, (x[i:i + n] for i in range(0, len(x), n))


def stream_lead(path, lead: str = "I", chunk_s: float = 1.0, fs: float | None = None):
    """One lead of a record as ``(fs, name, chunks)``, ``chunks`` yielding float32 mV arrays
    of ``chunk_s`` seconds each (the last one shorter).

    A WFDB format-16 record is read one chunk of frames at a time, so an
    hour-long replay keeps a few kilobytes in memory instead of every lead of
    the whole file; other formats are read whole by :func:`read_record`.
    Values equal ``read_record(path).lead(lead)`` exactly.
    """
    path = os.fspath(path)
    base = path[:-4] if path.endswith((".hea", ".dat")) else path
    if path.lower().endswith(".csv") or not os.path.exists(base + ".hea"):
        return _whole(read_record(path, fs=fs), lead, chunk_s)
    info, specs = read_header(base)
    if len({sp.file for sp in specs}) != 1 or {sp.fmt for sp in specs} != {"16"}:
        return _whole(read_record(base), lead, chunk_s)
    chunk_samples = max(1, int(round(chunk_s * info["fs"])))
    names = [sp.description.upper() for sp in specs]
    if lead.upper() not in names:
        raise RecordError(f"{info['name']}: no lead {lead!r}; leads are {[sp.description for sp in specs]}")
    j, nsig = names.index(lead.upper()), info["nsig"]
    sp = specs[j]
    dat = os.path.join(os.path.dirname(base), sp.file)
    try:
        size = os.path.getsize(dat)
    except OSError as exc:
        raise RecordError(f"{dat}: cannot read signal file ({exc.strerror})") from None
    n = size // (2 * nsig)
    if info["nsamp"] is not None:
        if n < info["nsamp"]:
            raise RecordError(f"{dat}: truncated: {n} of {info['nsamp']} samples per signal ({size} bytes)")
        n = info["nsamp"]
    unit = 1e-3 if sp.units.lower() in ("uv", "µv") else 1.0

    def chunks():
        with open(dat, "rb") as fh:
            for i in range(0, n, chunk_samples):
                k = min(chunk_samples, n - i)
                # read + frombuffer: np.fromfile on a file object dups the descriptor on every call
                frames = np.frombuffer(fh.read(2 * k * nsig), dtype="<i2").reshape(k, nsig)[:, j]
                # the same arithmetic as read_record, so both give identical floats
                x = ((frames.astype(np.int32) - float(sp.baseline)) / sp.gain * unit).astype(np.float32)
                x[frames == -32768] = np.nan
                yield x

    return info["fs"], info["name"], chunks()
