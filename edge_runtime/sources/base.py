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

import logging
import time
from abc import ABC, abstractmethod
from typing import Iterator, Optional

import numpy as np

from selfmis.exit_codes import CodedError, ExitCode

from ..stream import Chunk, Item, LinkEvent
from .rate import RateWatch
from .steps import Call, Wait, run_blocking

log = logging.getLogger("selfmis.edge_runtime")

__all__ = [
    "Chunk", "LinkEvent", "Item", "Source", "SourceError", "SourceNotFound", "SourceRefused", "DeviceLost",
    "Backoff", "coalesce", "STAT_KEYS",
]

#: Counters every source keeps (the run summary reports them):
#: ``drops`` frames/notifications lost on the link (sequence or timestamp gaps),
#: ``lost_samples`` the samples they held, ``duplicates`` / ``stale`` frames received
#: twice / out of order (discarded, not lost), ``crc_errors`` frames whose CRC failed,
#: ``resyncs`` stretches of bytes skipped to find the next frame or line,
#: ``decode_errors`` lines or frames that could not be read, ``reconnects``,
#: ``offline_s`` seconds spent disconnected (not signal).
STAT_KEYS = ("chunks", "samples", "drops", "lost_samples", "duplicates", "stale", "crc_errors", "resyncs",
             "decode_errors", "reconnects", "offline_s")


def coalesce(items: list) -> list:
    """Merge consecutive chunks that continue each other (same rate, flags, rails, no gap).

    A read that drained many frames at once (a backlog, a fast link) then costs the
    pipeline one chunk instead of hundreds; a read holding one frame is passed as is,
    so nothing waits: latency is unchanged.
    """
    out: list = []
    run: list = []

    def close():
        if len(run) == 1:
            out.append(run[0])
        elif run:
            a, z = run[0], run[-1]
            out.append(Chunk(np.concatenate([c.samples for c in run]), a.fs, z.t_arrival, z.t_mono,
                             seq=z.seq, lead_off=a.lead_off, gap_before=a.gap_before, rails=a.rails,
                             counts=None if a.counts is None else np.concatenate([c.counts for c in run]),
                             uv_per_lsb=a.uv_per_lsb))
        run.clear()

    for it in items:
        if isinstance(it, Chunk):
            if run:
                p = run[-1]
                if (it.gap_before or it.fs != p.fs or it.lead_off != p.lead_off or it.rails != p.rails
                        or (it.counts is None) != (p.counts is None) or it.uv_per_lsb != p.uv_per_lsb):
                    close()
            run.append(it)
        else:
            close()
            out.append(it)
    close()
    return out


class SourceError(CodedError, RuntimeError):
    """A source that cannot deliver; the message says which and why (``edge-run`` exits 5)."""

    exit_code = ExitCode.LOST


class SourceNotFound(SourceError):
    """The port, file or device does not exist or cannot be opened (permission; exit 4)."""

    exit_code = ExitCode.SOURCE


class SourceRefused(SourceNotFound):
    """The source declares what the runtime does not support (a rate or gain outside
    :mod:`selfmis.limits`): refused with exit code 4, never decoded at a wrong rate."""


class DeviceLost(SourceError):
    """The device went away and did not come back after the retries (exit 5)."""

    exit_code = ExitCode.LOST


class Backoff:
    """Exponential reconnect delays: 0.5, 1, 2, 4... s, capped, at most ``retries`` tries
    (``retries`` None: without end)."""

    def __init__(self, retries: int | None = 6, first_s: float = 0.5, cap_s: float = 8.0):
        self.retries, self.first_s, self.cap_s = retries, first_s, cap_s

    def delays(self):
        d, n = self.first_s, 0
        while self.retries is None or n < self.retries:
            yield d
            d, n = min(self.cap_s, d * 2), n + 1


class Source(ABC):
    """An iterator of :class:`Chunk` and :class:`LinkEvent`; use as a context manager.

    Subclasses set :attr:`name` (for logs), :attr:`lead` and :attr:`fs` (None
    until known, e.g. before a HELLO), keep :attr:`stats` (counters that end up
    in the run summary) and implement :meth:`_steps` (and :meth:`close` when
    they hold a resource). As bleak's ``BaseBleakClient``: one abstract base, one
    backend per transport (serial/TCP, BLE, replay, simulator).
    ``realtime`` is False for sources that deliver as fast as the consumer reads
    (``--fast`` replay): latencies then measure processing only.
    """

    name: str = "source"
    lead: str = "I"
    fs: Optional[float] = None
    realtime: bool = True

    def __init__(self, check_rate: bool = False):
        self.stats = {k: 0 for k in STAT_KEYS}
        self._closed = False
        #: live sources measure the rate they receive (see :mod:`.rate`); None: no check
        self.rate_watch = RateWatch(self.name) if check_rate else None
        #: sources whose column is not known to be ECG (ASCII sketches) set an
        #: :class:`~selfmis.edge_runtime.ecg_check.EcgWatch`; None: no check
        self.ecg_watch = None
        self._lead_off_since: Optional[float] = None
        self._lead_off_told_at = -1e9
        self._lead_off_untold = 0

    #: seconds between two lead-off lines on stderr (a flapping electrode is told with a count)
    LEAD_OFF_LOG_EVERY_S = 30.0

    def _note_lead_off(self, c: Chunk) -> None:
        """Lead-off on stderr, once per stretch (and at most every :data:`LEAD_OFF_LOG_EVERY_S`)."""
        now = time.monotonic()
        if c.lead_off and self._lead_off_since is None:
            self._lead_off_since = now
            if now - self._lead_off_told_at >= self.LEAD_OFF_LOG_EVERY_S:
                more = f" ({self._lead_off_untold} more since the last line)" if self._lead_off_untold else ""
                log.warning("%s: lead-off: an electrode is off or loose (RA, LA, RL): no beats or "
                            "decisions until it is back%s", self.name, more)
                self._lead_off_told_at, self._lead_off_untold = now, 0
            else:
                self._lead_off_untold += 1
        elif not c.lead_off and self._lead_off_since is not None and len(c.samples):
            if self._lead_off_told_at >= self._lead_off_since:
                log.info("%s: electrodes back on after %.1f s", self.name, now - self._lead_off_since)
            self._lead_off_since = None

    #: True when :meth:`steps` never blocks (it yields :class:`~.steps.Wait` / :class:`~.steps.Call`
    #: instead), so the gateway can drive it from its one selector loop
    pollable: bool = False

    @abstractmethod
    def _steps(self) -> Iterator:
        """The backend's part: yield chunks and link events until the source ends (or raise
        :class:`SourceError`). A :attr:`pollable` backend never blocks: where it would, it yields a
        request (:class:`~.steps.Wait`, :class:`~.steps.Call`); any other may block (the gateway
        then gives it a reader thread)."""

    def steps(self):
        """Items and I/O requests (:class:`~.steps.Wait`, :class:`~.steps.Call`), rate-checked and
        counted; a driver answers the requests (:func:`~.steps.run_blocking`, the gateway's I/O loop)."""
        watch = self.rate_watch
        if watch is not None:
            watch.name = self.name
        gen = self._steps()
        value = exc = None
        try:
            while True:
                try:
                    x = gen.throw(exc) if exc is not None else gen.send(value)
                except StopIteration:
                    return
                except SourceRefused as refused:  # name the source: "/dev/ttyUSB0: HELLO frame: fs_hz=..."
                    raise SourceRefused(f"{self.name}: {refused}") from None
                value = exc = None
                if isinstance(x, (Wait, Call)):
                    try:
                        value = yield x
                    except Exception as e:  # a Call's exception goes back to where it was asked
                        exc = e
                    continue
                items = watch.process(x) if watch is not None else [x]
                if self.ecg_watch is not None:
                    items = [y for it in items for y in self.ecg_watch.process(it)]
                for it in items:
                    if isinstance(it, Chunk):
                        if it.lead_off or self._lead_off_since is not None:
                            self._note_lead_off(it)
                        self.stats["chunks"] += 1
                        self.stats["samples"] += len(it.samples)
                        if watch is not None and watch.locked and not self.fs:
                            self.fs = watch.locked
                    yield it
                if self._closed:
                    return
        finally:
            gen.close()

    def __iter__(self) -> Iterator[Item]:
        return run_blocking(self.steps())

    @property
    def closed(self) -> bool:
        """True once :meth:`stop` or :meth:`close` was called: the source ends at its next step."""
        return self._closed

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

    def rate_summary(self) -> Optional[dict]:
        """What the run summary says about the time base (None when it is not checked)."""
        w = self.rate_watch
        if w is None:
            return None
        return {"state": w.state, "declared_hz": w.declared, "locked_hz": w.locked,
                "measured_hz": None if w.measured is None else round(w.measured, 2)}

    def signal_summary(self) -> Optional[dict]:
        """What the run summary says about the ECG check (None when the column is not checked)."""
        w = self.ecg_watch
        if w is None:
            return None
        return {"state": w.state, "column": w.column_desc,
                **({"reasons": w.last.reasons, **w.last.metrics} if w.last is not None else {})}
