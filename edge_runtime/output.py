"""JSON Lines on stdout: one object per event, each with a ``type``.

Types: ``beat`` (t, rr, hr[, p]), ``decision`` (t, probabilities, labels,
n_beats, state, operating_point, hr, quality, latency_ms), ``quality`` (t, ok, reasons), ``link``
(kind + details), and a final ``summary``. Logs go to stderr, never here, so
``edge-run ... | jq`` always sees valid JSON.
"""
from __future__ import annotations

import json
import math
import sys

__all__ = ["JsonlWriter"]


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class JsonlWriter:
    def __init__(self, stream=None, quiet: bool = False, flush: bool = True):
        self.stream = stream or sys.stdout
        self.quiet, self.flush = quiet, flush
        self.counts = {}

    def write(self, event: dict) -> None:
        self.write_all((event,))

    def _line(self, event: dict):
        kind = event.get("type", "")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if self.quiet and kind == "beat":
            return None
        try:
            return json.dumps(event, separators=(",", ":"), allow_nan=False, default=str)
        except ValueError:
            return json.dumps({k: _clean(v) for k, v in event.items()}, separators=(",", ":"), default=str)

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
