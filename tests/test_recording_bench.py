"""The export benchmark: machinery on a few minutes (CI), the 24-hour target as a slow test."""
from __future__ import annotations

import json

import pytest

from selfmis.benchmarks import export_bench


def _run(tmp_path, hours):
    rc = export_bench.main(["--hours", str(hours), "--out", str(tmp_path)])
    return rc, json.loads((tmp_path / "export.json").read_text())


def test_export_bench_runs_each_format(tmp_path):
    rc, r = _run(tmp_path, 0.05)
    assert rc == 0 and [e["format"] for e in r["exports"]] == ["edf", "wfdb", "csv"]
    assert 0.04 <= r["hours"] <= 0.06 and all(e["cpu_s"] > 0 and e["rss_peak_mb"] > 0 for e in r["exports"])
    assert (tmp_path / "export.md").read_text().count("| yes |") == 3


@pytest.mark.study
def test_a_24_hour_recording_exports_within_two_minutes_per_format(tmp_path):
    rc, r = _run(tmp_path, 24)
    assert r["hours"] >= 23.9
    for e in r["exports"]:
        assert e["cpu_s"] <= 120 and e["rss_peak_mb"] <= 200, e  # one core: CPU time
    assert rc == 0
