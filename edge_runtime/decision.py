"""Decisions: rolling median of per-beat probabilities, then an alarm that must persist.

Two stages, each answering one worry:

1. **Rolling median** of the last ``n_beats`` scored beats (default 8, ~6 s at
   75 bpm): one ectopic or artefactual beat does not move it.
2. **Persistent alarm with hysteresis** (:class:`AlarmState`), per label: the
   alarm goes on (``onset``) only when the median has stayed at or above the
   operating point's threshold for ``persist_s`` seconds of signal (or
   ``persist_beats`` decisions), and goes off (``cleared``) only when it has
   stayed below a lower threshold -- the on-threshold moved down by
   ``hysteresis`` on the logit scale -- for as long. A median that wanders around
   the threshold therefore gives one state change, not one per beat. This is the
   usual debounce-plus-deadband of bedside monitor alarms (e.g. IEC 60601-1-8's
   alarm-condition delay); the spans are configurable because the right trade-off
   between a late onset and a flickering one depends on the use.

Thresholds are probabilities on the card's calibrated scale, taken from one of
the card's operating points (:meth:`selfmis.bundle.ModelCard.operating_point`);
0.5 for a label the operating point does not cover. No decision is made before
``min_beats`` beats have been scored. :meth:`RollingDecision.reset` (quality gate,
reconnect) clears the median's history and the persistence clocks -- a decision
never mixes signal from before and after an interruption -- but not an alarm that
is on: it clears only on enough good signal below its threshold.
"""
from __future__ import annotations

import numpy as np

__all__ = ["RollingDecision", "AlarmState", "StateChanges", "DEFAULT_PERSIST_S", "DEFAULT_HYSTERESIS"]

#: Default persistence span (seconds of signal) and hysteresis (logit units); see
#: benchmarks/results/clinical for the alarm burden they give on PTB-XL.
DEFAULT_PERSIST_S = 30.0
DEFAULT_HYSTERESIS = 0.5

OFF, ONSET, ONGOING, CLEARED = "off", "onset", "ongoing", "cleared"


def logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


class AlarmState:
    """Per-label alarm state machine over a sequence of (t, probabilities).

    ``update(t, proba)`` returns one state per label: ``onset`` (the alarm goes on
    at this decision), ``ongoing``, ``cleared`` (it goes off at this decision) or
    ``off``. ``persist_beats`` (if given) counts decisions instead of seconds.
    With ``persist_s=0`` and ``hysteresis=0`` it is the plain per-beat comparison.
    """

    def __init__(self, thresholds, persist_s: float = DEFAULT_PERSIST_S, persist_beats: int | None = None,
                 hysteresis: float = DEFAULT_HYSTERESIS):
        self.on = np.asarray(thresholds, dtype=np.float64)
        if persist_s < 0 or hysteresis < 0 or (persist_beats is not None and persist_beats < 1):
            raise ValueError("persistence and hysteresis must be >= 0 (persist_beats >= 1)")
        # hysteresis on the logit scale: the same margin means as much at 0.05 as at 0.6
        self.off = 1.0 / (1.0 + np.exp(-(logit(self.on) - hysteresis))) if hysteresis else self.on.copy()
        self.persist_s, self.persist_beats, self.hysteresis = float(persist_s), persist_beats, float(hysteresis)
        # plain lists: a dozen labels per beat, where numpy's per-call overhead would
        # cost more than the comparisons (this runs once per scored beat)
        self._on, self._off = self.on.tolist(), np.asarray(self.off, dtype=np.float64).tolist()
        self._active = [False] * len(self._on)
        self.n_changes = 0
        self.reset()

    @property
    def active(self) -> np.ndarray:
        """Which labels' alarms are on (bool per label)."""
        return np.array(self._active, dtype=bool)

    def reset(self) -> None:
        """Forget how long the evidence has been building (not whether an alarm is on)."""
        n = len(self._on)
        self._since = [None] * n   # t at which the evidence against the state began
        self._count = [0] * n      # decisions since then

    def update(self, t: float, proba) -> list:
        p = proba.tolist() if isinstance(proba, np.ndarray) else [float(v) for v in proba]
        t = float(t)
        states = []
        for j, pj in enumerate(p):
            act = self._active[j]
            # evidence for a change: above `on` while off, below `off` while on
            if (pj < self._off[j]) if act else (pj >= self._on[j]):
                if self._since[j] is None:
                    self._since[j] = t
                self._count[j] += 1
                if self.persist_beats is not None:
                    flip = self._count[j] >= self.persist_beats
                else:
                    flip = t - self._since[j] >= self.persist_s - 1e-9
                if flip:
                    act = self._active[j] = not act
                    self._since[j], self._count[j] = None, 0
                    self.n_changes += 1
                    states.append(ONSET if act else CLEARED)
                    continue
            else:
                self._since[j], self._count[j] = None, 0
            states.append(ONGOING if act else OFF)
        return states


class RollingDecision:
    """Median of the last ``n_beats`` beat probabilities, then :class:`AlarmState`.

    ``operating_point`` only names the thresholds in the events; build from a card
    with :meth:`from_card`.
    """

    def __init__(self, labels, thresholds: dict | None = None, n_beats: int = 8, min_beats: int = 3,
                 method: str = "median", operating_point: str | None = None,
                 persist_s: float = DEFAULT_PERSIST_S, persist_beats: int | None = None,
                 hysteresis: float = DEFAULT_HYSTERESIS, primary: str | None = None):
        if method not in ("median", "mean"):
            raise ValueError(f"unknown decision method {method!r} (median, mean)")
        self.labels = list(labels)
        thresholds = thresholds or {}
        self.thresholds = np.array([float(thresholds.get(l, 0.5)) for l in self.labels])
        self.n_beats, self.min_beats, self.method = int(n_beats), int(min_beats), method
        self.operating_point = operating_point
        # the label whose state the event's `state` reports: MI, the card's first label
        self.primary = primary if primary is not None else (self.labels[0] if self.labels else None)
        self.alarm = AlarmState(self.thresholds, persist_s=persist_s, persist_beats=persist_beats,
                                hysteresis=hysteresis)
        # the last n_beats probabilities as rows of a ring (median and mean ignore the order)
        self._ring = np.zeros((self.n_beats, len(self.labels)))
        self._filled = 0
        self._n_added = 0

    @classmethod
    def from_card(cls, card, operating_point: str | None = None, **kw) -> "RollingDecision":
        """Thresholds of the card's ``operating_point`` (its default when None); raises
        ``BundleError`` for a name the card does not have."""
        name, thresholds = card.operating_point(operating_point)
        return cls(card.labels, thresholds, operating_point=name, **kw)

    def reset(self) -> None:
        self._filled = 0
        self.alarm.reset()

    def __len__(self):
        return min(self._filled, self.n_beats)

    def add(self, proba, t: float | None = None) -> dict | None:
        """Add one beat's probabilities (label order) at signal time ``t`` (s); the decision
        once enough beats. Without ``t`` a beat counts as one second. A beat whose
        probabilities are not all finite (a float model gone wrong) is skipped: no decision
        ever carries NaN, and a NaN never silences an alarm."""
        if not np.isfinite(proba).all():
            self.skipped_nonfinite = getattr(self, "skipped_nonfinite", 0) + 1
            return None
        self._ring[self._filled % self.n_beats] = proba
        self._filled += 1
        t = float(self._n_added) if t is None else t
        self._n_added += 1
        if len(self) < self.min_beats:
            return None
        return self.current(t)

    def aggregate(self) -> np.ndarray:
        h = self._ring[:len(self)]
        if self.method == "median":
            s, k = np.sort(h, axis=0), len(h)
            return 0.5 * (s[(k - 1) // 2] + s[k // 2])  # np.median, without its overhead
        return h.mean(axis=0)

    def current(self, t: float) -> dict:
        agg = self.aggregate()
        states = self.alarm.update(t, agg)
        positive = [l for l, a in zip(self.labels, self.alarm._active) if a]
        out = {"probabilities": dict(zip(self.labels, np.round(agg, 6).tolist())),
               "labels": positive, "n_beats": len(self)}
        if self.primary is not None:
            out["state"] = states[self.labels.index(self.primary)]
        out["operating_point"] = self.operating_point
        return out


class StateChanges:
    """Which decision events change a device's alarms -- what the outlets pass on.

    A decision is made every beat (or every ``every_k_beats``); the JSON Lines keep
    every one. People and the systems they run (MQTT and Home Assistant, the web
    view's alarm log, LSL markers) want the *state changes*: a label's alarm going
    on or off. :meth:`change` returns ``{"onset": [...], "cleared": [...]}`` (labels,
    card order) when the event's set of active labels differs from the device's
    previous one -- its first decision with any label active included -- else None.
    One instance per outlet (each keeps its own memory of what it has shown).
    """

    def __init__(self):
        self._active: dict = {}

    def change(self, device: str, event: dict) -> dict | None:
        labels = list(event.get("labels") or ())
        before = self._active.get(device, [])
        self._active[device] = labels
        onset = [l for l in labels if l not in before]
        cleared = [l for l in before if l not in labels]
        return {"onset": onset, "cleared": cleared} if onset or cleared else None
