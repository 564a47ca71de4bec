"""Sources written once, driven two ways: a blocking loop (a reader thread) or the gateway's one selector.

A source's :meth:`~.base.Source.steps` generator yields its items
(:class:`~.base.Chunk`, :class:`~.base.LinkEvent`) and, where it would block,
a *request* instead of blocking:

* ``ready = yield Wait(fd, timeout)``: resume me when ``fd`` is readable
  (``True``) or after ``timeout`` seconds (``False``); ``fd`` None is a plain
  sleep (reconnect backoff, polling for a port to appear);
* ``result = yield Call(fn)``: run ``fn()`` where blocking is harmless (an
  ``open``/TCP connect that may take seconds) and resume me with its result,
  or raise its exception at the ``yield``.

:func:`run_blocking` serves these requests in the caller's thread (``select``,
``sleep``, a direct call): the single-device ``edge-run`` and sources on their
own thread. The gateway's :class:`~..gateway_io.IoLoop` serves them for all
pollable devices from **one** thread (``selectors``; ``Call`` on a small
pool; an asyncio driver was measured against it and lost: ``benchmarks/results/gateway/io_loop.md``), so a hundred TCP wearables cost one thread, not a hundred contending for
the GIL. The reading logic (framing, reconnects, hints) exists once, in the
source (the generator-based coroutine style of PEP 342; the same split of I/O
readiness from protocol code as the "sans-I/O" pattern).
"""
from __future__ import annotations

import select
import time

__all__ = ["Wait", "Call", "run_blocking"]


class Wait:
    """Resume when ``fd`` is readable or after ``timeout`` s; ``fd`` None: sleep ``timeout`` s.
    ``token`` names the open file behind ``fd`` (a reconnect may reuse the number)."""

    __slots__ = ("fd", "timeout", "token")

    def __init__(self, fd, timeout: float, token=None):
        self.fd, self.timeout, self.token = fd, float(timeout), token


class Call:
    """Run ``fn()`` off the I/O thread; the generator gets its result (or its exception)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


def run_blocking(steps):
    """Iterate a steps generator in this thread, serving its requests by blocking; yields the items."""
    value = exc = None
    try:
        while True:
            try:
                x = steps.throw(exc) if exc is not None else steps.send(value)
            except StopIteration:
                return
            value = exc = None
            if isinstance(x, Wait):
                if x.fd is None:
                    time.sleep(x.timeout)
                else:
                    value = bool(select.select([x.fd], [], [], x.timeout)[0])
            elif isinstance(x, Call):
                try:
                    value = x.fn()
                except Exception as e:  # handed back to the source, which knows what it means
                    exc = e
            else:
                yield x
    finally:
        steps.close()
