"""Signal-quality gate: decides whether a stretch of signal may be trusted with a decision.

Assessed on 1-second blocks of the 100 Hz stream (plus per-sample flags the
sources provide). A block is bad, with a reason, when:

* ``lead_off``   -- the front end flagged an electrode off (AD8232 LO+/LO-,
  the protocol's FLAG_LEAD_OFF, an ASCII ``!``);
* ``gap``        -- more than :data:`MAX_FILLED_GAP_S` of the decision window
  was lost on the link and filled in (judged per window by the pipeline, not per
  block: a short filled gap does not change the model's output, see below);
* ``saturation`` -- more than 2% of the samples sit at the ADC rails;
* ``flat``       -- peak-to-peak below ``flat_mv`` (a disconnected or shorted
  input; an ECG's QRS is at least ~0.1 mV even in a low-voltage Lead I);
* ``noise``      -- the high-frequency noise (robust SD from the second
  difference, ``1.4826 * MAD / sqrt(6)`` for white noise, the larger of the
  two half blocks so that noise starting mid-block is seen) exceeds
  ``noise_ratio`` of the block's amplitude, or the amplitude exceeds
  ``max_mv`` (motion artefact: a Lead I ECG stays within a few mV).
  ``noise_ratio=0.075`` is about the 99.5th percentile of this ratio over 4000
  blocks of PTB-XL records without noise annotations (median 0.012), so about
  one clean block in 200 is flagged.

A decision is suppressed when any block its window overlaps is bad; the
reasons go into the ``quality`` events and the suppressed decision.

Why a filled gap is tolerated up to :data:`MAX_FILLED_GAP_S` per 5-s window:
``benchmarks/results/gap_policy/`` measures, on PTB-XL folds 1 and 10 (held out
from training), how the streamed MI AUROC of the shipped model changes when
0.02-0.5 s gaps are filled (bridged linearly, as the pipeline does) inside every window; the tolerance
is the largest filled time per window whose AUROC change stays within the
paired-bootstrap noise (``python -m selfmis.benchmarks.gap_policy``): 454 records, clean
AUROC 0.770; with 0.2 s filled per window the change is +0.004 [-0.004, +0.011] and 2.0% of
record-level MI decisions flip (0.3 s: 2.6%, 0.5 s: 4.2%), so 0.2 s is the tolerance. With it, a
stream losing 2% of its 0.1-s frames keeps ~91% of its beats scored (0.1 s would keep ~66%).

Reference for the criteria: G. D. Clifford et al., "Signal quality indices and
data fusion for determining clinical acceptability of electrocardiograms",
Physiol. Meas. 33(9), 2012 (flat-line, saturation and noise SQIs).
"""
from __future__ import annotations

import numpy as np

__all__ = ["QualityGate", "assess_block", "REASONS", "MAX_FILLED_GAP_S"]

REASONS = ("lead_off", "gap", "saturation", "flat", "noise")

#: Filled (lost-on-the-link) signal tolerated inside one decision window, in seconds;
#: from the gap-policy study (module docstring).
MAX_FILLED_GAP_S = 0.2


def assess_block(x: np.ndarray, lead_off=None, saturated=None, flat_mv: float = 0.05,
                 noise_ratio: float = 0.075, max_mv: float = 8.0) -> list:
    """Reasons (possibly none) why this block of mV samples is not usable.

    Filled link gaps are not a block reason: the pipeline counts them per window.
    """
    reasons = []
    if lead_off is not None and np.any(lead_off):
        reasons.append("lead_off")
    if saturated is not None and len(saturated) and np.mean(saturated) > 0.02:
        reasons.append("saturation")
    if reasons:
        return reasons  # flags from the device are definitive; skip the statistics
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < 4:
        return reasons
    # one sort instead of np.percentile/np.median (5x cheaper on 100 samples)
    xs = np.sort(x)
    k = int(0.005 * (n - 1) + 0.5)
    amp = float(xs[n - 1 - k] - xs[k])
    if amp < flat_mv:
        return ["flat"]
    if amp > max_mv:
        return ["noise"]
    d2 = x[2:] - 2 * x[1:-1] + x[:-2]
    # per half block: a median ignores noise covering less than half of what it sees
    noise_sd = _half_mad_max(d2) * 1.4826 / np.sqrt(6.0)
    if noise_sd > noise_ratio * amp:
        reasons.append("noise")
    return reasons


def _median_sorted(v: np.ndarray) -> float:
    m = len(v)
    return 0.5 * float(v[(m - 1) // 2] + v[m // 2])


def _half_mad_max(d2: np.ndarray) -> float:
    """The larger MAD of ``d2``'s two halves. Both halves at once when they are the same length (a
    whole block: 98 second differences), with the same operations per row as :func:`_mad`."""
    m = len(d2) // 2
    if m == 0 or len(d2) != 2 * m:
        return max(_mad(h) for h in (d2[:m], d2[m:]))
    v = np.sort(d2.reshape(2, m), axis=1)
    med = 0.5 * (v[:, (m - 1) // 2] + v[:, m // 2])
    dev = np.sort(np.abs(v - med[:, None]), axis=1)
    mad = 0.5 * (dev[:, (m - 1) // 2] + dev[:, m // 2])
    return float(max(mad[0], mad[1]))


def _mad(v: np.ndarray) -> float:
    if not len(v):
        return 0.0
    med = _median_sorted(np.sort(v))
    return _median_sorted(np.sort(np.abs(v - med)))


class QualityGate:
    """Keeps the last ``keep_s`` of 1-s block verdicts; ``push`` returns state changes."""

    def __init__(self, fs: float = 100.0, block_s: float = 1.0, keep_s: float = 12.0, **kwargs):
        self.fs = float(fs)
        self.block = max(4, int(round(block_s * fs)))
        self.kwargs = kwargs
        self.keep_blocks = int(np.ceil(keep_s / block_s)) + 1
        self.reset()

    def reset(self) -> None:
        self._x, self._flags = [], []
        self._pending = 0
        self._n_done = 0              # samples assessed (whole blocks)
        self._verdicts = {}           # block index -> reasons
        self.state = None             # reasons of the last block (list), None before the first
        self.counts = {r: 0 for r in REASONS}

    def push(self, x: np.ndarray, flags: np.ndarray) -> list:
        """``flags``: uint8 per sample (bit0 lead-off, bit1 gap, bit2 saturated).

        Returns ``[(block_start_index, reasons)]`` when the verdict changes.
        """
        self._x.append(np.asarray(x, dtype=np.float32))
        self._flags.append(np.asarray(flags, dtype=np.uint8))
        self._pending += len(x)
        changes = []
        if self._pending < self.block:
            return changes
        xs, fs_ = np.concatenate(self._x), np.concatenate(self._flags)
        n_blocks = len(xs) // self.block
        for b in range(n_blocks):
            sl = slice(b * self.block, (b + 1) * self.block)
            reasons = self._assess(xs[sl], fs_[sl])
            idx = self._n_done // self.block
            self._verdicts[idx] = reasons
            for r in reasons:
                self.counts[r] += 1
            if (fs_[sl] & 2).any():  # blocks holding filled samples, for the summary
                self.counts["gap"] += 1
            self._verdicts.pop(idx - self.keep_blocks, None)
            if self.state is None or reasons != self.state:
                changes.append((self._n_done, reasons))
            self.state = reasons
            self._n_done += self.block
        rest = n_blocks * self.block
        self._x, self._flags = [xs[rest:]], [fs_[rest:]]
        self._pending = len(xs) - rest
        return changes

    @property
    def n_done(self) -> int:
        """Samples assessed so far (whole blocks)."""
        return self._n_done

    def assess(self, x, flags) -> list:
        """Verdict on any stretch (a tail shorter than half a block is not judged)."""
        if len(x) < self.block // 2:
            return []
        if not flags.any():  # the usual stretch: no flag, nothing to count
            return assess_block(x, None, None, **self.kwargs)
        # booleans: a mean of ``flags & 4`` would be 4x the saturated fraction
        return assess_block(x, (flags & 1) != 0, (flags & 4) != 0, **self.kwargs)

    _assess = assess

    def window_reasons(self, start: int, stop: int, tail=None) -> list:
        """Reasons over the assessed blocks overlapping samples [start, stop), plus ``tail``:
        the verdict on the part after the last assessed block (see :meth:`assess`; judge
        a whole block's worth ending at ``stop`` -- statistics on a shorter piece would
        call the stretch between two QRS complexes flat)."""
        reasons = []
        first, last = start // self.block, (min(stop, self._n_done) - 1) // self.block
        for b in range(first, last + 1):
            for r in self._verdicts.get(b, ()):
                if r not in reasons:
                    reasons.append(r)
        for r in tail or ():
            if r not in reasons:
                reasons.append(r)
        return reasons
