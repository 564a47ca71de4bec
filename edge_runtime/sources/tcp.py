"""``socket://host:port`` read with a plain socket: the serial source's logic, without pyserial's byte-at-a-time reads.

pyserial's ``socket://`` handler reports ``in_waiting`` as 0 or 1 (a select, not
a byte count), so :class:`~.serial.SerialSource` reads a TCP stream one byte per
call: about 110 reads of ~6 µs per 50-sample frame, i.e. ~0.9 % of a core per
500 Hz device (measured, ``benchmarks/results/gateway``) -- more than its
pipeline. :class:`TcpSource` is the same source (framing, ASCII, reconnect with
backoff, idle timeout, events) over a port object whose ``read`` returns whatever
the socket holds, up to 64 kB, in one ``recv``.
"""
from __future__ import annotations

import socket
from urllib.parse import urlsplit

from .base import SourceNotFound
from .serial import SerialSource

__all__ = ["TcpSource", "is_tcp_url"]


def is_tcp_url(port: str) -> bool:
    return port.lower().startswith("socket://")


class _SocketPort:
    """The few pyserial ``Serial`` members :class:`SerialSource` uses, over a TCP socket."""

    def __init__(self, host: str, port: int, timeout: float):
        self.sock = socket.create_connection((host, port), timeout=5.0)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)

    @property
    def in_waiting(self) -> int:
        return 0  # read() below returns all that is there anyway

    def read(self, size: int = 1) -> bytes:
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return b""
        if not data:
            raise OSError("the device closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


class TcpSource(SerialSource):
    """A wearable (or ``selfmis-sim --tcp``) on a TCP port: ``socket://host:port``."""

    def _open(self):
        u = urlsplit(self.port)
        if not u.hostname or not u.port:
            raise SourceNotFound(f"{self.port}: expected socket://host:port")
        try:
            self._ser = _SocketPort(u.hostname, u.port, self.read_timeout_s)
        except OSError as exc:
            raise SourceNotFound(f"{self.port}: cannot connect ({exc.strerror or exc})") from None
        return self._ser
