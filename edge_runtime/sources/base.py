"""What every source yields: chunks of samples and link events, behind one base class.

A *source* turns a transport (serial port, BLE, a file, an in-process
simulator) into an iterator of

* :class:`Chunk` -- consecutive samples of one lead in mV, with the host
  arrival time, the transport's sequence number and quality flags
  (lead-off, known-lost samples before it, the ADC rails when known);
* :class:`LinkEvent` -- something about the link, not the signal:
  connected, HELLO received, gap, CRC/decode error, rate mismatch,
  disconnected, reconnecting, lost.

The pipeline, the recorder and the CLI see nothing else, so adding a transport
means one new module with one :class:`Source` subclass (the bleak pattern: one
abstract base, one backend per transport). Iteration is synchronous; the BLE
backend bridges its asyncio client through a bounded queue.
"""
from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional, Union

import numpy as np

from ..stream import Chunk, Item, LinkEvent

__all__ = [
    "Chunk", "LinkEvent", "Item", "Source", "SourceError", "SourceNotFound", "DeviceLost",
    "Backoff",
]


class SourceError(RuntimeError):
    """A source that cannot deliver; the message says which and why."""


class SourceNotFound(SourceError):
    """The port, file or device does not exist or cannot be opened (permission)."""


class DeviceLost(SourceError):
    """The device went away and did not come back after the retries."""


class Backoff:
    """Exponential reconnect delays: 0.5, 1, 2, 4... s, capped, at most ``retries`` tries."""

    def __init__(self, retries: int = 6, first_s: float = 0.5, cap_s: float = 8.0):
        self.retries, self.first_s, self.cap_s = retries, first_s, cap_s

    def delays(self):
        d = self.first_s
        for _ in range(self.retries):
            yield d
            d = min(self.cap_s, d * 2)


class Source(abc.ABC):
    """An iterator of :class:`Chunk` and :class:`LinkEvent`; use as a context manager.

    Subclasses set :attr:`name` (for logs), :attr:`lead` and :attr:`fs` (None
    until known, e.g. before a HELLO), keep :attr:`stats` (counters that end up
    in the run summary) and implement :meth:`_iter` and :meth:`close`.
    ``realtime`` is False for sources that deliver as fast as the consumer reads
    (``--fast`` replay): latencies then measure processing only.
    """

    name: str = "source"
    lead: str = "I"
    fs: Optional[float] = None
    realtime: bool = True

    def __init__(self):
        self.stats = {"chunks": 0, "samples": 0, "drops": 0, "crc_errors": 0,
                      "decode_errors": 0, "reconnects": 0}
        self._closed = False

    @abc.abstractmethod
    def _iter(self) -> Iterator[Item]:
        """Yield chunks and events until the source ends (or raise SourceError)."""

    def __iter__(self) -> Iterator[Item]:
        for item in self._iter():
            if isinstance(item, Chunk):
                self.stats["chunks"] += 1
                self.stats["samples"] += len(item.samples)
            yield item
            if self._closed:
                return

    def stop(self) -> None:
        """Ask the iteration to end soon (thread-safe); resources are released by close()."""
        self._closed = True

    def close(self) -> None:
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def describe(self) -> dict:
        """What the recording header and the summary say about this source."""
        return {"source": self.name, "lead": self.lead, "fs": self.fs}
