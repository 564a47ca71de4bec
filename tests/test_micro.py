"""TFLite Micro as a target: every shipped int8 bundle runs on TFLM's reference kernels, agrees with LiteRT
within 1 LSB with identical decisions on real windows, and its card's arena is the measured one."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from selfmis.bundle import load_bundle
from selfmis.edge_runtime.models import MODELS_DIR

micro = pytest.importorskip("selfmis.quantize.micro")
pytest.importorskip("tflite_micro", reason="the micro extra (tflite-micro) is not installed")

BUNDLES = sorted(p.parent for p in MODELS_DIR.glob("*/card.json"))


@pytest.fixture(scope="module")
def windows(bundled_ptbxl):
    from selfmis.quantize.windows import load_lead1, windows_of
    return windows_of(load_lead1(list(range(1, 11)), str(bundled_ptbxl)))


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_shipped_bundle_agrees_with_litert_on_tflite_micro(bundle, windows):
    rep = micro.micro_parity(bundle, windows.X, groups=windows.record)
    assert rep["reference"]["max_lsb"] <= 1, rep
    assert rep["reference"]["record_decision_flips"] == 0 and rep["ok"], rep
    assert rep["windows"] == len(windows.X) > 50


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_card_records_the_measured_arena(bundle):
    card = load_bundle(bundle).card
    assert card.micro.get("measured"), f"{bundle}: card has no TFLite Micro measurement"
    measured = micro.measure_arena(load_bundle(bundle).model_path)
    assert card.micro["arena_bytes"] == measured["arena_bytes"]
    # the arena is tight: 16 bytes less no longer allocates
    assert micro._allocated_bytes(str(load_bundle(bundle).model_path), measured["arena_bytes"] - 16) is None


def test_micro_logits_match_the_int8_grid(windows):
    m = micro.MicroModel(BUNDLES[0])
    logits = m.predict_logits(windows.X[:8])
    steps = logits / m.card.output.scale + m.card.output.zero_point
    assert logits.shape == (8, len(m.card.labels))
    np.testing.assert_allclose(steps, np.rint(steps), atol=1e-3)


def test_evaluate_through_micro_scores_like_litert(bundled_ptbxl, tmp_path):
    out = {}
    for interp in ("litert", "micro"):
        j = tmp_path / f"{interp}.json"
        p = subprocess.run([sys.executable, "-m", "selfmis.cli", "evaluate", "--model", str(BUNDLES[0]),
                            "--data", str(bundled_ptbxl), "--split", "all", "--n-boot", "20",
                            "--interpreter", interp, "--json", str(j)], capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr[-2000:]
        out[interp] = json.loads(j.read_text())
    assert out["micro"]["interpreter"] == "micro"
    a, b = out["litert"]["tasks"]["NORM"], out["micro"]["tasks"]["NORM"]
    assert a["status"] == b["status"]
    if a["status"] == "ok":
        assert abs(a["auroc"] - b["auroc"]) <= 0.05


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_export_c_writes_the_measured_arena(bundle, tmp_path):
    from selfmis.firmware_bridge.deploy import export_c_array
    card = load_bundle(bundle).card
    res = export_c_array(load_bundle(bundle).model_path, tmp_path, measured=card.micro)
    header = (tmp_path / "model_data.h").read_text()
    assert f"MEASURED {card.micro['arena_bytes']} bytes" in header
    assert f"TensorArenaSize = {card.micro['arena_bytes']};" in header
    assert res["arena"]["method_used"] == "measured"
    # without a measurement the header says it is an estimate
    export_c_array(load_bundle(bundle).model_path, tmp_path / "est")
    assert "ESTIMATE" in (tmp_path / "est" / "model_data.h").read_text()
