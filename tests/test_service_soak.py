"""Soak (a study: not run by `make test`): faulty virtual wearables at full speed through one gateway.

Run with ``SELFMIS_SOAK_HOURS=1 pytest -m study tests/test_service_soak.py``; the long run and its
committed result: ``python -m selfmis.benchmarks.gateway_soak`` -> benchmarks/results/gateway/soak.json.
"""
from __future__ import annotations

import os

import pytest

HOURS = float(os.environ.get("SELFMIS_SOAK_HOURS", "0") or 0)


@pytest.mark.study
@pytest.mark.skipif(HOURS <= 0, reason="set SELFMIS_SOAK_HOURS to run the soak")
def test_soak_no_crash_flat_rss_every_decision_recorded(tmp_path):
    from selfmis.benchmarks.gateway_soak import soak
    res = soak(hours=HOURS, devices=4, fault=0.01, workdir=str(tmp_path))
    assert res["exit_code"] == 0 and res["summaries"] == 4
    for did, d in res["per_device"].items():
        assert d["signal_s"] >= HOURS * 3600 * 0.99, did
        assert d["decisions"] > 0 and d["recording_matches_jsonl"], (did, d)
    # flat memory: under 1 MB per hour of signal in the second half
    assert abs(res["rss_mb"]["slope_second_half_mb_per_signal_hour"]) < 1.0, res["rss_mb"]
