"""Hostile peers, part 3: property-based fuzzing (hypothesis) of every decoder, reader and loader.

Each property: whatever the input, the code returns or raises its own documented error
(a ``ValueError`` subclass that names the source) -- never anything else, never a hang.
``EXAMPLES`` examples per property, derandomized (the same inputs every CI run, so a
failure reproduces); 10 properties x 100 examples: ~30 s on the shared 2-core machine. Raise
``SELFMIS_FUZZ_EXAMPLES`` for a longer local run.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfmis import protocol as P
from selfmis.ascii_sketch import AsciiLineDecoder
from selfmis.bundle import BundleError, load_bundle
from selfmis.edge_runtime.models import default_bundle_dir
from selfmis.readers import RecordError, open_lead, read_header, read_record

EXAMPLES = int(os.environ.get("SELFMIS_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# frames that are almost right: valid CRC around arbitrary payloads and float fields
_floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
_frame = st.one_of(
    st.builds(lambda t, p: P.encode_raw_frame(t, p), st.sampled_from([P.FRAME_DATA, P.FRAME_HELLO, 7]),
              st.binary(max_size=64)),
    st.builds(lambda fs, uv, s: P.encode_raw_frame(P.FRAME_HELLO, struct.pack("<Bff", 1, fs, uv) + s),
              _floats, _floats, st.binary(max_size=12)),
    st.builds(lambda seq, fs, n, body: P.encode_raw_frame(
        P.FRAME_DATA, struct.pack("<HBBfH", seq, 0, 1, fs, n) + body),
        st.integers(0, 0xFFFF), _floats, st.integers(0, 0xFFFF), st.binary(max_size=40)),
    st.binary(max_size=80),
)


@FUZZ
@given(st.lists(_frame, max_size=12), st.integers(1, 17))
def test_protocol_stream_decoder_never_raises_and_accounts_every_byte(parts, step):
    data = b"".join(parts)
    d = P.StreamDecoder()
    out = []
    for i in range(0, len(data), step):
        out += d.feed(data[i:i + step])
    out += d.flush()
    assert d.bytes_framed + d.bytes_skipped + d.buffered == d.offset == len(data)
    for m in out:
        if isinstance(m, (P.Hello, P.DataFrame)):
            assert 50 <= m.fs_hz <= 10000
        assert isinstance(m, (P.Hello, P.DataFrame, P.DecodeError, P.UnknownFrame))


@FUZZ
@given(st.lists(_frame, max_size=12))
def test_framed_source_refuses_or_yields_bounded_chunks(parts):
    from selfmis.edge_runtime.sources.base import SourceRefused
    from selfmis.edge_runtime.sources.framed import FramedStream
    fs = FramedStream()
    try:
        items = fs.feed(b"".join(parts))
    except SourceRefused as exc:
        assert "not a supported" in str(exc)
        return
    for it in items:
        if hasattr(it, "gap_before"):
            assert 50 <= it.fs <= 10000 and it.gap_before <= 10 * it.fs + 1


_line = st.one_of(st.integers(-2 ** 70, 2 ** 70).map(lambda i: str(i).encode()),
                  st.floats().map(lambda f: repr(f).encode()),
                  st.sampled_from([b"!", b"LO", b"# fs=nan", b"# fs=1e9 uv=0", b"time_ms,ecg", b"ecg:1,lo:1",
                                   b"1,2,3", b"\xff\xfe", b"# fs=250 lead=I"]),
                  st.binary(max_size=40))


@FUZZ
@given(st.lists(_line, max_size=30), st.sampled_from([None, 0, 2]), st.integers(1, 13))
def test_ascii_sketch_decoder_never_raises(lines, column, step):
    data = b"\r\n".join(lines) + b"\n"
    d = AsciiLineDecoder(column=column)
    for i in range(0, len(data), step):
        for m in d.feed(data[i:i + step]):
            if isinstance(m, (int, float)):
                assert np.isfinite(m)


_lead_off_line = st.sampled_from([b"!", b"LO", b"lo!", b" ! ", b"!!!", b"Leads Off!", b"lead-off", b"lead_off",
                                  b"LEADOFF", b"lead off", b"low", b"lo lo", b"!" + b"x" * 140, b"512", b"-3",
                                  b"# fs=100", b"", b"1 2", b"ecg:5"])


@FUZZ
@given(st.lists(_lead_off_line, max_size=60), st.sampled_from([b"\n", b"\r\n"]), st.integers(1, 17))
def test_a_lead_off_run_taken_at_once_gives_the_slots_of_the_line_decoder(lines, eol, step):
    """feed_runs takes consecutive lead-off lines in one C-level match (28x faster): the same
    slots, lead-off flags, headers, errors and offsets as feed's one line at a time."""
    data = b"".join(ln + eol for ln in lines)

    def flat(msgs):
        out = []
        for m in msgs:
            if hasattr(m, "values"):  # SampleRun
                out += ["off" if m.lead_off and m.lead_off[i] else v for i, v in enumerate(m.values)]
            elif type(m).__name__ == "LeadOff":
                out.append("off")
            elif isinstance(m, (int, float)):
                out.append(m)
            elif type(m).__name__ != "ColumnNames":  # feed_runs keeps a names line to itself
                out.append((type(m).__name__, getattr(m, "offset", None)))
        return out
    a, b = AsciiLineDecoder(), AsciiLineDecoder()
    fa, fb = [], []
    for i in range(0, len(data), step):
        fa += a.feed(data[i:i + step])
        fb += b.feed_runs(data[i:i + step])
    assert flat(fa) == flat(fb)
    assert (a.samples, a.errors) == (b.samples, b.errors)


_cell = st.one_of(st.integers(-10 ** 25, 10 ** 25).map(str), st.floats().map(repr),
                  st.sampled_from(["", "nan", "inf", "1e999", "I", "time", "ecg", "µV", "# fs=1e9", "# fs=nan",
                                   "# fs=250", "# units=counts"]),
                  st.text(max_size=6))


@FUZZ
@given(st.lists(st.lists(_cell, min_size=1, max_size=4), min_size=1, max_size=30),
       st.sampled_from([",", ";", "\t"]), st.sampled_from([None, "250", "nan"]))
def test_text_reader_refuses_with_record_error_only(tmp_path_factory, rows, sep, fs):
    p = tmp_path_factory.mktemp("csv") / "x.csv"
    p.write_text("\n".join(sep.join(r) for r in rows) + "\n", encoding="utf-8")
    try:
        s = open_lead(str(p), "I", fs=None if fs is None else float(fs))
        for x in s:
            assert x.dtype == np.float32
        assert 50 <= s.fs <= 10000
    except RecordError:
        pass


_hea_token = st.one_of(st.sampled_from(["r", "1", "2", "250", "0", "-1", "1e300", "nan", "r.dat", "16", "212",
                                        "200/mV", "0/mV", "1e-30/uV", "16x4", "8", "+0", "(0)", "I"]),
                       st.text(alphabet="0123456789.e+-/()x:abcdr ", max_size=8))


@FUZZ
@given(st.lists(st.lists(_hea_token, min_size=1, max_size=9), min_size=1, max_size=4), st.binary(max_size=64))
def test_wfdb_reader_refuses_with_record_error_only(tmp_path_factory, lines, dat):
    d = tmp_path_factory.mktemp("wfdb")
    (d / "r.hea").write_text("\n".join(" ".join(ln) for ln in lines) + "\n")
    (d / "r.dat").write_bytes(dat)
    try:
        read_header(str(d / "r.hea"))
        rec = read_record(str(d / "r"))
        assert 50 <= rec.fs <= 10000
    except RecordError:
        pass


@FUZZ
@given(st.binary(min_size=0, max_size=600))
def test_edf_reader_refuses_with_record_error_only(tmp_path_factory, tail):
    p = tmp_path_factory.mktemp("edf") / "x.edf"
    p.write_bytes(b"0       " + tail)
    try:
        read_record(str(p))
    except RecordError:
        pass


def _json_values():
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 20, 10 ** 20), st.floats(),
                     st.text(max_size=8))
    return st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=3),
                                                  st.dictionaries(st.text(max_size=6), c, max_size=3)),
                        max_leaves=8)


_CARD = json.loads((default_bundle_dir() / "card.json").read_text())
_CARD_PATHS = [("name",), ("lead",), ("labels",), ("labels", 0), ("preprocessing", "fs"),
               ("preprocessing", "low_hz"), ("preprocessing", "high_hz"), ("preprocessing", "window_s"),
               ("input", "shape"), ("output", "shape"), ("output", "scale"), ("thresholds", "MI"),
               ("calibration", "MI", "a"), ("calibration", "MI"), ("operating_points", "alarm"),
               ("default_operating_point",), ("model_file",), ("sha256",), ("format_version",), ("micro",)]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(_CARD_PATHS), _json_values()), min_size=1, max_size=3))
def test_card_loader_refuses_with_bundle_error_only(tmp_path_factory, edits):
    d = tmp_path_factory.mktemp("card")
    shutil.copy(default_bundle_dir() / "model.tflite", d / "model.tflite")
    card = json.loads(json.dumps(_CARD))
    for path, value in edits:
        node = card
        for k in path[:-1]:
            node = node[k] if isinstance(node, dict) and k in node else {}
        if isinstance(node, dict):
            node[path[-1]] = value
        elif isinstance(node, list) and isinstance(path[-1], int) and node:
            node[0] = value
    (d / "card.json").write_text(json.dumps(card))
    try:
        b = load_bundle(d)
    except BundleError:
        return
    p = b.card.probabilities(np.zeros((1, len(b.card.labels))))
    assert np.isfinite(p).all()
    for name in b.card.operating_points or {"balanced": None}:
        _, th = b.card.operating_point(name)
        assert all(0 <= v <= 1 for v in th.values())


@FUZZ
@given(_json_values(), st.sampled_from(["gateway", "runtime"]))
def test_config_loaders_refuse_with_their_error_only(tmp_path_factory, value, kind):
    from selfmis.edge_runtime.gateway_config import GatewayConfigError, load_gateway_config
    from selfmis.runtime_config import ConfigError, load_runtime_config
    p = tmp_path_factory.mktemp("cfg") / "c.json"
    if isinstance(value, dict) and kind == "gateway":
        value = {"format": "selfmis-gateway-config", "format_version": 1, "devices": [value], **value}
    elif isinstance(value, dict):
        value = {"format": "selfmis-runtime-config", "source": value, **value}
    p.write_text(json.dumps(value))
    try:
        (load_gateway_config if kind == "gateway" else load_runtime_config)(p)
    except (GatewayConfigError, ConfigError):
        pass


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=60),
                          st.builds(lambda k, b: struct.pack("<I", len(b) + 1) + k + b,
                                    st.sampled_from([b"C", b"D", b"E", b"P", b"Z"]), st.binary(max_size=60))),
                max_size=8))
def test_recording_reader_refuses_with_recording_error_only(tmp_path_factory, records):
    from selfmis.edge_runtime.recording import RecordingError, read_recording
    d = tmp_path_factory.mktemp("rec")
    (d / "recording.json").write_text(json.dumps({"format": "selfmis-recording", "format_version": 2}))
    (d / "stream.bin").write_bytes(b"".join(records))
    try:
        for item in read_recording(d):
            if hasattr(item, "fs"):
                assert 50 <= item.fs <= 10000
    except RecordingError:
        pass
