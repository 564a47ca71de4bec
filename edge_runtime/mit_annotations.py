"""Write a WFDB (MIT format) annotation file with numpy only.

The format (PhysioNet, ``man 5 annot``): 16-bit little-endian words, the top 6
bits an annotation code, the low 10 bits the sample interval since the previous
annotation. Intervals over 1023 go in a ``SKIP`` (code 59) word followed by a
32-bit interval (high 16-bit word first); ``SUB`` (61) sets the subtype (signed
byte), ``AUX`` (63) carries a note of ``len`` bytes padded to even; a zero word
ends the file. Reference: https://www.physionet.org/physiotools/wag/annot-5.htm

Why not ``wfdb.wrann``: the gateway must not need wfdb (it pulls pandas and
scipy, which the runtime never imports, onto a Raspberry Pi) for a 40-line
format, and reading the file back with wfdb in the tests is then an independent check.
"""
from __future__ import annotations

import struct

__all__ = ["write_annotations", "NORMAL", "NOISE", "NOTE"]

NORMAL, NOISE, NOTE = 1, 14, 22  # 'N', '~', '"' in the WFDB code table
_SKIP, _SUB, _AUX = 59, 61, 63


def write_annotations(path, annotations) -> int:
    """``annotations``: iterable of ``(sample, code, subtype, aux)`` (subtype 0 / aux "" for
    none) in sample order. Returns how many were written."""
    out = bytearray()
    prev, n = 0, 0
    for sample, code, subtype, aux in annotations:
        diff = int(sample) - prev
        if diff < 0:
            raise ValueError(f"annotation at sample {sample} after one at {prev}: not in order")
        if diff > 1023:
            out += struct.pack("<HHH", _SKIP << 10, (diff >> 16) & 0xFFFF, diff & 0xFFFF)
            diff = 0
        out += struct.pack("<H", (int(code) << 10) | diff)
        if subtype:
            out += struct.pack("<H", (_SUB << 10) | (int(subtype) & 0xFF))
        if aux:
            text = aux.encode("ascii", "replace")[:255]
            out += struct.pack("<H", (_AUX << 10) | len(text)) + text + b"\0" * (len(text) & 1)
        prev = int(sample)
        n += 1
    out += b"\0\0"
    with open(path, "wb") as fh:
        fh.write(out)
    return n
