"""One pty feeder for the live-path tests: bytes written to a real pseudo-terminal on a schedule.

A test describes what a sketch prints as a schedule of ``(seconds after start, bytes)`` -- lines at
``i / fs`` (:meth:`PtyFeed.at_rate`) or paced by a UART model (``test_hobby_path.ArduinoSketch``) --
and the runtime under test opens ``feed.path`` exactly as it opens ``/dev/ttyUSB0``. Writes happen
every ``tick_s`` with everything that is due, so a reader sees the bursts a USB-serial adapter gives.
"""
from __future__ import annotations

import os
import threading
import time
import tty


class PtyFeed:
    """Write ``schedule`` (sorted ``(t_s, bytes)``) to a pty's master side, in real time.

    ``wait_open``: start the clock only when this event is set (an Uno resets when a program opens
    its port, so its ``setup()`` runs then); ``None`` starts at ``__enter__``.
    """

    def __init__(self, schedule, wait_open: threading.Event | None = None, tick_s: float = 0.005):
        self.schedule = list(schedule)
        self.wait_open, self.tick_s = wait_open, tick_s
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @classmethod
    def at_rate(cls, lines, fs: float, header: bytes = b"", header_every_s: float = 1.0, **kw) -> "PtyFeed":
        """``lines[i]`` printed at ``i / fs`` s; ``header`` first and again every ``header_every_s``
        (a header printed once in ``setup()`` is gone before a reader opens the port: pyserial
        flushes input on open)."""
        schedule = [(i / fs, line) for i, line in enumerate(lines)]
        if header:
            end = len(lines) / fs
            k, heads = 1, [(0.0, header)]
            while k * header_every_s < end:
                heads.append((k * header_every_s, header))
                k += 1
            schedule = sorted(heads + schedule, key=lambda e: e[0])  # stable: a header before its lines
        kw.setdefault("tick_s", 0.01)
        return cls(schedule, **kw)

    def rate(self, t0: float, t1: float) -> float:
        """Writes per second scheduled between t0 and t1 (s)."""
        return sum(t0 <= t < t1 for t, _ in self.schedule) / (t1 - t0)

    def _run(self):
        if self.wait_open is not None:
            while not self.wait_open.wait(0.05):
                if self.stop.is_set():
                    return
        t0, i, n = time.monotonic(), 0, len(self.schedule)
        while not self.stop.is_set() and i < n:
            now = time.monotonic() - t0
            j = i
            while j < n and self.schedule[j][0] <= now:
                j += 1
            if j > i:
                try:
                    os.write(self.master, b"".join(d for _, d in self.schedule[i:j]))
                except OSError:
                    return
                i = j
            time.sleep(self.tick_s)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(2)
        for fd in (self.master, self.slave):
            os.close(fd)
