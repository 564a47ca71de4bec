"""Bytes of the text hobby sketches print -> chunks and link events (``SerialSource(ascii=True)``).

The line format is :class:`selfmis.ascii_sketch.AsciiLineDecoder`'s (one value per line, Serial
Plotter columns or ``label:value`` pairs, ``!`` lead-off, ``# fs=250`` headers, a names line);
this module maps its runs of samples onto the runtime's :class:`Chunk` and decides the units:
``units`` (``--units``) ``counts`` (times ``uv_per_lsb`` µV), ``uV`` or ``mV``; without it a
``# units=`` header says, else the first samples decide -- decimals (``0.512``) are mV, whole
numbers ADC counts (said once). As :mod:`.framed` does for the binary protocol, beside
:mod:`.serial`, which owns the port.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from selfmis.ascii_sketch import AsciiHeader, AsciiLineDecoder, SampleRun
from selfmis.limits import check_gain, check_rate
from selfmis.protocol import DecodeError

from .base import Chunk, LinkEvent, SourceRefused, coalesce

__all__ = ["TextStream", "UNITS"]

log = logging.getLogger("selfmis.edge_runtime")

#: what ``units`` may be for an ASCII stream (None: the stated rule decides)
UNITS = ("mV", "uV", "counts")


class TextStream:
    """Incremental: ``feed(bytes)`` returns the chunks/events those bytes complete.

    ``fs`` (``--fs``) overrides a header's rate; ``declared_fs`` is the rate in force from
    ``--fs`` or a header (None: not declared, the source's rate watch locks it).
    ``stats`` is the source's counter dict (``decode_errors``). Counters and the sequence
    number survive :meth:`restart` (a reconnect), the decoder and what headers said do not.
    """

    def __init__(self, port: str, lead: str = "I", fs: float | None = None, uv_per_lsb: float = 1.0,
                 units: str | None = None, column: int | None = None, label: str | None = None,
                 stats: dict | None = None, ecg_watch=None):
        self.port, self.lead = port, lead
        self.fs_override = fs
        self.declared_fs = fs
        self.uv_per_lsb, self.units = float(uv_per_lsb), units
        self.column, self.label = column, label
        self.stats = stats if stats is not None else {"decode_errors": 0}
        self.ecg_watch = ecg_watch
        self.seq = 0
        self.samples_seen = 0
        self.lines_bad = 0
        self._warned_errors = False
        self._err_next_t, self._err_pending = 0.0, 0
        self.restart()

    def restart(self) -> None:
        """After a reconnect: a new line decoder, the options' rate, gain and units again."""
        self.decoder = AsciiLineDecoder(column=self.column, label=self.label)
        self._state = {"fs": self.fs_override, "uv": self.uv_per_lsb, "units": self.units}

    def feed(self, data: bytes) -> list:
        t_arr, t_mono = time.time(), time.perf_counter()
        dec, state = self.decoder, self._state
        out = []
        for m in dec.feed_runs(data):
            if isinstance(m, SampleRun):
                values = np.asarray(m.values)
                scale = self._scale(values)
                fs = state["fs"] or 0.0  # 0: not declared, the rate watch locks it
                self.samples_seen += len(values)
                if self.ecg_watch is not None:
                    self.ecg_watch.column_desc = dec.chosen
                if m.lead_off is None:
                    self.seq += 1
                    out.append(Chunk.from_counts(values, scale, fs, t_arr, t_mono, seq=self.seq))
                    continue
                off = np.asarray(m.lead_off, dtype=bool)
                # one chunk per run of good / lead-off slots: a lead-off slot keeps time,
                # and the pipeline holds the last good value through it
                edges = np.flatnonzero(np.diff(off.astype(np.int8))) + 1
                for a, b in zip(np.r_[0, edges], np.r_[edges, len(values)]):
                    self.seq += 1
                    out.append(Chunk.from_counts(values[a:b], scale, fs, t_arr, t_mono,
                                                 seq=self.seq, lead_off=bool(off[a])))
            elif isinstance(m, AsciiHeader):
                out.append(self._header(m, t_arr))
            elif isinstance(m, DecodeError):
                self._decode_error(m.offset, m.reason, t_arr, out)
        return coalesce(out)

    def _header(self, m: AsciiHeader, t_arr: float) -> LinkEvent:
        state = self._state
        where = f"byte {m.offset}: '#' header"  # like a HELLO: an unsupported rate refuses the device
        if m.fs_hz is not None:
            check_rate(m.fs_hz, where, "fs", exc=SourceRefused)
        if m.uv_per_lsb is not None:
            check_gain(m.uv_per_lsb, where, "uv_per_lsb", exc=SourceRefused)
        if m.fs_hz:
            if self.fs_override and abs(m.fs_hz - self.fs_override) > 1e-6:
                log.warning("header says fs=%g, --fs says %g: using --fs", m.fs_hz, self.fs_override)
            else:
                state["fs"] = float(m.fs_hz)
                self.declared_fs = state["fs"]
        if m.uv_per_lsb:
            state["uv"] = float(m.uv_per_lsb)
        units = m.extra.get("units")
        if units and self.units is None:
            found = {u.lower(): u for u in UNITS}.get(units.lower())
            if found is None:
                log.warning("header says units=%s: not one of %s, ignored", units, ", ".join(UNITS))
            else:
                state["units"] = found
        if m.lead and m.lead.upper() != self.lead.upper():
            log.warning("the sketch streams lead %s, the model expects %s", m.lead, self.lead)
        return LinkEvent("hello", {"fs": state["fs"], "lead": m.lead, "uv_per_lsb": state["uv"],
                                   **m.extra}, t_arr)

    def _scale(self, values: np.ndarray) -> float:
        """µV per printed unit. The rule when nothing says (``--units``, a ``# units=`` header):
        the first samples decide, decimals -> mV, whole numbers -> ADC counts (``uv_per_lsb``)."""
        state = self._state
        if state["units"] is None:
            state["units"] = "mV" if self.decoder.decimals else "counts"
            if state["units"] == "mV":
                log.info("%s: the values have decimals: taken as mV (pass --units uV, or --units counts "
                         "with --uv-per-lsb, if they are not)", self.port)
            else:
                log.info("%s: whole numbers: taken as ADC counts at %g uV per count (--uv-per-lsb; "
                         "--units mV or uV if the sketch prints those)", self.port, state["uv"])
            state["checked"] = False
        if state["units"] == "mV" and not state.get("checked") and len(values):
            state["checked"] = True
            peak = float(np.max(np.abs(values)))
            if peak > 30:
                log.warning("%s: values up to %g taken as mV are not an ECG in mV: pass --units uV, or "
                            "--units counts --uv-per-lsb N", self.port, peak)
        return {"mV": 1000.0, "uV": 1.0}.get(state["units"], state["uv"])

    def _decode_error(self, offset: int, reason: str, t_arr: float, out: list) -> None:
        """Count; tell stdout at most once a second; stderr once if most lines fail."""
        self.stats["decode_errors"] += 1
        self.lines_bad += 1
        self._err_pending += 1
        if t_arr >= self._err_next_t:
            detail = {"offset": offset, "reason": reason}
            if self._err_pending > 1:
                detail["count"] = self._err_pending  # errors since the last line, this one included
            out.append(LinkEvent("decode_error", detail, t_arr))
            self._err_pending = 0
            self._err_next_t = t_arr + 1.0
        total = self.lines_bad + self.samples_seen
        if not self._warned_errors and total >= 50 and self.lines_bad > 0.5 * total:
            self._warned_errors = True
            log.warning("%s: %d of the last %d lines could not be read (e.g. %s). %s", self.port,
                        self.lines_bad, total, reason,
                        "Check --baud (the sketch's Serial.begin() value); a Serial Plotter sketch "
                        "printing several values needs --column N or --label NAME")

    def other_columns(self, fs: float | None) -> dict:
        """{option: (mV samples, fs)} for the columns of the last lines other than the ECG's:
        what the ECG check tries when the chosen column is refused."""
        dec = self.decoder
        if not fs or len(dec.rows) < 2 or not dec.row_keys:
            return {}
        n = min(len(dec.rows), int(10 * fs))
        rows = list(dec.rows)[-n:]
        width = min(len(r) for r in rows)
        a = np.asarray([r[:width] for r in rows], dtype=np.float64)
        out = {}
        for j in range(width):
            if j == dec.chosen_index:
                continue
            key = dec.row_keys[j] if j < len(dec.row_keys) else None
            option = f"--label {key}" if key else f"--column {j}"
            col = a[:, j]
            # the same rule as the chosen column: decimals are mV, whole numbers counts
            scale = 1000.0 if np.any(col != np.trunc(col)) else self.uv_per_lsb
            out[option] = (col * (scale / 1000.0), fs)
        return out
