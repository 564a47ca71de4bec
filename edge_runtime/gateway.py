"""Many wearables in one process: one thread reads every pollable device and runs every pipeline.

Why this shape:

* Serial ports, ptys and TCP links (``socket://``) are *pollable*: their sources
  are steps generators (:mod:`.sources.steps`) that never block, and **one
  selector** (:class:`~.gateway_io.IoLoop`; kept over asyncio by measurement,
  ``benchmarks/results/gateway/io_loop.md``) reads them all from the processing
  thread, between processing rounds, moving items into each device's bounded queue. The other sources block by nature (BLE bridged from asyncio, paced
  replays and simulators): each gets its own **reader thread** doing the same
  and never touching numpy state. (One thread per TCP device made 100 threads
  contend for the GIL with the processing thread; a separate I/O thread did too.)
* All pipelines run on **one processing thread** that visits the devices with
  queued items in turn, at most ``budget`` items per device per round. The one shared
  :class:`~.interpreter.TFLiteModel` is therefore never used from two threads
  (a TFLite interpreter is not thread-safe), and a device that floods (a
  replay at full speed, a burst of garbage) gets its fair share of the thread
  and no more: its own queue fills and its own reader waits, so only its data is
  delayed (a serial device then loses bytes in the OS buffer, which the framing
  reports as a gap on that device alone).
* **No batching across devices**: the shipped model's graph fixes the batch at 1
  (a RESHAPE to one window: ``resize_tensor_input`` fails at prepare), so each
  scored beat is one invoke. With the reference kernels the cards name (what
  ``edge-run`` runs) an invoke takes ~0.35 ms on this machine, 0.6-0.85 ms inside
  a busy gateway (builtin kernels ~0.17 ms, XNNPACK ~0.035 ms): 200 devices at
  ~87 bpm invoke ~290 times a second, 10-20 % of the core. Scoring happens inside
  each pipeline when its beat completes, which also keeps the decision latency
  free of a batching wait.
* A device whose source is lost after its retries is **restarted** with capped
  exponential backoff (1, 2, 4 ... s, at most ``restart_cap_s``, 60 s by
  default), said on stderr and in ``link`` events (``kind: "restarting"``), for
  as long as the gateway runs; ``restart: false`` (``--no-restart``) stops it
  instead. A source not found at start (a wrong port) and a pipeline that raises
  are reported (``error`` events with its id) and that device stops; the others
  continue.

Every event leaves through :meth:`Gateway.emit` with ``"device": id`` added:
to the JSON Lines writer and to each *sink* (web view, MQTT, LSL). A sink has
``on_event(device_id, event)`` and may have ``on_chunk(device_id, chunk,
t_end)``, ``start(gateway)`` and ``close()``; sink calls run on the processing
thread and must not block (the outlets hand work to their own threads through
bounded queues).
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from selfmis.exit_codes import ExitCode

from .gateway_io import IoLoop, ItemQueue
from .pipeline import Pipeline
from .sources.base import DeviceLost, SourceError, SourceNotFound
from .sources.steps import Wait, run_blocking
from .stream import Chunk, LinkEvent

__all__ = ["DeviceSpec", "Device", "Gateway"]

log = logging.getLogger("selfmis.edge_runtime")

_END = object()  # reader -> processor: the source has ended (normally or not)


@dataclass
class DeviceSpec:
    """One wearable: ``id`` and the ``edge-run``-style options of its source."""

    id: str
    options: dict = field(default_factory=dict)  # port/ble/replay/simulate, baud, fs, ... record


class Device:
    """A device's source, pipeline, recorder, queue and state (used by :class:`Gateway`)."""

    #: first restart delay (s); it doubles per failed restart up to ``restart_cap_s``
    RESTART_FIRST_S = 1.0

    def __init__(self, spec: DeviceSpec, source, pipeline: Pipeline, recorder=None, queue_size: int = 256,
                 restart: bool = True, restart_cap_s: float = 60.0):
        self.id, self.spec, self.source, self.pipeline, self.recorder = spec.id, spec, source, pipeline, recorder
        self.restart, self.restart_cap_s = bool(restart), float(restart_cap_s)
        self.restarts = 0
        self.in_ready = False      # in the gateway's ready list (has items for the processing thread)
        self.queue = ItemQueue(queue_size)
        self.thread: threading.Thread | None = None
        self.state = "starting"   # connected | reconnecting | disconnected | lost | ended | failed
        self.error: str | None = None
        self.exit_code = ExitCode.OK
        self.done = False          # the processing thread has seen the end
        self.capped = False        # --max-seconds reached: what it still queued is dropped
        self.summary: dict | None = None

    def close(self) -> None:
        """Release the source and the recording (a start that failed half-way)."""
        self.source.close()
        if self.recorder is not None:
            self.recorder.close()


class Gateway:
    """Run ``devices`` (list of :class:`Device`) with one processing loop; see the module doc."""

    def __init__(self, devices, out, sinks=(), model=None, budget: int = 8, max_seconds: float | None = None,
                 tagged: bool = True, t0: float | None = None):
        self.devices = list(devices)
        #: the gateway format: every line names its "device" and a failure is an ``error`` line too;
        #: one plain ``edge-run`` device writes its lines as it always has (errors on stderr only)
        self.tagged = tagged
        self.t0 = time.perf_counter() if t0 is None else t0  # the command's start: summary startup_s
        self.t_run = self.t0
        self.by_id = {d.id: d for d in self.devices}
        self.out, self.sinks, self.model = out, list(sinks), model
        self.budget, self.max_seconds = int(budget), max_seconds
        self._wake = threading.Event()
        #: devices with queued items, in arrival order: the processing thread visits only these
        #: (scanning every queue at each wake-up cost ~1 µs per idle device, 100 devices x 1000 wakes/s)
        self._ready: deque = deque()
        self._n_done = 0
        self._stop = threading.Event()
        self._io: IoLoop | None = None
        self._loop_thread = None
        self.t_start = time.time()

    # ------------------------------------------------------------------ output

    def emit(self, device: Device, event: dict) -> None:
        self.emit_all(device, (event,))

    def emit_all(self, device: Device, events) -> None:
        """``events`` of ``device``, written together (one flush per chunk) and handed to each sink."""
        if not events:
            return
        tagged = [{**e, "device": device.id} for e in events] if (self.tagged or self.sinks) else events
        self.out.write_all(tagged if self.tagged else events)
        for event in tagged if self.sinks else ():
            for s in self.sinks:
                try:
                    s.on_event(device.id, event)
                except Exception:  # a broken outlet never takes a pipeline down
                    log.exception("outlet %s failed on an event of %s", type(s).__name__, device.id)

    # ------------------------------------------------------------------ threads

    def device_steps(self, dev: Device):
        """``dev``'s source as a steps generator, restarted when it is lost (see the module doc)."""
        attempt, delivered = 0, 0
        while True:
            try:
                yield from dev.source.steps()
                return
            except SourceError as exc:
                # lost after its retries, or (while restarting) not back yet; anything else (a port
                # that was never there, a file that cannot be read) is not cured by waiting
                lost = isinstance(exc, DeviceLost) or (dev.restarts and isinstance(exc, SourceNotFound))
                if not (lost and dev.restart) or self._stop.is_set() or dev.source.closed:
                    raise
                if dev.source.stats["chunks"] > delivered:  # it streamed since the last restart
                    attempt = 0
                delivered = dev.source.stats["chunks"]
                delay = min(dev.restart_cap_s, dev.RESTART_FIRST_S * 2 ** attempt)
                attempt += 1
                dev.restarts += 1
                log.warning("device %s: %s; restarting it in %g s (attempt %d; the gateway keeps "
                            "retrying, up to every %g s)", dev.id, exc, delay, attempt, dev.restart_cap_s)
                yield LinkEvent("restarting", {"attempt": attempt, "delay_s": delay, "reason": str(exc)},
                                discontinuity=True)
                yield Wait(None, delay)
                if self._stop.is_set() or dev.source.closed:
                    return

    def _ended(self, dev: Device, exc) -> None:
        """A device's source has ended for good: ``exc`` None (normally) or why."""
        if exc is None:
            return
        if isinstance(exc, SourceError):  # SourceNotFound 4, DeviceLost 5, ...: the error knows its code
            dev.error, dev.exit_code = str(exc), exc.exit_code
        else:  # a bug in one source must not stop the gateway
            log.error("device %s: source failed", dev.id, exc_info=exc)
            dev.error, dev.exit_code = f"{type(exc).__name__}: {exc}", ExitCode.LOST

    def _reader(self, dev: Device) -> None:
        """A blocking source's thread: move its items into the device queue; any ending is one _END."""
        try:
            with dev.source:
                for item in run_blocking(self.device_steps(dev)):
                    if self._stop.is_set():
                        break
                    if not self._put(dev, item):
                        return
                    self._mark(dev)
        except Exception as exc:
            self._ended(dev, exc)
        finally:
            self._put(dev, _END)
            self._mark(dev)

    def _put(self, dev: Device, item) -> bool:
        """Queue ``item`` for ``dev``; a full queue makes this device wait, not the others.
        False when the gateway stops while it waits."""
        while True:
            try:
                dev.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                if self._stop.is_set():
                    return False

    def _mark(self, dev: Device) -> None:
        """``dev`` has items (any thread). The processing thread clears the flag *before* taking
        items, so an item put meanwhile is either taken in that visit or marks the device again."""
        if not dev.in_ready:
            dev.in_ready = True
            self._ready.append(dev)
        if threading.get_ident() != self._loop_thread:  # (the loop itself sees its _ready: no wake-up)
            self._wake.set()
            if self._io is not None:
                self._io.poke()  # a reader thread's item: the loop may be waiting in select()

    def stop(self) -> None:
        """Ask every device to end (thread-safe: signal handlers, tests)."""
        self._stop.set()
        for d in self.devices:
            d.source.stop()
        if self._io is not None:
            self._io.poke()
        self._wake.set()

    # ------------------------------------------------------------------ processing

    def _handle(self, dev: Device, item) -> None:
        if item is _END:
            self._finish(dev)
            return
        if dev.capped:  # read before --max-seconds stopped its source: not part of the run
            return
        if dev.recorder is not None:
            dev.recorder.write(item)
        if isinstance(item, LinkEvent):
            dev.state = {"connected": "connected", "reconnected": "connected", "hello": dev.state,
                         "reconnecting": "reconnecting", "restarting": "reconnecting",
                         "disconnected": "disconnected",
                         "lost": "lost", "end": "ended"}.get(item.kind, dev.state)
        events = dev.pipeline.handle(item)
        if isinstance(item, Chunk):
            if dev.state in ("starting", "disconnected", "reconnecting"):
                dev.state = "connected"
            for s in self.sinks:
                on_chunk = getattr(s, "on_chunk", None)
                if on_chunk is not None:
                    try:
                        on_chunk(dev.id, item, dev.pipeline.signal_s)
                    except Exception:
                        log.exception("outlet %s failed on a chunk of %s", type(s).__name__, dev.id)
        if dev.recorder is not None:  # beats and decisions go into the recording too
            dev.recorder.write_outputs(events, dev.pipeline.timeline_s)
            events += dev.recorder.take_events()  # a failed write: the `recording` event, once
        self.emit_all(dev, events)
        if self.max_seconds and dev.pipeline.signal_s >= self.max_seconds:
            dev.capped = True
            dev.source.stop()

    def _finish(self, dev: Device) -> None:
        if dev.done:
            return
        dev.done = True
        self._n_done += 1
        tail = dev.pipeline.flush()  # the last beats still inside the resampler's delay
        if dev.recorder is not None:
            dev.recorder.write_outputs(tail, dev.pipeline.timeline_s)
            dev.recorder.close()  # never raises: a failed last flush becomes the `recording` event
            tail += dev.recorder.take_events()
        self.emit_all(dev, tail)
        if dev.capped and dev.error and not dev.error.startswith("pipeline:"):
            # --max-seconds was reached first: the source ended (a BLE disconnect, a lost port) after
            # the signal this run asked for, so its ending is not part of the run (as before one runtime).
            log.info("%s%s (after --max-seconds)", f"device {dev.id}: " if self.tagged else "", dev.error)
            dev.error, dev.exit_code = None, ExitCode.OK
        if dev.error:
            dev.state = "failed" if dev.exit_code == ExitCode.SOURCE else "lost"
            log.error("%s%s", f"device {dev.id}: " if self.tagged else "", dev.error)
            if self.tagged:
                self.emit(dev, {"type": "error", "t": round(dev.pipeline.signal_s, 3), "message": dev.error,
                                "exit_code": dev.exit_code})
        elif dev.state not in ("lost", "failed"):
            dev.state = "ended"
        dev.summary = self.summary(dev)
        self.emit(dev, dev.summary)

    def summary(self, dev: Device) -> dict:
        """``dev``'s run summary: the pipeline's counters, the source's, its time base, the model,
        the start-up time, restarts and where it was recorded."""
        summary = dev.pipeline.summary(dev.source.stats, wall_s=time.perf_counter() - self.t_run)
        summary["source"] = dev.source.name
        rate = dev.source.rate_summary()
        if rate is not None:
            summary["rate"] = {**(summary.get("rate") or {}), **rate}
        if dev.source.signal_summary() is not None:
            summary["signal"] = dev.source.signal_summary()
        if self.model is not None:
            summary["model"] = self.model.card.name
        summary["startup_s"] = round(self.t_run - self.t0, 3)
        if dev.restarts:
            summary["restarts"] = dev.restarts
        if dev.recorder is not None:
            summary["recorded"] = str(dev.spec.options.get("record"))
            if dev.recorder.failed:
                summary["recording_stopped"] = dev.recorder.failed
        return summary

    def _process(self, dev: Device, item) -> None:
        try:
            self._handle(dev, item)
        except Exception as exc:  # one device's bad data or bug: stop that device only
            log.exception("device %s: pipeline failed", dev.id)
            dev.error, dev.exit_code = f"pipeline: {type(exc).__name__}: {exc}", ExitCode.LOST
            dev.source.stop()
            self._drain(dev)
            self._finish(dev)

    @staticmethod
    def _drain(dev: Device) -> None:
        while True:
            try:
                dev.queue.get_nowait()
            except queue.Empty:
                return

    def run(self) -> int:
        """Start the readers, process until every device has ended (or :meth:`stop`);
        returns 0, or the worst device exit code (4 not found, 5 lost)."""
        self.t_run = time.perf_counter()
        timer = None
        if self.max_seconds and any(d.source.realtime for d in self.devices):
            # a stream that yields no sample never advances signal time: stop by the wall clock too
            timer = threading.Timer(self.max_seconds + 5.0, self.stop)
            timer.daemon = True
            timer.start()
        for s in self.sinks:
            start = getattr(s, "start", None)
            if start is not None:
                start(self)
        polled = [d for d in self.devices if d.source.pollable]
        self._loop_thread = threading.get_ident()
        if polled:
            self._io = IoLoop(polled, self.device_steps, self._ended, _END, self._mark)
            self._io.start()
        for d in self.devices:
            if not d.source.pollable:
                d.thread = threading.Thread(target=self._reader, args=(d,), name=f"dev-{d.id}", daemon=True)
                d.thread.start()
        try:
            io = self._io
            while self._n_done < len(self.devices):
                if io is not None and io.n_live:  # read what has arrived (or wait for it, when idle)
                    io.poll_once(0.0 if self._ready else IoLoop.TICK_S)
                elif not self._ready:
                    self._wake.wait(0.2)
                    self._wake.clear()
                for _ in range(len(self._ready)):  # one visit each, at most `budget` items: fair shares
                    d = self._ready.popleft()
                    d.in_ready = False
                    if d.done:
                        continue
                    q = d.queue
                    for _ in range(self.budget):
                        if q.empty():
                            break
                        self._process(d, q.get_nowait())
                        if d.done:
                            break
                    if not d.done and not d.queue.empty():
                        self._mark(d)
                if self._stop.is_set():
                    self._wait_readers(2.0)
                    for d in self.devices:
                        if not d.done:
                            self._drain_into(d)
        except KeyboardInterrupt:
            log.info("interrupted")
            self.stop()
            self._wait_readers(2.0)
            for d in self.devices:
                if not d.done:
                    self._drain_into(d)
        finally:
            if timer is not None:
                timer.cancel()
            for s in self.sinks:
                close = getattr(s, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        log.exception("closing outlet %s", type(s).__name__)
        codes = [d.exit_code for d in self.devices if d.exit_code]
        return max(codes) if codes else 0

    def _wait_readers(self, timeout: float) -> None:
        t_end = time.monotonic() + timeout
        if self._io is not None:
            self._io.close()
        for d in self.devices:
            if d.thread is not None:
                d.thread.join(max(0.0, t_end - time.monotonic()))

    def _drain_into(self, dev: Device) -> None:
        """After stop: process what the reader already queued, then finish the device."""
        while not dev.done:
            try:
                item = dev.queue.get_nowait()
            except queue.Empty:
                self._finish(dev)
                return
            self._process(dev, item)

    # ------------------------------------------------------------------ status (web view, MQTT)

    def status(self) -> dict:
        """A JSON-ready snapshot: model and, per device, source, state and counters."""
        card = getattr(self.model, "card", None)
        # the thresholds the decisions use: the operating point's (calibrated scale), not the card's
        # raw `thresholds` -- the page compares the rolling probabilities with these
        dec = self.devices[0].pipeline.decider if self.devices else None
        thresholds = ({l: float(v) for l, v in zip(dec.labels, dec.thresholds)} if dec is not None
                      else {k: float(v) for k, v in ((card.thresholds if card else None) or {}).items()})
        return {
            "model": None if card is None else {"name": card.name, "version": card.created or None,
                                                "labels": list(card.labels), "thresholds": thresholds,
                                                "operating_point": getattr(dec, "operating_point", None)},
            "started": self.t_start,
            "devices": [{"id": d.id, "source": d.source.name, "state": d.state, "error": d.error,
                         "fs": d.source.fs, "lead": d.source.lead, "signal_s": round(d.pipeline.signal_s, 3),
                         "beats": d.pipeline.n_beats, "decisions": d.pipeline.n_decisions,
                         "queued": d.queue.qsize()} for d in self.devices],
        }
