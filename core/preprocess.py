"""The preprocessing a model sees: the one contract between training and serving.

Training (``selfmis.train``) imports these functions; the edge runtime calls the
same ones on the stream, so the two cannot drift. Only numpy is used: importing
scipy costs ~1.4 s and ~77 MB on a gateway (see the project notes).

Steps, in order:

1. :class:`StreamResampler` brings any source rate (130, 250, 360, 500 Hz...)
   to the model rate with a causal polyphase FIR (Kaiser-windowed sinc). It is
   chunk-invariant: feeding a signal in one piece or sample by sample gives the
   same output. :func:`resample` is the offline form (same filter, delay removed).
2. :func:`bandpass` removes baseline wander and high-frequency noise on a finite
   window with a zero-phase FFT filter (raised-cosine band edges, reflect
   padding), so a window is filtered the same way whether it was cut from a
   stored record or from the live stream.
3. :func:`standardise` makes every lead of a window zero-mean, unit-variance:
   the model never depends on absolute amplitude (mV vs ADC counts, gain).

:func:`preprocess_window` chains 2 and 3; :class:`PreprocessSpec` is what the
model card stores about it.

References: Crochiere & Rabiner, *Multirate Digital Signal Processing* (1983)
for polyphase resampling; Kaiser (1974) for the window design.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from .limits import LimitError

__all__ = [
    "MODEL_FS", "PreprocessSpec", "StreamResampler", "resample", "bandpass",
    "standardise", "preprocess_window", "rational_ratio", "band_gain",
]

#: Rate every model of this project sees (PTB-XL's records100 rate).
MODEL_FS = 100.0


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects: rate, band, window. Stored in the model card."""

    fs: float = MODEL_FS
    low_hz: float = 0.5
    high_hz: float = 40.0
    window_s: float = 5.0
    #: Where the R peak of the triggering beat sits in a beat-aligned window,
    #: in seconds from the window start (the runtime waits for the rest).
    beat_offset_s: float = 4.5
    standardise: str = "zscore"
    version: int = 1

    @property
    def window_samples(self) -> int:
        return int(round(self.window_s * self.fs))

    @property
    def beat_offset_samples(self) -> int:
        return int(round(self.beat_offset_s * self.fs))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


# --------------------------------------------------------------------------- resampling

#: The largest ``max(up, down)`` a resampler is built for: its filter has ``20 * max(up, down) + 1``
#: taps (three float64 copies: ~10 MB at this bound). Every ratio between two supported rates
#: (:mod:`selfmis.limits`: 50 Hz .. 10 kHz) fits; anything else is refused, not allocated.
MAX_RATIO_TERM = 20_000


def rational_ratio(fs_in: float, fs_out: float, max_denominator: int = 1000) -> tuple[int, int]:
    """(up, down) with fs_out/fs_in ~= up/down, e.g. 130 -> 100 Hz is (10, 13).

    Raises :class:`~selfmis.limits.LimitError` when a rate is not a finite positive
    number or the ratio needs a filter longer than :data:`MAX_RATIO_TERM` allows.
    """
    try:
        fs_in, fs_out = float(fs_in), float(fs_out)
        ok = 0.0 < fs_in < float("inf") and 0.0 < fs_out < float("inf")
        fr = Fraction(fs_out / fs_in).limit_denominator(max_denominator) if ok else None
    except (OverflowError, ValueError, ZeroDivisionError, TypeError):
        fr = None
    if fr is None or fr.numerator == 0 or max(fr.numerator, fr.denominator) > MAX_RATIO_TERM:
        raise LimitError(f"resampler: cannot resample {fs_in!r} Hz to {fs_out!r} Hz in bounded memory "
                         f"(supported: ratios up to {MAX_RATIO_TERM}:1 between finite positive rates)")
    return fr.numerator, fr.denominator


def _lowpass_taps(up: int, down: int, half_len: int = 10, beta: float = 8.0) -> np.ndarray:
    """Kaiser-windowed sinc at the upsampled rate; cut-off at 80% of the lower Nyquist.

    ``half_len`` zero crossings each side: the stop band starts near the lower
    Nyquist (50 Hz for a 100 Hz model) and the pass band reaches the 40 Hz
    edge of :func:`bandpass`, so resampling adds no band limit of its own.
    """
    n_taps = 2 * half_len * max(up, down) + 1
    cutoff = 0.8 / max(up, down)  # fraction of the upsampled Nyquist
    t = np.arange(n_taps) - (n_taps - 1) / 2
    h = cutoff * np.sinc(cutoff * t) * np.kaiser(n_taps, beta)
    return h * (up / h.sum())  # unity DC gain after zero-stuffing


_GATHER_BLOCK = 1 << 20  # float64 taps gathered per block in StreamResampler.process


class StreamResampler:
    """Causal, stateful rational resampler (polyphase FIR), chunk-invariant.

    ``process(chunk)`` returns the output samples that the input so far
    determines. The output lags the input by :attr:`delay_s` seconds (the FIR's
    group delay); timestamps of detected beats must subtract it.
    """

    def __init__(self, fs_in: float, fs_out: float = MODEL_FS, half_len: int = 10):
        self.fs_in, self.fs_out = float(fs_in), float(fs_out)
        self.up, self.down = rational_ratio(fs_in, fs_out)
        self.identity = self.up == self.down
        h = _lowpass_taps(self.up, self.down, half_len)
        self.n_taps = len(h)
        self.k = -(-len(h) // self.up)  # taps per phase
        h = np.concatenate([h, np.zeros(self.k * self.up - len(h))])
        # phases[p, i] multiplies x[n0 - i] for output phase p
        self.phases = h.reshape(self.k, self.up).T.copy()
        self._rev = self.phases[:, ::-1].copy()  # taps in input order (a window of buf, oldest first)
        self._taps_at = np.arange(self.k)
        self.delay_s = (self.n_taps - 1) / 2 / (self.fs_in * self.up) if not self.identity else 0.0
        self.reset()

    def reset(self) -> None:
        # the last k inputs: an output not produced yet may need the input one before the
        # chunk's last (with a zero tap) as its window's first, so k, not k - 1
        self._hist = np.zeros(self.k, dtype=np.float64)
        self._n_in = 0      # inputs consumed so far
        self._m_out = 0     # outputs produced so far

    def process(self, chunk) -> np.ndarray:
        x = np.asarray(chunk, dtype=np.float64).ravel()
        if self.identity:
            self._n_in += len(x)
            self._m_out += len(x)
            return x.astype(np.float32)
        buf = np.concatenate([self._hist, x])
        first_in = self._n_in - self.k  # global index of buf[0]
        self._n_in += len(x)
        # outputs m with n0 = (m*down)//up <= last available input index
        last = self._n_in - 1
        m_stop = (last * self.up) // self.down + 1 if last >= 0 else 0
        m0, m1 = self._m_out, max(self._m_out, m_stop)
        self._m_out = m1
        self._hist = buf[len(buf) - self.k:]
        if m1 == m0:
            return np.zeros(0, dtype=np.float32)
        if self.up == 1:  # plain decimation (500 -> 100 Hz): one phase, one C-level correlation
            a = m0 * self.down - first_in - (self.k - 1)  # output m0's window start (n0 = m0 * down; see below)
            seg = buf[a: a + (m1 - m0 - 1) * self.down + self.k]
            return np.correlate(seg, self._rev[0], "valid")[::self.down].astype(np.float32)
        m = np.arange(m0, m1)
        k_up = m * self.down
        n0, phase = k_up // self.up, k_up % self.up
        # output m needs the window buf[c - k + 1 .. c] (c = n0 - first_in). An output not
        # produced yet has n0 >= the last input before this chunk, so c >= k - 1 always (the
        # history starts as zeros: before the first input the stream is zero)
        start = (n0 - first_in) - (self.k - 1)
        out = np.empty(len(m), dtype=np.float32)
        step = max(1, _GATHER_BLOCK // self.k)  # the gathered windows stay under ~8 MB per block
        for a in range(0, len(m), step):
            taps = buf[start[a:a + step, None] + self._taps_at]
            out[a:a + step] = np.einsum("mk,mk->m", taps, self._rev[phase[a:a + step]])
        return out


def resample(x, fs_in: float, fs_out: float = MODEL_FS, axis: int = -1) -> np.ndarray:
    """Offline resampling with the streaming filter, its delay removed.

    Same filter as :class:`StreamResampler`, so a model trained on offline
    resampled records sees what the runtime produces (up to a constant
    sub-sample shift, the part of the delay that is not a whole output sample).
    """
    x = np.asarray(x, dtype=np.float32)
    x = np.moveaxis(x, axis, -1)
    rs = StreamResampler(fs_in, fs_out)
    if rs.identity:
        return np.moveaxis(x.copy(), -1, axis)
    n_out = int(np.floor(x.shape[-1] * rs.up / rs.down))
    delay = int(round(rs.delay_s * fs_out))
    flat = x.reshape(-1, x.shape[-1])
    out = np.empty((flat.shape[0], n_out), dtype=np.float32)
    pad = int(np.ceil((delay + 2) * rs.down / rs.up))
    for i, row in enumerate(flat):
        rs.reset()
        # edge padding flushes the filter without pulling the end towards zero
        y = rs.process(np.concatenate([row, np.full(pad, row[-1] if len(row) else 0.0)]))
        out[i] = y[delay: delay + n_out]
    return np.moveaxis(out.reshape(x.shape[:-1] + (n_out,)), -1, axis)


# --------------------------------------------------------------------------- filtering

@lru_cache(maxsize=32)  # one entry per window length in use: the runtime calls this per beat
def band_gain(n: int, fs: float, low_hz: float, high_hz: float) -> np.ndarray:
    f = np.fft.rfftfreq(n, d=1.0 / fs)
    g = np.ones_like(f)
    if low_hz > 0:  # raised-cosine from 0 to 2*low_hz: half gain at low_hz
        lo = np.clip(f / (2 * low_hz), 0, 1)
        g *= 0.5 - 0.5 * np.cos(np.pi * lo)
    if high_hz < fs / 2:  # raised-cosine over +-5 Hz around high_hz
        w = 5.0
        hi = np.clip((f - (high_hz - w)) / (2 * w), 0, 1)
        g *= 0.5 + 0.5 * np.cos(np.pi * hi)
    g.setflags(write=False)  # shared by every caller through the cache
    return g


@lru_cache(maxsize=32)
def _detrend_ramp(n: int) -> tuple:
    t = np.linspace(-1.0, 1.0, n)
    t.setflags(write=False)
    return t, float((t * t).sum())


def bandpass(x, fs: float, low_hz: float = 0.5, high_hz: float = 40.0, axis: int = -1) -> np.ndarray:
    """Zero-phase band-pass of a finite window (any leading shape).

    A straight line through the window is removed first and the window is
    reflect-padded by up to one second, so the FFT's circular wrap does not
    leak the ends into each other.
    """
    x = np.asarray(x, dtype=np.float64)
    last = axis in (-1, x.ndim - 1)  # the common case skips two moveaxis calls (per-beat hot path)
    if not last:
        x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    if n < 4:
        y = x.astype(np.float32)
        return y if last else np.moveaxis(y, -1, axis)
    t, tt = _detrend_ramp(n)
    slope = (x @ t)[..., None] / tt
    x = x - x.sum(-1, keepdims=True) / n - slope * t
    pad = min(n - 1, int(fs))
    xp = np.concatenate([x[..., pad:0:-1], x, x[..., -2:-pad - 2:-1]], axis=-1)
    m = xp.shape[-1]
    spec = np.fft.rfft(xp, axis=-1) * band_gain(m, float(fs), float(low_hz), float(high_hz))
    y = np.fft.irfft(spec, n=m, axis=-1)[..., pad:pad + n].astype(np.float32)
    return y if last else np.moveaxis(y, -1, axis)


def standardise(x, axis: int = -1, eps: float = 1e-6) -> np.ndarray:
    """Zero mean, unit variance along ``axis`` (per lead). A flat lead stays zero."""
    x = np.asarray(x, dtype=np.float32)
    n = x.shape[axis]
    d = x - x.sum(axis=axis, keepdims=True) / n
    sd = np.sqrt((d * d).sum(axis=axis, keepdims=True) / n)  # np.std without its dispatch overhead
    return (d / np.maximum(sd, eps)).astype(np.float32, copy=False)


def preprocess_window(x, spec: PreprocessSpec = PreprocessSpec(), axis: int = -1) -> np.ndarray:
    """Band-pass then standardise a window (or a whole record) already at ``spec.fs``.

    ``x`` may be (n,), (leads, n) or (batch, leads, n) with time on ``axis``.
    NaNs (WFDB's invalid samples) are replaced by the window's median first.
    """
    x = np.asarray(x, dtype=np.float32)
    if np.isnan(x).any():
        x = np.where(np.isnan(x), np.nanmedian(x, axis=axis, keepdims=True), x)
        x = np.nan_to_num(x)
    y = bandpass(x, spec.fs, spec.low_hz, spec.high_hz, axis=axis)
    return standardise(y, axis=axis)
