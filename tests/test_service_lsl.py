"""LSL outlets: a pylsl inlet in the test receives exactly the samples the virtual device sent."""
from __future__ import annotations

import json

import numpy as np
import pytest

from service_support import kill, start_edge
from test_edge_support import record_path, model_bundle

MI_500 = record_path(271, hr=True)
pylsl = pytest.importorskip("pylsl")
pytestmark = pytest.mark.skipif(MI_500 is None, reason="no PTB-XL records available")


def test_ecg_and_marker_outlets(tmp_path):
    from selfmis.readers import read_record
    expected = np.rint(np.asarray(read_record(MI_500).lead("I"), np.float64) * 1000.0)  # µV, as the device sends
    edge = start_edge(["--simulate", MI_500, "--speed", "1", "--device-id", "bed1", "--model", model_bundle(),
                       "--quiet", "--lsl", "--no-loop", "--persist-beats", "1"], tmp_path)  # 10 s of signal: no 30-s persistence
    try:
        ecg = pylsl.resolve_byprop("source_id", "bed1", timeout=15)
        mk = pylsl.resolve_byprop("source_id", "bed1-markers", timeout=15)
        assert ecg and mk, "the outlets are visible on the network"
        info = ecg[0]
        assert (info.type(), info.nominal_srate(), info.channel_count()) == ("ECG", 500.0, 1)
        inlet, minlet = pylsl.StreamInlet(ecg[0]), pylsl.StreamInlet(mk[0])
        inlet.open_stream(timeout=5)
        minlet.open_stream(timeout=5)
        got, stamps, markers = [], [], []
        while edge.poll() is None or inlet.samples_available():
            x, ts = inlet.pull_chunk(timeout=0.5)
            got += [v[0] for v in x]
            stamps += ts
            m, mts = minlet.pull_chunk(timeout=0.0)
            markers += [(json.loads(v[0]), t) for v, t in zip(m, mts)]
        m, mts = minlet.pull_chunk(timeout=1.0)
        markers += [(json.loads(v[0]), t) for v, t in zip(m, mts)]
    finally:
        kill(edge)
    got = np.asarray(got)
    assert len(got) > 2500, "several seconds of ECG"
    # the inlet joined mid-stream: what it got is one contiguous stretch of what the device sent
    start = next((i for i in range(len(expected) - len(got) + 1)
                  if np.allclose(expected[i:i + 50], got[:50], rtol=0, atol=1e-3)), None)
    assert start is not None, (got[:10], expected[:10])
    np.testing.assert_allclose(got, expected[start:start + len(got)], rtol=0, atol=1e-3)  # float32 µV
    d = np.diff(stamps)
    assert abs(np.median(d) - 1 / 500) < 1e-4  # stamped on the sample clock
    beats = [(e, t) for e, t in markers if e["type"] == "beat"]
    decisions = [e for e, _ in markers if e["type"] == "decision"]
    assert len(beats) >= 5
    # a decision is made every beat from the third; the marker stream carries the alarm's onset only
    assert len(decisions) == 1 and decisions[0]["state"] == "onset" and "MI" in decisions[0]["onset"], decisions
    # a beat marker's time is its R peak's sample time: the stamped ECG there is near a maximum of |x|
    stamps = np.asarray(stamps)
    for e, t in beats:
        i = int(np.argmin(np.abs(stamps - t)))
        if 10 <= i < len(got) - 10 and abs(stamps[i] - t) < 0.01:
            window = np.abs(got[i - 10:i + 11] - np.median(got))
            assert window.max() > 3 * np.median(np.abs(got - np.median(got))), e
