"""Calibration, operating points and persistent alarms: the card, the decision logic, edge-run."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from test_edge_support import record_path

from selfmis.bundle import ModelCard, calibrated_probability, load_bundle
from selfmis.edge_runtime import cli
from selfmis.edge_runtime.decision import AlarmState, RollingDecision
from selfmis.edge_runtime.models import default_bundle_dir

MI_100 = record_path(271)
SHIPPED = default_bundle_dir()


def _shipped_card() -> ModelCard:
    return load_bundle(SHIPPED).card


# ------------------------------------------------------------------ calibration maths

def test_platt_recovers_the_generating_scale_and_lowers_ece():
    from selfmis.quantize.calibrate import apply_platt, ece, fit_platt
    from selfmis.quantize.metrics import sigmoid

    rng = np.random.default_rng(0)
    z = rng.normal(0, 2, 20000)
    y = rng.random(len(z)) < sigmoid(0.5 * z - 1.0)  # logits twice too sharp and shifted
    a, b = fit_platt(z, y)
    assert a == pytest.approx(0.5, abs=0.05) and b == pytest.approx(-1.0, abs=0.08)
    assert ece(y, apply_platt(z, a, b)) < 0.02 < ece(y, sigmoid(z))


def test_operating_rules_hold_on_the_data_they_were_chosen_on():
    from selfmis.quantize.calibrate import choose_operating_point
    from selfmis.train.evaluate import threshold_metrics

    rng = np.random.default_rng(1)
    y = rng.random(400) < 0.2
    p = np.clip(rng.normal(0.3 + 0.3 * y, 0.15), 0, 1)
    t = choose_operating_point(y, p, "min_sensitivity", 0.90)
    assert threshold_metrics(y, p, t)["sensitivity"] >= 0.90
    assert threshold_metrics(y, p, np.nextafter(t, 2.0))["sensitivity"] < 0.90  # the highest such threshold
    t = choose_operating_point(y, p, "min_specificity", 0.98)
    assert threshold_metrics(y, p, t)["specificity"] >= 0.98
    below = p[p < t].max()  # the next lower candidate breaks the rule: t is the most sensitive one
    assert threshold_metrics(y, p, below)["specificity"] < 0.98


# ------------------------------------------------------------------ the card

def test_an_old_card_without_calibration_still_loads_and_means_what_it_did():
    raw = json.loads((SHIPPED / "card.json").read_text())
    for k in ("calibration", "operating_points", "default_operating_point"):
        raw.pop(k, None)
    card = ModelCard.from_dict(raw)
    name, thr = card.operating_point()
    assert name == "balanced" and thr == raw["thresholds"]
    z = np.array([[-2.0, 0.0, 1.5] + [0.0] * (len(card.labels) - 3)])
    assert card.probabilities(z) == pytest.approx(1 / (1 + np.exp(-z)))
    with pytest.raises(ValueError, match="no operating point 'alarm'.*balanced"):
        card.operating_point("alarm")


def test_shipped_card_carries_calibration_and_three_operating_points_for_the_same_model():
    card = _shipped_card()  # load_bundle checks the model's sha256 against the card
    assert card.sha256 == "e08b15cae5ec448f7716fe8bfa32c1b56061123a40e3d1232683a8aaaa8afa41"  # dscnn-6k
    assert {"screening", "balanced", "alarm"} <= set(card.operating_points)
    assert card.default_operating_point == "balanced"
    mi = {k: card.operating_point(k)[1]["MI"] for k in ("screening", "balanced", "alarm")}
    assert mi["screening"] < mi["balanced"] < mi["alarm"]
    # the method chosen on validation (cross-fitted log loss); Platt for MI on this model
    assert card.calibration["MI"]["method"] == card.metrics["calibration"]["per_label"]["MI"]["method"] == "platt"
    # calibration is strictly monotone: the legacy Youden threshold maps onto the balanced one
    z = np.log(card.thresholds["MI"] / (1 - card.thresholds["MI"]))
    assert calibrated_probability(z, card.calibration["MI"]) == pytest.approx(mi["balanced"], abs=1e-9)
    test = card.metrics["operating_points"]["alarm"]["test"]["MI"]
    assert 0 <= test["sensitivity_ci"][0] <= test["sensitivity"] <= test["sensitivity_ci"][1]
    assert card.metrics["operating_points"]["alarm"]["validation"]["MI"]["specificity"] >= 0.98


# ------------------------------------------------------------------ persistence

def test_persistence_and_hysteresis_turn_flicker_into_one_onset():
    rng = np.random.default_rng(2)
    t = np.arange(600) * 0.8                    # 8 minutes of beats at 75 bpm
    p = 0.5 + 0.04 * rng.standard_normal(len(t))  # hovering around the threshold
    p[300:] += 0.25                              # then clearly above: a real change
    flicker = AlarmState([0.5], persist_s=0, hysteresis=0)
    steady = AlarmState([0.5], persist_s=20, hysteresis=0.5)
    s_f = [flicker.update(ti, [pi])[0] for ti, pi in zip(t, p)]
    s_s = [steady.update(ti, [pi])[0] for ti, pi in zip(t, p)]
    assert flicker.n_changes > 50
    assert steady.n_changes == 1 and s_s.count("onset") == 1
    onset = t[s_s.index("onset")]
    assert onset <= t[300] + 20
    assert (p[(t >= onset - 20) & (t <= onset)] >= 0.5).all()  # 20 s above without a break
    assert set(s_s) == {"off", "onset", "ongoing"}


def test_an_alarm_clears_only_after_the_span_below_the_lower_threshold():
    a = AlarmState([0.5], persist_beats=3, hysteresis=0.5)
    states = [a.update(i, [p])[0] for i, p in enumerate([0.6, 0.6, 0.6, 0.45, 0.45, 0.45, 0.3, 0.3, 0.3])]
    # 0.45 is below 0.5 but above the hysteresis threshold sigmoid(logit(0.5) - 0.5) = 0.378
    assert states == ["off", "off", "onset", "ongoing", "ongoing", "ongoing", "ongoing", "ongoing", "cleared"]


def test_reset_restarts_the_clock_but_keeps_an_alarm_on():
    d = RollingDecision(["MI"], {"MI": 0.5}, n_beats=1, min_beats=1, persist_s=5, hysteresis=0)
    out = [d.add([0.9], t)["state"] for t in range(7)]
    assert out[5] == "onset"
    d.reset()
    assert [d.add([0.9], t)["state"] for t in range(7, 9)] == ["ongoing", "ongoing"]
    d.reset()
    states = [d.add([0.1], t)["state"] for t in range(9, 16)]
    assert states.index("cleared") == 5 and states[-1] == "off"  # 5 s below, then quiet


# ------------------------------------------------------------------ edge-run

def _run(argv, capsys):
    code = cli.main(argv)
    return code, [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.strip()]


@pytest.mark.skipif(MI_100 is None, reason="no PTB-XL records available")
@pytest.mark.parametrize("op", ["screening", "alarm"])
def test_every_decision_names_its_operating_point_and_state(op, capsys):
    code, ev = _run(["--replay", MI_100, "--fast", "--model", str(SHIPPED), "--operating-point", op,
                     "--persist-beats", "2"], capsys)
    dec = [e for e in ev if e["type"] == "decision"]
    assert code == 0 and dec
    assert all(d["operating_point"] == op and d["state"] in ("off", "onset", "ongoing", "cleared") for d in dec)
    thr = _shipped_card().operating_point(op)[1]["MI"]
    above = [d["probabilities"]["MI"] >= thr for d in dec]
    # no onset before two decisions in a row above the threshold
    for i, d in enumerate(dec):
        if d["state"] == "onset":
            assert i >= 1 and above[i] and above[i - 1]


def test_unknown_operating_point_is_a_usage_error(capsys):
    code = cli.main(["--replay", "nothing.csv", "--model", str(SHIPPED), "--operating-point", "panic"])
    assert code == 2
    assert "panic" in capsys.readouterr().err


def test_runtime_json_chooses_the_operating_point(tmp_path):
    from selfmis.runtime_config import cli_defaults, default_runtime_config, load_runtime_config

    cfg = default_runtime_config(_shipped_card())
    assert cfg["operating_point"] == "balanced"
    cfg.update({"operating_point": "alarm", "persist_s": 60})
    (tmp_path / "runtime.json").write_text(json.dumps(cfg))
    d = cli_defaults(load_runtime_config(tmp_path))
    assert d["operating_point"] == "alarm" and d["persist_s"] == 60
    args = cli.build_parser()
    args.set_defaults(**d)
    a = args.parse_args(["--replay", "x.csv"])
    assert a.operating_point == "alarm" and a.persist_s == 60


def _close(a, b, rel=1e-9) -> bool:
    """Same structure, same strings, numbers equal to ``rel`` (a decision threshold moves by ~1e-16)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rel) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_close(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=rel, abs=1e-12)
    return a == b


def test_selfmis_calibrate_reproduces_the_shipped_card(shared_ptbxl, tmp_path):
    """The shipped card's calibration and thresholds come from `selfmis calibrate`, as a user runs it."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "selfmis.cli", "calibrate", "--model", str(SHIPPED), "--out",
                        str(tmp_path / "b"), "--data", str(shared_ptbxl), "--n-boot", "20"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    new, shipped = load_bundle(tmp_path / "b").card, _shipped_card()
    assert new.sha256 == shipped.sha256  # the model is not touched
    # Equal up to the last bits of a float64: a newer numpy/scipy/BLAS may sum in another order.
    assert _close(new.calibration, shipped.calibration)
    assert _close(new.operating_points, shipped.operating_points)
    assert _close(new.thresholds, shipped.thresholds)  # the legacy Youden thresholds, from the same logits
    assert new.kernels == shipped.kernels == "reference"  # validated with the kernels every CPU agrees on
    assert new.metrics["calibration"]["fit_split"] == "strat_fold [1]"
