"""Calibration methods (temperature, Platt, isotonic), their choice on validation, and the card applying them."""
from __future__ import annotations

import json

import numpy as np
import pytest

from selfmis.bundle import BundleError, ModelCard, calibrated_probability
from selfmis.edge_runtime.models import default_bundle_dir
from selfmis.quantize.calibrate import (apply_calibration, calibrate_scores, choose_calibration, ece,
                                        ece_noise_floor, fit_calibration, fit_isotonic, fit_temperature)
from selfmis.quantize.metrics import sigmoid


def _card(calibration: dict, labels=("MI", "NORM")) -> ModelCard:
    raw = json.loads((default_bundle_dir() / "card.json").read_text())
    raw.update(labels=list(labels), calibration=calibration)
    # The schema checks labels against the model's outputs and every per-label table against the labels.
    raw["output"]["shape"] = [1, len(labels)]
    keep = lambda t: {k: v for k, v in t.items() if k in labels}  # noqa: E731
    raw["thresholds"] = keep(raw["thresholds"])
    for op in raw["operating_points"].values():
        op["thresholds"] = keep(op["thresholds"])
    return ModelCard.from_dict(raw)


def test_temperature_recovers_the_generating_temperature():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, 20000)
    y = rng.random(len(z)) < sigmoid(z / 2.5)  # logits 2.5x too sharp, no shift
    t = fit_temperature(z, y)
    assert t == pytest.approx(2.5, rel=0.06)
    c = fit_calibration(z, y, "temperature")
    assert c["b"] == 0.0 and c["a"] == pytest.approx(1 / t)
    assert ece(y, apply_calibration(z, c)) < 0.015 < ece(y, sigmoid(z))


def test_isotonic_is_the_pool_adjacent_violators_fit():
    # a hand-checkable case: 0,1 | 1,0,0 pool into rates; knots at each block's ends
    z = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    y = np.array([0, 1, 1, 0, 0, 1])
    x, p = fit_isotonic(z, y, eps=0.0)
    # PAV: [0] 0 | [1..4] pooled 2/4 = 0.5 | [5] 1
    assert x == [0.0, 1.0, 4.0, 5.0]
    assert p == [0.0, 0.5, 0.5, 1.0]
    assert np.all(np.diff(p) >= 0)
    # eps keeps a block of negatives off zero (default 1 / (2 n))
    _, p = fit_isotonic(z, y)
    assert p[0] == pytest.approx(1 / 12) and p[-1] == pytest.approx(1 - 1 / 12)


def test_isotonic_fixes_a_shape_no_sigmoid_can_and_auto_chooses_it():
    rng = np.random.default_rng(1)
    z = rng.uniform(-4, 4, 6000)
    truth = np.where(z < 0, 0.1, np.where(z < 2, 0.35, 0.9))  # a staircase, far from any sigmoid
    y = rng.random(len(z)) < truth
    iso = fit_calibration(z, y, "isotonic")
    platt = fit_calibration(z, y, "platt")
    zt = rng.uniform(-4, 4, 6000)
    yt = rng.random(len(zt)) < np.where(zt < 0, 0.1, np.where(zt < 2, 0.35, 0.9))
    assert ece(yt, apply_calibration(zt, iso)) < 0.03 < ece(yt, apply_calibration(zt, platt))
    method, scores = choose_calibration(z, y)
    assert method == "isotonic"
    assert scores["isotonic"]["log_loss"] < min(scores["platt"]["log_loss"], scores["temperature"]["log_loss"])


def test_auto_mostly_picks_platt_when_the_truth_is_a_shifted_sigmoid():
    """At validation size the choice is noisy (isotonic can win a draw by chance), so: a large majority."""
    picks = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        z = rng.normal(0, 2, 400)  # a validation-sized sample
        y = rng.random(len(z)) < sigmoid(0.6 * z - 1.5)  # a prevalence shift temperature cannot fix
        method, scores = choose_calibration(z, y, seed=seed)
        picks.append(method)
        assert scores["temperature"]["log_loss"] < scores["sigmoid"]["log_loss"]
    assert picks.count("platt") >= 15 and "temperature" not in picks


def test_the_card_applies_every_method_as_the_fit_means_it():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2, 500)
    y = rng.random(len(z)) < sigmoid(z - 0.5)
    for method in ("platt", "temperature", "isotonic"):
        c = fit_calibration(z, y, method)
        card = _card({"MI": c})
        zz = rng.normal(0, 3, (64, 2))
        p = card.probabilities(zz)
        assert p[:, 0] == pytest.approx(apply_calibration(zz[:, 0], c), abs=1e-12)
        assert p[:, 1] == pytest.approx(sigmoid(zz[:, 1]), abs=1e-12)  # NORM uncalibrated: plain sigmoid
        assert card.probabilities(zz[0]) == pytest.approx(p[0])  # one beat, (labels,)
        assert np.all(np.diff(card.probabilities(np.c_[np.sort(zz[:, 0]), zz[:, 1]])[:, 0]) >= 0)  # monotone
    table = {"method": "isotonic", "x": [-1.0, 1.0], "y": [0.2, 0.6]}
    assert calibrated_probability([-5, 0, 5], table) == pytest.approx([0.2, 0.4, 0.6])  # linear, flat beyond


@pytest.mark.parametrize("entry, match", [
    ({"method": "beta", "a": 1.0}, "unknown calibration method 'beta'"),
    ({"method": "isotonic", "x": [0.0, 1.0], "y": [0.6, 0.2]}, "non-decreasing"),
    ({"method": "isotonic", "x": [0.0], "y": [0.5]}, ">= 2 knots"),
    ({"method": "platt", "b": 0.1}, "needs numbers 'a'"),
])
def test_a_card_with_a_calibration_this_runtime_cannot_apply_is_refused_by_name(entry, match):
    with pytest.raises(BundleError, match=f"calibration of 'MI'.*{match}"):
        _card({"MI": entry})


def test_the_test_fold_never_chooses_the_calibration_or_the_thresholds():
    rng = np.random.default_rng(4)
    labels = ["MI", "NORM"]
    zv, zt = rng.normal(0, 2, (250, 2)), rng.normal(0, 2, (250, 2))
    yv = rng.random((250, 2)) < sigmoid(0.7 * zv - 1)
    yt1 = rng.random((250, 2)) < sigmoid(zt)
    yt2 = ~yt1  # the opposite test labels
    prev = {"MI": 0.2, "NORM": 0.4}
    r1 = calibrate_scores(zv, yv, zt, yt1, labels, prev, n_boot=0)
    r2 = calibrate_scores(zv, yv, zt, yt2, labels, prev, n_boot=0)
    assert r1["calibration"] == r2["calibration"]
    assert {k: v["thresholds"] for k, v in r1["operating_points"].items()} == \
        {k: v["thresholds"] for k, v in r2["operating_points"].items()}
    assert r1["metrics"]["per_label"]["MI"]["ece_after"] != r2["metrics"]["per_label"]["MI"]["ece_after"]
    # a fixed method is honoured for every label
    r3 = calibrate_scores(zv, yv, zt, yt1, labels, prev, n_boot=0, method="isotonic")
    assert {c["method"] for c in r3["calibration"].values()} == {"isotonic"}
    with pytest.raises(ValueError, match="unknown calibration method"):
        calibrate_scores(zv, yv, zt, yt1, labels, prev, n_boot=0, method="histogram")


def test_ece_noise_floor_is_what_a_calibrated_model_shows_and_shrinks_with_n():
    rng = np.random.default_rng(5)
    small = ece_noise_floor(rng.uniform(0, 1, 250), n_sim=300)
    large = ece_noise_floor(rng.uniform(0, 1, 5000), n_sim=300)
    assert 0.02 < small["median"] < 0.06  # ~0.04 at n = 250, the size of one PTB-XL test fold
    assert large["median"] < small["median"] / 3  # ~1 / sqrt(n)
    assert small["median"] <= small["p95"]


def test_selfmis_calibrate_isotonic_reaches_the_runtime(shared_ptbxl, tmp_path):
    """`selfmis calibrate --method isotonic` writes tables into the card; the gateway's interpreter applies them."""
    from selfmis.edge_runtime.interpreter import TFLiteModel
    from selfmis.edge_runtime.models import MODELS_DIR
    from selfmis.quantize.calibrate_cli import main

    assert main(["--model", str(MODELS_DIR / "micro"), "--out", str(tmp_path / "b"), "--data", str(shared_ptbxl),
                 "--n-boot", "5", "--method", "isotonic"]) == 0
    model = TFLiteModel(tmp_path / "b")
    cal = model.card.calibration
    assert cal and {c["method"] for c in cal.values()} == {"isotonic"}
    assert model.card.metrics["calibration"]["calibration_methods"]["MI"] == "isotonic"
    x = np.random.default_rng(6).normal(0, 1, (8, 500)).astype(np.float32)
    z = model.predict_logits(x)
    j = model.card.labels.index("MI")
    assert model.predict_proba(x)[:, j] == pytest.approx(np.interp(z[:, j], cal["MI"]["x"], cal["MI"]["y"]))
