"""Decoders never crash on bad bytes; Polar PMD frames and the BLE source with a fake client."""
from __future__ import annotations

import asyncio
import struct
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from selfmis import protocol as P
from selfmis import ascii_sketch
from selfmis import ble_profile
from selfmis.edge_runtime.sources.base import Chunk, LinkEvent, SourceNotFound
from selfmis.edge_runtime.sources.ble import (PMD_CONTROL_UUID, PMD_DATA_UUID, PMD_SERVICE_UUID,
                                              POLAR_START_ECG, BleSource, PmdDecodeError,
                                              decode_pmd_ecg, parse_pmd_response)
from selfmis.edge_runtime.sources.framed import FramedStream

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def pmd_frame(samples_uv, ts_ns=0, mtype=0x00, ftype=0x00) -> bytes:
    body = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in samples_uv)
    return bytes([mtype]) + struct.pack("<Q", ts_ns) + bytes([ftype]) + body


# ---------------------------------------------------------------- Polar PMD decoder

def test_pmd_decoder_hand_built_frame():
    v = [0, 1, -1, 8388607, -8388608, 1234, -1234] + list(range(66))
    f = decode_pmd_ecg(pmd_frame(v, ts_ns=599_000_000_123))
    assert f.timestamp_ns == 599_000_000_123
    assert f.samples_uv.dtype == np.int32 and f.samples_uv.tolist() == v and len(v) == 73


@pytest.mark.parametrize("data, where", [
    (b"\x00\x01", "shorter"),
    (pmd_frame([1, 2], mtype=0x02), "byte 0"),
    (pmd_frame([1, 2], ftype=0x80), "byte 9"),
    (pmd_frame([1, 2]) + b"\x01", "multiple of 3"),
])
def test_pmd_decoder_rejects_with_reason(data, where):
    with pytest.raises(PmdDecodeError, match=where):
        decode_pmd_ecg(data)


def test_pmd_control_point_response():
    assert parse_pmd_response(b"\xf0\x02\x00\x00\x00") == (2, 0, 0)
    with pytest.raises(PmdDecodeError):
        parse_pmd_response(b"\x01\x02")


@FUZZ
@given(st.binary(max_size=300))
def test_pmd_decoder_fuzz_only_raises_its_error(data):
    try:
        f = decode_pmd_ecg(data)
    except PmdDecodeError:
        return
    assert len(f.samples_uv) == (len(data) - 10) // 3


# ---------------------------------------------------------------- framed protocol

def _frames(n_frames=20, spf=10, fs=250.0):
    rng = np.random.default_rng(1)
    out = [P.encode_hello(P.Hello(fs_hz=fs, uv_per_lsb=2.5))]
    for k in range(n_frames):
        out.append(P.encode_frame(P.DataFrame(seq=k, samples=rng.integers(-2000, 2000, spf).astype(np.int32),
                                              fs_hz=fs)))
    return out


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(_frames())), max_size=30),
       st.integers(1, 64))
def test_framed_stream_fuzz_never_raises(parts, step):
    fs = FramedStream("I")
    data = b"".join(parts)
    items = []
    for i in range(0, len(data), step):
        items += fs.feed(data[i:i + step])
    assert all(isinstance(it, (Chunk, LinkEvent)) for it in items)
    for c in (it for it in items if isinstance(it, Chunk)):
        assert c.samples.dtype == np.float32 and np.isfinite(c.samples).all()


def test_framed_stream_gain_gap_and_crc():
    frames = _frames(10)
    bad = bytearray(frames[5])
    bad[12] ^= 0xFF
    stream = b"".join(frames[:3]) + b"".join(frames[4:5]) + bytes(bad) + b"".join(frames[6:])
    fs = FramedStream("I")
    items = fs.feed(stream)
    chunks = [i for i in items if isinstance(i, Chunk)]
    kinds = [i.kind for i in items if isinstance(i, LinkEvent)]
    assert kinds.count("hello") == 1 and "gap" in kinds and "crc_error" in kinds
    assert fs.stats["crc_errors"] == 1 and fs.stats["drops"] == 2
    assert fs.stats["lost_samples"] == 20 and fs.stats["duplicates"] == 0
    first = P.StreamDecoder().feed(frames[1])[0]
    # frames that continue each other in one read become one chunk (frames 1-2 here)
    assert np.allclose(chunks[0].samples[:10], first.samples * 2.5 / 1000.0)
    assert [len(c.samples) for c in chunks] == [20, 10, 50]
    gapped = [c for c in chunks if c.gap_before]
    assert [c.gap_before for c in gapped] == [10, 10]  # frame 3, then frame 5 (corrupt), lost


def test_framed_stream_counts_duplicates_apart_from_drops():
    frames = _frames(6)
    fs = FramedStream("I")
    fs.feed(b"".join(frames[:3]) + frames[2] + frames[2] + frames[4] + frames[3])
    assert fs.stats["duplicates"] == 2 and fs.stats["stale"] == 1
    assert fs.stats["drops"] == 1 and fs.stats["lost_samples"] == 10


@FUZZ
@given(st.binary(max_size=400), st.integers(1, 32))
def test_ascii_decoder_fuzz_never_raises(data, step):
    dec = ascii_sketch.AsciiLineDecoder()
    for i in range(0, len(data), step):
        dec.feed(data[i:i + step])
    dec.flush()


@FUZZ
@given(st.binary(max_size=200))
def test_recording_reader_fuzz_only_raises_its_error(tmp_path_factory, data):
    from selfmis.edge_runtime.recording import RecordingError, Recorder, read_recording
    d = tmp_path_factory.mktemp("rec")
    Recorder(d).close()
    (d / "stream.bin").write_bytes(data)
    try:
        list(read_recording(d))
    except RecordingError:
        pass


# ---------------------------------------------------------------- BLE with a fake client

class _Svc:
    def __init__(self, uuid):
        self.uuid = uuid


class FakeBleClient:
    """Stands in for bleak.BleakClient: records the GATT calls, plays back notifications."""

    instances = []

    def __init__(self, address, disconnected_callback, frames=(), services=(PMD_SERVICE_UUID,),
                 hang=False, drop_after=None):
        self.address, self.on_disc = address, disconnected_callback
        self.frames, self.services = list(frames), [_Svc(u) for u in services]
        self.hang, self.drop_after = hang, drop_after
        self.calls, self.notify = [], {}
        self.is_connected = False
        FakeBleClient.instances.append(self)

    async def connect(self):
        self.calls.append("connect")
        if self.hang:
            await asyncio.sleep(3600)
        self.is_connected = True

    async def start_notify(self, uuid, cb):
        self.calls.append(("start_notify", uuid))
        self.notify[uuid] = cb

    async def write_gatt_char(self, uuid, data, response=False):
        self.calls.append(("write", uuid, bytes(data)))
        if uuid == PMD_CONTROL_UUID and bytes(data) == POLAR_START_ECG:
            asyncio.get_running_loop().call_soon(self.notify[PMD_CONTROL_UUID], None,
                                                 bytearray(b"\xf0\x02\x00\x00\x00"))
            asyncio.get_running_loop().create_task(self._play())
        if uuid == ble_profile.CONTROL_CHAR_UUID and bytes(data) == bytes([ble_profile.CTRL_START]):
            asyncio.get_running_loop().create_task(self._play(ble_profile.DATA_CHAR_UUID))

    async def _play(self, uuid=PMD_DATA_UUID):
        for i, f in enumerate(self.frames):
            await asyncio.sleep(0.001)
            self.notify[uuid](None, bytearray(f))
            if self.drop_after is not None and i + 1 == self.drop_after:
                self.is_connected = False
                self.on_disc(self)
                return

    async def disconnect(self):
        self.calls.append("disconnect")
        self.is_connected = False


def _collect(src, n_chunks, timeout=30.0):  # generous: a loaded CI machine, it returns as soon as n arrive
    items, t0 = [], time.monotonic()
    for it in src:
        items.append(it)
        if sum(isinstance(i, Chunk) for i in items) >= n_chunks or time.monotonic() - t0 > timeout:
            break
    src.close()
    return items


def test_polar_h10_stream_via_fake_client():
    rng = np.random.default_rng(0)
    data = [rng.integers(-3000, 3000, 73) for _ in range(6)]
    ts = [int((i + 1) * 73 / 130 * 1e9) for i in range(6)]
    ts[5] += int(2 * 73 / 130 * 1e9)  # two notifications lost before the last one
    frames = [pmd_frame(d, t) for d, t in zip(data, ts)]
    frames.insert(3, b"\x02garbage")  # a non-ECG notification is reported, not fatal
    FakeBleClient.instances.clear()
    src = BleSource("AA:BB", client_factory=lambda a, cb: FakeBleClient(a, cb, frames))
    items = _collect(src, 6)
    chunks = [i for i in items if isinstance(i, Chunk)]
    assert len(chunks) == 6 and all(c.fs == 130.0 for c in chunks)
    assert np.allclose(np.concatenate([c.samples for c in chunks]), np.concatenate(data) / 1000.0)
    assert chunks[5].gap_before == 146
    kinds = [i.kind for i in items if isinstance(i, LinkEvent)]
    assert kinds[0] == "connected" and "decode_error" in kinds and "gap" in kinds
    calls = FakeBleClient.instances[0].calls
    # indications on the control point are enabled before the start command is written
    assert calls.index(("start_notify", PMD_CONTROL_UUID)) < calls.index(("write", PMD_CONTROL_UUID, POLAR_START_ECG))
    assert ("start_notify", PMD_DATA_UUID) in calls


def test_selfmis_gatt_profile_via_fake_client():
    frames = _frames(8, spf=10, fs=250.0)
    src = BleSource("CC:DD", client_factory=lambda a, cb: FakeBleClient(
        a, cb, frames, services=(ble_profile.SERVICE_UUID,)))
    items = _collect(src, 8)
    chunks = [i for i in items if isinstance(i, Chunk)]
    assert len(chunks) == 8 and chunks[0].fs == 250.0
    assert any(isinstance(i, LinkEvent) and i.kind == "hello" for i in items)


def test_ble_reconnects_after_disconnect():
    frames = [pmd_frame(np.arange(73), int((i + 1) * 0.5615e9)) for i in range(4)]
    from selfmis.edge_runtime.sources.base import Backoff
    src = BleSource("EE:FF", backoff=Backoff(retries=2, first_s=0.01),
                    client_factory=lambda a, cb: FakeBleClient(a, cb, frames, drop_after=2))
    items = _collect(src, 4)
    kinds = [i.kind for i in items if isinstance(i, LinkEvent)]
    assert "disconnected" in kinds and "reconnected" in kinds
    assert sum(isinstance(i, Chunk) for i in items) == 4


def test_ble_device_that_never_answers_times_out_clearly():
    src = BleSource("11:22", connect_timeout_s=0.2,
                    client_factory=lambda a, cb: FakeBleClient(a, cb, hang=True))
    t0 = time.monotonic()
    with pytest.raises(SourceNotFound, match="did not answer within"):
        list(src)
    assert time.monotonic() - t0 < 5


@FUZZ
@given(st.binary(max_size=400), st.integers(1, 64))
def test_serial_ascii_parser_fuzz_never_raises(data, step):
    from selfmis.edge_runtime.sources.serial import SerialSource
    src = SerialSource("/dev/null-not-opened", ascii=True, fs=250.0)
    parse = src._ascii_parser()
    for i in range(0, len(data), step):
        for it in parse(data[i:i + step]):
            assert isinstance(it, (Chunk, LinkEvent))


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 300), st.sampled_from([100.0, 130.0, 250.0, 500.0]),
                          st.booleans(), st.integers(0, 200), st.sampled_from([0.0, np.nan, np.inf, 1e6])),
                max_size=25))
def test_pipeline_never_raises_on_odd_chunks(spec):
    """Empty chunks, rate changes, lead-off, gaps, NaN/inf/huge values: events, never exceptions."""
    from selfmis.edge_runtime.pipeline import Pipeline
    pipe = Pipeline(None)
    rng = np.random.default_rng(0)
    for n, fs, off, gap, odd in spec:
        x = rng.normal(0, 0.3, n)
        if n:
            x[rng.integers(0, n)] = odd or x[0]
        for e in pipe.handle(Chunk(x, fs, lead_off=off, gap_before=gap)):
            assert e["type"] in ("beat", "quality", "link")
    pipe.handle(LinkEvent("end"))
    assert pipe.summary()["type"] == "summary"


def test_ble_silent_device_is_dropped_and_reconnected():
    from selfmis.edge_runtime.sources.base import Backoff
    frames = [pmd_frame(np.arange(73), int((i + 1) * 0.5615e9)) for i in range(3)]
    made = []

    def factory(a, cb):
        made.append(FakeBleClient(a, cb, frames if made else []))  # the first one never talks
        return made[-1]

    src = BleSource("SI:LE", idle_timeout_s=0.3, backoff=Backoff(retries=2, first_s=0.01),
                    client_factory=factory)
    items = _collect(src, 3)
    kinds = [i.kind for i in items if isinstance(i, LinkEvent)]
    assert "disconnected" in kinds and "reconnected" in kinds
    assert "disconnect" in made[0].calls  # the silent link was released before reconnecting


def test_ascii_lead_off_lines_are_sample_slots():
    from selfmis.edge_runtime.sources.serial import SerialSource
    parse = SerialSource("/dev/x", ascii=True, fs=250.0, uv_per_lsb=2.0)._ascii_parser()
    items = parse(b"# fs=250 lead=I uv_per_lsb=2\r\n10\r\n20\r\n!\r\n!\r\n30\r\nnoise\r\n40\r\n")
    chunks = [i for i in items if isinstance(i, Chunk)]
    assert [len(c.samples) for c in chunks] == [2, 2, 1, 1]
    assert [c.lead_off for c in chunks] == [False, True, False, False]
    assert chunks[0].samples.tolist() == pytest.approx([0.02, 0.04])
    kinds = [i.kind for i in items if isinstance(i, LinkEvent)]
    assert kinds == ["hello", "decode_error"]
