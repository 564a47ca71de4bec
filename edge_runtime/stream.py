"""The two things a stream carries: :class:`Chunk` (samples) and :class:`LinkEvent` (link news).

Sources produce them (:mod:`.sources`), the pipeline and the recorder consume them; keeping the
types here lets the recorder and the replay source share them without a cycle.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

__all__ = ["Chunk", "LinkEvent", "Item"]


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
    """

    samples: np.ndarray
    fs: float
    t_arrival: float = 0.0
    t_mono: float = 0.0
    seq: int = -1
    lead_off: bool = False
    gap_before: int = 0
    rails: Optional[tuple] = None

    def __post_init__(self):
        self.samples = np.asarray(self.samples, dtype=np.float32).reshape(-1)
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
