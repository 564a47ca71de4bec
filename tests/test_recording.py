"""--record keeps the device's counts and the pipeline's beats/decisions, survives kill -9, and
exports to EDF+/WFDB/CSV that other libraries read back to the same samples and beats."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_edge_support import model_bundle, quiet_env, record_path

from selfmis.edge_runtime.recording import (Recorder, RecordingError, chunk_record, read_recording,
                                            iter_records)
from selfmis.edge_runtime.stream import Chunk, LinkEvent, counts_to_mv

MI_500 = record_path(271, hr=True)
needs_data = pytest.mark.skipif(MI_500 is None, reason="no PTB-XL records available")
EDGE_RUN = [sys.executable, "-m", "selfmis.edge_runtime.cli"]


@pytest.fixture(scope="module")
def bundle():
    return model_bundle()


def _run(source, rec_dir, model, mangle=None):
    """What ``edge-run --record`` does (cli.run's loop), on a source built with faults."""
    from selfmis.edge_runtime.pipeline import Pipeline
    pipe = Pipeline(model)
    events = []
    with Recorder(rec_dir, source.describe()) as rec, source:
        for item in (mangle(source) if mangle else source):
            rec.write(item)
            ev = pipe.handle(item)
            rec.write_outputs(ev, pipe._timeline_s)
            events += ev
        tail = pipe.flush()
        rec.write_outputs(tail, pipe._timeline_s)
    return events + tail


# ---------------------------------------------------------------- what is recorded

@needs_data
def test_counts_are_recorded_as_the_wire_carried_them_and_replay_bit_for_bit(bundle, tmp_path):
    from selfmis.edge_runtime import cli
    from selfmis.edge_runtime.sources.simulated import SimulatedSource
    rec = tmp_path / "rec"
    assert cli.main(["--simulate", MI_500, "--fast", "--quiet", "--model", bundle,
                     "--record", str(rec)]) == 0
    kinds = [k for _, k, _ in iter_records(rec)]
    assert b"D" in kinds and b"C" not in kinds and b"P" in kinds
    chunks = [c for c in read_recording(rec) if isinstance(c, Chunk)]
    wire = SimulatedSource(MI_500).device.counts()  # the integers the virtual device put on the wire
    got = np.concatenate([c.counts for c in chunks])
    assert np.array_equal(got, wire) and {c.uv_per_lsb for c in chunks} == {1.0}
    assert all(np.array_equal(c.samples, counts_to_mv(c.counts, 1.0)) for c in chunks)
    # 2 bytes a sample, not 4: the floats are not stored when the counts decode to them
    assert (rec / "stream.bin").stat().st_size < 2.6 * len(wire) + 40_000
    outs = [o for o in read_recording(rec, outputs=True) if not isinstance(o, (Chunk, LinkEvent))]
    assert sum(e["type"] == "beat" for o in outs for e in o.events) >= 10


def test_floats_that_are_not_the_decoded_counts_are_kept_too(tmp_path):
    counts = np.array([100, -2000, 32767, -32768, 40000, -70000], np.int64)
    odd = (counts / 3000.0).astype(np.float32)  # not counts_to_mv(counts, 0.5)
    with Recorder(tmp_path / "r") as rec:
        rec.write(Chunk(odd, 250.0, seq=1, counts=counts, uv_per_lsb=0.5))
        rec.write(Chunk.from_counts(counts, 0.5, 250.0, seq=2))
        rec.write(Chunk(np.array([1.5, np.nan], np.float32), 250.0, seq=3))
    a, b, c = read_recording(tmp_path / "r")
    assert a.samples.tobytes() == odd.tobytes() and np.array_equal(a.counts, counts)
    assert b.samples.tobytes() == counts_to_mv(counts, 0.5).tobytes() and b.uv_per_lsb == 0.5
    assert c.counts is None and c.samples[0] == 1.5 and np.isnan(c.samples[1])


@needs_data
def test_a_format_1_recording_still_replays_and_exports(bundle, tmp_path, capsys):
    """Recordings written before counts and P records existed (C/E records, format_version 1)."""
    from selfmis.edge_runtime import cli
    from selfmis.edge_runtime.recording_cli import main as rec_main
    from selfmis.readers import read_record
    x = read_record(MI_500).lead("I").astype(np.float32)
    old = tmp_path / "old"
    old.mkdir()
    (old / "recording.json").write_text(json.dumps({"format": "selfmis-recording", "format_version": 1,
                                                    "source": "replay:x", "lead": "I", "fs": 500.0}))
    body = [LinkEvent("connected", {"path": "x"}, 1.0)]
    body += [Chunk(x[i:i + 50], 500.0, 2.0 + i / 500, seq=i // 50) for i in range(0, len(x), 50)]
    with open(old / "stream.bin", "wb") as fh:
        for it in body:
            raw = (chunk_record(it) if isinstance(it, Chunk) else
                   b"E" + json.dumps({"kind": it.kind, "detail": it.detail, "t_arrival": 1.0,
                                      "discontinuity": False}).encode())
            assert raw[:1] in (b"C", b"E")
            fh.write(len(raw).to_bytes(4, "little") + raw)
    capsys.readouterr()
    assert cli.main(["--replay", str(old), "--fast", "--model", bundle]) == 0
    ev = [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert sum(e["type"] == "beat" for e in ev) >= 10
    assert rec_main(["info", str(old), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["beats"] is None and info["samples"] == len(x) and info["format_version"] == 1
    assert rec_main(["export", str(old), "--to", "wfdb", "-o", str(tmp_path / "w" / "old")]) == 0
    wfdb = pytest.importorskip("wfdb")
    r = wfdb.rdrecord(str(tmp_path / "w" / "old"))
    assert np.allclose(r.p_signal[:, 0], x, atol=0.5 / r.adc_gain[0] + 1e-6)


def test_bad_stream_names_the_byte(tmp_path):
    with Recorder(tmp_path / "r") as rec:
        rec.write(Chunk(np.zeros(5, np.float32), 100.0))
    with open(tmp_path / "r" / "stream.bin", "ab") as fh:
        fh.write((5).to_bytes(4, "little") + b"Zabcd")
    with pytest.raises(RecordingError, match=r"byte \d+: unknown record kind"):
        list(read_recording(tmp_path / "r"))


# ---------------------------------------------------------------- crash safety

@needs_data
def test_kill_9_loses_at_most_a_second(bundle, tmp_path):
    """A real edge-run recording a real-time stream, killed with SIGKILL mid-run."""
    rec = tmp_path / "rec"
    p = subprocess.Popen(EDGE_RUN + ["--simulate", MI_500, "--model", bundle, "--record", str(rec)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=quiet_env(tmp_path))
    try:
        for line in p.stdout:  # the first beat: the stream runs and is being recorded
            if b'"beat"' in line:
                break
        time.sleep(2.3)
        t_kill = time.time()
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    chunks = [c for c in read_recording(rec) if isinstance(c, Chunk)]
    assert chunks, "nothing reached the disk"
    lost_s = t_kill - chunks[-1].t_arrival
    # frames arrive every 0.1 s; what arrived more than a second before the kill is on disk
    assert lost_s <= 1.0 + 0.1 + 0.05, lost_s
    n = sum(len(c.samples) for c in chunks)
    assert n >= (chunks[-1].t_arrival - chunks[0].t_arrival) * 500 - 50


# ---------------------------------------------------------------- exports, read back elsewhere

@pytest.fixture(scope="module")
def faulty(bundle, tmp_path_factory):
    """A recording with lead-off, lost frames and a reconnect (3 s without data), made live."""
    if MI_500 is None:
        pytest.skip("no PTB-XL records available")
    from selfmis.edge_runtime.interpreter import TFLiteModel
    from selfmis.edge_runtime.sources.simulated import SimulatedSource
    src = SimulatedSource(MI_500, lead_off=[(3.0, 1.0)], drop_rate=0.01, passes=3, seed=2)

    def reconnect_after_12s(items):
        shift = 0.0
        for it in items:
            if isinstance(it, Chunk):
                if it.seq >= 120 and not shift:
                    shift = 3.0
                    yield LinkEvent("disconnected", {"reason": "test"}, discontinuity=True)
                it.t_arrival += shift
            yield it

    d = tmp_path_factory.mktemp("faulty") / "rec"
    events = _run(src, d, TFLiteModel(bundle), reconnect_after_12s)
    chunks = [c for c in read_recording(d) if isinstance(c, Chunk)]
    beats = [e["t"] for e in events if e["type"] == "beat"]
    decisions = [e for e in events if e["type"] == "decision"]
    assert len(beats) > 20 and decisions and any(c.gap_before for c in chunks)
    return {"dir": d, "chunks": chunks, "beats": beats, "decisions": decisions,
            "signal_s": events and max(e.get("t", 0) for e in events)}


def _expect(f):
    fs = 500.0
    x = np.concatenate([c.samples for c in f["chunks"]])
    beats = np.round(np.asarray(f["beats"]) * fs).astype(int)
    return fs, x, beats


def _check_alignment(sig, beats, fs):
    """Each exported beat sits on an R peak of the exported signal (within 20 ms): the
    samples and the beats share one time axis, before and after the reconnect."""
    w = int(0.02 * fs)
    ok = 0
    for b in beats:
        seg = sig[max(0, b - 3 * w): b + 3 * w + 1]
        if np.isfinite(seg).all() and len(seg):
            ok += abs(int(np.argmax(np.abs(seg - np.median(seg)))) - (b - max(0, b - 3 * w))) <= w
    assert ok >= 0.9 * len(beats), (ok, len(beats))


def test_wfdb_export_reads_back_with_wfdb(faulty, tmp_path):
    wfdb = pytest.importorskip("wfdb")
    from selfmis.edge_runtime.recording_cli import main
    fs, x, beats = _expect(faulty)
    assert main(["export", str(faulty["dir"]), "--to", "wfdb", "-o", str(tmp_path / "h")]) == 0
    r = wfdb.rdrecord(str(tmp_path / "h"))
    assert r.fs == fs and r.units == ["mV"] and r.sig_name == ["ECG I"] and r.fmt == ["16"]
    sig = r.p_signal[:, 0]
    gap = np.isnan(sig)
    counts = np.concatenate([c.counts for c in faulty["chunks"]])
    digital = wfdb.rdrecord(str(tmp_path / "h"), physical=False).d_signal[:, 0]
    assert np.array_equal(digital[~gap], counts) and r.adc_gain == [1000.0]  # the wire's counts
    assert np.allclose(sig[~gap], x, rtol=0, atol=1e-6)
    assert gap.sum() >= 2.9 * fs  # the 3 s lost over the reconnect, plus the dropped frames
    a = wfdb.rdann(str(tmp_path / "h"), "atr")
    sym = np.asarray(a.symbol)
    assert np.array_equal(a.sample[sym == "N"], beats)
    notes = [n for s, n in zip(sym, a.aux_note) if s == '"' and n.startswith("decision")]
    assert len(notes) == len(faulty["decisions"])
    d0 = faulty["decisions"][0]
    assert notes[0].startswith("decision: " + (",".join(d0["labels"]) or "none"))
    noise = [(s, n, st) for s, n, st in zip(a.sample, a.aux_note, a.subtype) if n in ("lead-off", "gap")]
    lo = [s for s, n, st in noise if n == "lead-off"]
    assert lo and abs(lo[0] - 3.0 * fs) <= 50 and all(st == -1 for *_, st in noise)
    assert all(np.isnan(sig[s]) for s, n, _ in noise if n == "gap")
    _check_alignment(sig, beats, fs)


def test_edf_export_reads_back_with_edfio(faulty, tmp_path):
    edfio = pytest.importorskip("edfio")
    pytest.importorskip("pyedflib")
    from selfmis.edge_runtime.recording_cli import main
    fs, x, beats = _expect(faulty)
    assert main(["export", str(faulty["dir"]), "--to", "edf", "-o", str(tmp_path / "h.edf")]) == 0
    e = edfio.read_edf(tmp_path / "h.edf")
    (s,) = e.signals
    assert s.sampling_frequency == fs and s.physical_dimension == "mV" and s.label == "ECG I"
    sig = s.data
    gaps = [(a.onset, a.duration) for a in e.annotations if a.text.startswith("gap")]
    mask = np.zeros(len(sig), bool)
    for on, du in gaps:
        mask[int(round(on * fs)): int(round((on + du) * fs))] = True
    res = (s.physical_range.max - s.physical_range.min) / (s.digital_range.max - s.digital_range.min)
    assert np.abs(sig[~mask] - x).max() <= res / 2 + 1e-9  # same samples within one digital step
    assert mask.sum() >= 2.9 * fs
    onsets = np.array([a.onset for a in e.annotations if a.text == "N"])
    assert np.array_equal(np.round(onsets * fs).astype(int), beats)
    dec = [a for a in e.annotations if a.text.startswith("decision")]
    assert len(dec) == len(faulty["decisions"])
    lo = [a for a in e.annotations if a.text == "lead-off"]
    assert lo and abs(lo[0].onset - 3.0) <= 0.1 and 0.9 <= lo[0].duration <= 1.2
    _check_alignment(np.where(mask, np.nan, sig), beats, fs)


def test_csv_export_reads_back_with_numpy(faulty, tmp_path):
    from selfmis.edge_runtime.recording_cli import main
    fs, x, beats = _expect(faulty)
    assert main(["export", str(faulty["dir"]), "--to", "csv", "-o", str(tmp_path / "h.csv")]) == 0
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert lines[0].startswith("# fs=500 ") and lines[1] == "time_s,ecg_mv,counts,lead_off,gap"
    t, mv, counts, lead_off, gap = np.genfromtxt(lines[2:], delimiter=",", unpack=True)
    assert np.allclose(np.diff(t), 1 / fs)
    assert np.array_equal(np.isnan(mv), gap == 1) and gap.sum() >= 2.9 * fs
    assert np.array_equal(mv[gap == 0], x.astype(np.float64).round(3))
    assert np.array_equal(counts[gap == 0], np.concatenate([c.counts for c in faulty["chunks"]]))
    assert abs(np.flatnonzero(lead_off)[0] - 3.0 * fs) <= 50
    ev = (tmp_path / "h.events.csv").read_text().splitlines()[1:]
    got = [int(l.split(",")[1]) for l in ev if l.split(",")[2] == "beat"]
    assert got == beats.tolist()


def test_info_summarises(faulty, capsys):
    from selfmis.edge_runtime.recording_cli import main
    assert main(["info", str(faulty["dir"]), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["fs"] == 500.0 and d["counts"] and d["beats"] == len(faulty["beats"])
    assert d["decisions"]["count"] == len(faulty["decisions"]) and d["lead_off"]["count"] >= 1
    # the reconnect: 3 s minus the 0.1 s the next frame covers
    assert d["gaps"]["seconds"] >= 2.9 and d["device"]["device_id"] == "in-process"
    assert 30.0 + 2.9 <= d["duration_s"] <= 30.0 + 3.0 + 0.5
    assert main(["info", str(faulty["dir"])]) == 0
    assert "lead-off" in capsys.readouterr().out


def test_cli_errors(tmp_path, capsys):
    from selfmis.cli import main as top
    assert top(["recording", "--help"]) == 0
    assert top(["recording", "info", str(tmp_path / "nope")]) == 4
    assert "recording.json" in capsys.readouterr().err
    assert top(["recording", "export", str(tmp_path), "--to", "xls"]) == 2


def test_csv_number_formatting_matches_python():
    from selfmis.edge_runtime.recording_export import _fixed
    rng = np.random.default_rng(3)
    v = np.r_[0, 1, -1, 5, -5, 999, -1000, 123456789, -987654321, rng.integers(-10 ** 7, 10 ** 7, 500)]
    for dec in (0, 3, 6):
        m = _fixed(v.astype(np.int64), dec)
        got = [bytes(r).decode().strip() for r in m]
        want = [f"{x / 10 ** dec:.{dec}f}" if dec else str(x) for x in v.tolist()]
        want = [w if w != "-0" else "0" for w in want]
        assert got == [f"{int(x) // 10 ** dec if x >= 0 else '-' + str(-int(x) // 10 ** dec)}"
                       + (f".{abs(int(x)) % 10 ** dec:0{dec}d}" if dec else "") for x in v.tolist()]
        assert [float(g) for g in got] == pytest.approx([float(w) for w in want], abs=0)


def test_merged_chunks_keep_their_counts_and_non_integers_are_not_counts(tmp_path):
    from selfmis.edge_runtime.sources.base import coalesce
    a = Chunk.from_counts([1, 2, 3], 2.5, 250.0, seq=1)
    b = Chunk.from_counts([4, 5], 2.5, 250.0, seq=2)
    c = Chunk.from_counts([6], 1.0, 250.0, seq=3)  # another scale: not merged into the run
    m = coalesce([a, b, c])
    assert [list(x.counts) for x in m] == [[1, 2, 3, 4, 5], [6]] and m[0].uv_per_lsb == 2.5
    assert m[0].samples.tobytes() == counts_to_mv([1, 2, 3, 4, 5], 2.5).tobytes()
    f = Chunk.from_counts(np.array([0.25, 1.5]), 1000.0, 250.0)  # a sketch printing mV
    assert f.counts is None and np.array_equal(f.samples, [0.25, 1.5])
    assert Chunk.from_counts(np.array([3.0, -4.0]), 1.0, 250.0).counts.dtype.kind == "i"
