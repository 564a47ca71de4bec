"""Signal-quality gate and link faults, through the in-process virtual device."""
from __future__ import annotations

import numpy as np
import pytest

from test_edge_support import record_path, model_bundle

from selfmis.edge_runtime.pipeline import Pipeline
from selfmis.edge_runtime.quality import assess_block
from selfmis.edge_runtime.sources.base import Chunk, LinkEvent
from selfmis.edge_runtime.sources.simulated import SimulatedSource

MI_500 = record_path(271, hr=True)
pytestmark = pytest.mark.skipif(MI_500 is None, reason="no PTB-XL record available")


@pytest.fixture(scope="module")
def model():
    from selfmis.edge_runtime.interpreter import TFLiteModel
    return TFLiteModel(model_bundle())


def run(model, **faults):
    src = SimulatedSource(MI_500, passes=3, samples_per_frame=50, hello_every_s=0, **faults)  # 30 s
    pipe = Pipeline(model)
    ev = []
    for item in src:
        ev += pipe.handle(item)
    return ev, pipe.summary(src.stats)


def of(ev, kind):
    return [e for e in ev if e["type"] == kind]


def test_clean_stream_is_never_gated(model):
    ev, s = run(model)
    assert all(q["ok"] for q in of(ev, "quality"))
    assert s["suppressed"] == {} and s["decisions"] >= 15 and s["drops"] == 0


@pytest.mark.parametrize("fault, reason", [
    ({"lead_off": [(12.0, 3.0)]}, "lead_off"),
    ({"flat": [(12.0, 3.0)]}, "flat"),
    ({"saturate": [(12.0, 3.0)]}, "saturation"),
    ({"noise_uv": 600.0, "noise_spans": [(12.0, 3.0)]}, "noise"),
])
def test_fault_suppresses_decisions_and_says_why(model, fault, reason):
    ev, s = run(model, **fault)
    bad = [q for q in of(ev, "quality") if not q["ok"]]
    assert bad and reason in bad[0]["reasons"] and 11.0 <= bad[0]["t"] <= 15.0
    assert any(q["ok"] for q in of(ev, "quality") if q["t"] > bad[0]["t"])  # and it recovers
    assert s["suppressed"].get(reason, 0) >= 1
    # no decision uses a window that overlaps the fault (window: s .. R+0.5 s)
    for d in of(ev, "decision"):
        assert not (d["t"] - 4.5 < 15.0 and d["t"] + 0.5 > 12.0), d
    assert any(d["t"] > 20.0 for d in of(ev, "decision"))  # decisions resume
    # no beats reported inside the faulty stretch
    assert not [b for b in of(ev, "beat") if 12.2 < b["t"] < 14.8]


def test_lost_and_corrupt_frames_are_counted_and_gated(model):
    ev, s = run(model, drop_rate=0.04, corrupt_rate=0.025, seed=3)
    assert s["drops"] >= 10 and s["crc_errors"] >= 5
    kinds = {e["kind"] for e in of(ev, "link")}
    assert {"gap", "crc_error"} <= kinds
    assert s["suppressed"].get("gap", 0) >= 1
    assert s["signal_s"] == pytest.approx(30.0, abs=0.2)  # filled gaps keep the clock (a lost last frame cannot be seen)


def test_reconnect_restarts_the_stream_without_mixing():
    pipe = Pipeline(None)
    x = np.sin(np.linspace(0, 60, 1000)).astype(np.float32)
    pipe.handle(Chunk(x, 250.0))
    pipe.handle(LinkEvent("disconnected", discontinuity=True))
    ev = pipe.handle(Chunk(x, 250.0))
    assert pipe._n_in == len(x)  # a fresh segment
    assert pipe._signal_s >= 8.0 - 1e-6


def test_memory_is_bounded():
    pipe = Pipeline(None)
    rng = np.random.default_rng(0)
    for _ in range(600):  # 10 min of 130 Hz in BLE-sized chunks
        pipe.handle(Chunk(rng.normal(0, 0.1, 130).astype(np.float32), 130.0))
    det = pipe.detector
    assert len(pipe._buf) <= 2 * (pipe.W + 100 + det.lateness)
    # the detector keeps its recent envelope (a few hundred samples) and no growing list
    assert len(det._m) <= 2 * det._keep + 200 and len(det._queue) + len(det._noise) + len(det._pending) < 50
    assert len(pipe.quality._verdicts) <= pipe.quality.keep_blocks + 1


def test_assess_block_reasons():
    t = np.arange(100) / 100.0
    ecg = np.where((t % 0.8) < 0.04, 1.0, 0.0) + 0.05 * np.sin(2 * np.pi * t)
    assert assess_block(ecg) == []
    assert assess_block(np.zeros(100)) == ["flat"]
    assert assess_block(ecg + np.random.default_rng(0).normal(0, 0.3, 100)) == ["noise"]
    assert assess_block(ecg, lead_off=np.ones(100, bool)) == ["lead_off"]
    assert assess_block(ecg, saturated=np.r_[np.ones(10), np.zeros(90)].astype(bool)) == ["saturation"]


def test_gate_saturation_threshold_is_two_percent_of_samples():
    """The device's saturation flag (bit 2) gates a block above 2% of its samples, not above 0.5%."""
    from selfmis.edge_runtime.quality import QualityGate
    t = np.arange(100) / 100.0
    ecg = (np.where((t % 0.8) < 0.04, 1.0, 0.0) + 0.05 * np.sin(2 * np.pi * t)).astype(np.float32)
    for n_sat, gated in ((1, False), (2, False), (3, True)):
        flags = np.zeros(100, np.uint8)
        flags[:n_sat] = 4
        assert QualityGate(fs=100.0).assess(ecg, flags) == (["saturation"] if gated else []), n_sat
