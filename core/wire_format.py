"""The SelfMIS wire format: constants, messages, CRC and the payload codec of one frame.

What a frame *is* (layout, CRC, the HELLO / DATA / DECISION payloads, both directions);
:mod:`selfmis.protocol` holds the incremental :class:`~selfmis.protocol.StreamDecoder` that
finds frames in a byte stream and re-exports everything here, so ``selfmis.protocol`` stays
the one name to import. The byte-level specification, with tables, is
``firmware_bridge/PROTOCOL.md``; the layout in short is in :mod:`selfmis.protocol`'s docstring.
"""
from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import Dict, Optional, Union

import numpy as np

from .limits import check_gain, check_rate

__all__ = [
    "SYNC", "PROTOCOL_VERSION", "SUPPORTED_VERSIONS",
    "FRAME_HELLO", "FRAME_DATA", "FRAME_DECISION", "DECISION_STATES", "DECISION_FIXED_LEN",
    "FMT_INT16_LE", "FMT_INT24_LE", "FMT_INT32_LE", "SAMPLE_FORMATS",
    "FLAG_LEAD_OFF",
    "HEADER_LEN", "CRC_LEN", "FRAME_OVERHEAD", "MAX_PAYLOAD_LEN",
    "DATA_FIXED_LEN", "HELLO_FIXED_LEN",
    "crc16_ccitt_false", "sample_width", "sample_range",
    "Hello", "DataFrame", "DecisionFrame", "DecodeError", "UnknownFrame",
    "encode_hello", "encode_frame", "encode_decision", "encode_raw_frame",
    "decode_payload", "MIN_PAYLOAD", "Message",
]

# --------------------------------------------------------------------------
# Constants
# --------------------------------------------------------------------------

SYNC = b"\xA5\x5A"
#: Layout version this module writes.  Decoders accept every version in
#: SUPPORTED_VERSIONS; frames with a newer version are skipped by length.
PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset({1})

FRAME_HELLO = 0x01
FRAME_DATA = 0x02
#: a decision made on the device (firmware_bridge/mcu/chain): a few bytes per beat instead of the samples
FRAME_DECISION = 0x03
#: alarm state codes of a DECISION frame, as edge_runtime/decision.py names them
DECISION_STATES = ("off", "onset", "ongoing", "cleared")

FMT_INT16_LE = 0x01
FMT_INT24_LE = 0x02
FMT_INT32_LE = 0x03
#: sample format code -> bytes per sample
SAMPLE_FORMATS: Dict[int, int] = {FMT_INT16_LE: 2, FMT_INT24_LE: 3, FMT_INT32_LE: 4}

FLAG_LEAD_OFF = 0x01

HEADER_LEN = 6          # SYNC + version + type + length
CRC_LEN = 2
FRAME_OVERHEAD = HEADER_LEN + CRC_LEN
#: Largest payload a decoder accepts by default.  A corrupt length field can
#: make a decoder wait for this many bytes before the CRC check rejects the
#: frame, so it bounds both memory and resync latency.
MAX_PAYLOAD_LEN = 1024

# DATA payload: seq u16, flags u8, sample_format u8, fs_hz f32, n_samples u16
_DATA_FIXED = struct.Struct("<HBBfH")
DATA_FIXED_LEN = _DATA_FIXED.size       # 10
# HELLO payload: sample_format u8, fs_hz f32, uv_per_lsb f32, then 3 strings
# each as (u8 length, UTF-8 bytes): lead, firmware_version, device_id
_HELLO_FIXED = struct.Struct("<Bff")
HELLO_FIXED_LEN = _HELLO_FIXED.size + 3  # 9 fixed + 3 empty strings = 12

# DECISION payload: seq u16, t_ms u32, bundle_id u32, state u8, n_beats u8, active u16,
# hr_decibpm u16 (0xFFFF: unknown), n_labels u8, then n_labels x u16 probabilities (p x 65535),
# then the operating point's name (u8 length + UTF-8)
_DECISION_FIXED = struct.Struct("<HIIBBHHB")
DECISION_FIXED_LEN = _DECISION_FIXED.size + 1  # 17 fixed + an empty name = 18


def crc16_ccitt_false(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0).

    ``binascii.crc_hqx`` is exactly this polynomial and bit order with a
    caller-supplied initial value, implemented in C.
    """
    return binascii.crc_hqx(bytes(data), crc)


def sample_width(sample_format: int) -> int:
    """Bytes per sample for a sample format code (ValueError if unknown)."""
    try:
        return SAMPLE_FORMATS[sample_format]
    except KeyError:
        raise ValueError(f"unknown sample format code 0x{sample_format:02X}") from None


def sample_range(sample_format: int) -> tuple:
    """(min, max) integer count representable in a sample format."""
    bits = 8 * sample_width(sample_format)
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _check_rate_gain(what: str, fs: float, uv: float | None = None) -> None:
    """fs_hz (and uv_per_lsb) within the supported ranges of :mod:`selfmis.limits` (LimitError)."""
    check_rate(fs, what, "fs_hz")
    if uv is not None:
        check_gain(uv, what, "uv_per_lsb")


def _f32(x: float) -> float:
    """Round to float32, as it will be after a trip over the wire."""
    return float(np.float32(x))


# --------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------

@dataclass
class Hello:
    """Device description, sent at connect, on request and periodically.

    ``fs_hz`` and ``uv_per_lsb`` travel as float32; ``uv_per_lsb`` is the
    ADC step referred to the electrodes (after front-end gain), so that
    ``mV = counts * uv_per_lsb / 1000``.
    """

    protocol_version: int = PROTOCOL_VERSION
    fs_hz: float = 250.0
    lead: str = "I"
    uv_per_lsb: float = 1.0
    sample_format: int = FMT_INT16_LE
    firmware_version: str = ""
    device_id: str = ""


@dataclass
class DataFrame:
    """A block of consecutive samples of one lead (ADC counts)."""

    seq: int
    samples: np.ndarray
    flags: int = 0
    fs_hz: float = 250.0
    sample_format: int = FMT_INT16_LE

    @property
    def lead_off(self) -> bool:
        """True when the front end reported an electrode off (samples invalid)."""
        return bool(self.flags & FLAG_LEAD_OFF)

    def __eq__(self, other):  # numpy arrays make the generated __eq__ ambiguous
        if not isinstance(other, DataFrame):
            return NotImplemented
        return (self.seq == other.seq and self.flags == other.flags
                and self.sample_format == other.sample_format
                and _f32(self.fs_hz) == _f32(other.fs_hz)
                and np.array_equal(np.asarray(self.samples), np.asarray(other.samples)))


@dataclass
class DecisionFrame:
    """One decision of the on-device chain (the gateway's ``decision`` event, in 45-60 bytes).

    ``t_s`` is the beat's time in seconds of signal since the device started (ms on the
    wire); ``bundle_id`` the first 4 bytes of the bundle's sha256 (big-endian), so the
    gateway can tell whether the labels are its card's; ``active`` has bit j set when label
    j's alarm is on; ``probabilities`` are the rolling median of the calibrated per-beat
    probabilities in card order (1/65535 resolution on the wire); ``state`` the primary
    label's alarm state (:data:`DECISION_STATES`).
    """

    seq: int
    t_s: float
    probabilities: list
    state: str = "off"
    active: int = 0
    n_beats: int = 0
    hr: Optional[float] = None
    bundle_id: int = 0
    operating_point: str = ""


@dataclass
class DecodeError:
    """Something in the stream could not be decoded.

    ``offset`` is the absolute byte offset (since the decoder was created)
    where the bad frame or junk started.
    """

    offset: int
    reason: str
    #: True for a CRC-valid frame whose rate or gain is outside :mod:`selfmis.limits`
    refused: bool = False

    def __str__(self) -> str:
        return f"byte {self.offset}: {self.reason}"


@dataclass
class UnknownFrame:
    """A CRC-valid frame of a type or version this decoder does not know.

    Only returned when ``StreamDecoder(report_unknown=True)``; by default
    such frames are skipped silently (counted in ``frames_unknown``), which
    is the forward-compatibility rule of PROTOCOL.md.
    """

    offset: int
    version: int
    frame_type: int
    payload: bytes


Message = Union[Hello, DataFrame, DecisionFrame, DecodeError, UnknownFrame]


# --------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------

def encode_raw_frame(frame_type: int, payload: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """Wrap an arbitrary payload in SYNC/header/CRC (any type, any version)."""
    if not 0 <= frame_type <= 0xFF or not 0 <= version <= 0xFF:
        raise ValueError("frame_type and version must fit in one byte")
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload of {len(payload)} bytes does not fit the uint16 length field")
    body = struct.pack("<BBH", version, frame_type, len(payload)) + bytes(payload)
    return SYNC + body + struct.pack("<H", crc16_ccitt_false(body))


def _pack_str(s: str, what: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 255:
        raise ValueError(f"{what} is {len(raw)} bytes of UTF-8, at most 255 fit")
    return bytes([len(raw)]) + raw


def encode_hello(h: Hello) -> bytes:
    """Encode a HELLO frame."""
    if h.protocol_version not in SUPPORTED_VERSIONS:
        raise ValueError(f"cannot encode protocol version {h.protocol_version}")
    _check_rate_gain("HELLO", h.fs_hz, h.uv_per_lsb)
    sample_width(h.sample_format)  # validates
    payload = (_HELLO_FIXED.pack(h.sample_format, h.fs_hz, h.uv_per_lsb)
               + _pack_str(h.lead, "lead")
               + _pack_str(h.firmware_version, "firmware_version")
               + _pack_str(h.device_id, "device_id"))
    return encode_raw_frame(FRAME_HELLO, payload, h.protocol_version)


def _pack_samples(samples: np.ndarray, sample_format: int) -> bytes:
    width = sample_width(sample_format)
    s = np.asarray(samples)
    if s.ndim != 1:
        raise ValueError(f"samples must be 1-D, got shape {s.shape}")
    if s.size and not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"samples must be integer ADC counts, got dtype {s.dtype}")
    lo, hi = sample_range(sample_format)
    s64 = s.astype(np.int64)
    if s64.size and (s64.min() < lo or s64.max() > hi):
        raise ValueError(f"sample out of range [{lo}, {hi}] for format 0x{sample_format:02X}")
    # little-endian two's complement, truncated to `width` bytes per sample
    le = s64.astype("<i8").view(np.uint8).reshape(-1, 8)[:, :width]
    return le.tobytes()


def encode_frame(f: DataFrame) -> bytes:
    """Encode a DATA frame.  ``seq`` is taken modulo 2**16."""
    n = len(f.samples)
    if n > 0xFFFF:
        raise ValueError(f"{n} samples do not fit one frame")
    if not 0 <= f.flags <= 0xFF:
        raise ValueError("flags must fit in one byte")
    _check_rate_gain("DATA", f.fs_hz)
    payload = (_DATA_FIXED.pack(f.seq & 0xFFFF, f.flags, f.sample_format, f.fs_hz, n)
               + _pack_samples(f.samples, f.sample_format))
    return encode_raw_frame(FRAME_DATA, payload)


def encode_decision(d: DecisionFrame) -> bytes:
    """Encode a DECISION frame (what firmware_bridge/c/selfmis_decision.c writes)."""
    p = np.asarray(d.probabilities, dtype=np.float64)
    if not 1 <= len(p) <= 16 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError("a DECISION carries 1..16 probabilities within [0, 1]")
    if d.state not in DECISION_STATES:
        raise ValueError(f"state must be one of {DECISION_STATES}, got {d.state!r}")
    hr = 0xFFFF if d.hr is None else int(min(0xFFFE, max(0, round(d.hr * 10))))
    payload = (_DECISION_FIXED.pack(d.seq & 0xFFFF, int(round(d.t_s * 1000)) & 0xFFFFFFFF,
                                    d.bundle_id & 0xFFFFFFFF, DECISION_STATES.index(d.state),
                                    min(255, d.n_beats), d.active & 0xFFFF, hr, len(p))
               + np.round(p * 65535).astype("<u2").tobytes() + _pack_str(d.operating_point, "operating_point"))
    return encode_raw_frame(FRAME_DECISION, payload)


def _decode_decision(payload: bytes) -> DecisionFrame:
    seq, t_ms, bid, state, n_beats, active, hr, n = _DECISION_FIXED.unpack_from(payload)
    if state >= len(DECISION_STATES) or not 1 <= n <= 16:
        raise ValueError(f"DECISION state {state} / {n} labels out of range")
    end = _DECISION_FIXED.size + 2 * n
    if len(payload) < end + 1:
        raise ValueError(f"DECISION declares {n} labels but the payload has {len(payload)} bytes")
    p = np.frombuffer(payload[_DECISION_FIXED.size:end], "<u2") / 65535.0
    op, _ = _read_str(payload, end, "operating_point")
    return DecisionFrame(seq=seq, t_s=t_ms / 1000.0, probabilities=p.tolist(), state=DECISION_STATES[state],
                         active=active, n_beats=n_beats, hr=None if hr == 0xFFFF else hr / 10.0,
                         bundle_id=bid, operating_point=op)


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

#: little-endian integer dtypes of the 2- and 4-byte sample formats: read in place by frombuffer
_LE_INT = {2: np.dtype("<i2"), 4: np.dtype("<i4")}


def _unpack_samples(raw: bytes, n: int, width: int, offset: int = 0) -> np.ndarray:
    """``n`` samples of ``width`` bytes at ``raw[offset:]`` as int32 (one frombuffer and one copy for
    int16/int32: this runs for every DATA frame of every device)."""
    le = _LE_INT.get(width)
    if le is not None:
        return np.frombuffer(raw, dtype=le, count=n, offset=offset).astype(np.int32)
    b = np.frombuffer(raw, dtype=np.uint8, count=n * width, offset=offset).reshape(n, width)
    # int24: widen to 4 bytes with sign extension from the top byte
    padded = np.empty((n, 4), dtype=np.uint8)
    padded[:, :3] = b
    padded[:, 3] = np.where(b[:, 2] & 0x80, 0xFF, 0x00)
    return padded.view("<i4").reshape(n).astype(np.int32)


def _read_str(payload: bytes, pos: int, what: str):
    if pos >= len(payload):
        raise ValueError(f"payload ends before {what}")
    n = payload[pos]
    end = pos + 1 + n
    if end > len(payload):
        raise ValueError(f"{what} length {n} runs past the payload end")
    try:
        return payload[pos + 1:end].decode("utf-8"), end
    except UnicodeDecodeError as e:
        raise ValueError(f"HELLO {what} is not valid UTF-8 ({e.reason})") from None


#: the last DATA rate that passed :func:`selfmis.limits.check_rate` (the check is pure: a rate that
#: passed once passes again)
_last_rate = [None]


def decode_payload(version: int, frame_type: int, payload: bytes) -> Union[Hello, DataFrame, DecisionFrame]:
    """Parse the payload of a CRC-valid frame of a known type and version.

    Raises ValueError with a human-readable reason if it is malformed.
    Bytes after the fields defined for version 1 are ignored: that is the
    room for additive, backwards-compatible extensions (PROTOCOL.md).
    """
    if frame_type == FRAME_DATA:
        if len(payload) < DATA_FIXED_LEN:
            raise ValueError(f"DATA payload of {len(payload)} bytes is shorter than {DATA_FIXED_LEN}")
        seq, flags, fmt, fs, n = _DATA_FIXED.unpack_from(payload)
        width = SAMPLE_FORMATS.get(fmt) or sample_width(fmt)  # (sample_width raises for an unknown code)
        if fs != _last_rate[0]:  # a stream keeps its rate: checked once, not for every frame
            _check_rate_gain("DATA frame", fs)
            _last_rate[0] = fs
        need = DATA_FIXED_LEN + n * width
        if len(payload) < need:
            raise ValueError(f"DATA frame declares {n} samples ({need} bytes) "
                             f"but the payload has {len(payload)}")
        samples = _unpack_samples(payload, n, width, DATA_FIXED_LEN)
        return DataFrame(seq=seq, samples=samples, flags=flags, fs_hz=fs, sample_format=fmt)
    if frame_type == FRAME_HELLO:
        if len(payload) < HELLO_FIXED_LEN:
            raise ValueError(f"HELLO payload of {len(payload)} bytes is shorter than {HELLO_FIXED_LEN}")
        fmt, fs, uv = _HELLO_FIXED.unpack_from(payload)
        sample_width(fmt)
        _check_rate_gain("HELLO frame", fs, uv)
        pos = _HELLO_FIXED.size
        lead, pos = _read_str(payload, pos, "lead")
        fw, pos = _read_str(payload, pos, "firmware_version")
        dev, pos = _read_str(payload, pos, "device_id")
        return Hello(protocol_version=version, fs_hz=fs, lead=lead, uv_per_lsb=uv,
                     sample_format=fmt, firmware_version=fw, device_id=dev)
    if frame_type == FRAME_DECISION:
        if len(payload) < DECISION_FIXED_LEN:
            raise ValueError(f"DECISION payload of {len(payload)} bytes is shorter than {DECISION_FIXED_LEN}")
        return _decode_decision(payload)
    raise ValueError(f"unknown frame type 0x{frame_type:02X}")


#: the shortest payload a CRC-valid frame of each known type may have (shorter: a corrupt header)
MIN_PAYLOAD = {FRAME_DATA: DATA_FIXED_LEN, FRAME_HELLO: HELLO_FIXED_LEN, FRAME_DECISION: DECISION_FIXED_LEN}
