"""edge-run --replay on the files users bring: PTB Diagnostic (.dat + .xyz, 1 kHz), a .mat with a byte
offset, an EDF, ADC counts in a CSV, a headerless CSV; and the day-long benchmark (slow)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from test_edge_support import model_bundle, record_path

from selfmis.edge_runtime import cli
from selfmis.readers import read_record

# vendored in the repository (tests/data/wfdb-conformance: source, license, what was trimmed)
DATA = Path(os.environ.get("SELFMIS_CONFORMANCE", Path(__file__).resolve().parent / "data" / "wfdb-conformance"))
MI_500 = record_path(271, hr=True)


@pytest.fixture(scope="module")
def bundle():
    return model_bundle()


def run(argv, capsys):
    code = cli.main(argv)
    cap = capsys.readouterr()
    return code, [json.loads(l) for l in cap.out.splitlines() if l.strip()], cap.err


def summary(ev):
    return [e for e in ev if e.get("type") == "summary"][-1]


def test_replay_ptb_diagnostic_mi_patient_and_a_mat_record(bundle, capsys):
    code, ev, _ = run(["--replay", str(DATA / "s0010_re"), "--lead", "i", "--fast", "--model", bundle],
                      capsys)
    s = summary(ev)
    assert code == 0 and s["signal_s"] == pytest.approx(38.4) and s["decisions"] > 10
    code, ev, _ = run(["--replay", str(DATA / "a103l.mat"), "--lead", "II", "--fast", "--model", bundle],
                      capsys)
    assert code == 0 and summary(ev)["signal_s"] == pytest.approx(330.0) and summary(ev)["beats"] > 300
    code, ev, err = run(["--replay", str(DATA / "a103l"), "--lead", "PLETH", "--fast", "--model", bundle],
                        capsys)
    assert code == cli.EXIT_SOURCE and "not a voltage" in err


@pytest.mark.skipif(MI_500 is None, reason="no PTB-XL records")
def test_replay_edf_and_counts_csv_find_the_beats_the_wfdb_record_has(bundle, capsys, tmp_path):
    pyedflib = pytest.importorskip("pyedflib")
    x = read_record(MI_500).lead("I").astype(np.float64)
    code, ev, _ = run(["--replay", MI_500, "--fast", "--model", bundle], capsys)
    ref = summary(ev)
    assert code == 0 and ref["beats"] > 5
    w = pyedflib.EdfWriter(str(tmp_path / "h.edf"), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([{"label": "ECG I", "dimension": "uV", "sample_frequency": 500,
                         "physical_min": -10000.0, "physical_max": 10000.0, "digital_min": -32768,
                         "digital_max": 32767, "transducer": "", "prefilter": ""}])
    w.writeSamples([x * 1000])
    w.close()
    code, ev, _ = run(["--replay", str(tmp_path / "h.edf"), "--fast", "--model", bundle], capsys)
    assert code == 0 and summary(ev)["beats"] == ref["beats"]
    # an AD8232-style CSV of 10-bit counts (issue 12: it used to give 0 beats and exit 0)
    csv = tmp_path / "adc.csv"
    csv.write_text("".join(f"{c}\n" for c in np.round(x * 1000 / 3.22).astype(int) + 512))
    code, ev, err = run(["--replay", str(csv), "--fs", "500", "--fast", "--model", bundle], capsys)
    assert code == cli.EXIT_SOURCE and "--units counts --uv-per-lsb" in err
    code, ev, _ = run(["--replay", str(csv), "--fs", "500", "--units", "counts", "--uv-per-lsb", "3.22",
                       "--fast", "--model", bundle], capsys)
    assert code == 0 and summary(ev)["beats"] == ref["beats"]
    # a headerless one-column CSV in mV needs no --lead
    one = tmp_path / "one.csv"
    one.write_text("# fs=500\n" + "".join(f"{v:.4f}\n" for v in x))
    code, ev, _ = run(["--replay", str(one), "--fast", "--model", bundle], capsys)
    assert code == 0 and summary(ev)["beats"] == ref["beats"]
    assert cli.main(["--port", "x", "--format", "csv", "--model", bundle]) == cli.EXIT_USAGE


@pytest.mark.study
@pytest.mark.skipif(not os.environ.get("SELFMIS_DAYLONG"),
                    reason="~30 min on 2 busy cores: SELFMIS_DAYLONG=1 pytest -m study (results committed "
                           "under benchmarks/results/replay_formats)")
def test_day_long_replay_in_every_format_in_bounded_memory(tmp_path):
    """The benchmark itself (benchmarks/replay_formats.py), 24 h at 500 Hz: RSS <= 100 MB each."""
    from selfmis.benchmarks import replay_formats
    assert replay_formats.main(["--out", str(tmp_path)]) == 0
    res = json.loads((tmp_path / "replay_formats.json").read_text())["results"]
    for fmt, r in res.items():
        assert r["rss_peak_mb"] <= replay_formats.RSS_TARGET_MB, (fmt, r)
        assert r["signal_s"] == pytest.approx(24 * 3600)
