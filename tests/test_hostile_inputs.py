"""Hostile peers, part 1: rates and gains, crafted device bytes (TCP and a pty), crafted files, a full disk.

Every case runs the real thing where it can: ``edge-run`` in its own process reading a TCP
socket or a pseudo-terminal, files on disk, a real ENOSPC from ``/dev/full`` (always there
on Linux: no mount needed) and, where this process may mount one, a 64 KiB tmpfs. Target
(issue 24): no traceback, only documented exit codes, stdout at most 2 x the device bytes.
CI cost: ~40 s (about 14 edge-run processes).
"""
from __future__ import annotations

import errno
import json
import os
import pty
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from selfmis import protocol as P
from selfmis.benchmarks import hostile as H
from selfmis.exit_codes import ExitCode
from selfmis.limits import LimitError, check_gain, check_rate
from selfmis.preprocess import StreamResampler
from selfmis.readers import RecordError, open_lead

REPO = Path(__file__).resolve().parent.parent
RECORD = str(REPO / "core/sample_data/ptbxl/records500/00000/00271_hr")
BAD_RATES = [float("nan"), float("inf"), float("-inf"), 1e300, 0.001, 0.0, -250.0, 2e7, 1e9, 49.9, 10000.5]
WIRE_BAD_RATES = [x for x in BAD_RATES if x != 1e300] + [3e38]  # float32 on the wire


# ----------------------------------------------------------------------------- one rule for rates

@pytest.mark.parametrize("fs", BAD_RATES + ["abc", None, "1e999"])
def test_every_bad_rate_is_refused_naming_source_field_and_value(fs):
    with pytest.raises(LimitError) as e:
        check_rate(fs, "HELLO frame", "fs_hz")
    msg = str(e.value)
    assert msg.startswith("HELLO frame: fs_hz=") and "50 Hz to 10000 Hz" in msg
    assert e.value.exit_code == ExitCode.SOURCE


@pytest.mark.parametrize("fs", [50, 100, 130, 250, 360, 500, 1000, 8000, 10000, "250"])
def test_supported_rates_pass(fs):
    assert check_rate(fs, "x") == float(fs)


@pytest.mark.parametrize("uv", [0.0, -1.0, float("nan"), float("inf"), 1e9, 1e-9])
def test_bad_gains_are_refused(uv):
    with pytest.raises(LimitError, match="not a supported gain"):
        check_gain(uv, "HELLO frame")


@pytest.mark.parametrize("fs", WIRE_BAD_RATES)
def test_wire_hello_and_data_with_a_bad_rate_are_refusals(fs):
    d = P.StreamDecoder()
    data_payload = struct.pack("<HBBfH", 1, 0, P.FMT_INT16_LE, fs, 1) + b"\x00\x00"
    msgs = d.feed(H._bad_rate_hello(fs) + P.encode_raw_frame(P.FRAME_DATA, data_payload))
    assert len(msgs) == 2 and all(isinstance(m, P.DecodeError) and m.refused for m in msgs), msgs
    assert "not a supported sample rate" in msgs[0].reason


@pytest.mark.parametrize("fs", BAD_RATES[:9])  # 49.9 and 10000.5 Hz it could build: the limits refuse those
def test_the_resampler_refuses_what_it_cannot_build_in_bounded_memory(fs):
    with pytest.raises(LimitError, match="bounded memory"):
        StreamResampler(fs, 100.0)


@pytest.mark.parametrize("fs", [50.0, 51.3, 130.0, 10000.0])
def test_the_resampler_stays_small_for_every_supported_rate(fs):
    tracemalloc.start()
    rs = StreamResampler(fs, 100.0)
    y = rs.process(np.random.default_rng(0).standard_normal(65535))  # the largest DATA frame
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert abs(len(y) - 65535 * 100.0 / fs) < 30 and peak < 40e6, (len(y), peak)


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "0.001", "2e7", "1e9", "0", "-5", "x"])
def test_cli_fs_is_a_usage_error(value, capsys):
    from selfmis.edge_runtime import cli
    assert cli.main(["--replay", RECORD, "--fast", "--fs", value]) == ExitCode.USAGE
    assert "--fs" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "1e9", "0", "-5", "x"])
def test_cli_gain_is_a_usage_error(value, capsys):
    from selfmis.edge_runtime import cli
    assert cli.main(["--replay", RECORD, "--fast", "--uv-per-lsb", value]) == ExitCode.USAGE
    assert "--uv-per-lsb" in capsys.readouterr().err


# ----------------------------------------------------------------------------- crafted files

def _csv(tmp_path, text, name="x.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("header", ["# fs=1e9", "# fs=nan", "# fs=0.001", "# fs=inf", "# fs=2e7"])
def test_csv_header_rates_are_refused(tmp_path, header):
    p = _csv(tmp_path, header + "\nI\n" + "\n".join(str(i % 7) for i in range(50)) + "\n")
    with pytest.raises(RecordError, match="not a supported sample rate"):
        open_lead(p, "I")


def test_csv_time_column_at_one_sample_per_second_is_refused(tmp_path):
    p = _csv(tmp_path, "time,I\n" + "\n".join(f"{i},{i % 5}" for i in range(50)) + "\n")
    with pytest.raises(RecordError, match="rate measured on the time column"):
        open_lead(p, "I")


@pytest.mark.parametrize("fs", ["20000000", "0.001", "1e300"])
def test_wfdb_header_rates_are_refused(tmp_path, fs):
    (tmp_path / "r.hea").write_text(f"r 1 {fs} 100\nr.dat 16 200/mV 16 0 0 0 0 I\n")
    (tmp_path / "r.dat").write_bytes(np.zeros(100, "<i2").tobytes())
    with pytest.raises(RecordError, match="not a supported"):
        open_lead(str(tmp_path / "r"), "I")


def test_wfdb_gain_that_is_no_gain_is_refused(tmp_path):
    (tmp_path / "r.hea").write_text("r 1 250 100\nr.dat 16 1e-30/mV 16 0 0 0 0 I\n")
    (tmp_path / "r.dat").write_bytes(np.zeros(100, "<i2").tobytes())
    with pytest.raises(RecordError, match="gain"):
        open_lead(str(tmp_path / "r"), "I")


def test_edf_with_an_absurd_rate_is_refused(tmp_path):
    pyedflib = pytest.importorskip("pyedflib")
    path = str(tmp_path / "x.edf")
    w = pyedflib.EdfWriter(path, 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([{"label": "I", "dimension": "mV", "sample_frequency": 10,
                         "physical_max": 5, "physical_min": -5, "digital_max": 32767, "digital_min": -32768}])
    w.writeSamples([np.zeros(10 * 4)])
    w.close()
    with pytest.raises(RecordError, match="not a supported sample rate"):
        open_lead(path, "I")


def test_edge_run_replay_of_a_crafted_file_exits_4_naming_it(tmp_path, capsys):
    from selfmis.edge_runtime import cli
    p = _csv(tmp_path, "# fs=1e9\nI\n" + "0\n" * 50)
    assert cli.main(["--replay", p, "--fast", "--quiet"]) == ExitCode.SOURCE
    assert "x.csv" in capsys.readouterr().err


# ----------------------------------------------------------------------------- crafted devices

@pytest.mark.parametrize("case", ["random_bytes", "crc_flood", "resync_flood", "hello_flip", "seq_jump",
                                  "duplicate_flood", "lead_off_toggle"])
def test_tcp_device_floods_stay_bounded(case):
    data = H.device_cases(48 * 1024)[case]
    r = H.run_device_case(data)
    assert not r["traceback"], r["stderr"][-2000:]
    assert r["rc"] in H.DOCUMENTED_EXITS, (r["rc"], r["stderr"][-1000:])
    assert r["out_bytes"] <= 2 * r["in_bytes"], (r["out_bytes"], r["in_bytes"])
    lines = [json.loads(x) for x in r["stdout"].splitlines()]  # every line valid JSON
    summary = lines[-1]
    assert summary["type"] == "summary"
    if case in ("crc_flood", "resync_flood"):
        assert summary["crc_errors"] + summary["resyncs"] > 50 and summary["events_held_back"] > 0


@pytest.mark.parametrize("case", ["hello_fs_2e7", "hello_fs_1e9", "hello_fs_0.001", "hello_fs_nan", "hello_fs_inf"])
def test_tcp_device_declaring_an_unsupported_rate_is_refused_with_exit_4(case):
    r = H.run_device_case(H.device_cases(4096)[case])
    assert r["rc"] == ExitCode.SOURCE and not r["traceback"], r["stderr"][-1500:]
    assert "HELLO frame: fs_hz=" in r["stderr"] and "not a supported sample rate" in r["stderr"]


def test_pty_device_declaring_an_unsupported_rate_is_refused(tmp_path):
    master, slave = pty.openpty()
    name = os.ttyname(slave)
    proc = subprocess.Popen([sys.executable, "-m", "selfmis.edge_runtime.cli", "--port", name, "--retries", "0",
                             "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            # like firmware repeating its HELLO: pyserial flushes what arrived before the port opened
            os.write(master, H._bad_rate_hello(2e7))
            time.sleep(0.2)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        os.close(slave)
    assert proc.returncode == ExitCode.SOURCE, err.decode()[-1500:]
    assert b"Traceback" not in err and b"fs_hz=20000000.0" in err


# ----------------------------------------------------------------------------- a full disk while recording

def _simulate_with_recording(tmp_path, capsys, stream_target):
    """edge-run --simulate --record DIR in this process, stream.bin pointed at ``stream_target``."""
    from selfmis.edge_runtime import cli
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "stream.bin").symlink_to(stream_target)
    # 4x real time: the recorder flushes once a wall second, so the failure comes mid-run
    code = cli.main(["--simulate", RECORD, "--speed", "4", "--quiet", "--record", str(rec)])
    cap = capsys.readouterr()
    return code, [json.loads(x) for x in cap.out.splitlines()], cap.err


def test_a_full_disk_stops_the_recording_not_detection(tmp_path, capsys):
    # /dev/full: every write fails with ENOSPC, the kernel's own full-disk error (no mount needed)
    code, events, err = _simulate_with_recording(tmp_path, capsys, "/dev/full")
    assert code == ExitCode.OK, err
    kinds = [e["type"] for e in events]
    stopped = [e for e in events if e["type"] == "recording"]
    assert len(stopped) == 1 and stopped[0]["state"] == "stopped" and "space" in stopped[0]["reason"].lower()
    assert "decision" in kinds[kinds.index("recording"):], "decisions must go on after the recording stopped"
    assert events[-1]["recording_stopped"] and "Traceback" not in err
    assert sum("recording stopped" in line for line in err.splitlines()) == 1, err


def test_a_tiny_tmpfs_filling_up_stops_the_recording_not_detection(tmp_path, capsys):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.decode().strip()}); /dev/full covers ENOSPC")
    try:
        st = os.statvfs(mnt)
        (mnt / "filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - 1024))  # 1 KiB left: the first flush fails
        code, events, err = _simulate_with_recording(tmp_path, capsys, mnt / "stream.bin")
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
    assert code == ExitCode.OK and "Traceback" not in err
    kinds = [e["type"] for e in events]
    assert "recording" in kinds and "decision" in kinds[kinds.index("recording"):]


def test_recorder_fault_injection_on_close_never_raises(tmp_path):
    from selfmis.edge_runtime.recording import Recorder
    from selfmis.edge_runtime.stream import Chunk

    class Broken:
        closed = False

        def write(self, b):
            raise OSError(errno.EIO, "Input/output error")

        flush = fileno = write

        def close(self):
            self.closed = True

    r = Recorder(tmp_path / "r")
    r._fh = Broken()
    r.write(Chunk(np.zeros(10, np.float32), 250.0))
    r.close()
    assert r.failed and [e["state"] for e in r.take_events()] == ["stopped"] and r.take_events() == []


# ----------------------------------------------------------------------------- outputs and link bookkeeping

def test_json_lines_never_carry_nan(tmp_path):
    import io
    from selfmis.edge_runtime.output import JsonlWriter
    buf = io.StringIO()
    w = JsonlWriter(buf)
    w.write({"type": "decision", "probabilities": {"MI": float("nan"), "NORM": np.float32("inf")},
             "hr": np.float64("nan"), "x": [1.0, float("-inf")]})
    line = buf.getvalue().strip()
    assert "NaN" not in line and "Infinity" not in line
    assert json.loads(line)["probabilities"] == {"MI": None, "NORM": None}


def test_a_sequence_jump_is_a_bounded_restart_not_days_filled():
    from selfmis.edge_runtime.sources.framed import FramedStream
    fs = FramedStream()
    items = fs.feed(b"".join(P.encode_frame(P.DataFrame(seq=(i * 32767) & 0xFFFF, samples=np.zeros(25, np.int32)))
                             for i in range(40)))
    gaps = [c.gap_before for c in items if hasattr(c, "gap_before")]
    assert max(gaps) <= 10 * 250 + 1 and fs.stats["seq_jumps"] == 39
    assert sum(1 for i in items if getattr(i, "kind", "") == "seq_jump") <= 2  # rate-limited


def test_event_budget_bounds_link_events_by_input_bytes():
    from selfmis.edge_runtime.output import EventBudget
    b = EventBudget()
    b.feed(10_000)
    admitted = sum(bool(b.admit("crc_error", t * 2.0)) for t in range(100_000))  # the 1/s rule never binds
    assert admitted * b.event_bytes <= b.allowance + 0.25 * 10_000 + b.event_bytes and b.held_back > 99_000
