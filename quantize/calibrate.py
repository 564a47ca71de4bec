"""Calibration and operating points for a bundle's card, chosen on the validation fold only.

* **Calibration** per label on the record logit ``z``, three methods behind one dispatch
  (:func:`fit_calibration`, ``method=``), each stored in the card and applied by the runtime through
  :func:`selfmis.bundle.calibrated_probability` (the one definition, numpy only):

  - ``temperature``: ``sigmoid(z / T)`` (Guo et al., "On calibration of modern neural networks",
    ICML 2017), one parameter: fixes logits that are too sharp or too flat;
  - ``platt``: ``sigmoid(a z + b)`` (Platt, "Probabilistic outputs for support vector machines",
    1999), two parameters: also fixes a shift (a prevalence the student did not learn);
  - ``isotonic``: the pool-adjacent-violators fit of the label on the logit (Zadrozny & Elkan,
    "Transforming classifier scores into accurate multiclass probability estimates", KDD 2002),
    stored as a piecewise-linear table; no shape assumed, but it needs many records per step.

  ``method="auto"`` (the default) chooses per label by **cross-fitting inside validation**
  (:func:`choose_calibration`): each method is fitted on 4/5 of the validation records and scored by log
  loss on the held-out fifth, stratified, all five folds pooled; the lowest out-of-fold log loss wins
  and is refitted on all of validation. The test fold never chooses. All three are monotone, so AUROC
  is unchanged (isotonic can tie records on a plateau) and each commutes with the runtime's rolling
  median.
* **Expected calibration error**: equal-width bins, ``sum_b n_b/N |mean p - frac positive|``
  (Naeini et al., AAAI 2015), with a percentile bootstrap over records, and the ECE a perfectly
  calibrated model shows at the same n (:func:`ece_noise_floor`): ECE is biased upwards by sampling.
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

from selfmis.bundle import CALIBRATION_METHODS, calibrated_probability
from selfmis.train.evaluate import MIN_POSITIVES, choose_threshold, threshold_metrics

from .metrics import sigmoid

__all__ = ["fit_platt", "apply_platt", "fit_temperature", "fit_isotonic", "fit_calibration", "apply_calibration",
           "choose_calibration", "CALIBRATION_METHODS", "AUTO", "ece", "ece_noise_floor", "reliability",
           "OPERATING_RULES", "choose_operating_point", "operating_metrics", "calibrate_scores",
           "DEFAULT_OPERATING_POINT", "N_BINS"]

N_BINS = 10
DEFAULT_OPERATING_POINT = "balanced"
#: ``method=AUTO``: choose per label by cross-fitting inside validation
AUTO = "auto"
#: cross-fitting folds inside validation (stratified)
SELECTION_FOLDS = 5
#: name -> (rule, argument, what it means, in words)
OPERATING_RULES = {
    "screening": ("min_sensitivity", 0.90, "highest threshold keeping validation sensitivity >= 0.90"),
    "balanced": ("youden", None, "Youden's J (sensitivity + specificity - 1) maximal on validation"),
    "alarm": ("min_specificity", 0.98, "lowest threshold keeping validation specificity >= 0.98 "
                                       "against every record without the label"),
}


def _newton_logistic(z, y, fit_b: bool, l2: float, iters: int) -> tuple:
    """(a, b) minimising mean log loss of ``sigmoid(a z + b)`` + ``l2 ((a - 1)^2 + b^2) / 2`` (b = 0 unless fit_b).

    Newton's method with step halving (the objective is convex, but a full Newton step from
    ``a = 1`` can overshoot far when the logits are large or the labels nearly separable).
    """
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    n = len(z)

    def objective(a, b):
        u = a * z + b  # log loss from logits, stable for any |u|: log(1 + e^u) - y u
        return float(np.mean(np.logaddexp(0.0, u) - y * u) + 0.5 * l2 * ((a - 1.0) ** 2 + b * b))

    a, b = 1.0, 0.0
    f = objective(a, b)
    for _ in range(iters):
        p = sigmoid(np.clip(a * z + b, -500, 500))
        r = p - y
        w = p * (1 - p)
        if fit_b:
            g = np.array([np.dot(r, z) / n + l2 * (a - 1.0), r.mean() + l2 * b])
            H = np.array([[np.dot(w, z * z) / n + l2, np.dot(w, z) / n],
                          [np.dot(w, z) / n, w.mean() + l2]])
            step = np.linalg.solve(H, g)
        else:
            step = np.array([(np.dot(r, z) / n + l2 * (a - 1.0)) / (np.dot(w, z * z) / n + l2), 0.0])
        t = 1.0
        while t > 1e-8 and objective(a - t * step[0], b - t * step[1]) > f + 1e-15:
            t *= 0.5
        a, b = a - t * step[0], b - t * step[1]
        f_new = objective(a, b)
        if np.abs(t * step).max() < 1e-10 or abs(f - f_new) < 1e-15:
            break
        f = f_new
    return float(a), float(b)


def fit_platt(z, y, l2: float = 1e-3, iters: int = 100) -> tuple:
    """(a, b) minimising the mean log loss of ``sigmoid(a z + b)`` (Newton's method).

    A tiny L2 penalty on ``a - 1`` and ``b`` keeps the fit finite when validation
    happens to be separable.
    """
    return _newton_logistic(z, y, True, l2, iters)


def apply_platt(z, a: float, b: float) -> np.ndarray:
    return calibrated_probability(z, {"method": "platt", "a": a, "b": b})


def fit_temperature(z, y, l2: float = 1e-3, iters: int = 100) -> float:
    """The temperature ``T`` minimising the mean log loss of ``sigmoid(z / T)`` (Newton's method on 1/T)."""
    a, _ = _newton_logistic(z, y, False, l2, iters)
    return 1.0 / a if a > 0 else float("inf")


def fit_isotonic(z, y, eps: float | None = None) -> tuple:
    """Isotonic regression of ``y`` on ``z`` by pool-adjacent-violators: (knots x, probabilities y).

    Each pooled block contributes its lowest and highest logit as knots at the block's rate, so the
    table is a step function with linear ramps between blocks (as scikit-learn's
    ``IsotonicRegression`` interpolates). Rates are clipped to ``[eps, 1 - eps]`` (default
    ``1 / (2 n)``): a block of 60 negatives is evidence of a small rate, not of zero.
    """
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    if len(z) < 2:
        raise ValueError("isotonic calibration needs at least two records")
    eps = 0.5 / len(z) if eps is None else eps
    xs, inv = np.unique(z, return_inverse=True)  # ties pooled first
    sums = np.bincount(inv, weights=y)
    wts = np.bincount(inv).astype(np.float64)
    # blocks: [sum, weight, first index, last index] into xs
    bs, bw, lo, hi = [], [], [], []
    for i in range(len(xs)):
        bs.append(sums[i]), bw.append(wts[i]), lo.append(i), hi.append(i)
        while len(bs) > 1 and bs[-2] / bw[-2] > bs[-1] / bw[-1]:
            s_, w_, h_ = bs.pop(), bw.pop(), hi.pop()
            lo.pop()
            bs[-1] += s_
            bw[-1] += w_
            hi[-1] = h_
    kx, ky = [], []
    for s_, w_, l_, h_ in zip(bs, bw, lo, hi):
        r = min(max(s_ / w_, eps), 1 - eps)
        kx.append(xs[l_]), ky.append(r)
        if h_ != l_:
            kx.append(xs[h_]), ky.append(r)
    if len(kx) == 1:  # one block: a constant
        kx, ky = [kx[0] - 1.0, kx[0] + 1.0], [ky[0], ky[0]]
    return [float(v) for v in kx], [float(v) for v in ky]


def fit_calibration(z, y, method: str = "platt") -> dict:
    """The card entry of ``method`` fitted on logits ``z`` and labels ``y`` (see the module docstring)."""
    if method == "platt":
        a, b = fit_platt(z, y)
        return {"method": "platt", "a": a, "b": b}
    if method == "temperature":
        t = fit_temperature(z, y)
        return {"method": "temperature", "temperature": t, "a": 1.0 / t, "b": 0.0}
    if method == "isotonic":
        x, p = fit_isotonic(z, y)
        return {"method": "isotonic", "x": x, "y": p}
    raise ValueError(f"unknown calibration method {method!r} (one of {', '.join(CALIBRATION_METHODS)}, {AUTO})")


def apply_calibration(z, entry: dict | None) -> np.ndarray:
    """Calibrated probabilities of ``z`` under a card entry: exactly what the runtime computes."""
    return calibrated_probability(z, entry)


def log_loss(y, p, eps: float = 1e-6) -> float:
    y, p = np.asarray(y, np.float64), np.clip(np.asarray(p, np.float64), eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _stratified_folds(y, k: int, seed: int) -> np.ndarray:
    """Fold index per record, positives and negatives each dealt round-robin after a shuffle."""
    y = np.asarray(y).astype(bool)
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), int)
    for cls in (True, False):
        idx = rng.permutation(np.flatnonzero(y == cls))
        fold[idx] = np.arange(len(idx)) % k
    return fold


def choose_calibration(z, y, methods=CALIBRATION_METHODS, k: int = SELECTION_FOLDS, seed: int = 0) -> tuple:
    """(method, scores): the method with the lowest cross-fitted log loss on validation alone.

    ``scores[method] = {"log_loss", "brier", "ece"}`` of the out-of-fold probabilities (every
    validation record predicted by a fit that did not see it), plus ``"sigmoid"`` (no calibration)
    for reference. Ties go to the simpler method (the order of ``methods``: fewest parameters first).
    """
    z, y = np.asarray(z, np.float64), np.asarray(y).astype(bool)
    k = int(min(k, y.sum(), (~y).sum()))
    if k < 2:
        raise ValueError("cross-fitting needs at least two positives and two negatives")
    fold = _stratified_folds(y, k, seed)
    scores = {}
    for m in methods:
        oof = np.empty(len(z))
        for f in range(k):
            tr = fold != f
            oof[~tr] = apply_calibration(z[~tr], fit_calibration(z[tr], y[tr], m))
        scores[m] = {"log_loss": log_loss(y, oof), "brier": float(np.mean((oof - y) ** 2)), "ece": ece(y, oof)}
    p0 = sigmoid(z)
    scores["sigmoid"] = {"log_loss": log_loss(y, p0), "brier": float(np.mean((p0 - y) ** 2)), "ece": ece(y, p0)}
    best = min(methods, key=lambda m: (round(scores[m]["log_loss"], 6), list(methods).index(m)))
    return best, scores


def reliability(y, p, n_bins: int = N_BINS) -> list:
    """Per equal-width bin: (lower edge, upper edge, n, mean predicted, fraction positive).

    Not ``sklearn.calibration.calibration_curve``: the card records every bin with its count (empty bins
    too), which that function drops, and it closes bins on the right (p = 0.5 falls in [0.4, 0.5]) where
    ECE as published here and in every card so far closes them on the left (p = 0.5 in [0.5, 0.6)).
    """
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


def ece_noise_floor(p, n_bins: int = N_BINS, n_sim: int = 1000, seed: int = 0) -> dict:
    """ECE of a *perfectly calibrated* model with these predicted probabilities at this n.

    Labels are drawn as ``y ~ Bernoulli(p)`` (so the model is calibrated by construction) and the ECE
    of ``p`` measured, ``n_sim`` times: its median and 95th percentile are what sampling alone gives,
    the level below which a measured ECE says nothing more.
    """
    p = np.asarray(p, np.float64)
    rng = np.random.default_rng(seed)
    sims = np.array([ece(rng.random(len(p)) < p, p, n_bins) for _ in range(n_sim)])
    return {"median": float(np.median(sims)), "mean": float(sims.mean()), "p95": float(np.quantile(sims, 0.95)),
            "n": int(len(p)), "n_sim": n_sim}


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
                     min_pos: int = MIN_POSITIVES, describe: dict | None = None, method: str = AUTO) -> dict:
    """Everything the card needs from record logits of validation and test.

    ``method``: one of :data:`CALIBRATION_METHODS` for every label, or ``"auto"`` (per label, by
    cross-fitting inside validation: :func:`choose_calibration`).

    Returns ``{"calibration": {label: {...}}, "operating_points": {name: {...}},
    "default_operating_point": name, "metrics": {...}}`` where ``metrics`` holds the
    test-fold ECE before/after per label (and of every method, for comparison only), the
    selection scores and the reliability bins.
    """
    if method != AUTO and method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r} (one of {', '.join(CALIBRATION_METHODS)}, {AUTO})")
    labels = list(labels)
    z_val, z_test = np.asarray(z_val, np.float64), np.asarray(z_test, np.float64)
    Y_val, Y_test = np.asarray(Y_val) > 0, np.asarray(Y_test) > 0
    norm_j = labels.index("NORM") if "NORM" in labels else None
    calib, per_label, p_val = {}, {}, {}
    for j, lab in enumerate(labels):
        yv = Y_val[:, j]
        if yv.sum() < min_pos or (~yv).sum() < min_pos:
            continue
        chosen, selection = choose_calibration(z_val[:, j], yv, seed=seed) if method == AUTO else (method, None)
        calib[lab] = fit_calibration(z_val[:, j], yv, chosen)
        p_val[lab] = apply_calibration(z_val[:, j], calib[lab])
        yt = Y_test[:, j]
        before, after = sigmoid(z_test[:, j]), apply_calibration(z_test[:, j], calib[lab])
        row = {"method": chosen, "n_val_positives": int(yv.sum()), "n_test": int(len(yt)),
               "n_test_positives": int(yt.sum()),
               "ece_before": ece(yt, before), "ece_after": ece(yt, after),
               "brier_before": float(np.mean((before - yt) ** 2)), "brier_after": float(np.mean((after - yt) ** 2)),
               "ece_val_after": ece(yv, p_val[lab]),
               # every method fitted on validation, its test ECE: for comparison, never for choosing
               "ece_after_by_method": {m: ece(yt, apply_calibration(z_test[:, j], fit_calibration(z_val[:, j], yv, m)))
                                       for m in CALIBRATION_METHODS},
               "ece_noise_floor": ece_noise_floor(after, seed=seed, n_sim=200)}
        if selection is not None:
            row["selection"] = {"rule": f"lowest log loss of {SELECTION_FOLDS}-fold cross-fitted probabilities "
                                        "inside validation", "scores": selection}
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
            pt = apply_calibration(z_test[:, j], calib[lab])
            if Y_test[:, j].sum() >= min_pos:
                test[lab] = operating_metrics(Y_test[:, j], pt, t, prevalence.get(lab, float(Y_test[:, j].mean())),
                                              nt, n_boot=n_boot, seed=seed)
        for m in val.values():  # no bootstrap on the split the threshold was chosen on
            for k in [k for k in m if k.endswith("_ci")]:
                del m[k]
        points[name] = {"thresholds": thr, "rule": words, "validation": val, "test": test}
    desc = dict(describe or {})
    how = ("per label the method with the lowest cross-fitted log loss inside validation "
           f"({', '.join(CALIBRATION_METHODS)})" if method == AUTO else f"{method} scaling per label")
    desc.update({"calibration": f"{how}, on record logits, fitted on validation",
                 "calibration_methods": {lab: c["method"] for lab, c in calib.items()},
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
    note = (" Probabilities are calibrated per label on the validation fold (card 'calibration': Platt, "
            "temperature or isotonic, chosen on validation); "
            "operating points (screening, balanced, alarm) are thresholds on that calibrated scale, "
            "chosen on validation; 'thresholds' keeps the uncalibrated Youden thresholds for older runtimes.")
    old = (" Probabilities are Platt-calibrated per label on the validation fold (card 'calibration'); "
           "operating points (screening, balanced, alarm) are thresholds on that calibrated scale, "
           "chosen on validation; 'thresholds' keeps the uncalibrated Youden thresholds for older runtimes.")
    desc = card.description.replace(old, "").replace(note, "") + note
    return replace(card, calibration=result["calibration"], operating_points=points,
                   default_operating_point=result["default_operating_point"], metrics=metrics, description=desc)
