"""Virtual device: a real record over a real pty / TCP, read back through the decoders."""
import os
import select
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from selfmis.readers import read_record
from selfmis import protocol as P
from selfmis import ascii_sketch
from selfmis import sequence
from selfmis.simulate import VirtualDevice, quantize
from selfmis.firmware_bridge.virtual_device import FdWriter, default_record_path, main, open_pty

RECORD = default_record_path()
pytestmark = pytest.mark.skipif(RECORD is None, reason="no bundled sample record")


@pytest.fixture(scope="module")
def record():
    return read_record(RECORD)


def read_fd_until(fd, decoder, want_frames, timeout=20.0):
    """Read a pty/socket fd into a decoder until `want_frames` DATA frames arrived."""
    msgs, deadline = [], time.monotonic() + timeout
    while sum(isinstance(m, P.DataFrame) for m in msgs) < want_frames:
        left = deadline - time.monotonic()
        assert left > 0, f"timed out after {len(msgs)} messages"
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        try:
            data = os.read(fd, 4096)
        except OSError:  # EIO: the writer closed the pty
            break
        if not data:
            break
        msgs += decoder.feed(data)
    return msgs


def test_pty_round_trip_reproduces_record_exactly(record):
    dev = VirtualDevice.from_record(record, "I", samples_per_frame=50)
    master, slave, path = open_pty()
    assert path.startswith("/dev/")
    try:
        t = threading.Thread(target=dev.stream_to, args=(FdWriter(master),),
                             kwargs={"speed": None}, daemon=True)
        t.start()
        n = record.signal.shape[0]
        msgs = read_fd_until(slave, P.StreamDecoder(), want_frames=-(-n // 50))
        t.join(10)
    finally:
        os.close(master)
        os.close(slave)
    hello = msgs[0]
    assert isinstance(hello, P.Hello) and hello.lead == "I" and hello.fs_hz == record.fs
    frames = [m for m in msgs if isinstance(m, P.DataFrame)]
    assert [f.seq for f in frames] == list(range(len(frames)))
    counts = np.concatenate([f.samples for f in frames])
    lead = record.lead("I")
    np.testing.assert_array_equal(counts, quantize(lead, 1.0, -32768, 32767))
    # back in mV: within half an LSB of the record (PTB-XL stores 1 µV steps: exact)
    np.testing.assert_allclose(counts * hello.uv_per_lsb / 1000.0, lead, atol=0.5e-3 + 1e-6)
    assert not any(isinstance(m, P.DecodeError) for m in msgs)


def test_cli_pty_prints_path_streams_and_cleans_up_on_sigterm(tmp_path):
    link = tmp_path / "ttyECG"
    # --loop: the device cannot finish (and remove the link) before the test has read it
    proc = subprocess.Popen([sys.executable, "-m", "selfmis.firmware_bridge.virtual_device", RECORD,
                             "--pty", "--link", str(link), "--speed", "20", "--loop"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line == str(link) and os.path.realpath(link).startswith("/dev/")
        fd = os.open(link, os.O_RDONLY | os.O_NOCTTY)
        try:
            msgs = read_fd_until(fd, P.StreamDecoder(), want_frames=5)
        finally:
            os.close(fd)
        assert isinstance(msgs[0], P.Hello)
        assert [m.seq for m in msgs if isinstance(m, P.DataFrame)][:5] == [0, 1, 2, 3, 4]
        proc.terminate()
        assert proc.wait(20) == 143
        assert "virtual serial port" in proc.stderr.read()
        assert not link.is_symlink()  # removed on SIGTERM
    finally:
        proc.kill()
        proc.wait()


def test_cli_tcp(record):
    proc = subprocess.Popen([sys.executable, "-m", "selfmis.firmware_bridge.virtual_device", RECORD,
                             "--tcp", "0", "--fast", "--seconds", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("socket://127.0.0.1:")
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as s:
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        dec = P.StreamDecoder()
        frames = [m for m in dec.feed(data) + dec.flush() if isinstance(m, P.DataFrame)]
        assert len(frames) == 2 * int(record.fs) // frames[0].samples.size
        assert proc.wait(20) == 0
    finally:
        proc.kill()
        proc.wait()


def test_cli_errors_and_help(caplog):
    assert main(["/nonexistent/record"]) == 1
    assert "no such record" in caplog.text
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    with pytest.raises(SystemExit) as e:
        main(["--lead-off", "bogus"])
    assert e.value.code == 2


def test_ascii_mode_with_lead_off(record):
    dev = VirtualDevice.from_record(record, "I", ascii=True, lead_off=[(1.0, 0.5)])
    dec = ascii_sketch.AsciiLineDecoder()
    out = []
    for data in dev.frames():
        out += dec.feed(data)
    hdr = out[0]
    assert isinstance(hdr, ascii_sketch.AsciiHeader) and hdr.fs_hz == record.fs and hdr.lead == "I"
    # the header is repeated like the HELLO (every 5 s), so a reader that opens the port late learns the rate
    headers = [i for i, x in enumerate(out) if isinstance(x, ascii_sketch.AsciiHeader)]
    assert len(headers) == 2
    assert out[headers[1]].fs_hz == record.fs and headers[1] == 1 + int(5 * record.fs)
    body = [x for x in out if not isinstance(x, ascii_sketch.AsciiHeader)]
    fs = int(record.fs)
    assert all(isinstance(x, ascii_sketch.LeadOff) for x in body[fs:fs + fs // 2])
    expected = dev.counts()
    got = [x for i, x in enumerate(body) if not (fs <= i < fs + fs // 2)]
    np.testing.assert_array_equal(got, np.delete(expected, np.s_[fs:fs + fs // 2]))


def test_faults_are_seeded_and_only_intact_frames_decode(record):
    kw = dict(drop_rate=0.1, corrupt_rate=0.1, duplicate_rate=0.1, seed=7,
              lead_off=[(2.0, 1.0)], noise_uv=20.0, samples_per_frame=25)
    dev = VirtualDevice.from_record(record, "I", **kw)
    chunks = list(dev.chunks())
    assert [c.data for c in chunks] == list(VirtualDevice.from_record(record, "I", **kw).frames())
    assert dev.stats.dropped and dev.stats.corrupted and dev.stats.duplicated
    # decoding each chunk alone tells which frames are intact ...
    intact = []
    for c in chunks:
        d = P.StreamDecoder()
        intact += [m for m in d.feed(c.data) + d.flush() if isinstance(m, P.DataFrame)]
    # ... and the whole stream, resynchronising after every corrupt frame, finds exactly those
    dec = P.StreamDecoder()
    got = [m for m in dec.feed(b"".join(c.data for c in chunks)) + dec.flush()
           if isinstance(m, P.DataFrame)]
    assert got == intact and dec.crc_errors >= dev.stats.corrupted
    tracker = sequence.SequenceTracker()
    for f in got:
        tracker.update(f.seq)
    assert tracker.duplicates >= 1 and tracker.missing >= dev.stats.dropped
    off = [f for f in got if f.lead_off]
    assert off and all((f.samples == 0).all() for f in off)


def test_nan_samples_are_lead_off_and_loop_continues_seq():
    sig = np.zeros(100)
    sig[40:60] = np.nan
    dev = VirtualDevice(sig, 100.0, samples_per_frame=20, loop=True, hello_every_s=0)
    it = dev.chunks()
    chunks = [next(it) for _ in range(12)]  # 1 HELLO + 11 frames: into the third pass
    dec = P.StreamDecoder()
    frames = [m for c in chunks for m in dec.feed(c.data) if isinstance(m, P.DataFrame)]
    assert [f.seq for f in frames] == list(range(11))
    assert [f.lead_off for f in frames[:5]] == [False, False, True, False, False]
    assert chunks[-1].t == pytest.approx(2.2)  # 5 frames per pass: third pass, frame 1


def test_real_time_pacing():
    dev = VirtualDevice(np.zeros(50), 100.0, samples_per_frame=10)  # 0.5 s of signal
    sink = []
    t0 = time.monotonic()
    dev.stream_to(sink.append, speed=5.0)  # 0.1 s
    elapsed = time.monotonic() - t0
    assert 0.08 <= elapsed < 2.0 and len(sink) == 6


def test_bad_arguments():
    with pytest.raises(ValueError, match="1-D"):
        VirtualDevice(np.zeros((3, 2)), 100.0)
    with pytest.raises(ValueError, match="drop_rate"):
        VirtualDevice(np.zeros(3), 100.0, drop_rate=2)
    with pytest.raises(ValueError, match="adc_bits"):
        VirtualDevice(np.zeros(3), 100.0, adc_bits=20)


def test_breathing_wander_and_motion_bursts():
    """Baseline wander is a slow sine of the asked amplitude; motion artefact only inside its spans,
    slow (mostly below 5 Hz) and of roughly the asked SD; neither changes a stream that does not ask."""
    fs, n = 500.0, 20000
    flat = np.zeros(n)
    base = VirtualDevice(flat, fs, noise_uv=10.0, seed=5).counts(np.random.default_rng(2))
    same = VirtualDevice(flat, fs, noise_uv=10.0, seed=5, wander_uv=0.0, motion=()).counts(np.random.default_rng(2))
    assert np.array_equal(base, same)
    w = VirtualDevice(flat, fs, wander_uv=100.0, wander_hz=0.25).counts().astype(float)
    assert abs(w.max() - 100.0) <= 1 and abs(w.min() + 100.0) <= 1  # 1 uV per count
    spec = np.abs(np.fft.rfft(w))
    assert np.fft.rfftfreq(n, 1 / fs)[spec.argmax()] == pytest.approx(0.25, abs=0.03)
    m = VirtualDevice(flat, fs, motion=[(10.0, 10.0)], motion_uv=300.0, seed=1).counts().astype(float)
    inside, outside = m[int(10 * fs):int(20 * fs)], m[:int(10 * fs)]
    assert np.all(outside == 0) and 150.0 < inside.std() < 450.0
    power = np.abs(np.fft.rfft(inside)) ** 2
    f = np.fft.rfftfreq(len(inside), 1 / fs)
    assert power[f < 5.0].sum() > 0.8 * power.sum()  # electrode motion is slow, unlike white noise
    with pytest.raises(ValueError, match="motion"):
        VirtualDevice(flat, fs, motion=[(1.0, -2.0)])
