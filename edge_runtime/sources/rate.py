"""A time base to trust: the sample rate measured from when samples arrive.

Nothing in an ASCII stream proves its rate, a sketch's ``delay(4)`` is not 250 Hz,
and a ``--fs`` typed wrong makes every heart rate and every window wrong by the
same factor -- the model then answers confidently on a signal it has never seen.
So every live source (serial binary and ASCII, TCP, BLE) measures the rate it
actually receives and:

* with **no declared rate** (an ASCII sketch without a header, no ``--fs``), holds
  the first samples until the estimate is stable, then *locks* to it (the nearest
  common ECG rate when within :data:`SNAP_TOLERANCE`, else the nearest whole Hz) and
  logs the rate, so a header-less sketch just works;
* with a **declared rate** (HELLO, ``# fs=`` header, ``--fs``), reports it
  ``rate_unverified`` until enough arrivals were seen, then ``rate_ok`` or
  ``rate_mismatch`` (beyond :data:`TOLERANCE`); the pipeline withholds every
  decision unless the rate is ``ok`` and the log says which ``--fs`` to pass.

The estimator is the Theil-Sen slope (median of pairwise slopes; P. K. Sen,
"Estimates of the regression coefficient based on Kendall's tau", JASA 63, 1968)
of (arrival time, cumulative sample count) over a sliding window: robust to the
bursts that USB-serial, TCP and BLE deliver (up to ~29% of outlying points), to a
backlog in the first read, and to a reader that was busy for a moment.
"""
from __future__ import annotations

import logging
from collections import deque
from functools import lru_cache
from itertools import chain
from typing import Optional

import numpy as np

from selfmis.limits import FS_MAX_HZ, FS_MIN_HZ

from ..stream import Chunk, LinkEvent

__all__ = ["RateEstimator", "RateWatch", "snap_rate", "COMMON_RATES", "TOLERANCE", "SNAP_TOLERANCE"]

log = logging.getLogger("selfmis.edge_runtime")

#: Rates ECG front ends and hobby sketches commonly run at (Hz).
COMMON_RATES = (100.0, 125.0, 128.0, 130.0, 200.0, 250.0, 256.0, 300.0, 360.0, 400.0, 500.0, 512.0,
                600.0, 800.0, 1000.0, 1024.0, 2000.0)
#: A declared rate further than this (relative) from the arrival rate is wrong. 5%: an
#: Arduino loop of ``delay(4)`` plus ``println`` runs ~3.6% slow and still scores correctly
#: (heart rate off by the same 3.6%); 250 declared for 500 sent is off by 50%.
TOLERANCE = 0.05
#: An estimate this close to a common rate locks to that rate.
SNAP_TOLERANCE = 0.02


def snap_rate(hz: float) -> float:
    """The common rate within :data:`SNAP_TOLERANCE` of ``hz``, else ``hz`` to the nearest whole Hz."""
    best = min(COMMON_RATES, key=lambda r: abs(r - hz))
    if abs(best - hz) <= SNAP_TOLERANCE * best:
        return best
    return float(max(1, round(hz)))


@lru_cache(maxsize=256)
def _pairs(m: int) -> tuple:
    """Index pairs (i < j) of ``m`` points: ``np.triu_indices(m, 1)``, built once per count (every live
    device's estimate, twice a second, would otherwise rebuild a 48 x 48 mask)."""
    i, j = np.triu_indices(m, 1)
    i.setflags(write=False)
    j.setflags(write=False)
    return i, j


def _median(v: np.ndarray) -> float:
    """``np.median`` of a 1-D array without NaN (slopes of distinct times), without its generic
    wrapper: one partition, the middle value or the mean of the two middle ones."""
    m = len(v)
    k = m // 2
    if m % 2:
        return float(np.partition(v, k)[k])
    p = np.partition(v, (k - 1, k))
    return float((p[k - 1] + p[k]) / 2)


class RateEstimator:
    """Theil-Sen rate (samples/s) over the last ``window_s`` seconds of arrivals.

    ``add(n, t)``: ``n`` samples (lost ones included: they took time too) arrived at
    monotonic time ``t``. One point is kept per ``point_every_s`` so the work per
    estimate is bounded (at most ~``window_s / point_every_s`` points).
    """

    def __init__(self, window_s: float = 12.0, min_span_s: float = 3.0, point_every_s: float = 0.25):
        self.window_s, self.min_span_s, self.point_every_s = window_s, min_span_s, point_every_s
        self.reset()

    def reset(self) -> None:
        self._pts = deque()
        self._n = 0
        self._seg = 0

    def break_segment(self) -> None:
        """Arrivals before and after this point are never paired: a stretch whose samples do not
        keep the stream's pace (lead-off lines, shorter than samples, print faster) lies between."""
        self._seg += 1

    def add(self, n: int, t: float) -> None:
        self._n += int(n)
        pts = self._pts
        if pts and pts[-1][2] == self._seg and t - pts[-1][0] < self.point_every_s:
            return
        pts.append((t, self._n, self._seg))
        # a segment break per line (lead-off toggling every line) would otherwise keep a point per line:
        # the pairwise estimate is O(points^2), so the count is capped (hostile-peer benchmark: 518 MB)
        cap = 4 * int(self.window_s / self.point_every_s)
        while pts and (t - pts[0][0] > self.window_s or len(pts) > cap):
            pts.popleft()

    @property
    def span_s(self) -> float:
        """The longest time one segment covers (see :meth:`break_segment`)."""
        best, first = 0.0, {}
        for t, _n, seg in self._pts:
            first.setdefault(seg, t)
            best = max(best, t - first[seg])
        return best

    def current_span_s(self) -> float:
        """Time the newest segment covers."""
        pts = [p for p in self._pts if p[2] == self._seg]
        return pts[-1][0] - pts[0][0] if len(pts) > 1 else 0.0

    def estimate(self, current_only: bool = False) -> Optional[float]:
        """Samples per second, or None until ``min_span_s`` of arrivals were seen (in the newest
        segment when ``current_only``; else in any one segment, pairs never crossing segments)."""
        pts = [p for p in self._pts if p[2] == self._seg] if current_only else self._pts
        if len(pts) < 5:
            return None
        # the same float64 values as np.asarray(pts), ~4x faster than its walk of the tuples
        a = np.fromiter(chain.from_iterable(pts), np.float64, 3 * len(pts)).reshape(-1, 3)
        t, n, seg = a[:, 0], a[:, 1], a[:, 2]
        i, j = _pairs(len(t))
        dt = t[j] - t[i]
        if seg[0] == seg[-1]:  # one segment (the usual case): every pair is within it
            if dt.max() < self.min_span_s:
                return None
            ok = dt >= 0.5 * self.min_span_s  # short baselines only add jitter
        else:
            same = seg[i] == seg[j]
            if not (same & (dt >= self.min_span_s)).any():
                return None
            ok = same & (dt >= 0.5 * self.min_span_s)
        return _median((n[j] - n[i])[ok] / dt[ok])


class RateWatch:
    """Per-source policy on top of :class:`RateEstimator`; ``process(item)`` -> items to pass on.

    Chunks with ``fs`` 0 (no declared rate) are held until the rate locks, then
    released with it. ``hint`` names the option that fixes a wrong rate.
    """

    def __init__(self, name: str, tolerance: float = TOLERANCE, hint: str = "--fs",
                 max_hold_s: float = 30.0, every_s: float = 0.5, estimator: RateEstimator | None = None):
        #: True between the end of a lead-off stretch and the rate being measured again
        self.reverifying = False
        self._in_lead_off = False
        self.name, self.tolerance, self.hint = name, tolerance, hint
        self.max_hold_s, self.every_s = max_hold_s, every_s
        self.est = estimator or RateEstimator()
        self.state: Optional[str] = None  # None, "unverified", "ok", "mismatch"
        self.locked: Optional[float] = None
        self.measured: Optional[float] = None
        self._declared: Optional[float] = None
        self._held: list = []
        self._held_n = 0
        self._next_check = None
        self.dropped_unlocked = 0

    @property
    def declared(self) -> Optional[float]:
        """The rate the stream declares (HELLO, ``--fs``), or None."""
        return self._declared

    def reset(self) -> None:
        """After a reconnect: the device may come back at another rate."""
        self.est.reset()
        self.state, self._declared, self._next_check = None, None, None
        self._held, self._held_n = [], 0
        self.reverifying = self._in_lead_off = False

    def process(self, item) -> list:
        if not isinstance(item, Chunk):
            if isinstance(item, LinkEvent) and item.discontinuity:
                self.reset()
            return [item]
        out: list = self._lead_off(item)
        declared = float(item.fs) if item.fs else None
        if declared is None:
            if self.locked is None:
                self._hold(item)
                return self._try_lock(item.t_mono)
            item.fs = self.locked
            out.append(item)
            return self._check_locked(item.t_mono) + out
        if declared != self._declared:
            self._declared, self.state = declared, None
            self._next_check = item.t_mono  # judge a new declaration at once when arrivals allow
        out += self._check_declared(item.t_mono, item.t_arrival)
        if self.state is None:
            self.state = "unverified"
            out.append(LinkEvent("rate_unverified", {"declared_hz": declared}, item.t_arrival))
        out.append(item)
        return out

    def _lead_off(self, c: Chunk) -> list:
        """Count a chunk's arrival unless it is lead-off. A sketch printing ``!`` for lead-off
        prints shorter lines than samples: over a 9600-baud link (960 characters/s) ``512\\r\\n``
        goes out at 192 lines/s but ``!\\r\\n`` at 320, so lead-off slots are not samples at the
        stream's rate. Their stretch splits the estimate, and after it the rate is measured
        again (``rate_unverified`` until then: no beat, no decision) before it is trusted."""
        if c.lead_off:
            if not self._in_lead_off:
                self._in_lead_off = True
                self.est.break_segment()
            return []
        self.est.add(len(c.samples) + int(c.gap_before), c.t_mono)
        if not self._in_lead_off:
            return []
        self._in_lead_off = False
        self.est.break_segment()
        rate = self.locked if self._declared is None else self._declared
        if rate is None or self.state not in ("ok", "mismatch"):
            return []  # not trusted yet anyway
        self.reverifying = True
        self._next_check = c.t_mono
        key = "locked_hz" if self._declared is None else "declared_hz"
        return [LinkEvent("rate_unverified", {key: rate, "reason": "re-measuring after lead-off"},
                          c.t_arrival)]

    def _reverify(self, t: float, t_arrival: float) -> list:
        """After lead-off: the newest stretch alone must show the rate again."""
        if self.est.current_span_s() < self.est.min_span_s:
            return []
        est = self.est.estimate(current_only=True)
        if est is None:
            return []
        self.reverifying = False
        self.measured = est
        rate = self.locked if self._declared is None else self._declared
        if abs(est - rate) <= self.tolerance * rate:
            self.state = "ok"
            log.debug("%s: %g Hz measured again after lead-off (%.1f Hz)", self.name, rate, est)
            key = "locked_hz" if self._declared is None else "declared_hz"
            return [LinkEvent("rate_ok", {key: rate, "measured_hz": round(est, 2)}, t_arrival)]
        if self._declared is not None:
            self.state = "mismatch"
            fix = snap_rate(est)
            log.warning("%s: after lead-off, samples arrive at %.1f Hz but the stream is declared %g Hz: "
                        "no decisions until this is fixed; pass %s %g", self.name, est, rate, self.hint, fix)
            return [LinkEvent("rate_mismatch", {"declared_hz": rate, "measured_hz": round(est, 2),
                                                "suggested_fs": fix}, t_arrival)]
        old, self.locked = self.locked, snap_rate(est)
        log.warning("%s: samples now arrive at %.1f Hz, not %g: re-locked to %g Hz", self.name, est, old,
                    self.locked)
        return [LinkEvent("rate_locked", {"fs": self.locked, "measured_hz": round(est, 2), "was": old},
                          t_arrival)]

    # -- no declared rate ----------------------------------------------------

    def _hold(self, c: Chunk) -> None:
        self._held.append(c)
        self._held_n += len(c.samples)
        # bounded memory while no rate is known: ~max_hold_s at up to 1 kHz
        while self._held_n > self.max_hold_s * 1000 and self._held:
            old = self._held.pop(0)
            self._held_n -= len(old.samples)
            self.dropped_unlocked += len(old.samples)

    def _try_lock(self, t: float) -> list:
        est = self.est.estimate()
        if est is None or est <= 0:
            return []
        self.measured = est
        if not FS_MIN_HZ <= snap_rate(est) <= FS_MAX_HZ:  # selfmis.limits: nothing is decoded at it
            if self.state != "unsupported":
                self.state = "unsupported"
                log.warning("%s: samples arrive at %.1f Hz, outside the supported %g Hz to %g Hz: "
                            "nothing is analysed", self.name, est, FS_MIN_HZ, FS_MAX_HZ)
            return []
        self.locked = snap_rate(est)
        self.state = "ok"
        log.info("%s: no sample rate declared; locked to %g Hz measured from arrival times "
                 "(%.1f samples/s; pass %s %g to start without the wait)",
                 self.name, self.locked, est, self.hint, self.locked)
        out = [LinkEvent("rate_locked", {"fs": self.locked, "measured_hz": round(est, 2)},
                         self._held[0].t_arrival if self._held else 0.0)]
        for c in self._held:
            c.fs = self.locked
        out += self._held
        self._held, self._held_n = [], 0
        self._next_check = t + self.every_s
        return out

    def _check_locked(self, t: float) -> list:
        if t < self._next_check:
            return []
        self._next_check = t + self.every_s
        if self.reverifying:
            return self._reverify(t, 0.0)
        est = self.est.estimate()
        if est is None or abs(est - self.locked) <= self.tolerance * self.locked:
            return []
        old, self.locked, self.measured = self.locked, snap_rate(est), est
        log.warning("%s: samples now arrive at %.1f Hz, not %g: re-locked to %g Hz", self.name, est, old,
                    self.locked)
        return [LinkEvent("rate_locked", {"fs": self.locked, "measured_hz": round(est, 2), "was": old})]

    # -- declared rate ---------------------------------------------------------

    def _check_declared(self, t: float, t_arrival: float) -> list:
        if t < self._next_check:
            return []
        self._next_check = t + self.every_s
        if self.reverifying:
            return self._reverify(t, t_arrival)
        est = self.est.estimate()
        if est is None:
            return []
        self.measured = est
        d = self._declared
        good = abs(est - d) <= self.tolerance * d
        if good and self.state != "ok":
            was = self.state
            self.state = "ok"
            if was == "mismatch":
                log.warning("%s: samples arrive at %.1f Hz again, as declared (%g Hz): decisions resume",
                            self.name, est, d)
            elif abs(est - d) > SNAP_TOLERANCE * d:
                # within the tolerance, but a sketch's delay() loop is not its --fs: say what it costs
                log.warning("%s: declared %g Hz is accepted but samples arrive at %.1f Hz: heart rates read "
                            "%.1f%% %s; pass %s %g (a sketch: no %s, the rate is then measured)", self.name, d,
                            est, 100 * abs(d / est - 1), "high" if d > est else "low", self.hint,
                            snap_rate(est), self.hint)
            else:
                log.info("%s: declared %g Hz confirmed by arrival times (%.1f Hz)", self.name, d, est)
            return [LinkEvent("rate_ok", {"declared_hz": d, "measured_hz": round(est, 2)}, t_arrival)]
        if not good and self.state != "mismatch":
            self.state = "mismatch"
            fix = snap_rate(est)
            log.warning("%s: samples arrive at %.1f Hz but the stream is declared %g Hz: no decisions "
                        "until this is fixed; pass %s %g (or correct the sketch's rate / header)",
                        self.name, est, d, self.hint, fix)
            return [LinkEvent("rate_mismatch", {"declared_hz": d, "measured_hz": round(est, 2),
                                                "suggested_fs": fix}, t_arrival)]
        return []
