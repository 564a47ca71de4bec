"""Calibration and operating points for a bundle's card, chosen on the validation fold only.

* **Calibration**: Platt scaling per label, ``p = sigmoid(a * z + b)`` on the
  record logit ``z`` (Platt, "Probabilistic outputs for support vector machines",
  1999; with ``b = 0`` it is the temperature scaling of Guo et al., "On calibration
  of modern neural networks", ICML 2017). Two parameters per label: enough to fix a
  student whose logits are too sharp or shifted, few enough for ~250 validation
  records. It is monotone, so AUROC is unchanged; the runtime applies it per beat
  (:meth:`selfmis.bundle.ModelCard.probabilities`) and, being monotone, it commutes
  with the rolling median.
* **Expected calibration error**: equal-width bins, ``sum_b n_b/N |mean p - frac positive|``
  (Naeini et al., AAAI 2015), with a percentile bootstrap over records.
* **Operating points** on the calibrated scale, each a rule applied to validation:
  ``screening`` (highest threshold with sensitivity >= 0.90), ``balanced`` (Youden's J),
  ``alarm`` (lowest threshold with specificity >= 0.98 against *every* record without
  the label -- for MI that includes hypertrophy, conduction disease, ... not only NORM).
  Test-fold figures are reported next to them: sensitivity, specificity (all
  negatives, and NORM only), PPV at a stated prevalence, with bootstrap CIs.

Labels with fewer than ``MIN_POSITIVES`` validation positives (or negatives) get
neither: the card then keeps the plain sigmoid and 0.5 for them.
"""
from __future__ import annotations

import numpy as np

from selfmis.train.evaluate import MIN_POSITIVES, choose_threshold, threshold_metrics

from .metrics import sigmoid

__all__ = ["fit_platt", "apply_platt", "ece", "reliability", "OPERATING_RULES", "choose_operating_point",
           "operating_metrics", "calibrate_scores", "DEFAULT_OPERATING_POINT", "N_BINS"]

N_BINS = 10
DEFAULT_OPERATING_POINT = "balanced"
#: name -> (rule, argument, what it means, in words)
OPERATING_RULES = {
    "screening": ("min_sensitivity", 0.90, "highest threshold keeping validation sensitivity >= 0.90"),
    "balanced": ("youden", None, "Youden's J (sensitivity + specificity - 1) maximal on validation"),
    "alarm": ("min_specificity", 0.98, "lowest threshold keeping validation specificity >= 0.98 "
                                       "against every record without the label"),
}


def fit_platt(z, y, l2: float = 1e-3, iters: int = 100) -> tuple:
    """(a, b) minimising the mean log loss of ``sigmoid(a z + b)`` (Newton's method).

    A tiny L2 penalty on ``a - 1`` and ``b`` keeps the fit finite when validation
    happens to be separable.
    """
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    n = len(z)
    a, b = 1.0, 0.0
    for _ in range(iters):
        p = sigmoid(a * z + b)
        r = p - y
        g = np.array([np.dot(r, z) / n + l2 * (a - 1.0), r.mean() + l2 * b])
        w = p * (1 - p)
        H = np.array([[np.dot(w, z * z) / n + l2, np.dot(w, z) / n],
                      [np.dot(w, z) / n, w.mean() + l2]])
        step = np.linalg.solve(H, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def apply_platt(z, a: float, b: float) -> np.ndarray:
    return sigmoid(a * np.asarray(z, np.float64) + b)


def reliability(y, p, n_bins: int = N_BINS) -> list:
    """Per equal-width bin: (lower edge, upper edge, n, mean predicted, fraction positive)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    out = []
    for k in range(n_bins):
        m = idx == k
        out.append((k / n_bins, (k + 1) / n_bins, int(m.sum()), float(p[m].mean()) if m.any() else None,
                    float(y[m].mean()) if m.any() else None))
    return out


def ece(y, p, n_bins: int = N_BINS) -> float:
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    sp = np.bincount(idx, weights=p, minlength=n_bins)
    sy = np.bincount(idx, weights=y, minlength=n_bins)
    return float(np.abs(sp - sy).sum() / max(len(y), 1))


def _boot(stat, arrays, n_boot: int, seed: int) -> list:
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    vals = [stat(*(a[i] for a in arrays)) for i in (rng.integers(0, n, n) for _ in range(n_boot))]
    vals = np.asarray([v for v in vals if np.isfinite(v)])
    return [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))] if len(vals) else [None, None]


def choose_operating_point(y, p, rule: str, arg=None) -> float:
    """Threshold on validation probabilities ``p`` (positive when ``p >= threshold``)."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, np.float64)
    if rule == "youden":
        return float(choose_threshold(y, p))
    if rule == "min_sensitivity":  # keep the top ceil(arg * n_pos) positives above threshold
        pos = np.sort(p[y])[::-1]
        return float(pos[int(np.ceil(arg * len(pos))) - 1])
    if rule == "min_specificity":  # the smallest threshold letting through <= (1 - arg) of negatives
        cands = np.unique(np.r_[p, np.nextafter(p.max(), 1.0)])
        ok = [t for t in cands if threshold_metrics(y, p, t)["specificity"] >= arg]
        return float(min(ok))
    raise ValueError(f"unknown operating rule {rule!r}")


def _ppv(sens, spec, prevalence):
    den = sens * prevalence + (1 - spec) * (1 - prevalence)
    return float(sens * prevalence / den) if den > 0 else float("nan")


def operating_metrics(y, p, threshold: float, prevalence: float, norm=None, n_boot: int = 1000,
                      seed: int = 0) -> dict:
    """Sensitivity, specificity (all negatives; NORM-only when ``norm`` marks NORM records),
    PPV at ``prevalence``, each with a percentile bootstrap CI over records."""
    y, p = np.asarray(y).astype(bool), np.asarray(p, np.float64)
    pos = p >= threshold
    norm = np.zeros(len(y), bool) if norm is None else np.asarray(norm, bool) & ~y

    def sens(y_, pos_, norm_=None):
        return pos_[y_].mean() if y_.any() else np.nan

    def spec(y_, pos_, norm_=None):
        return (~pos_[~y_]).mean() if (~y_).any() else np.nan

    def spec_norm(y_, pos_, norm_):
        return (~pos_[norm_]).mean() if norm_.any() else np.nan

    def ppv(y_, pos_, norm_=None):
        return _ppv(sens(y_, pos_), spec(y_, pos_), prevalence)

    arrays = (y, pos, norm)
    out = {"threshold": float(threshold), "n": int(len(y)), "n_positives": int(y.sum()),
           "n_negatives": int((~y).sum()), "n_norm": int(norm.sum())}
    for name, f in (("sensitivity", sens), ("specificity", spec), ("specificity_norm", spec_norm),
                    ("ppv", ppv)):
        v = f(*arrays)
        out[name] = None if not np.isfinite(v) else float(v)
        out[name + "_ci"] = _boot(f, arrays, n_boot, seed) if np.isfinite(v) else [None, None]
    out["prevalence_for_ppv"] = float(prevalence)
    return out


def calibrate_scores(z_val, Y_val, z_test, Y_test, labels, prevalence: dict, n_boot: int = 1000, seed: int = 0,
                     min_pos: int = MIN_POSITIVES, describe: dict | None = None) -> dict:
    """Everything the card needs from record logits of validation and test.

    Returns ``{"calibration": {label: {...}}, "operating_points": {name: {...}},
    "default_operating_point": name, "metrics": {...}}`` where ``metrics`` holds the
    test-fold ECE before/after per label and the reliability bins.
    """
    labels = list(labels)
    z_val, z_test = np.asarray(z_val, np.float64), np.asarray(z_test, np.float64)
    Y_val, Y_test = np.asarray(Y_val) > 0, np.asarray(Y_test) > 0
    norm_j = labels.index("NORM") if "NORM" in labels else None
    calib, per_label, p_val = {}, {}, {}
    for j, lab in enumerate(labels):
        yv = Y_val[:, j]
        if yv.sum() < min_pos or (~yv).sum() < min_pos:
            continue
        a, b = fit_platt(z_val[:, j], yv)
        calib[lab] = {"method": "platt", "a": a, "b": b}
        p_val[lab] = apply_platt(z_val[:, j], a, b)
        yt = Y_test[:, j]
        before, after = sigmoid(z_test[:, j]), apply_platt(z_test[:, j], a, b)
        row = {"n_val_positives": int(yv.sum()), "n_test": int(len(yt)), "n_test_positives": int(yt.sum()),
               "ece_before": ece(yt, before), "ece_after": ece(yt, after),
               "brier_before": float(np.mean((before - yt) ** 2)), "brier_after": float(np.mean((after - yt) ** 2)),
               "ece_val_after": ece(yv, p_val[lab])}
        if yt.sum() >= 1:
            row["ece_before_ci"] = _boot(ece, (yt, before), n_boot, seed)
            row["ece_after_ci"] = _boot(ece, (yt, after), n_boot, seed)
        row["reliability_before"] = reliability(yt, before)
        row["reliability_after"] = reliability(yt, after)
        per_label[lab] = row
    points = {}
    for name, (rule, arg, words) in OPERATING_RULES.items():
        thr, val, test = {}, {}, {}
        for j, lab in enumerate(labels):
            if lab not in calib:
                continue
            t = choose_operating_point(Y_val[:, j], p_val[lab], rule, arg)
            thr[lab] = t
            nv = None if norm_j is None or j == norm_j else Y_val[:, norm_j]
            nt = None if norm_j is None or j == norm_j else Y_test[:, norm_j]
            val[lab] = operating_metrics(Y_val[:, j], p_val[lab], t, prevalence.get(lab, float(Y_val[:, j].mean())),
                                         nv, n_boot=0)
            pt = apply_platt(z_test[:, j], calib[lab]["a"], calib[lab]["b"])
            if Y_test[:, j].sum() >= min_pos:
                test[lab] = operating_metrics(Y_test[:, j], pt, t, prevalence.get(lab, float(Y_test[:, j].mean())),
                                              nt, n_boot=n_boot, seed=seed)
        for m in val.values():  # no bootstrap on the split the threshold was chosen on
            for k in [k for k in m if k.endswith("_ci")]:
                del m[k]
        points[name] = {"thresholds": thr, "rule": words, "validation": val, "test": test}
    desc = dict(describe or {})
    desc.update({"calibration": "Platt scaling per label on record logits, fitted on validation",
                 "ece": f"{N_BINS} equal-width bins; 95% percentile bootstrap over {n_boot} record resamples",
                 "prevalence_for_ppv": {k: float(v) for k, v in prevalence.items() if k in calib}})
    return {"calibration": calib, "operating_points": points, "default_operating_point": DEFAULT_OPERATING_POINT,
            "metrics": {**desc, "per_label": per_label}}


def label_prevalence(data=None, labels=None) -> dict:
    """Per label, its share of every record of the PTB-XL folder (all folds): the prevalence
    at which PPV is reported (the data set's, not the test fold's 255 records)."""
    from selfmis.train.data import DEFAULT_TASKS, PTBXL

    labels = tuple(labels or DEFAULT_TASKS)
    Y = PTBXL(data).labels(tasks=labels)
    return {lab: float(Y[:, j].mean()) for j, lab in enumerate(labels)}


def with_calibration(card, result: dict):
    """A copy of ``card`` carrying ``result`` (from :func:`calibrate_scores`); the model is untouched."""
    from dataclasses import replace

    metrics = dict(card.metrics)
    metrics["calibration"] = result["metrics"]
    metrics["operating_points"] = {k: {"rule": v["rule"], "validation": v["validation"], "test": v["test"]}
                                   for k, v in result["operating_points"].items()}
    points = {k: {"thresholds": v["thresholds"], "rule": v["rule"]} for k, v in result["operating_points"].items()}
    note = (" Probabilities are Platt-calibrated per label on the validation fold (card 'calibration'); "
            "operating points (screening, balanced, alarm) are thresholds on that calibrated scale, "
            "chosen on validation; 'thresholds' keeps the uncalibrated Youden thresholds for older runtimes.")
    desc = card.description if "Platt-calibrated" in card.description else card.description + note
    return replace(card, calibration=result["calibration"], operating_points=points,
                   default_operating_point=result["default_operating_point"], metrics=metrics, description=desc)
