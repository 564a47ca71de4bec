"""Rolling decision: median of the last N per-beat probabilities against the card's thresholds.

One beat's window is a noisy view of the patient; the median over the last
``n_beats`` scored beats (default 8, ~6 s at 75 bpm) is robust to a single
ectopic or artefactual beat and cheap. A label is reported positive when its
median probability reaches the card's threshold (chosen on validation data by
the training side; 0.5 when the card has none). No decision is made before
``min_beats`` beats have been scored, and the history is cleared when the
quality gate or a reconnect breaks the stream, so a decision never mixes signal
from before and after an interruption.
"""
from __future__ import annotations

from collections import deque

import numpy as np

__all__ = ["RollingDecision"]


class RollingDecision:
    def __init__(self, labels, thresholds: dict | None = None, n_beats: int = 8, min_beats: int = 3,
                 method: str = "median"):
        if method not in ("median", "mean"):
            raise ValueError(f"unknown decision method {method!r} (median, mean)")
        self.labels = list(labels)
        thresholds = thresholds or {}
        self.thresholds = np.array([float(thresholds.get(l, 0.5)) for l in self.labels])
        self.n_beats, self.min_beats, self.method = int(n_beats), int(min_beats), method
        self._hist: deque = deque(maxlen=self.n_beats)

    def reset(self) -> None:
        self._hist.clear()

    def __len__(self):
        return len(self._hist)

    def add(self, proba) -> dict | None:
        """Add one beat's probabilities (in label order); return the decision once enough beats."""
        self._hist.append(np.asarray(proba, dtype=np.float64))
        if len(self._hist) < self.min_beats:
            return None
        return self.current()

    def current(self) -> dict:
        h = np.stack(self._hist)
        if self.method == "median":
            s, k = np.sort(h, axis=0), len(h)
            agg = 0.5 * (s[(k - 1) // 2] + s[k // 2])  # np.median, without its overhead
        else:
            agg = h.mean(axis=0)
        positive = [l for l, p, t in zip(self.labels, agg, self.thresholds) if p >= t]
        return {"probabilities": dict(zip(self.labels, np.round(agg, 6).tolist())),
                "labels": positive, "n_beats": len(self._hist)}
