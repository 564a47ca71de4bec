"""The hobby path end to end: the README's commands against emulated Arduino sketches on a real pty.

Each sketch is emulated the way an Arduino runs it: ``loop()`` samples the analog signal (a real
PTB-XL Lead I, as an AD8232 on a 5 V Uno's 10-bit ADC gives it: 4.44 uV per count around 512), prints
a line, and waits ``delay(ms)``; the UART sends 10 bits per character at the sketch's baud rate,
and ``Serial.print`` blocks while its 64-byte buffer is full -- so at 9600 baud (960 characters/s)
the SparkFun sketch's ``512\\r\\n`` lines go out at 192 per second and its shorter ``!\\r\\n``
lead-off lines at 320. Each line is written to the pty when its last character has left the UART:
the real pace. The runtime under test is the ``edge-run`` command itself, in a subprocess.

All cases run at once (threads and subprocesses): the test costs ~40 s of wall time, little CPU.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

from pty_feed import PtyFeed
from test_edge_support import model_bundle, quiet_env

from selfmis.readers import read_record

EDGE_RUN = [sys.executable, "-m", "selfmis.edge_runtime.cli"]
RECORD = os.path.join(os.path.dirname(__file__), "..", "core", "sample_data", "ptbxl", "records500", "00000",
                      "00271_hr")
UV_PER_COUNT = 4.44  # 5 V / 1024 counts / AD8232 gain 1100


def _lead_i():
    rec = read_record(RECORD)
    return rec.lead("I").astype(np.float64), float(rec.fs)


class ArduinoSketch(PtyFeed):
    """A sketch's ``loop()`` at a baud rate, printing ``line(t_s, mv, lead_off)`` each iteration.

    ``loop_ms``: the time one iteration takes besides printing (``delay()`` + ``analogRead()``
    ~0.11 ms). ``lead_off``: (start, duration) spans in seconds. ``header``: printed once at start.
    Each line is scheduled when its last character has left the UART; an Uno resets when a
    program opens its port (DTR), so ``setup()`` -- and a header printed there -- runs then:
    the sketch starts when the test sets ``opened``.
    """

    TX_BUFFER = 64

    def __init__(self, line, baud: int, loop_ms: float, seconds: float, lead_off=(), header: bytes = b"",
                 signal=None):
        x, fs = _lead_i() if signal is None else signal
        schedule = []  # (time the line has left the UART, bytes)
        cps = baud / 10.0
        t = uart_free = 0.0
        if header:
            uart_free = len(header) / cps
            schedule.append((uart_free, header))
        while t < seconds:
            off = any(a <= t < a + d for a, d in lead_off)
            mv = float(np.interp((t % (len(x) / fs)) * fs, np.arange(len(x)), x))
            data = line(t, mv, off)
            backlog = max(0.0, uart_free - t) * cps
            if backlog + len(data) > self.TX_BUFFER:  # Serial.print blocks until there is room
                t = uart_free - (self.TX_BUFFER - len(data)) / cps
            uart_free = max(uart_free, t) + len(data) / cps
            schedule.append((uart_free, data))
            t += loop_ms / 1000.0
        self.opened = threading.Event()
        super().__init__(schedule, wait_open=self.opened)


def counts(mv: float) -> int:
    """What analogRead(A0) returns for the AD8232 output at ``mv`` at the electrodes."""
    return int(min(1023, max(0, round(512 + mv * 1000.0 / UV_PER_COUNT))))


# --- what real sketches print ------------------------------------------------------------------

def sparkfun(t, mv, off):          # SparkFun Heart_Rate_Display.ino: 9600 baud, delay(1)
    return b"!\r\n" if off else b"%d\r\n" % counts(mv)


def plain(t, mv, off):             # the README sketch: 115200 baud, delay(4)
    return b"!\r\n" if off else b"%d\r\n" % counts(mv)


def plotter(t, mv, off):           # Serial Plotter: print("ecg:"); print(v); print(",lo:"); println(lo)
    return b"ecg:%d,lo:%d\r\n" % (512 if off else counts(mv), int(off))


def millis_csv(t, mv, off):        # print(millis()); print(','); println(analogRead(A0))
    return b"%d,%d\r\n" % (int(t * 1000) + 1234, counts(mv))


def millivolts(t, mv, off):        # println(mv, 3): a sketch that converts to mV itself
    return b"%.3f\r\n" % mv


def sawtooth(t, mv, off):          # a test ramp left in the sketch: println(i++ % 200)
    return b"%d\r\n" % (int(t * 250) % 200)


def ppg(t, mv, off):               # a pulse sensor on A0, not an AD8232
    s = (t % 0.8)
    y = (s / 0.12) * np.exp(1 - s / 0.12) + 0.35 * np.exp(-0.5 * ((s - 0.35) / 0.06) ** 2)
    return b"%d\r\n" % int(400 + 180 * y)


def _edge_run(sketch: ArduinoSketch, args: list, seconds: float, results: dict, key: str, env: dict):
    """``edge-run --port PTY --ascii ARGS``; the sketch starts when the port is open."""
    p = subprocess.Popen(EDGE_RUN + ["--port", sketch.path, "--ascii", "--model", model_bundle(),
                                     "--max-seconds", str(seconds), "--retries", "0"] + args,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    err = []
    reader = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
    reader.start()
    events = []
    timer = threading.Timer(seconds + 60, p.kill)
    timer.start()
    for line in p.stdout:
        if line.strip():
            events.append(json.loads(line))
            if events[-1].get("kind") == "connected":
                sketch.opened.set()
    code = p.wait()
    timer.cancel()
    reader.join(5)
    results[key] = (code, events, "".join(err))


U = ["--uv-per-lsb", "4.44"]  # as the README says for a 5 V Uno
CASES = {
    # name: (sketch line, baud, loop ms, edge-run args: the README's, lead-off spans, header)
    "sparkfun_9600_leadoff": (sparkfun, 9600, 1.1, ["--baud", "9600"] + U, [(10.0, 4.0)], b""),
    "plain_115200": (plain, 115200, 4.11, U, [], b""),
    "plain_fs_250": (plain, 115200, 4.11, ["--fs", "250"] + U, [], b""),  # the old README's advice
    "plotter_115200": (plotter, 115200, 4.11, U, [(13.0, 2.0)], b""),
    "millis_csv_default_column": (millis_csv, 115200, 4.11, U, [], b""),
    "millis_csv_column_1": (millis_csv, 115200, 4.11, ["--column", "1"] + U, [], b""),
    "millis_csv_header": (millis_csv, 115200, 4.11, U, [], b"time_ms,ecg\r\n"),
    "millivolt_floats": (millivolts, 115200, 4.11, [], [], b""),
    "sawtooth": (sawtooth, 115200, 4.11, [], [], b""),
    "ppg": (ppg, 115200, 4.11, [], [], b""),
}
SECONDS = 36.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    env = {**os.environ, **quiet_env(tmp_path_factory.mktemp("hobby"))}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the XNNPACK INFO line must be silenced by edge-run itself
    results, sketches, threads = {}, {}, []
    model_bundle()
    for name, (line, baud, loop_ms, args, lead_off, header) in CASES.items():
        sk = ArduinoSketch(line, baud, loop_ms, SECONDS + 15, lead_off=lead_off, header=header)
        sketches[name] = sk.__enter__()
        th = threading.Thread(target=_edge_run, args=(sk, args, SECONDS, results, name, env))
        th.start()
        threads.append(th)
    for th in threads:
        th.join(SECONDS + 90)
    for sk in sketches.values():
        sk.__exit__(None, None, None)
    return results, sketches


def _kinds(events, kind):
    return [e for e in events if e.get("type") == "link" and e.get("kind") == kind]


def _summary(events):
    return [e for e in events if e.get("type") == "summary"][-1]


def _no_third_party_noise(stderr: str):
    assert "XNNPACK" not in stderr and "Traceback" not in stderr, stderr
    assert all(line.startswith("edge-run: ") for line in stderr.splitlines() if line.strip()), stderr


@pytest.mark.parametrize("name", ["plain_115200", "plotter_115200", "millis_csv_column_1", "millis_csv_header",
                                  "millivolt_floats", "sparkfun_9600_leadoff"])
def test_ecg_sketches_give_decisions(runs, name):
    results, sketches = runs
    code, events, stderr = results[name]
    assert code == 0, stderr
    _no_third_party_noise(stderr)
    s = _summary(events)
    assert s["signal"]["state"] == "ecg", (s["signal"], stderr)
    assert s["decisions"] >= 3, (s, stderr)
    locked = _kinds(events, "rate_locked")
    assert len(locked) == 1, locked  # locked once, never re-locked
    measured = sketches[name].rate(2.0, 9.5)
    assert locked[0]["fs"] == pytest.approx(measured, rel=0.02)
    hrs = [e["hr"] for e in events if e.get("type") == "beat" and e.get("hr")]
    truth = [e["hr"] for e in _reference_beats()]
    assert np.median(hrs) == pytest.approx(np.median(truth), rel=0.04), (np.median(hrs), np.median(truth))


def _reference_beats():
    """Heart rates of the record at its own rate (edge-run --replay), the truth for the sketches."""
    global _REF
    try:
        return _REF
    except NameError:
        p = subprocess.run(EDGE_RUN + ["--replay", RECORD, "--fast", "--model", model_bundle()],
                           capture_output=True, text=True, timeout=120)
        _REF = [e for e in (json.loads(l) for l in p.stdout.splitlines() if l.strip())
                if e.get("type") == "beat" and e.get("hr")]
        return _REF


def test_9600_baud_lead_off_never_relocks_and_is_told_once(runs):
    results, sketches = runs
    code, events, stderr = results["sparkfun_9600_leadoff"]
    sk = sketches["sparkfun_9600_leadoff"]
    assert sk.rate(2, 9.5) == pytest.approx(192, rel=0.01) and sk.rate(10.5, 13.5) == pytest.approx(320, rel=0.01)
    locked = [e["fs"] for e in _kinds(events, "rate_locked")]
    assert len(locked) == 1 and locked[0] == pytest.approx(192, abs=1.0), locked  # never 233 Hz
    assert "re-locked" not in stderr
    assert sum("lead-off" in line for line in stderr.splitlines()) == 1, stderr
    assert sum("back on" in line for line in stderr.splitlines()) == 1, stderr
    # after lead-off: the rate is measured again before any beat; no beat in between
    unver = [e for e in _kinds(events, "rate_unverified") if "lead-off" in e.get("reason", "")]
    ok = [e for e in _kinds(events, "rate_ok") if e["t"] >= unver[0]["t"]]
    assert unver and ok
    beats = [e for e in events if e.get("type") == "beat" and unver[0]["t"] <= e["t"] < ok[0]["t"] - 1.0]
    assert beats == []
    after = [e for e in events if e.get("type") == "decision" and e["t"] > ok[0]["t"]]
    assert after, "decisions resume after the electrodes are back"


@pytest.mark.parametrize("name, reason", [("sawtooth", "monotonic"), ("ppg", "no_qrs"),
                                          ("millis_csv_default_column", "monotonic")])
def test_non_ecg_columns_get_no_decision(runs, name, reason):
    results, _ = runs
    code, events, stderr = results[name]
    assert code == 0, stderr
    _no_third_party_noise(stderr)
    s = _summary(events)
    assert s["decisions"] == 0 and s["beats"] == 0, s
    assert s["signal"]["state"] == "not_ecg" and reason in s["signal"]["reasons"], s["signal"]
    refusals = [line for line in stderr.splitlines() if "does not look like ECG" in line]
    assert len(refusals) == 1, stderr
    if name == "millis_csv_default_column":
        assert "--column 1" in refusals[0], refusals


def test_fs_250_on_a_243_hz_sketch_is_accepted_with_the_cost_said_once(runs):
    results, sketches = runs
    code, events, stderr = results["plain_fs_250"]
    assert code == 0 and _summary(events)["decisions"] >= 3, stderr
    said = [line for line in stderr.splitlines() if "heart rates read" in line]
    assert len(said) == 1 and "high" in said[0] and re.search(r"--fs 24[234]\b", said[0]), stderr


def test_millivolt_floats_are_taken_as_mv_and_said_once(runs):
    results, _ = runs
    code, events, stderr = results["millivolt_floats"]
    assert sum("taken as mV" in line for line in stderr.splitlines()) == 1, stderr


def test_missing_port_lists_the_ports_present(tmp_path):
    from test_edge_support import quiet_env as qe
    p = subprocess.run(EDGE_RUN + ["--port", str(tmp_path / "ttyACM0"), "--ascii", "--model", model_bundle()],
                       capture_output=True, text=True, timeout=60, env={**os.environ, **qe(tmp_path)})
    assert p.returncode == 4, p.stderr
    assert "no such serial port" in p.stderr and ("ports present" in p.stderr or "no serial ports" in p.stderr)


def test_units_apply_to_ascii_streams_and_not_to_simulate():
    from selfmis.edge_runtime import cli
    assert cli.main(["--simulate", RECORD, "--units", "mV"]) == 2
