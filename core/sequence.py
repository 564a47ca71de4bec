"""Sequence numbers of DATA frames: lost, duplicate and stale frames on a link.

Kept apart from the codec (:mod:`selfmis.protocol`) because it is link state, not
byte format: a decoder is stateless about gaps, a source owns one tracker per link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

__all__ = ["SequenceTracker", "SeqUpdate"]


@dataclass
class SeqUpdate:
    """What one sequence number tells about the link."""

    seq: int
    missing: int = 0        # frames lost just before this one
    duplicate: bool = False  # same seq as the previous frame
    stale: bool = False      # older than the previous frame (late / replayed)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicate or self.stale)


class SequenceTracker:
    """Gap and duplicate detection for the uint16 DATA sequence number.

    The forward distance ``d = (seq - last) mod 65536`` decides: ``d == 1``
    is in order, ``d == 0`` a duplicate, ``1 < d < 32768`` means ``d - 1``
    frames were lost, ``d >= 32768`` a frame from the past (reordered or
    replayed; it is reported as stale and does not move the tracker).
    This is serial-number arithmetic as in RFC 1982.  A gap of 32768 frames
    or more (minutes at any practical frame rate) cannot be told from a
    stale frame; call :meth:`reset` after a reconnect.
    """

    MOD = 1 << 16

    def __init__(self):
        self.reset()
        self.received = 0
        self.missing = 0
        self.duplicates = 0
        self.stale = 0

    def reset(self) -> None:
        """Forget the last seq (after a reconnect or a HELLO)."""
        self.last: Optional[int] = None

    def update(self, seq: int) -> SeqUpdate:
        seq &= 0xFFFF
        self.received += 1
        if self.last is None:
            self.last = seq
            return SeqUpdate(seq)
        d = (seq - self.last) % self.MOD
        if d == 0:
            self.duplicates += 1
            return SeqUpdate(seq, duplicate=True)
        if d >= self.MOD // 2:
            self.stale += 1
            return SeqUpdate(seq, stale=True)
        self.last = seq
        self.missing += d - 1
        return SeqUpdate(seq, missing=d - 1)
