"""SelfMIS wire protocol: the byte format between an ECG wearable and the gateway.

One codec for every transport (USB serial, TCP, BLE notifications): the
device sends a byte stream of *frames*; the host runs a :class:`StreamDecoder`
over whatever chunks the transport delivers.  The full byte-level
specification, with tables, lives in ``PROTOCOL.md`` next to this file; the
short version::

    offset  size  field
    0       2     SYNC = A5 5A
    2       1     version         (layout version of *this* frame, 1)
    3       1     frame type      (0x01 HELLO, 0x02 DATA, others: skipped)
    4       2     payload length  N (uint16 LE)
    6       N     payload
    6+N     2     CRC-16/CCITT-FALSE of bytes 2 .. 6+N-1 (uint16 LE)

All multi-byte integers are little-endian, floats are IEEE-754 float32 LE
(what every MCU, ESP32 and AVR alike, has natively).

The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, not reflected,
xorout 0; check value of ``b"123456789"`` is 0x29B1), the same CRC used by
many sensor and modem framings, cheap to compute byte-wise on an 8-bit MCU.
It covers version, type, length and payload, *not* the SYNC bytes (they
carry no information).

This module is the stream decoder (:class:`StreamDecoder`); the frame layout, messages, CRC and
payload codec live in :mod:`selfmis.wire_format` and are re-exported here, so
``from selfmis import protocol`` is all a transport needs. Beside them: :mod:`selfmis.ble_profile` (the GATT service that carries
this byte stream over BLE, and the MTU arithmetic), :mod:`selfmis.sequence`
(gaps and duplicates of the DATA sequence number) and :mod:`selfmis.ascii_sketch`
(the line-oriented text hobby sketches print instead of frames).

References
----------
* R. N. Williams, "A painless guide to CRC error detection algorithms", 1993;
  CRC catalogue entry CRC-16/IBM-3740 a.k.a. CCITT-FALSE
  (https://reveng.sourceforge.io/crc-catalogue/16.htm).
"""
from __future__ import annotations

import binascii
from typing import List, Optional

from . import wire_format
from .limits import LimitError
from .wire_format import (  # noqa: F401  (re-exported: selfmis.protocol is the codec's one name)
    CRC_LEN, DATA_FIXED_LEN, DECISION_FIXED_LEN, DECISION_STATES, FLAG_LEAD_OFF, FMT_INT16_LE, FMT_INT24_LE,
    FMT_INT32_LE, FRAME_DATA, FRAME_DECISION, FRAME_HELLO, FRAME_OVERHEAD, HEADER_LEN, HELLO_FIXED_LEN,
    MAX_PAYLOAD_LEN, MIN_PAYLOAD, PROTOCOL_VERSION, SAMPLE_FORMATS, SUPPORTED_VERSIONS, SYNC, DataFrame,
    DecisionFrame, DecodeError, Hello, Message, UnknownFrame, crc16_ccitt_false, decode_payload, encode_decision,
    encode_frame, encode_hello, encode_raw_frame, sample_range, sample_width,
)

__all__ = [*wire_format.__all__, "StreamDecoder"]  # the codec's names, plus the stream decoder


class StreamDecoder:
    """Incremental decoder for a byte stream of frames.

    Feed it whatever the transport delivers (any chunking, down to single
    bytes); it returns the messages completed by that chunk.  It never
    raises on bad input: corruption becomes a :class:`DecodeError` and the
    decoder resynchronises on the next SYNC.

    Resync rule (same as the C decoder in ``c/selfmis_frame.c``): when a
    candidate frame fails (CRC mismatch, impossible length) only its first
    byte is discarded and the search for SYNC restarts from the next byte,
    so a valid frame hidden inside a corrupt one is still found.  Memory is
    bounded by ``max_payload`` + overhead (plus the current chunk while it
    is being parsed).

    Counters: ``frames_ok`` (HELLO + DATA decoded), ``crc_errors``,
    ``bytes_skipped`` (bytes discarded outside valid frames),
    ``frames_unknown`` (valid frames of unknown type/version, skipped),
    ``frames_malformed`` (valid CRC, invalid payload), ``bytes_framed``
    (bytes of CRC-valid frames), ``offset`` (bytes fed so far).  Every byte
    fed ends up in exactly one of ``bytes_framed``, ``bytes_skipped`` or
    ``buffered``.
    """

    def __init__(self, max_payload: int = MAX_PAYLOAD_LEN, report_unknown: bool = False):
        if not 0 < max_payload <= 0xFFFF:
            raise ValueError("max_payload must be in 1..65535")
        self.max_payload = max_payload
        self.report_unknown = report_unknown
        self._buf = bytearray()
        self._buf_offset = 0     # absolute offset of _buf[0]
        self._quiet = False      # inside a reported corruption episode
        self.frames_ok = 0
        self.crc_errors = 0
        self.bytes_skipped = 0
        self.frames_unknown = 0
        self.frames_malformed = 0
        self.bytes_framed = 0    # bytes of CRC-valid frames (decoded, unknown or malformed)

    @property
    def offset(self) -> int:
        """Total number of bytes fed so far."""
        return self._buf_offset + len(self._buf)

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Drop buffered bytes (e.g. after reopening a port); counters kept."""
        self._skip(len(self._buf), None)
        self._quiet = False

    def feed(self, data: bytes) -> List[Message]:
        """Append ``data`` and return every message it completes, in order."""
        if data:
            self._buf += data
        out: List[Message] = []
        self._parse(out, final=False)
        return out

    def flush(self) -> List[Message]:
        """End of stream: give up on any partial frame and rescan its bytes.

        Returns what that finds (a valid frame may hide behind a garbage
        SYNC whose bogus length was still waiting for bytes); the remaining
        bytes are counted as skipped.
        """
        out: List[Message] = []
        self._parse(out, final=True)
        return out

    # -- internals ---------------------------------------------------------

    def _skip(self, n: int, out: Optional[List[Message]], reason: str = "") -> None:
        if n <= 0:
            return
        if out is not None and not self._quiet:
            out.append(DecodeError(self._buf_offset, reason or "bytes that are not a frame start here (resynchronising)"))
            self._quiet = True
        del self._buf[:n]
        self._buf_offset += n
        self.bytes_skipped += n

    def _fail(self, out: List[Message], reason: str) -> None:
        """Reject the candidate frame at _buf[0]: report, drop one byte."""
        out.append(DecodeError(self._buf_offset, reason))
        self._quiet = True
        del self._buf[:1]
        self._buf_offset += 1
        self.bytes_skipped += 1

    def _parse(self, out: List[Message], final: bool) -> None:
        buf = self._buf
        while buf:
            i = buf.find(SYNC)
            if i < 0:
                # keep a trailing A5: it may be the first half of a SYNC
                keep = 1 if (buf[-1] == SYNC[0] and not final) else 0
                self._skip(len(buf) - keep, out)
                return
            if i:
                self._skip(i, out)
            if len(buf) < HEADER_LEN:
                if final:
                    self._skip(len(buf), out, "stream ended inside a frame header")
                return
            version, ftype, length = buf[2], buf[3], buf[4] | (buf[5] << 8)
            if length > self.max_payload:
                self._fail(out, f"frame length {length} exceeds the maximum {self.max_payload}")
                continue
            if version in SUPPORTED_VERSIONS and length < MIN_PAYLOAD.get(ftype, 0):
                self._fail(out, f"frame type 0x{ftype:02X} with impossible length {length}")
                continue
            total = HEADER_LEN + length + CRC_LEN
            if len(buf) < total:
                if final:
                    self._fail(out, f"stream ended inside a frame ({len(buf)} of {total} bytes)")
                    continue
                return
            got = buf[total - 2] | (buf[total - 1] << 8)
            want = binascii.crc_hqx(buf[2:total - 2], 0xFFFF)  # crc16_ccitt_false, without a copy to bytes
            if got != want:
                self.crc_errors += 1
                self._fail(out, f"CRC mismatch (frame says 0x{got:04X}, computed 0x{want:04X})")
                continue
            start = self._buf_offset
            payload = bytes(buf[HEADER_LEN:total - 2])
            del buf[:total]
            self._buf_offset += total
            self.bytes_framed += total
            self._quiet = False
            if version not in SUPPORTED_VERSIONS or ftype not in MIN_PAYLOAD:
                # forward compatibility: a valid frame we cannot interpret
                self.frames_unknown += 1
                if self.report_unknown:
                    out.append(UnknownFrame(start, version, ftype, payload))
                continue
            try:
                msg = decode_payload(version, ftype, payload)
            except ValueError as e:
                self.frames_malformed += 1
                # a CRC-valid frame declaring a rate/gain outside the limits is what the device
                # means: a refusal of the stream, not line noise
                out.append(DecodeError(start, f"malformed frame: {e}", refused=isinstance(e, LimitError)))
                continue
            self.frames_ok += 1
            out.append(msg)
