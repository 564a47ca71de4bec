"""Serial-port source (pyserial): the framed binary protocol, or text lines (hobby sketches).

Also TCP (``socket://host:port``, an ESP32 over Wi-Fi) and any other pyserial URL.

Binary (default): the SelfMIS framed protocol, decoded by the wire codec
(:class:`~.framed.FramedStream`); rate, lead and gain come from the device's HELLO.

ASCII (``ascii=True``): what hobby sketches print, decoded by :class:`~.serial_text.TextStream`
(:class:`selfmis.ascii_sketch.AsciiLineDecoder`'s line format; ``fs`` (``--fs``) overrides a header;
the units rule is there).

Is it ECG? An ASCII stream's column is checked (:mod:`..ecg_check`) before the first beat and
continuously; when another column passes instead, the warning names the option that picks it.

Every stream's rate is checked against the arrival times (:mod:`.rate`): without
a declared rate the source locks to the measured one; a declared rate that is
wrong withholds decisions. A stream that yields no sample, or mostly
undecodable lines, says so once on stderr with a hint; decode errors reach
stdout at most once a second (with a count).

Reads take whatever the OS has (``os.read``/``recv`` of up to 4 KiB after ``select``): one
system call per burst, never one per byte, never a wait for more bytes than have arrived.

A lost port (USB unplugged, pty closed) is reopened with backoff, then DeviceLost. A port that is
absent or not permitted at start raises :class:`~.base.SourceNotFound` at once, unless
``wait_for_device_s`` is set (``edge-run --wait-for-device``, what the systemd
unit uses): then an absent port (or a refused ``socket://``) is waited for,
with one log line, for that many seconds (``inf``: forever).
pyserial is imported when the source opens, never at module import.
"""
from __future__ import annotations

import errno
import logging
import os
import select
import socket
import time

from ..ecg_check import EcgWatch
from ..output import EventBudget, limit_events
from .base import Backoff, Chunk, DeviceLost, LinkEvent, Source, SourceError, SourceNotFound
from .framed import FramedStream
from .serial_text import UNITS, TextStream
from .steps import Call, Wait

__all__ = ["SerialSource", "raw_reader", "UNITS"]

log = logging.getLogger("selfmis.edge_runtime")

#: bytes per read: ~0.4 s of binary frames or ~0.8 s of ASCII lines at 500 Hz, so a backlog is
#: worked off in pieces like replay's 2-s chunks (each decision waits for at most one piece)
_READ_MAX = 4096


def _nonblocking_read(ser):
    """``(fd, read_now)`` for a port with a file descriptor (pty, tty) or a socket (``socket://``):
    ``read_now()`` takes whatever has arrived, in one call, once ``fd`` is readable; ``(None, None)``
    for other ports (Windows COM, rfc2217), which only pyserial's own reads can serve."""
    sock = getattr(ser, "_socket", None)
    if sock is not None:
        def read_sock():
            try:
                data = sock.recv(_READ_MAX)
            except BlockingIOError:  # a stale readiness report (another reader took the bytes): none yet
                return b""
            if not data:
                raise OSError("connection closed by the device")
            return data
        return sock.fileno(), read_sock
    try:
        fd = ser.fileno()
    except Exception:  # not a POSIX port
        return None, None

    def read_fd():
        try:
            data = os.read(fd, _READ_MAX)
        except BlockingIOError:  # a stale readiness report: nothing yet, not a lost device
            return b""
        if not data:  # readable but empty: the other end is gone (pty closed, USB unplugged)
            raise OSError("device reports readiness to read but returned no data")
        return data
    return fd, read_fd


def raw_reader(ser, timeout_s: float):
    """``read() -> bytes`` returning whatever has arrived (b"" after ``timeout_s`` of silence).

    pyserial's ``read(n)`` waits for ``n`` bytes or the timeout, and ``in_waiting``
    is 1 for sockets, so ``read(in_waiting or 1)`` costs one call per byte on TCP.
    A pty or tty has a file descriptor, a ``socket://`` port a socket: select on it
    and take everything in one call. Other ports (Windows COM, rfc2217) fall back
    to ``in_waiting``.
    """
    fd, read_now = _nonblocking_read(ser)
    if fd is not None:
        def read():
            r, _, _ = select.select([fd], [], [], timeout_s)
            return read_now() if r else b""
        return read

    def read_pyserial():
        return ser.read(ser.in_waiting or 1)
    return read_pyserial


def _close_port(ser) -> None:
    """Close a port at once. pyserial's ``socket://`` close sleeps 0.3 s ("give the server some
    time" before a quick reconnect): in the gateway's one loop that stalled every device per
    reconnect, and 100 devices took 30 s to stop. Our reconnects wait their backoff anyway."""
    sock = getattr(ser, "_socket", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
        ser._socket = None
        ser.is_open = False
        return
    ser.close()


def ports_present() -> str:
    """The serial ports this machine has, for a "no such port" message (pyserial's list_ports)."""
    try:
        from serial.tools import list_ports
        ports = sorted(list_ports.comports(), key=lambda p: p.device)
    except Exception:  # no pyserial, or no way to list on this platform: say nothing
        return ""
    if not ports:
        return " (no serial ports present: is the board plugged in, and its USB cable a data cable?)"
    shown = ", ".join(p.device + (f" ({p.description})" if p.description and p.description != "n/a" else "")
                      for p in ports[:8])
    return f" (ports present: {shown}{', ...' if len(ports) > 8 else ''})"


class _PortPermission(SourceNotFound):
    """The port exists but may not be opened: waiting does not fix it (beyond udev's moment)."""


class SerialSource(Source):
    #: seconds between checks while waiting for a port to appear
    WAIT_POLL_S = 0.25
    #: a node udev has just created may stay root-only for a moment before its rules apply
    UDEV_GRACE_S = 2.0
    #: seconds without a decoded sample before the stream is called silent (once, with a hint)
    NO_SAMPLE_WARN_S = 5.0

    def __init__(self, port: str, baud: int = 115200, ascii: bool = False, fs: float | None = None,
                 lead: str = "I", uv_per_lsb: float = 1.0, backoff: Backoff | None = None,
                 read_timeout_s: float = 0.02, idle_timeout_s: float = 10.0,
                 wait_for_device_s: float | None = None,
                 column: int | None = None, label: str | None = None, check_rate: bool = True,
                 units: str | None = None, check_signal: bool = True):
        self.name = f"serial:{port}" + (" (ascii)" if ascii else "")
        super().__init__(check_rate=check_rate)
        #: None: an absent port fails at once; else wait this long (inf: forever) for it
        self.wait_for_device_s = wait_for_device_s
        self.port, self.baud, self.ascii = port, int(baud), ascii
        self.lead, self.fs = lead, (float(fs) if fs else None)
        self.fs_override = self.fs
        self.uv_per_lsb = float(uv_per_lsb)
        self.column, self.label = column, label
        if units is not None and units not in UNITS:
            raise SourceError(f"units must be one of {', '.join(UNITS)}, not {units!r}")
        self.units = units
        self._text = None  # the ASCII stream in use (its other columns feed the ECG check's hint)
        if ascii and check_signal:
            self.ecg_watch = EcgWatch(self.name, alternatives=self._other_columns)
        self.backoff = backoff or Backoff()
        self.read_timeout_s = read_timeout_s
        #: no byte for this long on an open port counts as a lost device
        self.idle_timeout_s = idle_timeout_s
        self._ser = None
        self._opened_at = None
        self._samples_seen = 0
        self._warned_silent = False
        self._last_bytes = b""
        if not check_rate and not self.fs and ascii:
            raise SourceError("a stream without a declared rate needs the rate check: give --fs")

    # -- port handling -------------------------------------------------------

    def _open(self):
        try:
            import serial  # pyserial, lazily: the CLI must start fast
        except ImportError:
            raise SourceError("pyserial is not installed: pip install 'selfmis-edge[edge]'") from None
        if not os.path.exists(self.port) and not self.port.upper().startswith(("COM", "SOCKET://", "RFC2217://", "LOOP://")):
            raise SourceNotFound(f"{self.port}: no such serial port{ports_present()}")
        try:
            ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=self.read_timeout_s)
        except serial.SerialException as exc:
            err = getattr(exc, "errno", None)
            if err in (errno.EACCES, errno.EPERM):
                raise _PortPermission(f"{self.port}: permission denied (add yourself to the "
                                     "'dialout' group, then log in again)") from None
            if err in (errno.ENOENT, errno.ENODEV, errno.ENXIO):
                raise SourceNotFound(f"{self.port}: no such serial port{ports_present()}") from None
            raise SourceNotFound(f"{self.port}: cannot open ({exc})") from None
        self._ser = ser
        self._opened_at = time.monotonic()
        return ser

    def _wait_and_open(self):
        """Open the port (a steps generator: see :mod:`.steps`); with ``wait_for_device_s``,
        wait for it to appear first."""
        if self.wait_for_device_s is None:
            return (yield Call(self._open))
        deadline = time.monotonic() + self.wait_for_device_s
        waiting_since = denied_since = None
        while True:
            try:
                ser = yield Call(self._open)
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
            yield Wait(None, self.WAIT_POLL_S)

    def close(self) -> None:
        super().close()
        if self._ser is not None:
            try:
                _close_port(self._ser)
            except Exception:  # closing a vanished port may fail; nothing to save
                pass
            self._ser = None

    def describe(self) -> dict:
        return {**super().describe(), "port": self.port, "baud": self.baud, "ascii": self.ascii,
                "column": self.column, "label": self.label, "units": self.units}

    # -- reading -------------------------------------------------------------

    @property
    def pollable(self) -> bool:
        """A pty/tty path or ``socket://``: a file descriptor to select on (see :func:`_nonblocking_read`)."""
        return self.port.startswith("/") or self.port.lower().startswith("socket://")

    def _steps(self):
        import serial
        yield from self._wait_and_open()
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
            t_lost = time.monotonic()
            yield LinkEvent("disconnected", {"port": self.port, "reason": reason}, discontinuity=True)
            log.warning("%s lost (%s); reconnecting", self.port, reason)
            if not (yield from self._reconnect()):
                yield LinkEvent("lost", {"port": self.port, "retries": self.backoff.retries})
                raise DeviceLost(f"{self.port}: device lost and not back after "
                                 f"{self.backoff.retries} retries ({reason})")
            self.stats["offline_s"] = round(self.stats["offline_s"] + time.monotonic() - t_lost, 3)
            parser = self._make_parser(keep=parser)

    def _reconnect(self):
        if self._ser is not None:
            try:
                _close_port(self._ser)
            except Exception:
                pass
            self._ser = None
        for i, delay in enumerate(self.backoff.delays(), 1):
            yield LinkEvent("reconnecting", {"port": self.port, "attempt": i, "delay_s": delay})
            yield Wait(None, delay)
            if self._closed:
                return False
            try:
                yield Call(self._open)
            except SourceError:
                continue
            self.stats["reconnects"] += 1
            log.warning("%s reconnected (attempt %d)", self.port, i)
            yield LinkEvent("reconnected", {"port": self.port, "attempt": i})
            return True
        return False

    def _read_until_lost(self, parser):
        fd, read_now = _nonblocking_read(self._ser)
        blocking = raw_reader(self._ser, self.read_timeout_s) if fd is None else None
        token = id(self._ser)
        last_byte = time.monotonic()
        budget = EventBudget()  # per-line link events (headers, decode errors): output bounded by input
        while not self._closed:
            if blocking is not None:  # no descriptor: pyserial's read (this source is not pollable)
                data = blocking()
            else:
                ready = yield Wait(fd, self.read_timeout_s, token)
                data = read_now() if ready else b""
            now = time.monotonic()
            if not data:
                self._check_silence(now)
                if now - last_byte > self.idle_timeout_s:
                    raise OSError(f"no data for {self.idle_timeout_s:.0f} s")
                continue
            last_byte = now
            self._last_bytes = data[-256:]
            items = parser(data)
            if self.ascii and items:  # framed streams are limited in FramedStream; text lines here
                budget.feed(len(data))
                items = limit_events(budget, items, self.stats)
            if items:
                yield from items
            self._check_silence(now)

    # -- telling the user what is wrong, once --------------------------------------

    def _check_silence(self, now: float) -> None:
        if self._warned_silent or self._samples_seen or self._opened_at is None:
            return
        if now - self._opened_at < self.NO_SAMPLE_WARN_S:
            return
        self._warned_silent = True
        log.warning("%s: no sample in %.0f s. %s", self.port, now - self._opened_at, self._hint())

    def _hint(self) -> str:
        b = self._last_bytes
        if not b:
            return ("No bytes at all: is the sketch running and printing, and is this the right port? "
                    "(close the Arduino IDE's Serial Monitor/Plotter: only one program can read a port)")
        printable = sum(32 <= c < 127 or c in (9, 10, 13) for c in b) / len(b)
        if not self.ascii and printable > 0.9:
            return (f"The bytes look like text ({b[-40:]!r}): add --ascii for a sketch that prints numbers")
        if self.ascii and b"\xa5\x5a" in b:
            return "The bytes look like SelfMIS binary frames: drop --ascii"
        if printable < 0.6:
            return (f"The bytes are not text: check --baud (now {self.baud}; the sketch's Serial.begin() "
                    "value)")
        return ("Lines arrive but none holds a sample: a Serial Plotter sketch printing several values "
                "needs --column N or --label NAME")

    def _make_parser(self, keep=None):
        if not self.ascii:
            framed = keep.framed if keep is not None else FramedStream(self.lead, self.uv_per_lsb, self.stats)
            framed.reset()

            def parse(data):
                items = framed.feed(data)
                if framed.fs:
                    self.fs = framed.fs
                for it in items:
                    if isinstance(it, Chunk):
                        self._samples_seen += len(it.samples)
                return items
            parse.framed = framed
            return parse
        return self._ascii_parser(keep)

    def _ascii_parser(self, keep=None):
        """The text parser (:mod:`.serial_text`); after a reconnect the same one, restarted."""
        text = keep.text if keep is not None else TextStream(
            self.port, self.lead, self.fs_override, self.uv_per_lsb, self.units, self.column, self.label,
            self.stats, self.ecg_watch)
        if keep is not None:
            text.restart()
        self._text = text

        def parse(data):
            items = text.feed(data)
            if text.declared_fs:
                self.fs = text.declared_fs
            self._samples_seen = text.samples_seen
            return items
        parse.text = text
        return parse

    def _other_columns(self) -> dict:
        """The ECG check's alternatives: the other columns of the last lines (see :mod:`.serial_text`)."""
        fs = self.fs or (self.rate_watch.locked if self.rate_watch is not None else None)
        return {} if self._text is None else self._text.other_columns(fs)
