"""The two things a stream carries: :class:`Chunk` (samples) and :class:`LinkEvent` (link news).

Sources produce them (:mod:`.sources`), the pipeline and the recorder consume them; keeping the
types here lets the recorder and the replay source share them without a cycle.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

__all__ = ["Chunk", "LinkEvent", "Item", "counts_to_mv"]


def counts_to_mv(counts, uv_per_lsb: float) -> np.ndarray:
    """ADC counts -> float32 mV: the one decoding rule every source and the recorder share.

    Computed in float64 and rounded once to float32, so the same counts and scale always
    give the same bits (the recorder relies on it to store counts instead of floats).
    """
    return (np.asarray(counts, dtype=np.float64) * (float(uv_per_lsb) / 1000.0)).astype(np.float32)


@dataclass
class Chunk:
    """Consecutive samples of one lead.

    ``samples`` are float32 mV at ``fs`` Hz. ``t_arrival`` is the host wall
    clock (``time.time()``) when the chunk arrived, ``t_mono`` the
    ``time.perf_counter()`` at the same moment (for latencies). ``seq`` is the
    transport's sequence number (frame seq, notification count, line count).
    ``gap_before`` counts samples known to be lost just before this chunk
    (a sequence gap); the pipeline fills them so that time stays continuous.
    ``rails`` is the (low, high) mV the ADC can represent, when known, so the
    quality gate can recognise saturation.

    ``counts`` (integers) and ``uv_per_lsb`` are what the wire carried, when the
    source decodes ADC counts (framed protocol, ASCII sketches, Polar PMD);
    ``samples`` is then ``counts_to_mv(counts, uv_per_lsb)`` (see :meth:`from_counts`).
    The recorder keeps them so a recording holds the device's own numbers.
    """

    samples: np.ndarray
    fs: float
    t_arrival: float = 0.0
    t_mono: float = 0.0
    seq: int = -1
    lead_off: bool = False
    gap_before: int = 0
    rails: Optional[tuple] = None
    counts: Optional[np.ndarray] = None
    uv_per_lsb: Optional[float] = None

    @classmethod
    def from_counts(cls, counts, uv_per_lsb: float, fs: float, t_arrival: float = 0.0,
                    t_mono: float = 0.0, **kw) -> "Chunk":
        """A chunk decoded from integer ``counts`` at ``uv_per_lsb`` µV per count (values that
        are not whole numbers -- a sketch printing mV -- are decoded alike but not kept as counts)."""
        counts = np.asarray(counts).reshape(-1)
        if counts.dtype.kind not in "iu":
            whole = np.isfinite(counts).all() and np.array_equal(np.trunc(counts), counts)
            if not whole or (len(counts) and np.abs(counts).max() >= 2 ** 62):
                return cls(counts_to_mv(counts, uv_per_lsb), fs, t_arrival, t_mono, **kw)
            counts = counts.astype(np.int64)
        return cls(counts_to_mv(counts, uv_per_lsb), fs, t_arrival, t_mono, counts=counts,
                   uv_per_lsb=float(uv_per_lsb), **kw)

    def __post_init__(self):
        self.samples = np.asarray(self.samples, dtype=np.float32).reshape(-1)
        if self.counts is not None and len(self.counts) != len(self.samples):
            raise ValueError(f"{len(self.counts)} counts for {len(self.samples)} samples")
        if not self.t_arrival:
            self.t_arrival = time.time()
        if not self.t_mono:
            self.t_mono = time.perf_counter()


@dataclass
class LinkEvent:
    """Something about the link: ``kind`` plus free-form details (JSON-serialisable).

    Kinds used by the sources: ``connected``, ``hello``, ``gap``, ``crc_error``,
    ``decode_error``, ``rate_mismatch``, ``disconnected``, ``reconnecting``,
    ``reconnected``, ``lost``, ``end``. ``discontinuity`` is True when the
    sample clock restarted (a reconnect): the pipeline resets its state.
    """

    kind: str
    detail: dict = field(default_factory=dict)
    t_arrival: float = 0.0
    discontinuity: bool = False

    def __post_init__(self):
        if not self.t_arrival:
            self.t_arrival = time.time()


Item = Union[Chunk, LinkEvent]
