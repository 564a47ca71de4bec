"""The gateway in the field: what hobby sketches print, rates declared right/wrong/absent, lossy links.

Sketches are emulated on a pseudo-terminal the way an Arduino prints over USB CDC:
``Serial.println(value)`` lines ending in ``\\r\\n``, written in bursts every 10 ms
at the sketch's sample rate. TCP runs on loopback against ``selfmis-sim --tcp``.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from pty_feed import PtyFeed
from test_edge_support import model_bundle, quiet_env, record_path

from selfmis import protocol as P
from selfmis import ascii_sketch
from selfmis.edge_runtime.pipeline import Pipeline
from selfmis.edge_runtime.sources.rate import RateEstimator, snap_rate
from selfmis.edge_runtime.sources.serial import SerialSource, raw_reader

EDGE_RUN = [sys.executable, "-m", "selfmis.edge_runtime.cli"]
SIM = [sys.executable, "-m", "selfmis.firmware_bridge.virtual_device"]
MI_500 = record_path(271, hr=True)
needs_data = pytest.mark.skipif(MI_500 is None, reason="no PTB-XL records available")


def ecg_counts(fs: float, seconds: float) -> np.ndarray:
    """Record 271 lead I (or a synthetic ECG) at ``fs``, as ADC counts of 1 uV."""
    if MI_500 is not None:
        from selfmis.readers import read_record
        rec = read_record(MI_500)
        x = np.tile(rec.lead("I"), int(np.ceil(seconds / rec.duration_s)) + 1)
        t = np.arange(int(seconds * fs)) / fs
        y = np.interp(t, np.arange(len(x)) / rec.fs, x)
    else:
        t = np.arange(int(seconds * fs)) / fs
        y = np.exp(-0.5 * ((t % 0.8 - 0.4) / 0.01) ** 2)
    return np.round(y * 1000).astype(int)


Sketch = PtyFeed.at_rate  # lines[i] at i / fs s, bursts every 10 ms


def println(values) -> list:
    return [b"%d\r\n" % v for v in values]


def drive(src: SerialSource, pipe: Pipeline, seconds: float):
    """Run ``src`` into ``pipe`` for ``seconds`` of wall time; all events."""
    threading.Timer(seconds, src.stop).start()
    ev = []
    with src:
        for item in src:
            ev += pipe.handle(item)
    return ev


# ---------------------------------------------------------------- the time base

def test_rate_estimator_is_robust_to_bursts_and_a_backlog():
    est = RateEstimator()
    rng = np.random.default_rng(0)
    t, n = 100.0, 0
    est.add(3000, t)  # a backlog in the first read
    for _ in range(400):  # USB-like bursts: 16 ms +- jitter, sometimes a 300 ms stall
        dt = 0.3 if rng.random() < 0.02 else 0.016 + rng.normal(0, 0.003)
        t += max(0.001, dt)
        k = int(round(t * 360)) - n - int(100 * 360)
        n += max(0, k)
        est.add(max(0, k), t)
    assert est.estimate() == pytest.approx(360, rel=0.01)
    assert snap_rate(est.estimate()) == 360.0 and snap_rate(241.4) == 241.0


RATES = (125.0, 250.0, 360.0, 500.0, 1000.0)


def _rate_case(fs, declared, header, results, key):
    lines = println(ecg_counts(fs, 12.0))
    with Sketch(lines, fs, header=header) as sk:
        src = SerialSource(sk.path, ascii=True, fs=declared, check_signal=False)  # the rate alone
        pipe = Pipeline(None)
        ev = drive(src, pipe, 6.5)
    results[key] = (ev, src, pipe)


def test_pty_rates_declared_right_wrong_and_absent():
    """125-1000 Hz sketches: right -> rate_ok; wrong -> rate_mismatch and never a beat;
    absent (no header, no --fs) -> locked to the true rate; a header declares it too."""
    cases = {}
    for fs in RATES:
        cases[(fs, "right")] = (fs, fs, b"")
        cases[(fs, "wrong")] = (fs, fs * (2.0 if fs < 1000 else 0.5), b"")
        cases[(fs, "absent")] = (fs, None, b"")
    cases[(250.0, "header")] = (250.0, None, b"# fs=250 lead=I\r\n")
    cases[(500.0, "wrong header")] = (500.0, None, b"# fs=250 lead=I\r\n")
    results = {}
    threads = [threading.Thread(target=_rate_case, args=(*v, results, k)) for k, v in cases.items()]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    for (fs, how), (ev, src, pipe) in sorted(results.items()):
        kinds = [e["kind"] for e in ev if e["type"] == "link"]
        beats = [e for e in ev if e["type"] == "beat"]
        state = src.rate_watch.state
        where = f"{fs:g} Hz declared {how}: {kinds}"
        if how in ("right", "header"):
            assert state == "ok" and "rate_ok" in kinds and "rate_mismatch" not in kinds, where
            assert src.rate_watch.measured == pytest.approx(fs, rel=0.03), where
        elif how in ("wrong", "wrong header"):
            assert state == "mismatch" and "rate_mismatch" in kinds, where
            assert not beats, where  # heart rates would be wrong by 2x: nothing is reported
            assert any(e["type"] == "quality" and "rate_mismatch" in e["reasons"] for e in ev), where
            assert pipe.summary()["rate"]["state"] == "mismatch"
        else:
            assert "rate_locked" in kinds and src.rate_watch.locked == fs, where
            assert src.fs == fs
        if how != "wrong" and how != "wrong header" and fs <= 500:
            assert beats, where  # it really runs (1000 Hz needs longer to settle the detector)
    assert len(results) == len(cases)


@needs_data
def test_cli_wrong_fs_never_decides_and_absent_fs_just_works(tmp_path):
    """Issue 12's worst case through edge-run: a 500 Hz sketch declared 250 gives no decision and
    says what to pass; the same sketch with no --fs and no header locks to 500 Hz and decides."""
    bundle = model_bundle()
    lines = println(ecg_counts(500.0, 30.0))
    res = {}

    def one(key, extra):
        with Sketch(lines, 500.0) as sk:
            r = subprocess.run(EDGE_RUN + ["--port", sk.path, "--ascii", "--model", bundle,
                                           "--max-seconds", "14", "--retries", "0"] + extra,
                               capture_output=True, text=True, timeout=90, env=quiet_env(tmp_path))
        res[key] = (r, [json.loads(l) for l in r.stdout.splitlines() if l.strip()])

    ths = [threading.Thread(target=one, args=a) for a in (("wrong", ["--fs", "250"]), ("absent", []))]
    for th in ths:
        th.start()
    for th in ths:
        th.join(120)
    r, ev = res["wrong"]
    s = ev[-1]
    assert r.returncode == 0 and s["type"] == "summary", r.stderr
    assert s["decisions"] == 0 and not [e for e in ev if e["type"] in ("decision", "beat")]
    assert s["rate"]["state"] == "mismatch" and s["suppressed"].get("rate_mismatch", 0) >= 1
    assert "pass --fs 500" in r.stderr
    r, ev = res["absent"]
    s = ev[-1]
    assert r.returncode == 0, r.stderr
    assert "locked to 500 Hz" in r.stderr and s["rate"]["locked_hz"] == 500.0
    assert s["decisions"] >= 3 and s["beats"] >= 10


@needs_data
def test_documented_sim_ascii_pair_starts(tmp_path):
    """`selfmis-sim --ascii` + `edge-run --port L --ascii` (no --fs): the header went out before the
    reader opened; the rate is measured instead."""
    link = str(tmp_path / "ttyECG")
    sim = subprocess.Popen(SIM + ["--ascii", "--pty", "--link", link, "--loop"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=quiet_env(tmp_path))
    try:
        assert sim.stdout.readline().startswith("/")
        time.sleep(1.0)  # the header is long gone
        r = subprocess.run(EDGE_RUN + ["--port", link, "--ascii", "--max-seconds", "12", "--quiet"],
                           capture_output=True, text=True, timeout=60, env=quiet_env(tmp_path))
    finally:
        sim.kill()
        sim.wait()
    ev = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    assert r.returncode == 0 and ev[-1]["decisions"] >= 2, r.stderr
    assert "INFO" not in r.stderr  # --quiet: warnings only (TFLite's XNNPACK INFO line included)


# ---------------------------------------------------------------- hobby formats

@pytest.mark.parametrize("text, kw, want", [
    (b"503\r\n-4\r\n", {}, [503, -4]),
    (b"ecg:503,lo:0\r\necg:504,lo:1\r\n", {}, [503, "off"]),
    (b"503,0\r\n504,1\r\n", {"column": 1}, [0, 1]),
    (b"503 7\r\n504\t8\r\n", {}, [503, 504]),
    (b"t:1 ecg:503\r\nt:2 ecg:504\r\n", {"label": "ECG"}, [503, 504]),
    (b"1.65\r\n!\r\nLO\r\nleads off!\r\n", {}, [1.65, "off", "off", "off"]),
])
def test_serial_plotter_formats(text, kw, want):
    for feed in ("feed", "feed_runs"):
        dec = ascii_sketch.AsciiLineDecoder(**kw)
        got = []
        for m in getattr(dec, feed)(text):
            if isinstance(m, ascii_sketch.SampleRun):
                got += ["off" if m.lead_off and m.lead_off[i] else v for i, v in enumerate(m.values)]
            else:
                got.append("off" if isinstance(m, ascii_sketch.LeadOff) else m)
        assert got == want, feed


def test_decoder_names_the_missing_field():
    out = ascii_sketch.AsciiLineDecoder(label="ecg").feed(b"x:1,y:2\r\n")
    assert isinstance(out[0], P.DecodeError) and "no 'ecg' field" in out[0].reason
    out = ascii_sketch.AsciiLineDecoder(column=3).feed(b"1,2\r\n")
    assert isinstance(out[0], P.DecodeError) and "no column 3" in out[0].reason


@needs_data
@pytest.mark.parametrize("fmt, extra", [("ecg:%d,lo:0", []), ("%d,0", []), ("%d\t512", ["--column", "0"]),
                                        ("x:7 ecg:%d", ["--label", "ecg"])],
                         ids=["label-lo", "comma", "tab", "label"])
def test_cli_serial_plotter_sketches_score(tmp_path, fmt, extra):
    lines = [(fmt % v).encode() + b"\r\n" for v in ecg_counts(250.0, 20.0)]
    with Sketch(lines, 250.0) as sk:
        r = subprocess.run(EDGE_RUN + ["--port", sk.path, "--ascii", "--fs", "250", "--model", model_bundle(),
                                       "--max-seconds", "9", "--retries", "0"] + extra,
                           capture_output=True, text=True, timeout=60, env=quiet_env(tmp_path))
    ev = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    s = ev[-1]
    assert r.returncode == 0 and s["decode_errors"] == 0 and s["beats"] >= 5, r.stderr
    assert s["decisions"] >= 1


def test_garbage_and_silence_are_explained_once_and_max_seconds_fires(tmp_path):
    """Mostly undecodable lines: one stderr warning with a hint, decode errors at most ~1/s on
    stdout; a silent port: one 'no sample' warning; --max-seconds ends both runs."""
    res = {}

    def one(key, lines):
        with Sketch(lines, 200.0) as sk:
            t0 = time.monotonic()
            r = subprocess.run(EDGE_RUN + ["--port", sk.path, "--ascii", "--max-seconds", "4",
                                           "--retries", "0"],
                               capture_output=True, text=True, timeout=60, env=quiet_env(tmp_path))
        res[key] = (r, time.monotonic() - t0)

    ths = [threading.Thread(target=one, args=("garbage", [b"V=1.2 mV ok\r\n"] * 4000)),
           threading.Thread(target=one, args=("silent", []))]
    for th in ths:
        th.start()
    for th in ths:
        th.join(90)
    r, wall = res["garbage"]
    ev = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    errs = [e for e in ev if e.get("kind") == "decode_error"]
    assert ev[-1]["type"] == "summary" and wall < 30
    assert ev[-1]["decode_errors"] > 500 and 1 <= len(errs) <= 15  # counted, not printed each
    assert sum(e.get("count", 1) for e in errs) <= ev[-1]["decode_errors"]
    assert r.stderr.count("could not be read") == 1 and "--column" in r.stderr
    r, wall = res["silent"]
    assert r.stderr.count("no sample in") == 1 and "right port" in r.stderr and wall < 30


def test_binary_stream_read_as_text_gets_a_hint(tmp_path):
    frames = [P.encode_frame(P.DataFrame(seq=i, samples=np.zeros(25, np.int32), fs_hz=250.0))
              for i in range(200)]
    with Sketch(frames, 10.0) as sk:
        r = subprocess.run(EDGE_RUN + ["--port", sk.path, "--ascii", "--max-seconds", "3", "--retries", "0"],
                           capture_output=True, text=True, timeout=60, env=quiet_env(tmp_path))
    assert "drop --ascii" in r.stderr or "could not be read" in r.stderr, r.stderr


# ---------------------------------------------------------------- reads and links

def test_reads_take_whole_bursts_on_sockets_and_ptys():
    """pyserial's in_waiting is 1 for sockets: the reader must not read byte by byte."""
    import serial
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    ser = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=0.02)
    conn, _ = srv.accept()
    conn.sendall(b"x" * 50_000)
    time.sleep(0.2)
    read = raw_reader(ser, 0.05)
    got = read()
    assert len(got) == 4096  # one call takes a whole read's worth (serial._READ_MAX), not one byte
    conn.close()
    with pytest.raises(OSError):
        while read():
            pass
    ser.close()
    srv.close()
    with Sketch([b"1\r\n"] * 2000, 100_000.0) as sk:
        ser = serial.serial_for_url(sk.path, timeout=0.02)
        time.sleep(0.3)
        assert len(raw_reader(ser, 0.05)()) > 1000
        ser.close()


@needs_data
def test_tcp_socket_url_streams_binary_frames(tmp_path):
    # paced (20x): pyserial discards what arrived before the port opened, and --fast would
    # fill the loopback buffers with seconds of signal before edge-run connects
    sim = subprocess.Popen(SIM + [MI_500, "--tcp", "0", "--loop", "--seconds", "60", "--speed", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=quiet_env(tmp_path))
    try:
        url = sim.stdout.readline().strip()
        assert url.startswith("socket://"), sim.stderr.read()
        r = subprocess.run(EDGE_RUN + ["--port", url, "--model", model_bundle(), "--trust-rate",
                                       "--max-seconds", "40", "--retries", "0"],
                           capture_output=True, text=True, timeout=60, env=quiet_env(tmp_path))
    finally:
        sim.kill()
        sim.wait()
    ev = [json.loads(l) for l in r.stdout.splitlines() if l.strip()]
    s = ev[-1]
    assert s["type"] == "summary" and s["signal_s"] >= 39.0 and s["decisions"] >= 20, r.stderr
    assert s["crc_errors"] == 0 and s["drops"] == 0


# ---------------------------------------------------------------- the gap policy

@needs_data
def test_two_percent_frame_loss_keeps_most_beats_scored():
    """Issue 12: 2% of 50-sample frames lost over 120 s used to suppress 89 of 140 beats."""
    from selfmis.benchmarks.gap_policy import lossy_stream
    from selfmis.edge_runtime.interpreter import TFLiteModel
    r = lossy_stream(TFLiteModel(model_bundle()), MI_500, seconds=120.0, drop=0.02)
    assert r["frames_dropped"] >= 15
    assert r["scored_share_of_eligible"] >= 0.80, r


@needs_data
def test_filled_gap_within_policy_is_scored_beyond_it_is_not():
    from selfmis.benchmarks.gap_policy import _chunks
    from selfmis.edge_runtime.interpreter import TFLiteModel
    from selfmis.edge_runtime.quality import MAX_FILLED_GAP_S
    model = TFLiteModel(model_bundle())
    x = ecg_counts(500.0, 30.0) / 1000.0

    def suppressed(gap_s):
        pipe = Pipeline(model)
        for c in _chunks(x.astype(np.float32), 500.0, gap_s, 1.0):
            pipe.handle(c)
        return pipe.summary()

    ok, bad = suppressed(0.8 * MAX_FILLED_GAP_S), suppressed(1.6 * MAX_FILLED_GAP_S)
    assert ok["suppressed"].get("gap", 0) == 0 and ok["scored"] >= 20
    assert bad["suppressed"].get("gap", 0) >= 10 and bad["lost_samples"] > ok["lost_samples"]


@given(st.lists(st.sampled_from([b"12", b"-7", b"!", b"LO", b"# fs=250", b"abc", b"", b"3,4", b"ecg:5",
                                 b"x" * 140, b"-", b"99999999999"]), max_size=60),
       st.integers(1, 40))
@settings(max_examples=150, deadline=None)
def test_batched_decoder_agrees_with_the_line_decoder(lines, step):
    """feed_runs (vectorised) yields the same slots, headers and errors as feed, for any chunking."""
    data = b"".join(l + b"\r\n" for l in lines)

    def flat(msgs):
        out = []
        for m in msgs:
            if isinstance(m, ascii_sketch.SampleRun):
                out += ["off" if m.lead_off and m.lead_off[i] else v for i, v in enumerate(m.values)]
            elif isinstance(m, ascii_sketch.LeadOff):
                out.append("off")
            elif isinstance(m, P.DecodeError):
                out.append(("err", m.offset))
            elif isinstance(m, ascii_sketch.AsciiHeader):
                out.append(("hdr", m.offset))
            else:
                out.append(m)
        return out
    a, b = ascii_sketch.AsciiLineDecoder(), ascii_sketch.AsciiLineDecoder()
    fa, fb = [], []
    for i in range(0, len(data), step):
        fa += a.feed(data[i:i + step])
        fb += b.feed_runs(data[i:i + step])
    assert flat(fa) == flat(fb)
    assert a.samples == b.samples and a.errors == b.errors


def test_damaged_model_file_is_called_damaged_not_a_mix_up(tmp_path):
    import shutil
    from selfmis.bundle import BundleError, load_bundle
    src = model_bundle()
    dst = tmp_path / "bundle"
    shutil.copytree(src, dst)
    card = json.loads((dst / "card.json").read_text())
    model = dst / card.get("model_file", "model.tflite")
    if not model.exists():
        model = next(dst.glob("*.tflite"))
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte: same size, other content
    model.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="damaged or edited") as e:
        load_bundle(dst)
    assert "do not belong together" not in str(e.value)
    model.write_bytes(bytes(raw[:-100]))  # truncated copy
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(dst)
