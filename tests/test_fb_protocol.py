"""Wire protocol: round trips, shared test vectors, fuzzing, sequence and ASCII decoders."""
import json
import random
import struct

import numpy as np
import pytest

from selfmis.firmware_bridge import gen_test_vectors as gtv
from selfmis import protocol as P
from selfmis import ascii_sketch
from selfmis import ble_profile
from selfmis import sequence

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

VECTORS = json.loads(open(gtv.JSON_PATH, encoding="utf-8").read())


def decode_all(data: bytes, chunks=None, **kw):
    dec = P.StreamDecoder(**kw)
    out = []
    if chunks is None:
        out += dec.feed(data)
    else:
        pos = 0
        for c in chunks:
            out += dec.feed(data[pos:pos + c])
            pos += c
        out += dec.feed(data[pos:])
    return out + dec.flush(), dec


def valid(msgs):
    return [m for m in msgs if isinstance(m, (P.Hello, P.DataFrame))]


# --- constants and CRC ------------------------------------------------------

def test_crc_check_value():
    assert P.crc16_ccitt_false(b"123456789") == 0x29B1
    assert VECTORS["crc_check"]["crc"] == 0x29B1


def test_constants():
    assert P.SYNC == b"\xA5\x5A" and P.PROTOCOL_VERSION == 1 and P.FLAG_LEAD_OFF == 0x01
    assert len({ble_profile.SERVICE_UUID, ble_profile.DATA_CHAR_UUID, ble_profile.CONTROL_CHAR_UUID}) == 3
    # a default-MTU notification (20 bytes) holds 1 int16 sample; MTU 247 holds 113
    assert ble_profile.max_samples_per_notification(ble_profile.BLE_DEFAULT_ATT_MTU) == 1
    assert ble_profile.max_samples_per_notification(ble_profile.BLE_PREFERRED_ATT_MTU) == 113


# --- round trips --------------------------------------------------------------

@pytest.mark.parametrize("fmt", [P.FMT_INT16_LE, P.FMT_INT24_LE, P.FMT_INT32_LE])
def test_data_round_trip_extremes(fmt):
    lo, hi = P.sample_range(fmt)
    samples = np.array([lo, hi, 0, -1, 1, lo + 1, hi - 1], dtype=np.int64)
    f = P.DataFrame(seq=65535, samples=samples, flags=P.FLAG_LEAD_OFF, fs_hz=500.0,
                    sample_format=fmt)
    (got,), dec = decode_all(P.encode_frame(f))
    assert got == f and got.lead_off and got.samples.dtype == np.int32
    assert dec.frames_ok == 1 and dec.bytes_skipped == 0


def test_hello_round_trip():
    h = P.Hello(fs_hz=360.0, lead="aVF", uv_per_lsb=0.25, sample_format=P.FMT_INT24_LE,
                firmware_version="1.0.0-rc1", device_id="Ünïcode-dev")
    (got,), _ = decode_all(P.encode_hello(h))
    assert got == h


def test_encoder_rejects_bad_input():
    with pytest.raises(ValueError, match="out of range"):
        P.encode_frame(P.DataFrame(seq=0, samples=np.array([40000]), sample_format=P.FMT_INT16_LE))
    with pytest.raises(ValueError, match="integer"):
        P.encode_frame(P.DataFrame(seq=0, samples=np.array([1.5])))
    with pytest.raises(ValueError, match="sample format"):
        P.encode_frame(P.DataFrame(seq=0, samples=np.array([1]), sample_format=9))
    with pytest.raises(ValueError, match="255"):
        P.encode_hello(P.Hello(device_id="x" * 256))
    with pytest.raises(ValueError, match="version"):
        P.encode_hello(P.Hello(protocol_version=2))
    with pytest.raises(ValueError, match="not a supported sample rate"):
        P.encode_frame(P.DataFrame(seq=0, samples=np.array([1]), fs_hz=float("nan")))
    with pytest.raises(ValueError, match="not a supported"):
        P.encode_hello(P.Hello(uv_per_lsb=0.0))


def test_seq_wraps_modulo_2_16():
    (got,), _ = decode_all(P.encode_frame(P.DataFrame(seq=65536 + 5, samples=np.array([1]))))
    assert got.seq == 5


# --- shared vectors (the C test uses the same file) -----------------------------

def test_vector_files_are_up_to_date():
    v = gtv.build()
    assert gtv.render_json(v) == open(gtv.JSON_PATH, encoding="utf-8").read(), \
        "run python -m selfmis.firmware_bridge.gen_test_vectors"
    assert gtv.render_header(v) == open(gtv.HEADER_PATH, encoding="utf-8").read()


@pytest.mark.parametrize("vec", VECTORS["frames"], ids=lambda v: v["name"])
def test_frame_vectors(vec):
    raw = bytes.fromhex(vec["hex"])
    msgs, dec = decode_all(raw, chunks=[1] * len(raw))
    assert gtv.describe(msgs) == [{k: v for k, v in vec.items() if k not in ("name", "hex")}]
    m = msgs[0]
    assert (P.encode_hello(m) if isinstance(m, P.Hello) else P.encode_frame(m)) == raw


@pytest.mark.parametrize("vec", VECTORS["streams"], ids=lambda v: v["name"])
def test_stream_vectors_any_chunking(vec):
    raw = bytes.fromhex(vec["hex"])
    rng = random.Random(vec["name"])
    for chunks in (None, [1] * len(raw), [rng.randint(1, 9) for _ in range(len(raw))]):
        msgs, dec = decode_all(raw, chunks)
        assert gtv.describe(msgs) == vec["events"]
        assert gtv.counters(dec) == vec["counters"]


def test_errors_name_the_byte_offset():
    junk = b"hello world\n"
    frame = P.encode_frame(P.DataFrame(seq=1, samples=np.array([1, 2, 3])))
    bad = bytearray(frame)
    bad[-1] ^= 0xFF
    msgs, dec = decode_all(junk + bytes(bad) + frame)
    errs = [m for m in msgs if isinstance(m, P.DecodeError)]
    assert errs[0].offset == 0 and "not a frame" in errs[0].reason
    assert errs[1].offset == len(junk) and "CRC" in errs[1].reason
    assert f"byte {len(junk)}" in str(errs[1])
    assert [m.seq for m in valid(msgs)] == [1]
    assert dec.crc_errors == 1 and dec.offset == len(junk) + 2 * len(frame)


def test_unknown_frames_skipped_by_length_and_reportable():
    a = P.encode_raw_frame(0x42, b"\xA5\x5A" * 10)  # SYNC inside an unknown payload
    b = P.encode_frame(P.DataFrame(seq=9, samples=np.array([5])))
    msgs, dec = decode_all(a + b)
    assert [type(m) for m in msgs] == [P.DataFrame] and dec.frames_unknown == 1
    msgs, _ = decode_all(a + b, report_unknown=True)
    assert isinstance(msgs[0], P.UnknownFrame) and msgs[0].frame_type == 0x42


def test_v1_extension_bytes_are_ignored():
    """Fields appended to a v1 payload by a newer device must not break old decoders."""
    payload = struct.pack("<HBBfH", 4, 0, P.FMT_INT16_LE, 250.0, 2) + b"\x01\x00\x02\x00" + b"EXT"
    (got,), _ = decode_all(P.encode_raw_frame(P.FRAME_DATA, payload))
    assert got.seq == 4 and list(got.samples) == [1, 2]


def test_memory_is_bounded():
    dec = P.StreamDecoder(max_payload=64)
    # a SYNC with the largest allowed length, then a long stream without SYNC
    dec.feed(P.SYNC + b"\x01\x02\x40\x00")
    for _ in range(100):
        dec.feed(bytes(range(0, 0xA0)) * 4)
        assert dec.buffered <= P.HEADER_LEN + 64 + P.CRC_LEN
    assert dec.bytes_skipped > 60000


# --- fuzzing ------------------------------------------------------------------

frame_strategy = st.builds(
    lambda seq, fmt, n, flags, seed: P.DataFrame(
        seq=seq, flags=flags, fs_hz=250.0, sample_format=fmt,
        samples=np.random.default_rng(seed).integers(*P.sample_range(fmt), size=n, endpoint=True)),
    st.integers(0, 65535), st.sampled_from(sorted(P.SAMPLE_FORMATS)), st.integers(0, 40),
    st.integers(0, 255), st.integers(0, 2**32 - 1))
garbage = st.binary(max_size=40) | st.sampled_from([b"", P.SYNC, b"\xA5", P.SYNC + b"\x01\x02",
                                                      P.SYNC + b"\x01\x02\xff\x03"])

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600), st.lists(st.integers(1, 50), max_size=30))
def test_fuzz_random_bytes_never_raise(data, chunks):
    msgs, dec = decode_all(data, chunks)
    assert all(isinstance(m, (P.Hello, P.DataFrame, P.DecodeError)) for m in msgs)
    assert dec.buffered == 0 and dec.offset == len(data)
    # every byte is accounted for: inside a CRC-valid frame, or skipped
    assert dec.bytes_framed + dec.bytes_skipped == len(data)


@FUZZ
@given(st.lists(st.tuples(garbage, frame_strategy), min_size=1, max_size=8),
       st.lists(st.integers(1, 64), max_size=40), st.booleans())
def test_fuzz_valid_frames_survive_garbage_and_splits(items, chunks, hello_first):
    frames = [f for _, f in items]
    stream = b"".join(g + P.encode_frame(f) for g, f in items)
    if hello_first:
        stream = P.encode_hello(P.Hello()) + stream
    msgs, dec = decode_all(stream, chunks)
    got = [m for m in msgs if isinstance(m, P.DataFrame)]
    assert got == frames
    assert dec.bytes_framed + dec.bytes_skipped == len(stream) and dec.buffered == 0
    # and the result does not depend on how the stream was chunked
    whole, _ = decode_all(stream)
    assert gtv.describe(msgs) == gtv.describe(whole)


# --- sequence tracker -------------------------------------------------------------

def test_sequence_tracker_gaps_wrap_duplicates():
    t = sequence.SequenceTracker()
    ups = [t.update(s) for s in (65533, 65534, 65535, 0, 3, 3, 4, 2, 5)]
    assert [u.missing for u in ups] == [0, 0, 0, 0, 2, 0, 0, 0, 0]
    assert [u.duplicate for u in ups] == [False] * 5 + [True] + [False] * 3
    assert ups[7].stale and not ups[8].stale and ups[8].ok
    assert (t.missing, t.duplicates, t.stale, t.received) == (2, 1, 1, 9)
    t.reset()
    assert t.update(100).ok


# --- ASCII ------------------------------------------------------------------------

def test_ascii_decoder_lines_header_leadoff_errors():
    text = (b"# fs=250 lead=I uv_per_lsb=3.2227 board=uno\r\n512\r\n-3\r\n!\r\n"
            b"# just a comment\r\n\r\nabc\r\n# fs=abc\r\n 77 \n")
    dec = ascii_sketch.AsciiLineDecoder()
    out = []
    for i in range(len(text)):  # worst case: one byte at a time
        out += dec.feed(text[i:i + 1])
    hdr, s1, s2, lo, err, herr, s3 = out
    assert (hdr.fs_hz, hdr.lead, hdr.uv_per_lsb, hdr.extra) == (250.0, "I", 3.2227, {"board": "uno"})
    assert (s1, s2, s3) == (512, -3, 77)
    assert isinstance(lo, ascii_sketch.LeadOff) and lo.offset == text.index(b"!")
    assert isinstance(err, P.DecodeError) and err.offset == text.index(b"abc")
    assert "abc" in err.reason
    assert isinstance(herr, P.DecodeError) and herr.offset == text.index(b"# fs=abc")
    assert dec.samples == 3 and dec.errors == 2


def test_ascii_partial_last_line_and_overlong_line():
    dec = ascii_sketch.AsciiLineDecoder(max_line=16)
    assert dec.feed(b"12\n3") == [12]
    assert dec.flush() == [3]
    out = dec.feed(b"9" * 40) + dec.feed(b"99\n5\n")
    assert isinstance(out[0], P.DecodeError) and out[0].offset == 5 and out[1:] == [5]


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(1, 20), max_size=20))
def test_fuzz_ascii_never_raises(data, chunks):
    dec = ascii_sketch.AsciiLineDecoder()
    pos = 0
    for c in chunks:
        dec.feed(data[pos:pos + c])
        pos += c
    dec.feed(data[pos:])
    dec.flush()
