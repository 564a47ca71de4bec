"""Every pollable device (TCP, pty, tty) read from one selector, in the gateway's processing thread.

Kept over an asyncio event loop by measurement (``benchmarks/results/gateway/io_loop.md``: a
task per device with ``add_reader``/``call_later``, side by side at 100 and 200 real-time
devices on one core: asyncio cost ~11 points more CPU at 100 devices, 78 vs 67 % of the core,
and had the higher latency at both counts); the sources stay sans-I/O steps generators
(:mod:`.sources.steps`), so either loop can drive them.

With a reader thread per device, 100 wearables meant 100 threads waking ~10
times a second each and contending for the GIL with the processing thread: the
decision latency's tail grew with N (p99 17.7 / 31.9 ms at N = 100 in two runs,
``benchmarks/results/gateway``). Here one selector waits on all descriptors at
once (:mod:`selectors`: epoll on Linux) and each device's steps generator
(:mod:`.sources.steps`) is advanced only when its descriptor is readable, its
timer is due or a blocking call it asked for (an ``open``, a TCP connect) has
finished on the small helper pool. The loop runs in the processing thread
itself, between processing rounds (:meth:`IoLoop.poll_once`): a separate I/O
thread was measured too and added latency -- each batch it read waited for the
GIL behind the pipelines (p50 10-17 ms vs 5-8 ms at N = 100, side by side).

Isolation, as with threads:

* a device advances at most :attr:`IoLoop.TURN` items per turn, then the others
  get theirs (a flooding device cannot starve the loop);
* items go into the device's own bounded queue; when it is full the device is
  *parked* (its descriptor is not read, so the OS buffer and then TCP flow
  control hold its sender back) until the processing round drains it (at most
  ``budget`` items per device per round); the others keep flowing;
* a device that fails raises inside its own generator: it ends (an ``_END`` in
  its queue, with its error) or is restarted by its generator (see
  :meth:`.gateway.Gateway.device_steps`); the loop goes on.
"""
from __future__ import annotations

import heapq
import logging
import queue
import selectors
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from .sources.steps import Call, Wait

__all__ = ["IoLoop", "ItemQueue"]

log = logging.getLogger("selfmis.edge_runtime")


class ItemQueue:
    """A device's bounded FIFO of items, :class:`queue.Queue`'s calls (``put``, ``put_nowait``,
    ``get_nowait``, ``empty``, ``full``, ``qsize``; ``queue.Full`` / ``queue.Empty``).

    One producer (the I/O loop, or the device's reader thread) and one consumer (the processing
    thread). A :class:`collections.deque`'s ``append`` and ``popleft`` are atomic, so the hot path
    takes no lock: ``queue.Queue`` took a mutex and notified a condition on every put and get,
    ~2 per frame, 4000 times a second at 200 devices (~5 % of the gateway's core). Only a producer
    that finds the queue full waits, on an event the consumer sets once it has taken an item.
    """

    __slots__ = ("maxsize", "_items", "_space")

    def __init__(self, maxsize: int = 256):
        self.maxsize = int(maxsize)
        self._items: deque = deque()
        self._space = threading.Event()  # cleared only by a producer about to wait for room
        self._space.set()

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    def put_nowait(self, item) -> None:
        if len(self._items) >= self.maxsize:
            raise queue.Full
        self._items.append(item)

    def put(self, item, timeout: float | None = None) -> None:
        """Append ``item``, waiting up to ``timeout`` s (None: for ever) for room; ``queue.Full``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._items) >= self.maxsize:
            self._space.clear()
            if len(self._items) < self.maxsize:  # taken meanwhile: the consumer saw the event set
                break
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise queue.Full
            self._space.wait(left)
        self._items.append(item)

    def get_nowait(self):
        try:
            item = self._items.popleft()
        except IndexError:
            raise queue.Empty from None
        if not self._space.is_set():  # a producer waits for room
            self._space.set()
        return item


class _State:
    """The loop's bookkeeping for one device."""

    __slots__ = ("dev", "steps", "send", "throw", "pending", "fd", "token", "timer", "parked", "queued",
                 "ending", "done")

    def __init__(self, dev, steps):
        self.dev, self.steps = dev, steps
        self.send = self.throw = self.pending = None
        self.fd = self.token = None   # the descriptor registered for it, and the file behind it
        self.timer = 0                 # id of its current timer; older heap entries are stale
        self.parked = False            # its queue is full: not read until the processor drains it
        self.queued = False            # in the run queue already
        self.ending = False            # its generator has ended; the end marker is on its way
        self.done = False              # the end marker is in its queue


class IoLoop:
    """Drive ``devices``' steps generators; the gateway's processing thread calls :meth:`poll_once`
    between its rounds (one thread for reading and processing: no hand-over of the GIL).

    ``steps_of(dev)`` gives a device's generator; when it ends, ``ended(dev, exc)``
    is called (``exc`` None: normally) and ``end_marker`` follows the device's last
    item into its queue; ``wake(dev)`` tells the processing thread that ``dev`` has items.
    """

    #: items one device may produce per turn before the others get theirs
    TURN = 32
    #: the longest the loop sleeps without looking at stop()
    TICK_S = 0.2
    #: how often a parked device looks at its queue again
    PARKED_S = 0.005

    def __init__(self, devices, steps_of, ended, end_marker, wake, helpers: int = 4):
        self.sel = selectors.DefaultSelector()
        self._r, self._w = socket.socketpair()  # calls finishing / stop() wake the selector
        self._r.setblocking(False)
        self._w.setblocking(False)
        self.sel.register(self._r, selectors.EVENT_READ, None)
        self.states = [_State(d, steps_of(d)) for d in devices]
        self.ended, self.end_marker, self.wake = ended, end_marker, wake
        self.pool = ThreadPoolExecutor(max_workers=helpers, thread_name_prefix="gateway-open")
        self._called: deque = deque()   # (state, result, exception) of finished Calls (from pool threads)
        self._timers: list = []          # heap of (due, seq, timer id, state)
        self._seq = 0
        self._parked: set = set()
        self._run_q: deque = deque()
        self.n_live = len(self.states)

    def poke(self) -> None:
        """Wake the loop (thread-safe)."""
        try:
            self._w.send(b"\0")
        except OSError:  # full (it will wake anyway) or closed (it has ended)
            pass

    # ------------------------------------------------------------------ registration

    def _unregister(self, st: _State) -> None:
        if st.fd is None:
            return
        key = self.sel.get_map().get(st.fd)
        if key is not None and key.data is st:  # the number may belong to another device's new file now
            self.sel.unregister(st.fd)           # (EpollSelector ignores a descriptor closed meanwhile)
        st.fd = st.token = None

    def _register(self, st: _State, fd: int, token) -> None:
        if st.fd == fd and st.token == token:
            return  # the usual case: the same descriptor as the last read, no system call
        self._unregister(st)
        key = self.sel.get_map().get(fd)
        if key is not None:  # still registered for a file closed since: that owner's entry is stale
            self.sel.unregister(fd)
            if isinstance(key.data, _State):
                key.data.fd = key.data.token = None
        self.sel.register(fd, selectors.EVENT_READ, st)
        st.fd, st.token = fd, token

    def _set_timer(self, st: _State, delay: float) -> None:
        st.timer += 1
        self._seq += 1
        heapq.heappush(self._timers, (time.monotonic() + delay, self._seq, st.timer, st))

    def _runnable(self, st: _State) -> None:
        if not st.queued and not st.done:
            st.queued = True
            self._run_q.append(st)

    # ------------------------------------------------------------------ advancing one device

    def _end(self, st: _State, exc) -> None:
        """The generator has ended (or must): release it; its end marker follows its items."""
        st.ending = True
        self._unregister(st)
        st.timer += 1
        try:
            st.steps.close()
        except Exception:  # closing must not take the loop down
            log.exception("device %s: closing its source", st.dev.id)
        try:
            st.dev.source.close()
        except Exception:
            log.exception("device %s: closing its source", st.dev.id)
        self.ended(st.dev, exc)

    def _put_pending(self, st: _State) -> bool:
        try:
            st.dev.queue.put_nowait(st.pending)
        except queue.Full:  # park: its descriptor is not read meanwhile, its sender is held back
            st.parked = True
            self._parked.add(st)
            self._unregister(st)
            return False
        st.pending = None
        return True

    def _advance(self, st: _State) -> bool:
        """Run ``st`` until it waits, parks or has had its turn; True when it wants another turn."""
        produced = False
        try:
            for _ in range(self.TURN):
                if st.pending is not None:
                    if not self._put_pending(st):
                        return False
                    produced = True
                if st.ending:
                    st.pending = self.end_marker
                    if self._put_pending(st):
                        st.done, produced = True, True
                        self.n_live -= 1
                    return False
                if st.dev.source.closed:  # stop() or --max-seconds: end now, not at the next read
                    self._end(st, None)
                    continue
                send, throw = st.send, st.throw
                st.send = st.throw = None
                try:
                    x = st.steps.throw(throw) if throw is not None else st.steps.send(send)
                except StopIteration:
                    self._end(st, None)
                    continue
                except Exception as exc:  # this device's failure; the loop and the others go on
                    self._end(st, exc)
                    continue
                if isinstance(x, Wait):
                    if x.fd is None:
                        self._unregister(st)
                    else:
                        self._register(st, x.fd, x.token)
                    self._set_timer(st, x.timeout)
                    return False
                if isinstance(x, Call):
                    self._unregister(st)
                    st.timer += 1
                    fut = self.pool.submit(x.fn)
                    fut.add_done_callback(lambda f, st=st: self._call_done(st, f))
                    return False
                st.pending = x
            return True
        finally:
            if produced:
                self.wake(st.dev)

    def _call_done(self, st: _State, fut) -> None:  # on a pool thread
        exc = fut.exception()
        self._called.append((st, None if exc is not None else fut.result(), exc))
        self.poke()

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        """Queue every device for its first step (opening its port)."""
        for st in self.states:
            self._runnable(st)

    def poll_once(self, max_timeout: float) -> None:
        """One turn: wait at most ``max_timeout`` s for a descriptor, a timer or a finished call,
        then give every device that can go on one turn."""
        try:
            if self._run_q:
                timeout = 0.0
            elif self._parked:
                timeout = min(max_timeout, self.PARKED_S)
            else:
                timeout = min(max_timeout, self.TICK_S)
                if self._timers:
                    timeout = max(0.0, min(timeout, self._timers[0][0] - time.monotonic()))
            for key, _ in self.sel.select(timeout):
                st = key.data
                if st is None:
                    try:
                        while self._r.recv(4096):
                            pass
                    except BlockingIOError:
                        pass
                    continue
                st.timer += 1  # readable before its timeout: that timer is void
                st.send = True
                self._runnable(st)
            while self._called:
                st, result, exc = self._called.popleft()
                st.send, st.throw = result, exc
                self._runnable(st)
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, tid, st = heapq.heappop(self._timers)
                if tid == st.timer:  # not superseded by readiness or a newer wait
                    st.timer += 1
                    st.send = False
                    self._runnable(st)
            if self._parked:
                for st in list(self._parked):
                    if not st.dev.queue.full():
                        st.parked = False
                        self._parked.discard(st)
                        self._runnable(st)
            for _ in range(len(self._run_q)):  # one turn each; who wants more goes to the back
                st = self._run_q.popleft()
                st.queued = False
                if not st.done and self._advance(st):
                    self._runnable(st)
        except Exception:  # a bug here must not hang the gateway: end every device with it
            log.exception("gateway I/O loop failed")
            for st in self.states:
                if not st.ending:
                    self._end(st, RuntimeError("the gateway's I/O loop failed"))
                    self._runnable(st)

    def close(self) -> None:
        """stop() or the end: release every source; the gateway finishes each device with what it
        has queued."""
        for st in self.states:
            if not st.ending:
                self._end(st, None)
            st.done = True
        self.n_live = 0
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.sel.close()
        self._r.close()
        self._w.close()
