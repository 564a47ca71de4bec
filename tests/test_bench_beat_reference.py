"""The runtime's beat detector against the annotated beats of MIT-BIH record 100 (first 60 s),
and the matching rule the beat benchmark (benchmarks/beat_reference.py) scores every detector with."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from selfmis.benchmarks.beat_reference import TOL_S, match_beats, read_mitdb, reference_beats, runtime_beats

MITDB_100 = Path(__file__).resolve().parents[2] / "shared" / "data" / "wfdb-conformance" / "100"
needs_record = pytest.mark.skipif(not Path(str(MITDB_100) + ".atr").is_file(), reason="needs ../shared/data/wfdb-conformance/100.atr (MIT-BIH record 100, all 30 min)")
#: floors well under what the detector measures on this minute (Se = PPV = 100%, offsets <= 5 ms):
#: a missed or an invented beat per minute already fails it
FLOOR = 0.985


def test_match_beats_is_one_to_one_within_tolerance():
    ref = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    det = np.array([1.02, 1.05, 2.2, 3.0 + TOL_S - 1e-9, 4.9, 7.0])
    c = match_beats(ref, det)
    # 1.0 takes the nearer 1.02 (1.05 is a second detection of the same beat: false); 2.0 and 4.0
    # are missed (2.2 is 200 ms off); 3.0 is matched at the edge of the window
    assert (c["tp"], c["fn"], c["fp"]) == (3, 2, 3)
    assert np.allclose(sorted(c["offsets_s"]), [-0.1, 0.02, TOL_S - 1e-9])


def test_match_beats_scored_span_and_edges():
    ref = np.array([0.5, 1.5, 2.5])
    det = np.array([0.52, 1.03, 1.5, 2.5])
    c = match_beats(ref, det, lo=1.0, hi=3.0)
    # 0.5 is outside the span; 1.03 is unmatched and within 150 ms of no reference: false
    assert (c["tp"], c["fn"], c["fp"]) == (2, 0, 1)
    c = match_beats(ref, np.array([1.1, 1.5]), lo=1.0, hi=3.0)
    assert (c["tp"], c["fn"], c["fp"]) == (1, 1, 1)
    # a detection just inside the span that belongs to a beat just outside it is no error
    c = match_beats(np.array([0.95, 1.5]), np.array([1.05, 1.5]), lo=1.0, hi=3.0)
    assert (c["tp"], c["fn"], c["fp"]) == (1, 0, 0)


@needs_record
def test_runtime_detector_on_mitdb_100_first_minute():
    pytest.importorskip("wfdb")
    x, fs, ann = read_mitdb(MITDB_100, seconds=60)
    assert fs == 360 and 70 <= len(ann) <= 80  # record 100: ~76 beats/min
    rt = runtime_beats(x, fs)
    for name in ("runtime detector", "runtime pipeline"):
        c = match_beats(ann, rt[name], TOL_S, 1.0, 59.0)
        se, ppv = c["tp"] / (c["tp"] + c["fn"]), c["tp"] / (c["tp"] + c["fp"])
        assert se >= FLOOR and ppv >= FLOOR, (name, c)
        # the R peak itself, not the QRS onset or the integrator's delay
        assert np.abs(np.median(c["offsets_s"])) < 0.02, name
    assert rt["quality"]["blocks"] >= 58 and rt["quality"]["bad_blocks"] == 0


@needs_record
def test_reference_detectors_are_called_right():
    """XQRS and NeuroKit2's default find the annotated beats too (else the comparison is moot)."""
    pytest.importorskip("neurokit2")
    pytest.importorskip("wfdb")
    x, fs, ann = read_mitdb(MITDB_100, seconds=60)
    ref, cleaning = reference_beats(x, fs, methods=("neurokit",))
    assert cleaning == {"neurokit": "neurokit"}
    for name in ("xqrs", "nk:neurokit"):
        c = match_beats(ann, ref[name][0], TOL_S, 1.0, 59.0)
        assert c["fn"] <= 1 and c["fp"] <= 1, (name, c)


@needs_record
def test_report_files(tmp_path):
    """The benchmark's own entry point writes JSON, Markdown and the picture (tiny sizes)."""
    pytest.importorskip("neurokit2")
    pytest.importorskip("matplotlib")
    from selfmis.benchmarks.beat_reference import main

    ptbxl = MITDB_100.parents[1] / "ptbxl-subset"
    assert main(["--out", str(tmp_path), "--seconds", "20", "--records", "2", "--ptbxl", str(ptbxl)]) == 0
    res = json.loads((tmp_path / "beats.json").read_text())
    det = res["mitdb"]["detectors"]
    assert {"runtime pipeline", "runtime detector", "xqrs", "nk:neurokit", "nk:pantompkins1985"} <= set(det)
    assert (tmp_path / "beats.png").read_bytes()[:4] == b"\x89PNG"
    md = (tmp_path / "beats.md").read_text()
    assert "| runtime detector |" in md and "zhao2018" in md
    if (ptbxl / "ptbxl_database.csv").is_file():
        assert res["ptbxl"]["records"] == 2
        for q in res["ptbxl"]["quality_vs_zhao2018"].values():  # as recorded, and with each fault
            assert sum(sum(row.values()) for row in q.values()) == 2
        flat = res["ptbxl"]["quality_vs_zhao2018"]["amplifier stuck (flat), 3-6 s"]
        assert not sum(flat["all blocks ok"].values())  # the gate sees 3 s of a stuck amplifier
