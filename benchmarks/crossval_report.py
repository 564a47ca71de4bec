"""The cross-validation report, pooled over the finished test folds from their saved per-record logits.

Input: ``foldK/logits.npz`` written by ``selfmis.benchmarks.crossval run`` (validation and test record
logits of the fold's teacher and of the ``default`` / ``micro`` students in fp32 and int8). Nothing is
retrained here; every figure is recomputed from those files.

* **AUROC** (MI, IMI) per fold with a percentile bootstrap CI over the fold's records, the mean of the
  folds, and pooled over every finished test fold. Pooling puts each fold's model on one scale first:
  its logits are Platt-scaled with a fit on *its own* validation fold (monotone, so each fold's AUROC is
  unchanged); the pooled CI resamples records within each fold (stratified bootstrap).
* **Calibration** per label of the int8 students: ECE (10 equal-width bins) of the test records before
  (plain sigmoid) and after each method of :mod:`selfmis.quantize.calibrate` (platt, temperature,
  isotonic, and ``auto``: the per-label choice by cross-fitting inside validation, what the card ships),
  every fit on the fold's own validation records. Pooled over folds with stratified-bootstrap CIs, next
  to the ECE a perfectly calibrated model shows at the same n (its noise floor).
* **Operating points** (screening, balanced, alarm) per fold exactly as ``selfmis calibrate`` writes a
  card (:func:`selfmis.quantize.calibrate.calibrate_scores` on that fold's validation), applied to the
  fold's test records; the decisions are pooled: sensitivity, specificity against every non-MI record and
  against NORM only, PPV at the prevalence of the whole subset, with bootstrap CIs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfmis.quantize.calibrate import (AUTO, CALIBRATION_METHODS, N_BINS, apply_calibration, calibrate_scores,
                                        choose_calibration, ece, ece_noise_floor, fit_calibration,
                                        operating_metrics, reliability)
from selfmis.quantize.metrics import sigmoid
from selfmis.train.evaluate import MIN_POSITIVES, auroc

__all__ = ["RESULTS", "Fold", "write_fold", "load_fold", "build_report", "write_crossval_report", "boot_stratified",
           "MODELS", "AUROC_TASKS", "ECE_MODELS", "METHODS"]

RESULTS = Path(__file__).resolve().parent / "results" / "crossval"
MODELS = ("teacher", "default_fp32", "default_int8", "micro_fp32", "micro_int8")
AUROC_TASKS = ("MI", "IMI")
#: the precision that ships: calibration and operating points are reported for these
ECE_MODELS = ("default_int8", "micro_int8")
METHODS = CALIBRATION_METHODS + (AUTO,)
ECE_TARGET = 0.03


@dataclass
class Fold:
    k: int
    labels: list
    val_Y: np.ndarray
    test_Y: np.ndarray
    val: dict           # model -> (n_val, labels) record logits
    test: dict          # model -> (n_test, labels)
    meta: dict


def write_fold(path, meta: dict, arrays: dict) -> Path:
    """One fold's file: ``meta`` (JSON: test_fold, folds, labels, members, ...) and arrays ``{split}_Y``,
    ``{split}_ecg_ids``, ``{split}_{model}`` (record logits) for split in val, test. Written atomically."""
    path = Path(path)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, meta=np.array(json.dumps(meta)), **arrays)
    tmp.replace(path)
    return path


def load_fold(path) -> Fold:
    z = np.load(path)
    meta = json.loads(str(z["meta"]))
    models = [m for m in MODELS if f"test_{m}" in z]
    return Fold(k=int(meta["test_fold"]), labels=list(meta["labels"]), val_Y=z["val_Y"] > 0, test_Y=z["test_Y"] > 0,
                val={m: z[f"val_{m}"].astype(np.float64) for m in models},
                test={m: z[f"test_{m}"].astype(np.float64) for m in models}, meta=meta)


def boot_stratified(stat, arrays, groups, n_boot: int, seed: int) -> list:
    """95% percentile CI of ``stat(*arrays)``, records resampled with replacement within each group (fold)."""
    if n_boot <= 0:
        return [None, None]
    rng = np.random.default_rng(seed)
    groups = np.asarray(groups)
    members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
    vals = []
    for _ in range(n_boot):
        idx = np.concatenate([m[rng.integers(0, len(m), len(m))] for m in members])
        v = stat(*(a[idx] for a in arrays))
        if np.isfinite(v):
            vals.append(v)
    return [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))] if vals else [None, None]


def _cell(y, s, groups, stat, n_boot, seed) -> dict:
    v = stat(y, s)
    return {"value": None if not np.isfinite(v) else float(v), "ci": boot_stratified(stat, (y, s), groups, n_boot, seed)
            if np.isfinite(v) else [None, None], "n": int(len(y)), "n_positives": int(np.sum(y))}


def auroc_table(folds: list, n_boot: int, seed: int) -> dict:
    out = {}
    for m in MODELS:
        if not all(m in f.test for f in folds):
            continue
        out[m] = {}
        for task in AUROC_TASKS:
            per_fold, val = {}, {}
            j = folds[0].labels.index(task)
            for f in folds:
                y, z = f.test_Y[:, j], f.test[m][:, j]
                per_fold[f.k] = _cell(y, z, np.zeros(len(y)), auroc, n_boot, seed)
                val[f.k] = auroc(f.val_Y[:, j], f.val[m][:, j])  # the split each fold's choices were made on
            vals = [c["value"] for c in per_fold.values() if c["value"] is not None]
            y, p, g = _pooled_scores(folds, m, j)
            out[m][task] = {"folds": per_fold, "pooled": _cell(y, p, g, auroc, n_boot, seed),
                            "mean_of_folds": float(np.mean(vals)) if vals else None, "validation": val}
    return out


#: paired AUROC differences reported (a - b): the students against each other, int8 against fp32, student
#: against teacher
DIFFERENCES = (("default_int8", "micro_int8"), ("default_int8", "default_fp32"), ("micro_int8", "micro_fp32"),
               ("default_int8", "teacher"))


def _pooled_scores(folds: list, m: str, j: int):
    """(labels, scores on one scale, fold of each record): each fold's test logits Platt-scaled on its validation."""
    ys, ps, gs = [], [], []
    for f in folds:
        ab = fit_calibration(f.val[m][:, j], f.val_Y[:, j], "platt")
        ys.append(f.test_Y[:, j]), ps.append(apply_calibration(f.test[m][:, j], ab)), gs.append(np.full(len(f.test_Y), f.k))
    return np.concatenate(ys), np.concatenate(ps), np.concatenate(gs)


def difference_table(folds: list, n_boot: int, seed: int) -> dict:
    """Paired AUROC differences, pooled (same records, stratified bootstrap) and per fold."""
    out = {}
    for a, b in DIFFERENCES:
        if not all(a in f.test and b in f.test for f in folds):
            continue
        for task in AUROC_TASKS:
            j = folds[0].labels.index(task)
            y, pa, g = _pooled_scores(folds, a, j)
            _, pb, _ = _pooled_scores(folds, b, j)

            def diff(y_, pa_, pb_):
                return auroc(y_, pa_) - auroc(y_, pb_)

            per_fold = {f.k: diff(f.test_Y[:, j], f.test[a][:, j], f.test[b][:, j]) for f in folds}
            out[f"{a} - {b}"] = out.get(f"{a} - {b}", {})
            out[f"{a} - {b}"][task] = {"pooled": diff(y, pa, pb), "ci": boot_stratified(diff, (y, pa, pb), g, n_boot, seed),
                                       "per_fold": per_fold, "mean_of_folds": float(np.mean(list(per_fold.values())))}
    return out


def calibration_labels(folds: list) -> list:
    """Labels every fold can calibrate (>= MIN_POSITIVES validation positives and negatives)."""
    labs = []
    for lab in folds[0].labels:
        ok = True
        for f in folds:
            yv = f.val_Y[:, f.labels.index(lab)]
            ok &= bool(yv.sum() >= MIN_POSITIVES and (~yv).sum() >= MIN_POSITIVES)
        if ok:
            labs.append(lab)
    return labs


def _calibrated(f: Fold, m: str, j: int, method: str, seed: int) -> tuple:
    """(test probabilities, method used) of fold f's model m, label j, fitted on the fold's validation."""
    zv, yv, zt = f.val[m][:, j], f.val_Y[:, j], f.test[m][:, j]
    if method == "before":
        return sigmoid(zt), "sigmoid"
    used = choose_calibration(zv, yv, seed=seed)[0] if method == AUTO else method
    return apply_calibration(zt, fit_calibration(zv, yv, used)), used


def ece_table(folds: list, labels: list, n_boot: int, seed: int, n_sim: int = 1000) -> dict:
    out = {}
    for m in ECE_MODELS:
        if not all(m in f.test for f in folds):
            continue
        out[m] = {}
        for lab in labels:
            row = {}
            for method in ("before",) + METHODS:
                ys, ps, gs, per_fold, used = [], [], [], {}, {}
                for f in folds:
                    j = f.labels.index(lab)
                    p, u = _calibrated(f, m, j, method, seed)
                    y = f.test_Y[:, j]
                    ys.append(y), ps.append(p), gs.append(np.full(len(y), f.k))
                    per_fold[f.k], used[f.k] = ece(y, p), u
                y, p, g = np.concatenate(ys), np.concatenate(ps), np.concatenate(gs)
                row[method] = {"ece": ece(y, p), "ci": boot_stratified(ece, (y, p), g, n_boot, seed),
                               "per_fold": per_fold, "n": int(len(y)), "n_positives": int(y.sum()),
                               "noise_floor": ece_noise_floor(p, N_BINS, n_sim, seed),
                               "reliability": reliability(y, p)}
                if method == AUTO:
                    row[method]["chosen"] = used
            out[m][lab] = row
    return out


def operating_table(folds: list, labels: list, prevalence: dict, n_boot: int, seed: int) -> dict:
    """Per model: per fold the card's operating points (fitted on the fold's validation), pooled test figures."""
    out = {}
    for m in ECE_MODELS:
        if not all(m in f.test for f in folds):
            continue
        cards = {f.k: calibrate_scores(f.val[m], f.val_Y, f.test[m], f.test_Y, f.labels, prevalence, n_boot=0,
                                       seed=seed) for f in folds}
        res = {"methods": {k: {lab: c["calibration"][lab]["method"] for lab in c["calibration"]}
                           for k, c in cards.items()}, "points": {}}
        for name in next(iter(cards.values()))["operating_points"]:
            res["points"][name] = {}
            for lab in ("MI",):
                if lab not in labels:
                    continue
                ys, dec, norm, thr = [], [], [], {}
                for f in folds:
                    c = cards[f.k]
                    j = f.labels.index(lab)
                    t = c["operating_points"][name]["thresholds"][lab]
                    p = apply_calibration(f.test[m][:, j], c["calibration"][lab])
                    thr[f.k] = t
                    ys.append(f.test_Y[:, j]), dec.append((p >= t).astype(np.float64))
                    norm.append(f.test_Y[:, f.labels.index("NORM")] if "NORM" in f.labels else np.zeros(len(p), bool))
                pooled = operating_metrics(np.concatenate(ys), np.concatenate(dec), 0.5,
                                           prevalence.get(lab, float(np.concatenate(ys).mean())),
                                           np.concatenate(norm), n_boot=n_boot, seed=seed)
                del pooled["threshold"]
                res["points"][name][lab] = {"thresholds": thr, "rule": cards[folds[0].k]["operating_points"][name]["rule"],
                                            "test_pooled": pooled}
        out[m] = res
    return out


def build_report(folds: list, n_boot: int = 1000, seed: int = 0, prevalence: dict | None = None,
                 n_sim: int = 1000) -> dict:
    folds = sorted(folds, key=lambda f: f.k)
    if prevalence is None:
        from selfmis.quantize.calibrate import label_prevalence
        prevalence = label_prevalence(None, folds[0].labels)
    labels = calibration_labels(folds)
    return {"folds": [f.k for f in folds], "n_test": int(sum(len(f.test_Y) for f in folds)),
            "n_val": int(sum(len(f.val_Y) for f in folds)),
            "val_folds": {f.k: f.meta.get("folds", {}).get("val") for f in folds},
            "members": folds[0].meta.get("members", {}),
            "scoring": folds[0].meta.get("scoring"),
            "auroc": auroc_table(folds, n_boot, seed),
            "auroc_differences": difference_table(folds, n_boot, seed),
            "calibration_labels": labels,
            "ece": ece_table(folds, labels, n_boot, seed, n_sim),
            "operating_points": operating_table(folds, labels, prevalence, n_boot, seed),
            "prevalence_for_ppv": {k: float(v) for k, v in prevalence.items() if k in labels},
            "n_boot": n_boot, "seed": seed, "ece_target": ECE_TARGET}


def _meets(a: dict) -> str:
    """Whether the ECE point estimate, and the upper end of its 95% CI, meet the target."""
    up = (a.get("ci") or [None, None])[1]
    return (f"point {'yes' if a['ece'] <= ECE_TARGET else 'no'} / "
            + ("n/a" if up is None else f"upper {'yes' if up <= ECE_TARGET else 'no'}"))


def _f(c, digits=3) -> str:
    if c is None or c.get("value", c.get("ece")) is None:
        return "n/a"
    v = c.get("value", c.get("ece"))
    ci = c.get("ci") or [None, None]
    return f"{v:.{digits}f}" + (f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci[0] is not None else "")


def _pct(v, ci) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci and ci[0] is not None else "")


def markdown(r: dict, command: str = "") -> str:
    folds = r["folds"]
    L = ["# Cross-validation of the shipped students", "",
         f"Test folds pooled: **{', '.join(map(str, folds))}** ({len(folds)} of 10; {r['n_test']} test records), "
         "each with its own SelfMIS teacher (the s3 teacher's configuration, test fold k, validation fold "
         "k % 10 + 1, training the other eight) and its own `default` (" + r["members"].get("default", "?") +
         ") and `micro` (" + r["members"].get("micro", "?") + ") students distilled by the quantize pipeline. "
         f"Shared PTB-XL subset; {r['scoring'] or ''}. Bootstrap: {r['n_boot']} resamples, "
         f"95% percentile CIs (pooled: resampled within each fold), seed {r['seed']}.", ""]
    if command:
        L += [f"Regenerate: `{command}`", ""]
    L += ["## AUROC on the test folds", "",
          "Per fold: the fold's own models on its test records. Pooled: every fold's scores Platt-scaled on its "
          "own validation fold (one scale), then pooled.", "",
          "| model | task | " + " | ".join(f"fold {k}" for k in folds) + " | mean of folds | pooled |",
          "|---|---|" + "---|" * len(folds) + "---|---|"]
    for m, tasks in r["auroc"].items():
        for t, c in tasks.items():
            L.append(f"| {m} | {t} | " + " | ".join(_f(c["folds"][k] if k in c["folds"] else c["folds"].get(str(k)))
                                                     for k in folds)
                     + f" | {c['mean_of_folds']:.3f} | {_f(c['pooled'])} |")
    L += ["", "Validation AUROC of the same models (each fold's validation fold k % 10 + 1: where its students' "
          "epochs, calibration and thresholds were chosen):", "",
          "| model | task | " + " | ".join(f"val of fold {k}" for k in folds) + " |", "|---|---|" + "---|" * len(folds)]
    for m, tasks in r["auroc"].items():
        for t, c in tasks.items():
            v = c.get("validation", {})
            L.append(f"| {m} | {t} | " + " | ".join(f"{v.get(k, v.get(str(k), float('nan'))):.3f}" for k in folds) + " |")
    if r.get("auroc_differences"):
        L += ["", "Paired AUROC differences (same records; pooled with a within-fold bootstrap, and per fold):", "",
              "| difference | task | pooled [95% CI] | mean of folds | per fold |", "|---|---|---|---|---|"]
        for name, tasks in r["auroc_differences"].items():
            for t, c in tasks.items():
                ci = c["ci"]
                L.append(f"| {name} | {t} | {c['pooled']:+.4f}" + (f" [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci[0] is not None
                                                                      else "") +
                         f" | {c['mean_of_folds']:+.4f} | " + ", ".join(f"{k}: {v:+.4f}" for k, v in c["per_fold"].items())
                         + " |")
    L += ["", "## Calibration: ECE on the pooled test folds", "",
          f"ECE with {N_BINS} equal-width bins. Every method fitted per fold on that fold's validation records only; "
          "`auto` = the per-label choice the card ships (lowest 5-fold cross-fitted log loss inside validation). "
          "Noise floor: the ECE of a perfectly calibrated model with the same probabilities at this n "
          f"(median, 95th percentile). Target (issue 17): ECE <= {ECE_TARGET} after scaling. ECE is biased upwards "
          "by sampling, so its percentile bootstrap CI can sit above the point estimate; compare with the floor.", ""]
    for m, labs in r["ece"].items():
        L += [f"### {m}", "", "| label | test n (+) | before | " + " | ".join(METHODS) +
              f" | noise floor (auto) | auto <= {ECE_TARGET}: point / 95% CI upper bound | auto within the floor's p95 | "
              "per fold (auto) | chosen per fold |",
              "|---|---|---|" + "---|" * len(METHODS) + "---|---|---|---|---|"]
        for lab, row in labs.items():
            a = row[AUTO]
            nf = a["noise_floor"]
            L.append(f"| {lab} | {a['n']} ({a['n_positives']}) | {_f(row['before'])} | "
                     + " | ".join(_f(row[x]) for x in METHODS)
                     + f" | {nf['median']:.3f} (p95 {nf['p95']:.3f}) | "
                     + f"{_meets(a)} | {'yes' if a['ece'] <= nf['p95'] else 'no'} | "
                     + ", ".join(f"{k}: {v:.3f}" for k, v in a["per_fold"].items()) + " | "
                     + ", ".join(f"{k}: {v}" for k, v in a["chosen"].items()) + " |")
        L.append("")
    L += ["## MI operating points (per fold chosen on its validation, test decisions pooled)", "",
          "Specificity against every test record without MI, and against NORM only; PPV at the MI prevalence of the "
          f"whole subset ({100 * r['prevalence_for_ppv'].get('MI', float('nan')):.1f}%).", "",
          "| model | point | rule | thresholds per fold | sensitivity | specificity (all non-MI) | vs NORM | PPV |",
          "|---|---|---|---|---|---|---|---|"]
    for m, res in r["operating_points"].items():
        for name, labs in res["points"].items():
            c = labs.get("MI")
            if not c:
                continue
            p = c["test_pooled"]
            L.append(f"| {m} | {name} | {c['rule']} | " + ", ".join(f"{k}: {v:.3f}" for k, v in c["thresholds"].items())
                     + f" | {_pct(p['sensitivity'], p['sensitivity_ci'])} | {_pct(p['specificity'], p['specificity_ci'])}"
                     f" | {_pct(p['specificity_norm'], p['specificity_norm_ci'])} | {_pct(p['ppv'], p['ppv_ci'])} |")
    L += ["", "![reliability](reliability.png)", ""]
    return "\n".join(L) + "\n"


def plot(r: dict, out: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [(m, lab) for m, labs in r["ece"].items() for lab in labs if lab in ("MI", "IMI", "NORM")]
    if not rows:
        return None
    ncol = 3
    nrow = int(np.ceil(len(rows) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.8 * nrow), squeeze=False)
    colours = {"before": "tab:red", "platt": "tab:blue", "temperature": "tab:orange", "isotonic": "tab:green",
               AUTO: "black"}
    for ax, (m, lab) in zip(axes.ravel(), rows):
        row = r["ece"][m][lab]
        for method, colour in colours.items():
            bins = [b for b in row[method]["reliability"] if b[2] > 0]
            ax.plot([b[3] for b in bins], [b[4] for b in bins], "o-", color=colour, ms=3, lw=1.5 if method in
                    ("before", AUTO) else 0.8, label=f"{method} ECE {row[method]['ece']:.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_title(f"{m} {lab} (n={row[AUTO]['n']}, +{row[AUTO]['n_positives']}; floor "
                     f"{row[AUTO]['noise_floor']['median']:.3f})", fontsize=8)
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("fraction positive")
        ax.legend(fontsize=6, loc="upper left")
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    fig.suptitle(f"Reliability on pooled test folds {', '.join(map(str, r['folds']))} (PTB-XL subset, Lead I); "
                 "each fold calibrated on its own validation fold", fontsize=9)
    fig.tight_layout()
    path = out / "reliability.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_crossval_report(files, out, n_boot: int = 1000, seed: int = 0, prevalence: dict | None = None,
                          command: str = "python -m selfmis.benchmarks.crossval report", n_sim: int = 1000) -> dict:
    """Pool the folds in ``files``; write crossval.json, README.md and reliability.png to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    r = build_report([load_fold(f) for f in files], n_boot, seed, prevalence, n_sim)
    r["command"] = command
    (out / "crossval.json").write_text(json.dumps(r, indent=1, default=float) + "\n")
    (out / "README.md").write_text(markdown(r, command))
    plot(r, out)
    return {"folds": r["folds"], "n_test": r["n_test"],
            "auroc_pooled": {m: {t: c["pooled"]["value"] for t, c in v.items()} for m, v in r["auroc"].items()},
            "ece_pooled": {m: {lab: {k: round(row[k]["ece"], 4) for k in ("before",) + METHODS} for lab, row in v.items()}
                           for m, v in r["ece"].items()}}
