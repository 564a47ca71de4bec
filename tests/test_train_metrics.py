"""Metric functions of selfmis.train.evaluate on data with known answers."""
import numpy as np
import pytest

from selfmis.train.evaluate import (auprc, auroc, bootstrap_ci, choose_threshold, frechet_distance,
                                    record_logits, score_predictions, score_records, score_task,
                                    threshold_metrics)
from selfmis.train.data import DEFAULT_TASKS


def test_auroc_known_values():
    y = np.array([0, 0, 1, 1])
    assert auroc(y, [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc(y, [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert auroc(y, [0.1, 0.4, 0.35, 0.8]) == 0.75  # 3 of 4 pairs ordered
    assert np.isnan(auroc([1, 1], [0.1, 0.2]))


def test_auprc_known_values():
    assert auprc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    # ranking 1,0,1: precision 1 at recall .5, 2/3 at recall 1 -> 0.5 + 0.5*2/3
    assert auprc([1, 0, 1], [0.9, 0.8, 0.7]) == pytest.approx(0.5 + 1 / 3)
    # all tied: precision = prevalence
    assert auprc([1, 0, 0, 0], [0.3] * 4) == pytest.approx(0.25)


def test_bootstrap_ci_covers_and_shrinks_with_n():
    rng = np.random.default_rng(0)

    def data(n):
        y = rng.random(n) < 0.3
        return y, y * 1.0 + rng.normal(0, 1.0, n)  # true AUROC = Phi(1/sqrt2) ~ 0.76
    y1, s1 = data(200)
    y2, s2 = data(5000)
    lo1, hi1 = bootstrap_ci(y1, s1, auroc, n_boot=300, seed=1)
    lo2, hi2 = bootstrap_ci(y2, s2, auroc, n_boot=100, seed=1)
    assert lo1 < auroc(y1, s1) < hi1 and lo2 < auroc(y2, s2) < hi2
    assert abs(auroc(y2, s2) - 0.76) < 0.03  # Phi(1/sqrt 2)
    assert (hi2 - lo2) < (hi1 - lo1) / 3
    assert bootstrap_ci(y1, s1, auroc, 50, seed=3) == bootstrap_ci(y1, s1, auroc, 50, seed=3)


def test_too_few_positives_reports_instead_of_number():
    y = np.zeros(100)
    y[:3] = 1
    r = score_task(y, np.random.default_rng(0).random(100), min_pos=5)
    assert r["n_positives"] == 3 and "too few" in r["status"] and "auroc" not in r


def test_threshold_chosen_on_validation_is_applied_to_test():
    yv = np.array([0, 0, 0, 1, 1, 1])
    sv = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    t = choose_threshold(yv, sv)
    assert 0.3 < t <= 0.6
    m = threshold_metrics([0, 1, 1, 0], [0.5, 0.9, 0.65, 0.2], t)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0 and m["f1"] == 1.0
    yt = np.r_[np.zeros(20), np.ones(20)]
    r = score_task(yt, yt + 0.01, yv, sv, n_boot=20)
    assert r["auroc"] == 1.0 and "validation" in r["threshold_source"]


def test_score_records_with_a_generic_predict_fn():
    """Any function over (N, 1, 500) windows plugs in (a TFLite interpreter would)."""
    rng = np.random.default_rng(0)
    n = 40
    Y = np.zeros((n, len(DEFAULT_TASKS)), np.float32)
    Y[: n // 2, 0] = 1
    Y[n // 2:, -1] = 1
    X = rng.normal(0, 1, (n, 1000)).astype(np.float32) * 0.1
    X[: n // 2] += np.sin(np.arange(1000) * 2 * np.pi * 5 / 100)  # MI records carry a 5 Hz tone
    calls = []

    def predict(w):
        calls.append(w.shape)
        assert w.shape[1:] == (1, 500) and w.dtype == np.float32
        power5 = np.abs(np.fft.rfft(w[:, 0], axis=-1))[:, 25]
        return np.repeat(power5[:, None], len(DEFAULT_TASKS), axis=1)
    s = record_logits(predict, X)
    assert s.shape == (n, len(DEFAULT_TASKS)) and calls[0][0] == n * 6  # 6 windows per record
    res = score_records(predict, X * 1000, Y, X, Y, n_boot=50)  # amplitude scale does not matter
    assert res["tasks"]["MI"]["auroc"] == 1.0
    assert res["tasks"]["IMI"]["status"].startswith("too few")
    assert res["tasks"]["MI_vs_NORM"]["n"] == n


def test_score_predictions_mi_vs_norm_subset():
    Y = np.zeros((6, len(DEFAULT_TASKS)))
    Y[:2, 0] = 1
    Y[2:4, -1] = 1  # two NORM, two records neither MI nor NORM (excluded)
    r = score_predictions(np.random.default_rng(0).random((6, len(DEFAULT_TASKS))), Y, min_pos=1, n_boot=10)
    assert r["MI_vs_NORM"]["n"] == 4


def test_frechet_distance():
    rng = np.random.default_rng(0)
    A = rng.normal(0, 1, (2000, 4))
    assert frechet_distance(A, A) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(A, A + 3) == pytest.approx(36, rel=0.05)  # |mu shift|^2 = 4*9


def _auroc_mann_whitney(y, s):
    """The hand-written AUROC this project used before scikit-learn (rank sum, ties one half)."""
    from scipy.stats import rankdata

    y, s = np.asarray(y).astype(bool), np.asarray(s, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    r = rankdata(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _auprc_tie_groups(y, s):
    """The hand-written average precision this project used before scikit-learn (ties one threshold)."""
    y, s = np.asarray(y).astype(bool), np.asarray(s, dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]
    tp = np.cumsum(y_sorted)[last]
    precision, recall = tp / (last + 1), tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@pytest.mark.parametrize("decimals", [None, 2, 1])  # None: no ties; 1-2: many tied scores (int8-like logits)
def test_sklearn_metrics_equal_the_hand_written_ones(decimals):
    rng = np.random.default_rng(7)
    for n, prev in ((20, 0.3), (200, 0.1), (1000, 0.5)):
        y = rng.random(n) < prev
        s = rng.normal(size=n) + y
        if decimals is not None:
            s = np.round(s, decimals)
        assert auroc(y, s) == pytest.approx(_auroc_mann_whitney(y, s), abs=1e-12)
        assert auprc(y, s) == pytest.approx(_auprc_tie_groups(y, s), abs=1e-12)
    lo_hi = bootstrap_ci(y, s, auroc, n_boot=50, seed=0)
    assert lo_hi[0] < auroc(y, s) < lo_hi[1]
