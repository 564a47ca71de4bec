"""Decode WFDB signal-file bytes into integer samples, one format each.

Every format packs ``pack`` samples into ``group_bytes`` bytes; callers hand
over whole groups (a frame boundary can fall inside a 212/310/311 group, so the
frame reader reads in blocks of whole groups). Format 8 stores first
differences and is integrated by the frame reader (it needs the running value
per signal). Bit layouts follow the WFDB library's signal.c and wfdb-python's
``_blocks_to_samples``.

Reference: PhysioNet WFDB signal formats, https://physionet.org/physiotools/wag/signal-5.htm
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["FormatSpec", "SPECS"]


def _i8(b):
    return b.view(np.int8).astype(np.int32)


def _le16(b):
    return b.view("<i2").astype(np.int32)


def _be16(b):
    return b.view(">i2").astype(np.int32)


def _off8(b):  # format 80: offset binary
    return b.astype(np.int32) - 128


def _off16(b):  # format 160: offset binary
    return b.view("<u2").astype(np.int32) - 32768


def _le24(b):
    g = b.reshape(-1, 3).astype(np.int32)
    v = g[:, 0] | (g[:, 1] << 8) | (g[:, 2] << 16)
    return np.where(v >= 1 << 23, v - (1 << 24), v)


def _le32(b):
    return b.view("<i4").astype(np.int64)


def _f212(b):
    """Two 12-bit samples in three bytes: low byte, then a nibble each in the middle byte."""
    g = b.reshape(-1, 3).astype(np.int32)
    out = np.empty(2 * len(g), dtype=np.int32)
    out[0::2] = g[:, 0] | ((g[:, 1] & 0x0F) << 8)
    out[1::2] = g[:, 2] | ((g[:, 1] & 0xF0) << 4)
    out[out > 2047] -= 4096
    return out


def _f310(b):
    """Three 10-bit samples in two little-endian 16-bit words (bit 0 of each word unused)."""
    g = b.reshape(-1, 4).astype(np.int32)
    out = np.empty(3 * len(g), dtype=np.int32)
    out[0::3] = (g[:, 0] >> 1) + 128 * (g[:, 1] & 0x07)
    out[1::3] = (g[:, 2] >> 1) + 128 * (g[:, 3] & 0x07)
    out[2::3] = ((g[:, 1] >> 3) & 0x1F) + 32 * ((g[:, 3] >> 3) & 0x1F)
    out[out > 511] -= 1024
    return out


def _f311(b):
    """Three 10-bit samples in one little-endian 32-bit word (top 2 bits unused)."""
    g = b.reshape(-1, 4).astype(np.int32)
    out = np.empty(3 * len(g), dtype=np.int32)
    out[0::3] = g[:, 0] + 256 * (g[:, 1] & 0x03)
    out[1::3] = (g[:, 1] >> 2) + 64 * (g[:, 2] & 0x0F)
    out[2::3] = (g[:, 2] >> 4) + 16 * (g[:, 3] & 0x7F)
    out[out > 511] -= 1024
    return out


@dataclass(frozen=True)
class FormatSpec:
    pack: int               # samples per byte group
    group_bytes: int
    decode: Callable        # uint8 array of whole groups -> integer samples
    invalid: int | None     # the digital value WFDB stores for "no sample"
    difference: bool = False


SPECS = {
    "8": FormatSpec(1, 1, _i8, None, difference=True),
    "16": FormatSpec(1, 2, _le16, -(1 << 15)),
    "24": FormatSpec(1, 3, _le24, -(1 << 23)),
    "32": FormatSpec(1, 4, _le32, -(1 << 31)),
    "61": FormatSpec(1, 2, _be16, -(1 << 15)),
    "80": FormatSpec(1, 1, _off8, -(1 << 7)),
    "160": FormatSpec(1, 2, _off16, -(1 << 15)),
    "212": FormatSpec(2, 3, _f212, -(1 << 11)),
    "310": FormatSpec(3, 4, _f310, -(1 << 9)),
    "311": FormatSpec(3, 4, _f311, -(1 << 9)),
}
