"""The hobby path's checks, without a port: is it ECG, which column, which units, which rate.

* :func:`selfmis.edge_runtime.ecg_check.assess` accepts real PTB-XL Lead I (the shipped records;
  >= 99% of the shared subset's test folds 9-10) and refuses every non-ECG signal a sketch's column
  may hold (sawtooth, PPG, ``millis()``, noise, constant...);
* :class:`~selfmis.edge_runtime.ecg_check.EcgWatch` gates a stream and names another column;
* the ASCII decoder picks columns by name, never crashes on a 20-digit integer;
* the rate watch is not fooled by lead-off lines (shorter, so faster, at 9600 baud).
"""
from __future__ import annotations

import glob
import os

import numpy as np
import pytest

from selfmis import ascii_sketch
from selfmis.benchmarks.is_ecg import SKETCH_FS, negatives, ptbxl_lead_i
from selfmis.edge_runtime.ecg_check import EcgWatch, assess
from selfmis.edge_runtime.pipeline import Pipeline
from selfmis.edge_runtime.sources.rate import RateWatch
from selfmis.edge_runtime.sources.serial import SerialSource
from selfmis.edge_runtime.stream import Chunk, LinkEvent
from selfmis.protocol import DecodeError
from selfmis.readers import read_record

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "core", "sample_data", "ptbxl")


# --- is it ECG? -------------------------------------------------------------------------------

@pytest.mark.parametrize("hea", sorted(glob.glob(os.path.join(SAMPLES, "records*", "*", "*.hea"))))
def test_shipped_ptbxl_lead_i_is_ecg(hea):
    rec = read_record(hea[:-4])
    v = assess(rec.lead("I"), rec.fs)
    assert v.ok, (hea, v)


@pytest.mark.parametrize("uv_per_count", [1.0, 4.44])
@pytest.mark.parametrize("name", sorted(negatives()))
def test_non_ecg_columns_are_refused(name, uv_per_count):
    x = negatives()[name]
    v = assess(x * uv_per_count / 1000.0, SKETCH_FS)
    assert not v.ok and v.reasons, (name, v)


def test_refusal_reasons_say_what_it_is():
    neg = negatives()
    assert "monotonic" in assess(neg["millis"] / 1000.0, SKETCH_FS).reasons
    assert "monotonic" in assess(neg["sawtooth_5hz"] / 1000.0, SKETCH_FS).reasons
    assert "no_qrs" in assess(neg["ppg_75bpm"] / 1000.0, SKETCH_FS).reasons
    assert assess(neg["constant"] / 1000.0, SKETCH_FS).reasons == ["flat"]
    assert "no_beats" in assess(neg["noise_white"] / 1000.0, SKETCH_FS).reasons


def test_ptbxl_test_folds_lead_i_accepted_at_least_99_percent(shared_ptbxl):
    """200 records of test folds 9-10 (the thresholds were set on folds 1-8)."""
    verdicts = [assess(x, fs).ok for _eid, x, fs in ptbxl_lead_i(shared_ptbxl, {9, 10}, 200)]
    assert len(verdicts) == 200
    assert np.mean(verdicts) >= 0.99, f"{sum(verdicts)} of 200 accepted"


def _chunks(x, fs, n=25, t0=1000.0, **kw):
    for i in range(0, len(x), n):
        yield Chunk(np.asarray(x[i:i + n], np.float32), fs, t_mono=t0 + i / fs, **kw)


def _ecg(seconds, fs=250.0):
    rec = read_record(os.path.join(SAMPLES, "records500", "00000", "00271_hr"))
    x = np.tile(rec.lead("I"), int(seconds // 10) + 1)
    return np.interp(np.arange(int(seconds * fs)) / fs, np.arange(len(x)) / rec.fs, x)


def test_watch_gates_until_verified_and_names_the_column_that_is_ecg():
    ecg = _ecg(12)
    fake_millis = (np.arange(len(ecg)) * 4.0 + 1234) / 1000.0
    w = EcgWatch("t", alternatives=lambda: {"--column 1": (ecg, 250.0)})
    out = [y for c in _chunks(fake_millis, 250.0) for y in w.process(c)]
    kinds = [e.kind for e in out if isinstance(e, LinkEvent)]
    assert kinds == ["signal_unverified", "signal_not_ecg"]  # told once, not per check
    ev = [e for e in out if isinstance(e, LinkEvent)][-1]
    assert ev.detail["suggest"] == "--column 1" and "monotonic" in ev.detail["reasons"]

    w = EcgWatch("t")
    out = [y for c in _chunks(ecg, 250.0) for y in w.process(c)]
    kinds = [e.kind for e in out if isinstance(e, LinkEvent)]
    assert kinds == ["signal_unverified", "signal_ecg"]
    # the chunks are held until the verdict (after MIN_SECONDS of signal), then all passed on
    first = next(i for i, e in enumerate(out) if isinstance(e, LinkEvent) and e.kind == "signal_ecg")
    assert not any(isinstance(c, Chunk) for c in out[:first])
    assert sum(len(c.samples) for c in out if isinstance(c, Chunk)) == len(ecg)
    assert sum(len(c.samples) for c in out[first:first + 300] if isinstance(c, Chunk)) >= 6 * 250


def test_pipeline_gets_the_verdict_before_any_beat_and_loses_no_beat():
    ecg = _ecg(20)
    plain, gated = Pipeline(None), Pipeline(None)
    ref = [e for c in _chunks(ecg, 250.0, n=50) for e in plain.handle(c)]
    w = EcgWatch("t")
    events = []
    for c in _chunks(ecg, 250.0, n=50):
        for it in w.process(c):
            events += gated.handle(it)
    for it in w.process(LinkEvent("end")):
        events += gated.handle(it)
    first_beat = next(i for i, e in enumerate(events) if e["type"] == "beat")
    assert any(e.get("kind") == "signal_ecg" for e in events[:first_beat])
    assert [e["t"] for e in events if e["type"] == "beat"] == [e["t"] for e in ref if e["type"] == "beat"]


def test_a_refused_column_passes_its_chunks_but_no_beat():
    x = negatives()["sawtooth_1hz"] / 1000.0
    pipe, w, events = Pipeline(None), EcgWatch("t"), []
    for c in _chunks(x, SKETCH_FS, n=50):
        for it in w.process(c):
            events += pipe.handle(it)
    assert w.state == "not_ecg" and pipe.summary()["beats"] == 0
    assert pipe.summary()["signal_s"] == pytest.approx(len(x) / SKETCH_FS, abs=0.3)


# --- columns, names, numbers --------------------------------------------------------------------

def test_header_names_pick_the_ecg_column_and_banners_do_not():
    dec = ascii_sketch.AsciiLineDecoder()
    out = dec.feed(b"AD8232 ready\r\n" b"time_ms,ecg,lo\r\n100,503,0\r\n104,510,0\r\n108,0,1\r\n")
    assert out[2:4] == [503, 510] and isinstance(out[4], ascii_sketch.LeadOff)
    assert dec.chosen == "'ecg' (column 1)"
    dec = ascii_sketch.AsciiLineDecoder()
    runs = dec.feed_runs(b"time:100,ecg:503\r\ntime:104,ecg:505\r\n")
    assert runs[0].values == [503, 505]
    dec = ascii_sketch.AsciiLineDecoder(label="ecg")  # --label matches a header's name too
    assert dec.feed(b"ms,ecg\r\n1,7\r\n")[1:] == [7]
    assert ascii_sketch.pick_column_by_name(["millis", "value"]) == 1
    assert ascii_sketch.pick_column_by_name(["ecg1", "ecg2"]) is None  # ambiguous: the check decides


def test_a_20_digit_integer_is_a_decode_error_not_a_crash():
    parse = SerialSource("/dev/x", ascii=True, fs=250.0)._ascii_parser()
    items = parse(b"512\r\n12345678901234567890\r\n513\r\n-99999999999999999999,1\r\n514\r\n")
    chunks = [i for i in items if isinstance(i, Chunk)]
    assert [v for c in chunks for v in c.counts.tolist()] == [512, 513, 514]
    errs = [i for i in items if isinstance(i, LinkEvent) and i.kind == "decode_error"]
    assert errs and "out of range" in errs[0].detail["reason"]
    dec = ascii_sketch.AsciiLineDecoder()
    assert isinstance(dec.feed(b"1" * 25 + b"\n")[0], DecodeError)


@pytest.mark.parametrize("header", [b"# fs=1e9\r\n", b"# fs=0.001\r\n", b"# fs=nan\r\n",
                                    b"# fs=250 uv_per_lsb=inf\r\n"])
def test_an_unsupported_header_rate_or_gain_refuses_the_device(header):
    from selfmis.edge_runtime.sources.base import SourceRefused
    parse = SerialSource("/dev/x", ascii=True)._ascii_parser()
    with pytest.raises(SourceRefused, match="byte 0"):
        parse(header + b"512\r\n")


def test_units_rule_decimals_are_mv_whole_numbers_counts(caplog):
    parse = SerialSource("/dev/x", ascii=True, fs=250.0)._ascii_parser()
    c = [i for i in parse(b"0.512\r\n-1.250\r\n") if isinstance(i, Chunk)][0]
    assert c.samples.tolist() == pytest.approx([0.512, -1.25])
    parse = SerialSource("/dev/x", ascii=True, fs=250.0, uv_per_lsb=4.44)._ascii_parser()
    c = [i for i in parse(b"512\r\n100\r\n") if isinstance(i, Chunk)][0]
    assert c.samples.tolist() == pytest.approx([512 * 4.44e-3, 100 * 4.44e-3])
    parse = SerialSource("/dev/x", ascii=True, fs=250.0, units="uV")._ascii_parser()
    c = [i for i in parse(b"512.5\r\n") if isinstance(i, Chunk)][0]
    assert c.samples.tolist() == pytest.approx([0.5125])
    parse = SerialSource("/dev/x", ascii=True, fs=250.0)._ascii_parser()
    c = [i for i in parse(b"# units=uV\r\n512\r\n") if isinstance(i, Chunk)][0]
    assert c.samples.tolist() == pytest.approx([0.512])


# --- the rate under lead-off --------------------------------------------------------------------

def _sketch_9600(seconds, lead_off):
    """(chunk, t) as the SparkFun sketch at 9600 baud delivers them: 192 samples/s, 320 '!'/s."""
    t, out, acc, sent = 0.0, [], 0.0, 0
    while t < seconds:
        off = lead_off[0] <= t < lead_off[1]
        acc += (320.0 if off else 192.0) * 0.05
        n, sent = int(acc) - sent, int(acc)
        out.append(Chunk(np.zeros(n, np.float32), 0.0, t_mono=500.0 + t, lead_off=off))
        t += 0.05
    return out


def test_lead_off_lines_do_not_move_the_rate_and_it_is_verified_again():
    w = RateWatch("t")
    events = []
    for c in _sketch_9600(40.0, (12.0, 20.0)):
        events += [e for e in w.process(c) if isinstance(e, LinkEvent)]
    kinds = [(e.kind, e.detail.get("fs") or e.detail.get("locked_hz")) for e in events]
    assert kinds[0] == ("rate_locked", 192.0)
    assert ("rate_unverified", 192.0) in kinds and kinds[-1] == ("rate_ok", 192.0)
    assert [k for k, _ in kinds].count("rate_locked") == 1  # never re-locked (was 192 -> 233 Hz)
    assert w.locked == 192.0 and w.state == "ok"


def test_lead_off_then_a_real_rate_change_is_caught():
    w = RateWatch("t")
    events = []
    for c in _sketch_9600(16.0, (8.0, 9.0)):
        if c.t_mono - 500.0 >= 9.0:  # after lead-off the sketch runs at 250 Hz
            c = Chunk(np.zeros(25 if round((c.t_mono - 500.0) / 0.05) % 2 else 0, np.float32), 0.0,
                          t_mono=c.t_mono)
        events += [e for e in w.process(c) if isinstance(e, LinkEvent)]
    assert events[-1].kind == "rate_locked" and events[-1].detail["fs"] == 250.0


@pytest.mark.parametrize("verbose", [False, True])
def test_liblsl_start_up_lines_only_with_verbose(verbose, tmp_path):
    """liblsl prints "Loaded default config" and its build at INFO when it loads."""
    import subprocess
    import sys
    code = ("import logging, sys; logging.getLogger('selfmis').setLevel(logging.DEBUG if sys.argv[1] == '1' "
            "else logging.INFO)\nfrom selfmis.edge_runtime.outlets.lsl import LslOutlet\nLslOutlet()\n"
            "import pylsl; pylsl.StreamOutlet(pylsl.StreamInfo('t', 'ECG', 1, 100.0, pylsl.cf_float32, 't'))")
    env = {k: v for k, v in os.environ.items() if k != "LSLAPICFG"}
    env["TMPDIR"] = str(tmp_path)
    p = subprocess.run([sys.executable, "-c", code, "1" if verbose else "0"], capture_output=True, text=True,
                       timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert ("INFO" in p.stderr) == verbose, p.stderr
