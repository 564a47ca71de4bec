"""JSON Lines on stdout: one object per event, each with a ``type``.

Types: ``beat`` (t, rr, hr[, p]), ``decision`` (t, probabilities, labels,
n_beats, state, operating_point, hr, quality, latency_ms), ``quality`` (t, ok, reasons), ``link``
(kind + details), and a final ``summary``. Logs go to stderr, never here, so
``edge-run ... | jq`` always sees valid JSON.

Output is bounded by input: while a device is read (its bytes counted by an
:class:`EventBudget`), ``beat`` and ``decision`` lines are written only within
:data:`OUTPUT_BOUND` x the device bytes read, less :data:`OUTPUT_RESERVE` kept for
the summary and the closing link lines; beat lines go first (they leave a decision's
worth more); a decision whose ``state`` or ``labels`` change always passes. Held-back lines are counted: ``lines_held_back`` in the summary.
"""
from __future__ import annotations

import json
import logging
import math
import sys

__all__ = ["JsonlWriter", "to_json", "OUTPUT_BOUND", "OUTPUT_RESERVE", "INPUT"]

#: stdout at most this many times the device bytes read (issue 24's target) ...
OUTPUT_BOUND = 2.0
#: ... of which beat and decision lines leave this much to the summary and the closing link lines
OUTPUT_RESERVE = 1536
#: beat lines leave this much of the budget to decisions
_DECISION_RESERVE = 1024

log = logging.getLogger("selfmis.edge_runtime")


def _clean(v, depth: int = 0):
    """``v`` with every non-finite number (NaN, +-inf, numpy's too) as null, at any depth:
    a decision line is always valid JSON, whatever value an outlet is handed."""
    if isinstance(v, bool) or v is None or isinstance(v, (str, int)):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if depth > 32:  # a structure this deep is no event of ours; keep the line valid, short
        return str(v)[:200]
    if isinstance(v, dict):
        return {str(k): _clean(x, depth + 1) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x, depth + 1) for x in v]
    tolist = getattr(v, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        try:
            return _clean(tolist(), depth + 1)
        except Exception:
            pass
    return str(v)


def to_json(event: dict) -> str:
    """One event as a compact JSON line; non-finite numbers become null (never a bare NaN)."""
    try:
        return json.dumps(event, separators=(",", ":"), allow_nan=False, default=_default)
    except (ValueError, TypeError, RecursionError):
        return json.dumps(_clean(event), separators=(",", ":"), allow_nan=False, default=str)


def _default(v):
    tolist = getattr(v, "tolist", None)
    if callable(tolist):
        return tolist()  # a numpy NaN comes back as float nan: allow_nan=False then sends it to _clean
    return str(v)


class _InputMeter:
    """Device bytes read by this process (every :class:`EventBudget` feeds it)."""

    def __init__(self):
        self.bytes = 0


#: the process's device input, for :class:`JsonlWriter`'s bound
INPUT = _InputMeter()


class JsonlWriter:
    """JSON Lines to ``stream``; ``bound`` (default :data:`OUTPUT_BOUND`, None: off): beat and
    decision lines within ``bound`` x the device bytes read - ``reserve`` (see the module)."""

    def __init__(self, stream=None, quiet: bool = False, flush: bool = True,
                 bound: float | None = OUTPUT_BOUND, reserve: int = OUTPUT_RESERVE, meter=None):
        self.stream = stream or sys.stdout
        self.quiet, self.flush = quiet, flush
        self.bound, self.reserve, self.meter = bound, reserve, meter or INPUT
        self._in0 = self.meter.bytes  # device bytes before this writer (another run in this process)
        self.counts = {}
        self.written = 0  # bytes of lines handed to the stream
        self.held = {}  # device -> {"beat": n, "decision": n}
        self._last_state = {}  # device -> (state, labels) of its last decision written
        self.lost_lines, self._warned = 0, False

    def write(self, event: dict) -> None:
        self.write_all((event,))

    def _line(self, event: dict):
        kind = event.get("type", "")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.quiet and kind == "beat":
            return None
        dev = event.get("device")
        if kind == "summary" and self.held.get(dev):
            event = {**event, "lines_held_back": dict(self.held[dev])}
        line = to_json(event)
        if kind in ("beat", "decision") and not self._admit(kind, dev, event, len(line) + 1):
            held = self.held.setdefault(dev, {"beat": 0, "decision": 0})
            held[kind] += 1
            return None
        self.written += len(line) + 1
        return line

    def _admit(self, kind: str, dev, event: dict, size: int) -> bool:
        """Whether a beat/decision line fits the output bound (always, while no device is read)."""
        read = self.meter.bytes - self._in0
        if self.bound is None or read <= 0:
            return True
        if kind == "decision":
            state = (event.get("state"), tuple(event.get("labels") or ()))
            if self._last_state.get(dev) != state:  # an alarm change is never held back
                self._last_state[dev] = state
                return True
        left = self.bound * read - self.reserve - self.written
        return size <= left - (_DECISION_RESERVE if kind == "beat" else 0)

    def write_all(self, events) -> None:
        """The events of one chunk, written and flushed together: one flush per chunk, not
        per event (the events of a chunk exist at the same moment, so no one waits longer)."""
        lines = [line for line in map(self._line, events) if line is not None]
        if not lines:
            return
        try:
            self.stream.write("\n".join(lines) + "\n")
            if self.flush:
                self.stream.flush()
        except BrokenPipeError:  # `edge-run ... | head`: the reader left; stop writing quietly
            self.stream = open("/dev/null", "w")
        except OSError as exc:  # stdout on a full disk: these lines are lost, detection goes on
            self.lost_lines += len(lines)
            if not self._warned:
                self._warned = True
                log.error("stdout: %s; output lines are being lost (detection goes on)", exc)


#: Link events a peer can cause once per frame or per line (junk, corrupt CRCs, sequence tricks,
#: a HELLO changing every frame): these go through an :class:`EventBudget`.
PER_FRAME_EVENTS = ("resync", "crc_error", "decode_error", "gap", "seq_jump", "duplicate_frame",
                    "stale_frame", "hello")


class EventBudget:
    """Rate limit for the per-frame link events, so output volume is bounded by the input.

    Each kind gets at most one event per ``interval_s`` of arrival time, and all of
    them together at most ``ratio`` x the input bytes (plus ``allowance`` bytes) of
    JSON, an event costing ``event_bytes``. A held-back event is counted: the next
    event of its kind carries ``count`` (events since the last one shown, itself
    included), and :attr:`held_back` totals them (the run summary's
    ``events_held_back``); the sources' counters (``crc_errors``, ``resyncs``...)
    still count every one.

    With the defaults the link events of any byte stream take at most
    0.25 x its size + 4 KiB on stdout (the benchmark ``benchmarks/hostile.py``
    measures the whole output).
    """

    def __init__(self, ratio: float = 0.25, allowance: int = 4096, interval_s: float = 1.0,
                 event_bytes: int = 200):
        self.ratio, self.allowance, self.interval_s, self.event_bytes = ratio, allowance, interval_s, event_bytes
        self.bytes_in = 0
        self.spent = 0
        self.held_back = 0
        self.reported = 0  # held_back already added to a source's stats (limit_events)
        self._next_t: dict = {}
        self._pending: dict = {}

    def feed(self, n_bytes: int) -> None:
        """``n_bytes`` more input arrived (earns ``ratio`` x as much event output)."""
        self.bytes_in += int(n_bytes)
        INPUT.bytes += int(n_bytes)

    def admit(self, kind: str, t: float) -> int:
        """0 to hold this event back, else the number of events of ``kind`` it stands for."""
        pending = self._pending.get(kind, 0) + 1
        budget = self.allowance + self.ratio * self.bytes_in - self.spent
        if t < self._next_t.get(kind, float("-inf")) or budget < self.event_bytes:
            self._pending[kind] = pending
            self.held_back += 1
            return 0
        self._pending[kind] = 0
        self._next_t[kind] = t + self.interval_s
        self.spent += self.event_bytes
        return pending


def limit_events(budget: EventBudget, items: list, stats: dict | None = None) -> list:
    """``items`` with the per-frame link events over ``budget`` held back (chunks always pass;
    a held-back event that restarts the clock still passes, marked ``held_back``)."""
    kept = []
    for it in items:  # link events by their `kind` (chunks have none): this module stays numpy-free
        if getattr(it, "kind", None) in PER_FRAME_EVENTS:
            n = budget.admit(it.kind, it.t_arrival)
            if not n:
                if it.discontinuity:  # the pipeline must still restart its clock
                    kept.append(type(it)(it.kind, {"held_back": True}, it.t_arrival, True))
                continue
            if n > 1:
                it.detail["count"] = n
        kept.append(it)
    if stats is not None:
        stats["events_held_back"] = stats.get("events_held_back", 0) + budget.held_back - budget.reported
        budget.reported = budget.held_back
    return kept
