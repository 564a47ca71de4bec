"""Output bounded by input at default verbosity (issue 24: stdout <= 2 x the device bytes).

The writer's bound on its own (a fake meter), then a real PTB-XL record decimated to 50 Hz (the
lowest rate the gateway accepts) streamed by the virtual device over TCP in real time into
``edge-run --port`` as binary frames of one second each and as ASCII lines. CI cost: ~25 s.
"""
from __future__ import annotations

import io
import json
import threading

from selfmis.benchmarks import live_amplification as la
from selfmis.edge_runtime.output import OUTPUT_RESERVE, JsonlWriter

DECISION = {"type": "decision", "t": 1.0, "probabilities": {f"L{i}": 0.123456 for i in range(11)},
            "labels": [], "state": "off", "quality": "ok"}
BEAT = {"type": "beat", "t": 1.0, "rr": 0.9, "hr": 66.0, "p": {f"L{i}": 0.123456 for i in range(11)}}


class Meter:
    bytes = 0


def test_beat_and_decision_lines_stay_within_twice_the_device_bytes():
    meter, buf = Meter(), io.StringIO()
    w = JsonlWriter(buf, meter=meter)
    for _ in range(200):
        meter.bytes += 100  # a second of a 50 Hz device with big frames
        w.write_all([BEAT, DECISION])
    w.write({"type": "summary", "beats": 200})
    out = buf.getvalue()
    assert len(out) <= 2 * meter.bytes, len(out)
    summary = json.loads(out.splitlines()[-1])
    held = summary["lines_held_back"]
    lines = [json.loads(x)["type"] for x in out.splitlines()[:-1]]
    assert held["beat"] + lines.count("beat") == 200 and held["decision"] + lines.count("decision") == 200
    assert held["beat"] > held["decision"]  # beat lines go first
    assert len(out) > 2 * meter.bytes - OUTPUT_RESERVE - 2 * len(json.dumps(DECISION))  # the budget is used


def test_an_alarm_change_is_never_held_back_and_files_are_not_bounded():
    meter, buf = Meter(), io.StringIO()
    w = JsonlWriter(buf, meter=meter)
    meter.bytes = 10  # far too little for any decision line
    w.write(DECISION)  # the first decision: a state
    w.write(DECISION)  # the same state: held back
    w.write({**DECISION, "state": "on", "labels": ["MI"]})
    states = [json.loads(x)["state"] for x in buf.getvalue().splitlines()]
    assert states == ["off", "on"] and w.held[None]["decision"] == 1
    replay = io.StringIO()  # no device bytes read (a file, a simulation): every line
    w2 = JsonlWriter(replay, meter=Meter())
    for _ in range(50):
        w2.write_all([BEAT, DECISION])
    assert len(replay.getvalue().splitlines()) == 100


def test_real_50hz_ecg_at_default_verbosity_is_at_most_twice_its_bytes(tmp_path):
    """Real time (a faster stream fails the rate check: no decisions, rightly); both at once."""
    rec = la.decimated_record(la.REC_100, tmp_path / "r50", 2)
    runs = {}

    def one(ascii_, spf):
        runs[ascii_] = la.run_case(rec, ascii_, passes=2, samples_per_frame=spf)
    threads = [threading.Thread(target=one, args=a) for a in ((False, 50), (True, None))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in runs.values():
        assert not r["traceback"] and r["rc"] == 5, r  # 5: the simulator closed the link at its end
        assert r["in_bytes"] and r["ratio"] <= 2.0, r
        assert r["decision_lines"] >= 5, r  # decisions still flow
    assert runs[False]["lines_held_back"]["beat"] > 0  # the 1-s binary frames needed the bound


def test_output_bound_can_be_set_or_switched_off(capsys):
    """`--output-bound 0` writes every line (a user who wants each decision of a 50 Hz device);
    a negative or NaN bound is a usage error (exit 2)."""
    from selfmis.edge_runtime import cli
    meter, buf = Meter(), io.StringIO()
    w = JsonlWriter(buf, meter=meter, bound=None)
    for _ in range(50):
        meter.bytes += 10
        w.write_all([BEAT, DECISION])
    assert len(buf.getvalue().splitlines()) == 100 and not w.held
    for bad in ("-1", "nan"):
        assert cli.main(["--simulate", "core/sample_data/ptbxl/records500/00000/00271_hr", "--output-bound", bad,
                         "--max-seconds", "1"]) == 2
        assert "--output-bound" in capsys.readouterr().err
    assert cli.build_parser().parse_args(["--simulate", "x", "--output-bound", "0"]).output_bound == 0
