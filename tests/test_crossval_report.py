"""The cross-validation report's pooling, on tiny synthetic folds written in the study's own file format."""
from __future__ import annotations

import json

import numpy as np
import pytest

from selfmis.benchmarks.crossval_report import (MODELS, boot_stratified, build_report, load_fold, write_crossval_report,
                                                write_fold)
from selfmis.quantize.calibrate import apply_calibration, calibrate_scores, ece, fit_calibration
from selfmis.quantize.metrics import sigmoid
from selfmis.train.evaluate import auroc

LABELS = ["MI", "IMI", "NORM"]
PREV = {"MI": 0.2, "IMI": 0.1, "NORM": 0.4}


def _split(rng, n, scale, shift):
    """Labels and logits of 5 models; fold-specific scale/shift so that raw logits do not pool."""
    mi = rng.random(n) < 0.25
    imi = mi & (rng.random(n) < 0.5)
    norm = ~mi & (rng.random(n) < 0.6)
    Y = np.c_[mi, imi, norm].astype(np.int8)
    out = {"Y": Y}
    for i, m in enumerate(MODELS):
        signal = np.c_[2.0 * mi, 2.0 * imi, 2.0 * norm] + rng.normal(0, 1 + 0.1 * i, (n, 3))
        out[m] = (scale * signal + shift).astype(np.float32)
    return out


def _write(tmp_path, k, scale, shift, seed):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("val", 160), ("test", 180)):
        s = _split(rng, n, scale, shift)
        arrays[f"{split}_Y"] = s.pop("Y")
        arrays[f"{split}_ecg_ids"] = np.arange(n) + 1000 * k
        arrays.update({f"{split}_{m}": v for m, v in s.items()})
    meta = {"test_fold": k, "folds": {"val": [k % 10 + 1], "test": [k]}, "labels": LABELS,
            "members": {"default": "dscnn-6k", "micro": "dscnn-2k-s1"}, "scoring": "synthetic"}
    return write_fold(tmp_path / f"fold{k}.npz", meta, arrays)


@pytest.fixture
def files(tmp_path):
    # fold 3's logits are 4x sharper and shifted: pooling raw logits would mix scales
    return [_write(tmp_path, 10, 1.0, 0.0, 0), _write(tmp_path, 3, 4.0, -2.0, 1)]


def test_pooled_figures_are_the_per_fold_fits_applied_and_concatenated(files, tmp_path):
    folds = [load_fold(f) for f in files]
    r = build_report(folds, n_boot=30, seed=0, prevalence=PREV, n_sim=30)
    assert r["folds"] == [3, 10] and r["n_test"] == 360
    f3, f10 = sorted(folds, key=lambda f: f.k)
    # AUROC: per fold on raw logits; pooled on each fold's own validation Platt fit
    mi = r["auroc"]["default_int8"]["MI"]
    assert mi["folds"][10]["value"] == pytest.approx(auroc(f10.test_Y[:, 0], f10.test["default_int8"][:, 0]))
    pooled_p = np.concatenate([apply_calibration(f.test["default_int8"][:, 0],
                                                 fit_calibration(f.val["default_int8"][:, 0], f.val_Y[:, 0], "platt"))
                               for f in (f3, f10)])
    y = np.concatenate([f3.test_Y[:, 0], f10.test_Y[:, 0]])
    assert mi["pooled"]["value"] == pytest.approx(auroc(y, pooled_p))
    raw = np.concatenate([f3.test["default_int8"][:, 0], f10.test["default_int8"][:, 0]])
    assert mi["pooled"]["value"] != pytest.approx(auroc(y, raw), abs=1e-4)  # the scales really differ
    lo, hi = mi["pooled"]["ci"]
    assert lo <= mi["pooled"]["value"] <= hi
    assert mi["validation"][3] == pytest.approx(auroc(f3.val_Y[:, 0], f3.val["default_int8"][:, 0]))
    d = r["auroc_differences"]["default_int8 - micro_int8"]["MI"]
    assert d["per_fold"][10] == pytest.approx(mi["folds"][10]["value"] - r["auroc"]["micro_int8"]["MI"]["folds"][10]["value"])
    assert d["pooled"] == pytest.approx(mi["pooled"]["value"] - r["auroc"]["micro_int8"]["MI"]["pooled"]["value"])
    # ECE before: the plain sigmoid pooled; after (platt): each fold's own validation fit
    e = r["ece"]["default_int8"]["MI"]
    assert e["before"]["ece"] == pytest.approx(ece(y, sigmoid(raw)))
    assert e["platt"]["ece"] == pytest.approx(ece(y, pooled_p))
    assert e["platt"]["ece"] < e["before"]["ece"]  # fold 3's logits are miscalibrated on purpose
    assert e["before"]["per_fold"][3] == pytest.approx(ece(f3.test_Y[:, 0], sigmoid(f3.test["default_int8"][:, 0])))
    assert set(e["auto"]["chosen"]) == {3, 10} and e["auto"]["noise_floor"]["n"] == 360
    # operating points: the card's thresholds per fold, decisions pooled
    op = r["operating_points"]["default_int8"]["points"]["balanced"]["MI"]
    dec = []
    for f in (f3, f10):
        card = calibrate_scores(f.val["default_int8"], f.val_Y, f.test["default_int8"], f.test_Y, LABELS, PREV, n_boot=0)
        t = card["operating_points"]["balanced"]["thresholds"]["MI"]
        assert op["thresholds"][f.k] == pytest.approx(t)
        dec.append(apply_calibration(f.test["default_int8"][:, 0], card["calibration"]["MI"]) >= t)
    dec = np.concatenate(dec)
    assert op["test_pooled"]["sensitivity"] == pytest.approx(dec[y > 0].mean())
    assert op["test_pooled"]["specificity"] == pytest.approx((~dec[y == 0]).mean())
    assert op["test_pooled"]["n"] == 360


def test_report_files_name_the_folds_they_pool(files, tmp_path):
    out = tmp_path / "report"
    s = write_crossval_report(files, out, n_boot=10, prevalence=PREV, n_sim=10, command="cmd")
    assert s["folds"] == [3, 10]
    md = (out / "README.md").read_text()
    assert "Test folds pooled: **3, 10** (2 of 10; 360 test records)" in md
    assert "| default_int8 | MI |" in md and "noise floor" in md
    j = json.loads((out / "crossval.json").read_text())
    assert j["folds"] == [3, 10] and set(j["ece"]) == {"default_int8", "micro_int8"}
    pytest.importorskip("matplotlib")
    assert (out / "reliability.png").stat().st_size > 10_000


def test_stratified_bootstrap_keeps_every_fold_at_its_size():
    groups = np.r_[np.zeros(30), np.ones(70)]
    # the share of group 1 in a resample: exactly 0.7 every time when resampling within groups
    lo, hi = boot_stratified(lambda g: float(np.mean(g)), (groups,), groups, 50, 0)
    assert lo == hi == pytest.approx(0.7)
    assert boot_stratified(lambda g: 0.0, (groups,), groups, 0, 0) == [None, None]


def test_teacher_config_is_the_s3_config_with_another_test_fold(tmp_path, shared_ptbxl):
    from selfmis.benchmarks.crossval import FOLD_ORDER, teacher_config
    from selfmis.train.trainer import resolve_config

    base = {"method": "selfmis", "data": None, "test_fold": 10, "val_fold": 1, "train_folds": [2, 3, 4, 5, 6, 7, 8, 9],
            "seed": 0, "threads": 1, "epochs": 20, "input": "lead1", "out": "artifacts/selfmis_lead1.pt"}
    (tmp_path / "config.json").write_text(json.dumps(base))
    cfg = resolve_config(teacher_config(5, tmp_path / "t5", shared_ptbxl, base=tmp_path / "config.json"))
    assert (cfg["test_fold"], cfg["val_fold"]) == (5, 6) and cfg["train_folds"] == [1, 2, 3, 4, 7, 8, 9, 10]
    assert cfg["data"] == str(shared_ptbxl) and cfg["epochs"] == 20 and cfg["out"] == str(tmp_path / "t5")
    assert sorted(FOLD_ORDER) == list(range(1, 11)) and FOLD_ORDER[0] == 10  # every fold once, the reused one first
