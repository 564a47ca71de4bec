"""Statistics of finished runs: AUROC per method and split, cross-validation summaries, and paired
comparisons between two methods on the same records.

Confidence intervals are percentile bootstraps over records (Efron & Tibshirani, *An Introduction
to the Bootstrap*, 1993); differences between two methods are paired (both scored on each resampled
record set), which removes the record-sampling variance the two share.

A run's results are ``metrics.json`` (validation/test metrics, written by the trainer) and
``scores.npz`` (``Y_test``/``test`` labels and logits per task in ``DEFAULT_TASKS`` order, and the
embeddings ``emb_single``/``emb_twelve`` where the method has both).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from selfmis.train.evaluate import auprc, auroc, bootstrap_ci, frechet_distance
from selfmis.train.experiments.grid import ABLATION_SPLITS, ABLATIONS, CV_FOLDS, run_dir

__all__ = ["TASKS", "load_run", "collect", "task_column", "paired_bootstrap_diff", "method_rows",
           "selfmis_minus_scratch", "paired_cv", "variant_table", "cv_two_seeds", "ablation_results"]

#: report tasks -> column of the scores (None: MI vs NORM, the records that are MI or NORM)
TASKS = {"MI": 0, "IMI": 1, "MI_vs_NORM": None}


def load_run(run: Path):
    """(metrics, scores) of one finished run folder."""
    m = json.loads((run / "metrics.json").read_text())
    s = np.load(run / "scores.npz")
    return m, s


def collect(root: Path, splits, names):
    """{name: {(fold, seed): (metrics, scores)}} for finished runs."""
    out = {}
    for n in names:
        for fold, seed in splits:
            run = run_dir(root, fold, seed, n)
            if (run / "metrics.json").is_file():
                out.setdefault(n, {})[(fold, seed)] = load_run(run)
    return out


def task_column(s, key, task):
    """(labels, scores) of ``task`` in split ``key`` (e.g. "test") of a run's scores."""
    Y, S = s[f"Y_{key}"], s[key]
    if TASKS[task] is not None:
        return Y[:, TASKS[task]], S[:, TASKS[task]]
    k = (Y[:, 0] > 0) | ((Y[:, -1] > 0) & (Y[:, 0] == 0))
    return Y[k, 0], S[k, 0]


def paired_bootstrap_diff(y, s_a, s_b, n_boot=1000, seed=0):
    """AUROC(a) - AUROC(b) on the same records, with a percentile bootstrap CI.

    ``s_a``/``s_b`` may be lists of score arrays (one per seed, same records): the difference is
    then the mean over seeds, and the bootstrap resamples records, each with all its seeds' scores.
    """
    pairs = list(zip(s_a, s_b)) if isinstance(s_a, list) else [(s_a, s_b)]

    def diff(i):
        return float(np.mean([auroc(y[i], a[i]) - auroc(y[i], b[i]) for a, b in pairs]))
    rng = np.random.default_rng(seed)
    vals = []
    while len(vals) < n_boot:
        i = rng.integers(0, len(y), len(y))
        if y[i].min() != y[i].max():
            vals.append(diff(i))
    return diff(np.arange(len(y))), [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))]


def _unit(E):
    return E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-9)


def method_rows(runs: dict, methods, n_boot: int = 1000) -> dict:
    """Per method and task: fold-10 AUROC over seeds 0-2 (seed 0 with a bootstrap CI), the seed-0 CV
    per fold and pooled out of fold (when all 10 folds exist), and the latent gap over all its runs."""
    rows = {}
    for m in methods:
        if m not in runs:
            continue
        r = rows[m] = {}
        for task in TASKS:
            f10 = [(seed, task_column(runs[m][(10, seed)][1], "test", task))
                   for seed in (0, 1, 2) if (10, seed) in runs[m]]
            a10 = [auroc(y, s) for _, (y, s) in f10]
            ci0 = list(bootstrap_ci(*f10[0][1], auroc, n_boot, 0)) if f10 else None
            cv = [(k, task_column(runs[m][(k, 0)][1], "test", task)) for k in CV_FOLDS if (k, 0) in runs[m]]
            per_fold = [auroc(y, s) for _, (y, s) in cv]
            ent = {"fold10_auroc_seeds": a10, "fold10_mean": float(np.mean(a10)) if a10 else None,
                   "fold10_sd": float(np.std(a10, ddof=1)) if len(a10) > 1 else None,
                   "fold10_seed0_ci": ci0, "fold10_n_pos": int(f10[0][1][0].sum()) if f10 else None,
                   "fold10_auprc_seeds": [auprc(y, s) for _, (y, s) in f10],
                   "cv_folds": [k for k, _ in cv], "cv_auroc_per_fold": per_fold,
                   "cv_mean": float(np.mean(per_fold)) if per_fold else None,
                   "cv_sd": float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else None}
            if len(cv) == 10:  # pooled out-of-fold predictions: every record scored once
                y = np.concatenate([c[1][0] for c in cv])
                s = np.concatenate([c[1][1] for c in cv])
                ent["cv_pooled_auroc"] = auroc(y, s)
                ent["cv_pooled_ci"] = list(bootstrap_ci(y, s, auroc, n_boot, 0))
                ent["cv_pooled_auprc"] = auprc(y, s)
                ent["cv_pooled_n_pos"] = int(y.sum())
            r[task] = ent
        gaps = [runs[m][k][0].get("frechet_single_vs_12lead") for k in runs[m]]
        gaps = [g for g in gaps if g is not None]
        if gaps:
            r["frechet_mean"], r["frechet_sd"] = float(np.mean(gaps)), float(np.std(gaps))
            # scale-free gap: the cosine alignment ignores norms, so compare unit vectors too
            gn = [frechet_distance(_unit(s["emb_single"]), _unit(s["emb_twelve"]))
                  for _, s in runs[m].values() if "emb_single" in s]
            r["frechet_unit_mean"], r["frechet_unit_sd"] = float(np.mean(gn)), float(np.std(gn))
            cos = [float(np.mean(np.sum(_unit(s["emb_single"]) * _unit(s["emb_twelve"]), 1)))
                   for _, s in runs[m].values() if "emb_single" in s]
            r["cosine_same_record_mean"] = float(np.mean(cos))
        r["n_runs"] = len(runs[m])
    return rows


def selfmis_minus_scratch(runs: dict, n_boot: int = 1000) -> dict:
    """SelfMIS vs scratch, paired: per fold/seed differences and a pooled paired bootstrap."""
    comp = {}
    if "selfmis" not in runs or "scratch" not in runs:
        return comp
    a, b = runs["selfmis"], runs["scratch"]
    for task in TASKS:
        diffs10 = [auroc(*task_column(a[(10, s)][1], "test", task)) - auroc(*task_column(b[(10, s)][1], "test", task))
                   for s in (0, 1, 2) if (10, s) in a and (10, s) in b]
        keys = [k for k in CV_FOLDS if (k, 0) in a and (k, 0) in b]
        diffs_cv = [auroc(*task_column(a[(k, 0)][1], "test", task)) - auroc(*task_column(b[(k, 0)][1], "test", task))
                    for k in keys]
        ent = {"fold10_diffs": diffs10, "cv_fold_diffs": diffs_cv,
               "cv_mean_diff": float(np.mean(diffs_cv)) if diffs_cv else None,
               "cv_sd_diff": float(np.std(diffs_cv, ddof=1)) if len(diffs_cv) > 1 else None}
        if len(keys) == 10:
            ya = np.concatenate([task_column(a[(k, 0)][1], "test", task)[0] for k in keys])
            sa = np.concatenate([task_column(a[(k, 0)][1], "test", task)[1] for k in keys])
            sb = np.concatenate([task_column(b[(k, 0)][1], "test", task)[1] for k in keys])
            ent["cv_pooled_diff"], ent["cv_pooled_diff_ci"] = paired_bootstrap_diff(ya, sa, sb, n_boot)
        comp[task] = ent
    return comp


def paired_cv(root: Path, a: str, b: str, n_boot: int = 1000, seeds=(0, 1, 2)) -> dict:
    """Run ``a`` minus run ``b`` over every seed with a complete 10-fold CV of both: validation and
    test MI AUROC per (fold, seed), the CV-mean difference per seed, and the pooled out-of-fold test
    AUROC difference (mean over seeds) with a paired bootstrap CI that resamples records (each
    record once, with its score from every seed)."""
    full = [sd for sd in seeds if all((run_dir(root, k, sd, n) / "metrics.json").is_file()
                                      for k in CV_FOLDS for n in (a, b))]
    out = {"a": a, "b": b, "seeds": full, "splits": [(k, sd) for sd in full for k in CV_FOLDS]}
    if not full:
        return out
    load = {(n, sd): [load_run(run_dir(root, k, sd, n)) for k in CV_FOLDS] for n in (a, b) for sd in full}
    for n in (a, b):
        out[f"val_mi_{n}"] = float(np.mean([m["val"]["MI"]["auroc"] for sd in full for m, _ in load[n, sd]]))
        out[f"test_mi_{n}"] = float(np.mean([auroc(s["Y_test"][:, 0], s["test"][:, 0])
                                             for sd in full for _, s in load[n, sd]]))
    dv = [ma["val"]["MI"]["auroc"] - mb["val"]["MI"]["auroc"]
          for sd in full for (ma, _), (mb, _) in zip(load[a, sd], load[b, sd])]
    out["val_mi_diff_mean"], out["val_mi_diff_sd"] = float(np.mean(dv)), float(np.std(dv, ddof=1))
    for task, j in (("MI", 0), ("IMI", 1)):
        per_seed, d = [], []
        for sd in full:
            dd = [auroc(sa["Y_test"][:, j], sa["test"][:, j]) - auroc(sb["Y_test"][:, j], sb["test"][:, j])
                  for (_, sa), (_, sb) in zip(load[a, sd], load[b, sd])]
            per_seed.append(float(np.mean(dd)))
            d += dd
        y = np.concatenate([s["Y_test"][:, j] for _, s in load[a, full[0]]])
        S = {n: [np.concatenate([s["test"][:, j] for _, s in load[n, sd]]) for sd in full] for n in (a, b)}
        diff, ci = paired_bootstrap_diff(y, S[a], S[b], n_boot)
        out[task] = {"fold_diff_mean": float(np.mean(d)), "fold_diff_sd": float(np.std(d, ddof=1)),
                     "cv_mean_diff_per_seed": per_seed, "pooled_diff": diff, "pooled_diff_ci": ci,
                     "test_auroc_" + a: float(np.mean([auroc(s["Y_test"][:, j], s["test"][:, j])
                                                       for sd in full for _, s in load[a, sd]]))}
    return out


def variant_table(root: Path, names: dict, n_boot: int) -> dict:
    """Every SelfMIS variant (label -> run name) with a full seed-0 CV beside scratch: the
    validation MI AUROC the choice is made on (mean over the 10 CV splits' validation folds) and,
    for information, the paired test differences to scratch (MI and IMI)."""
    out = {}
    for label, n in names.items():
        r = paired_cv(root, n, "scratch", n_boot, seeds=(0,))
        if not r["seeds"]:
            continue
        out.setdefault("scratch", {"val_mi_auroc_cv_mean": r["val_mi_scratch"]})
        out[label] = {"val_mi_auroc_cv_mean": r[f"val_mi_{n}"]}
        for task in ("MI", "IMI"):
            t = r[task]
            out[label][task] = {"cv_mean_diff": t["fold_diff_mean"], "cv_sd_diff": t["fold_diff_sd"],
                                "cv_pooled_diff": t["pooled_diff"], "cv_pooled_diff_ci": t["pooled_diff_ci"],
                                "cv_mean_auroc": t["test_auroc_" + n]}
    return out


def cv_two_seeds(root: Path, variant: str, n_boot: int = 1000) -> dict:
    """10-fold CV repeated with seeds 0 and 1 for the key comparison (12-lead, scratch, SelfMIS)."""
    out = {}
    names = {"twelve_lead": "twelve_lead", "scratch": "scratch", "selfmis": variant,
             "simclr": "simclr", "generative": "generative", "random": "random"}
    for task, j in (("MI", 0), ("IMI", 1)):
        t = out[task] = {}
        for label, n in names.items():
            per_seed = {}
            for seed in (0, 1):
                runs = [run_dir(root, k, seed, n) / "scores.npz" for k in CV_FOLDS]
                if all(r.is_file() for r in runs):
                    per_seed[seed] = [auroc(np.load(r)["Y_test"][:, j], np.load(r)["test"][:, j]) for r in runs]
            if per_seed:
                means = [float(np.mean(v)) for v in per_seed.values()]
                t[label] = {"seeds": sorted(per_seed), "cv_mean_per_seed": means,
                            "mean_over_seeds": float(np.mean(means)),
                            "sd_over_seeds": float(np.std(means, ddof=1)) if len(means) > 1 else None,
                            "per_fold": {int(sd): v for sd, v in per_seed.items()}}
        if "selfmis" in t and "scratch" in t:
            common = sorted(set(t["selfmis"]["seeds"]) & set(t["scratch"]["seeds"]))
            d = [np.array(t["selfmis"]["per_fold"][sd]) - np.array(t["scratch"]["per_fold"][sd]) for sd in common]
            t["diff"] = {"seeds": common, "cv_mean_diff_per_seed": [float(x.mean()) for x in d],
                         "all_fold_seed_diffs_mean": float(np.concatenate(d).mean()),
                         "all_fold_seed_diffs_sd": float(np.concatenate(d).std(ddof=1))}
    return out


def ablation_results(root: Path, names, splits=ABLATION_SPLITS):
    """Validation MI AUROC of each named run per split (None where missing) and their mean."""
    val = {}
    for n in names:
        scores = []  # None where that split's run is missing (budget)
        for fold, seed in splits:
            p = run_dir(root, fold, seed, n) / "metrics.json"
            scores.append(json.loads(p.read_text())["val"]["MI"].get("auroc") if p.is_file() else None)
        if any(x is not None for x in scores):
            val[n] = {"scores": scores, "overrides": ABLATIONS.get(n, {"method": n}),
                      "mean": float(np.mean([x for x in scores if x is not None]))}
    return val
