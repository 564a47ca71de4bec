"""Serial-port source (pyserial): the framed binary protocol, or ASCII one-sample-per-line.

Binary (default): the SelfMIS framed protocol, decoded by the firmware
bridge's codec (:class:`~.framed.FramedStream`); rate, lead and gain come from
the device's HELLO.

ASCII (``ascii=True``): what ``Serial.println(analogRead(A0))`` sketches send
(SparkFun AD8232 example). Rate from ``fs`` or a ``# fs=250 lead=I
uv_per_lsb=3.22`` header line; a ``!`` line (LO+/LO- high) is one lead-off
sample slot. Nothing in an ASCII stream proves its rate, so the arrival rate is
measured and a ``rate_mismatch`` event (and a log warning) is raised when it
disagrees with the declared one by more than 10% over 3 s.

A lost port (USB unplugged, pty closed) is reopened with exponential backoff;
after the retries :class:`~.base.DeviceLost` is raised. A port that is absent or
not permitted at start raises :class:`~.base.SourceNotFound` at once, unless
``wait_for_device_s`` is set (``edge-run --wait-for-device``, what the systemd
unit uses): then an absent port (or a refused ``socket://``) is waited for,
with one log line, for that many seconds (``inf``: forever).
pyserial is imported when the source opens, never at module import.
"""
from __future__ import annotations

import errno
import logging
import os
import time

import numpy as np

from .base import Backoff, Chunk, DeviceLost, LinkEvent, Source, SourceError, SourceNotFound
from .framed import FramedStream

__all__ = ["SerialSource", "RateMonitor"]

log = logging.getLogger("selfmis.edge_runtime")


class RateMonitor:
    """Compares the measured arrival rate with a declared one (ASCII streams have no clock)."""

    def __init__(self, fs: float, span_s: float = 3.0, tolerance: float = 0.10):
        self.fs, self.span_s, self.tolerance = float(fs), span_s, tolerance
        self._t0 = None
        self._n = 0
        self.warned = False

    def update(self, n: int, t: float):
        """Count ``n`` samples arrived at ``t``; return the measured rate once it disagrees."""
        if self._t0 is None:
            self._t0, self._n = t, 0  # the first read may hold a backlog: start the clock after it
            return None
        self._n += n
        dt = t - self._t0
        if dt < self.span_s or self.warned:
            return None
        rate = self._n / dt
        self._t0, self._n = t, 0
        if abs(rate - self.fs) > self.tolerance * self.fs:
            self.warned = True
            return rate
        return None


class _PortPermission(SourceNotFound):
    """The port exists but may not be opened: waiting does not fix it (beyond udev's moment)."""


class SerialSource(Source):
    #: seconds between checks while waiting for a port to appear
    WAIT_POLL_S = 0.25
    #: a node udev has just created may stay root-only for a moment before its rules apply
    UDEV_GRACE_S = 2.0

    def __init__(self, port: str, baud: int = 115200, ascii: bool = False, fs: float | None = None,
                 lead: str = "I", uv_per_lsb: float = 1.0, backoff: Backoff | None = None,
                 read_timeout_s: float = 0.02, idle_timeout_s: float = 10.0,
                 wait_for_device_s: float | None = None):
        super().__init__()
        #: None: an absent port fails at once; else wait this long (inf: forever) for it
        self.wait_for_device_s = wait_for_device_s
        self.port, self.baud, self.ascii = port, int(baud), ascii
        self.lead, self.fs = lead, (float(fs) if fs else None)
        self.uv_per_lsb = float(uv_per_lsb)
        self.backoff = backoff or Backoff()
        self.read_timeout_s = read_timeout_s
        #: no byte for this long on an open port counts as a lost device
        self.idle_timeout_s = idle_timeout_s
        self.name = f"serial:{port}" + (" (ascii)" if ascii else "")
        self._ser = None
        self._seq = 0
        if ascii and not self.fs:
            log.info("ASCII stream without --fs: waiting for a '# fs=...' header line")

    # -- port handling -------------------------------------------------------

    def _open(self):
        try:
            import serial  # pyserial, lazily: the CLI must start fast
        except ImportError:
            raise SourceError("pyserial is not installed: pip install 'selfmis-edge[edge]'") from None
        if not os.path.exists(self.port) and not self.port.upper().startswith(("COM", "SOCKET://", "RFC2217://", "LOOP://")):
            raise SourceNotFound(f"{self.port}: no such serial port")
        try:
            ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=self.read_timeout_s)
        except serial.SerialException as exc:
            err = getattr(exc, "errno", None)
            if err in (errno.EACCES, errno.EPERM):
                raise _PortPermission(f"{self.port}: permission denied (add yourself to the "
                                     "'dialout' group, then log in again)") from None
            if err in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
                raise SourceNotFound(f"{self.port}: no such serial port") from None
            raise SourceNotFound(f"{self.port}: cannot open ({exc})") from None
        self._ser = ser
        return ser

    def _wait_and_open(self):
        """Open the port; with ``wait_for_device_s``, wait for it to appear first."""
        if self.wait_for_device_s is None:
            return self._open()
        deadline = time.monotonic() + self.wait_for_device_s
        waiting_since = denied_since = None
        while True:
            try:
                ser = self._open()
            except _PortPermission:
                now = time.monotonic()
                denied_since = denied_since or now
                if now - denied_since >= self.UDEV_GRACE_S or now >= deadline:
                    raise
            except SourceNotFound as exc:
                if waiting_since is None:
                    waiting_since = time.monotonic()
                    limit = ("" if self.wait_for_device_s == float("inf")
                             else f" (for up to {self.wait_for_device_s:g} s)")
                    log.info("%s; waiting for it to appear%s", exc, limit)
                if time.monotonic() >= deadline:
                    raise SourceNotFound(f"{exc}: not there after waiting "
                                         f"{self.wait_for_device_s:g} s") from None
            else:
                if waiting_since is not None:
                    log.info("%s appeared after %.1f s", self.port, time.monotonic() - waiting_since)
                return ser
            if self._closed:
                raise SourceNotFound(f"{self.port}: closed while waiting for the device")
            time.sleep(self.WAIT_POLL_S)

    def close(self) -> None:
        super().close()
        if self._ser is not None:
            try:
                self._ser.close()
            except Exception:  # closing a vanished port may fail; nothing to save
                pass
            self._ser = None

    def describe(self) -> dict:
        return {**super().describe(), "port": self.port, "baud": self.baud, "ascii": self.ascii}

    # -- reading -------------------------------------------------------------

    def _iter(self):
        import serial
        self._wait_and_open()
        yield LinkEvent("connected", {"port": self.port, "baud": self.baud})
        parser = self._make_parser()
        while not self._closed:
            try:
                yield from self._read_until_lost(parser)
                return  # closed by the consumer
            except (serial.SerialException, OSError) as exc:
                reason = str(exc) or exc.__class__.__name__
            if self._closed:
                return
            yield LinkEvent("disconnected", {"port": self.port, "reason": reason}, discontinuity=True)
            log.warning("%s lost (%s); reconnecting", self.port, reason)
            if not (yield from self._reconnect()):
                yield LinkEvent("lost", {"port": self.port, "retries": self.backoff.retries})
                raise DeviceLost(f"{self.port}: device lost and not back after "
                                 f"{self.backoff.retries} retries ({reason})")
            parser = self._make_parser(keep=parser)

    def _reconnect(self):
        if self._ser is not None:
            try:
                self._ser.close()
            except Exception:
                pass
            self._ser = None
        for i, delay in enumerate(self.backoff.delays(), 1):
            yield LinkEvent("reconnecting", {"port": self.port, "attempt": i, "delay_s": delay})
            time.sleep(delay)
            if self._closed:
                return False
            try:
                self._open()
            except SourceError:
                continue
            self.stats["reconnects"] += 1
            yield LinkEvent("reconnected", {"port": self.port, "attempt": i})
            return True
        return False

    def _read_until_lost(self, parser):
        ser = self._ser
        last_byte = time.monotonic()
        while not self._closed:
            n_wait = ser.in_waiting
            data = ser.read(n_wait if n_wait else 1)
            now = time.monotonic()
            if not data:
                if now - last_byte > self.idle_timeout_s:
                    raise OSError(f"no data for {self.idle_timeout_s:.0f} s")
                continue
            last_byte = now
            yield from parser(data)

    def _make_parser(self, keep=None):
        if not self.ascii:
            framed = keep.framed if keep is not None else FramedStream(self.lead, self.uv_per_lsb, self.stats)
            framed.reset()

            def parse(data):
                items = framed.feed(data)
                if framed.fs:
                    self.fs = framed.fs
                return items
            parse.framed = framed
            return parse
        return self._ascii_parser()

    def _ascii_parser(self):
        from selfmis.protocol import AsciiHeader, AsciiLineDecoder, DecodeError, LeadOff
        dec = AsciiLineDecoder()
        monitor = [RateMonitor(self.fs) if self.fs else None]
        uv = [self.uv_per_lsb]

        def parse(data):
            t_arr, t_mono = time.time(), time.perf_counter()
            out, vals, offs = [], [], []

            def flush():
                if vals and self.fs:
                    x = (np.asarray(vals, dtype=np.float64) * (uv[0] / 1000.0)).astype(np.float32)
                    off = np.asarray(offs, dtype=bool)
                    # one chunk per run of good / '!' samples: a '!' slot keeps time, and the
                    # pipeline holds the last good value through it
                    edges = np.flatnonzero(np.diff(off.astype(np.int8))) + 1
                    for a, b in zip(np.r_[0, edges], np.r_[edges, len(x)]):
                        self._seq += 1
                        out.append(Chunk(x[a:b], self.fs, t_arr, t_mono, seq=self._seq,
                                         lead_off=bool(off[a])))
                elif vals:
                    self.stats["drops"] += len(vals)
                vals.clear()
                offs.clear()

            for m in dec.feed(data):
                if isinstance(m, int):
                    vals.append(m)
                    offs.append(False)
                elif isinstance(m, LeadOff):
                    vals.append(vals[-1] if vals else 0)
                    offs.append(True)
                elif isinstance(m, AsciiHeader):
                    flush()
                    if m.fs_hz:
                        if self.fs and abs(m.fs_hz - self.fs) > 1e-6:
                            log.warning("header says fs=%g, --fs says %g: using the header", m.fs_hz, self.fs)
                        if monitor[0] is None or abs(monitor[0].fs - m.fs_hz) > 1e-6:
                            monitor[0] = RateMonitor(m.fs_hz)  # a repeated header keeps the clock
                        self.fs = float(m.fs_hz)
                    if m.uv_per_lsb:
                        uv[0] = float(m.uv_per_lsb)
                    out.append(LinkEvent("hello", {"fs": self.fs, "lead": m.lead, "uv_per_lsb": uv[0],
                                                   **m.extra}, t_arr))
                elif isinstance(m, DecodeError):
                    flush()
                    self.stats["decode_errors"] += 1
                    out.append(LinkEvent("decode_error", {"offset": m.offset, "reason": m.reason}, t_arr))
            n = len(vals)
            flush()
            if monitor[0] is not None and n:
                rate = monitor[0].update(n, t_mono)
                if rate is not None:
                    msg = (f"{self.port}: samples arrive at {rate:.1f} Hz but the stream is declared "
                           f"{self.fs:g} Hz; check --fs / the sketch's delay()")
                    log.warning(msg)
                    out.append(LinkEvent("rate_mismatch", {"declared_hz": self.fs,
                                                           "measured_hz": round(rate, 2)}, t_arr))
            return out
        return parse
