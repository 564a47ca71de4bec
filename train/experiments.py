"""Reproduce the accuracy report in one command.

    python -m selfmis.train.experiments --phase all            # ablations, main grid, report
    python -m selfmis.train.experiments --phase report         # tables/plots from finished runs

Session-2 studies over the whole CV (each resumable, each adds rows to the report):
``--phase crossfit`` (cross-fitted teachers), ``rich`` (teachers that also learn 32 more SCP
statements, and the scratch control with the same labels), ``scarce --label-fraction 0.25`` and
``0.1`` (label-scarce: SelfMIS aligns every training record), ``clip`` (a self-supervised 12-lead
teacher), ``baselines-seed1`` (a second CV seed for SimCLR, generative, random).

Grid: test fold 10 with seeds 0,1,2 and 10-fold cross-validation (test fold k,
validation fold k%10+1, train on the other 8; seed 0 per fold). Every method on the
same data, split, lead and epoch budget. The 12-lead model of each (fold, seed) is
also the frozen SelfMIS / generative teacher of that (fold, seed).
SelfMIS variants are compared on VALIDATION folds only (``--phase ablate``); the one
with the best mean validation MI AUROC goes into the main grid.
Runs are resumable: a finished run (``metrics.json``) is skipped.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main", "ABLATIONS", "BASELINES", "grid", "make_report"]

PY = sys.executable
BASELINES = ["twelve_lead", "scratch", "random", "simclr", "generative"]
#: SelfMIS variants (overrides of the trainer defaults), judged on validation only.
ABLATIONS = {
    "joint_cos": dict(schedule="joint"),
    "joint_cos_kd": dict(schedule="joint", distill_weight=1.0),
    "joint_featmap": dict(schedule="joint", align_target="featmap"),
    "joint_w3": dict(schedule="joint", align_weight=3.0),
    "joint_crops3": dict(schedule="joint", crops_per_record=3, epochs=4),  # 3 crops x 4 = the 12-epoch budget
    "joint_infonce": dict(schedule="joint", align_loss="infonce"),
    "joint_fixed5s": dict(schedule="joint", crop_min_s=5.0, crop_max_s=5.0),
    "twostage_ft": dict(schedule="two_stage", probe="finetune"),
    "joint_cotrain": dict(schedule="joint", cotrain=True),
    "joint_teacherMI": dict(schedule="joint", teacher_tasks="MI"),
    # session 2: cross-fitted teachers (two 12-lead teachers on disjoint halves of the training
    # folds; every record is taught by the one that did not train on it), run over the whole CV
    "crossfit_w3": dict(schedule="joint", align_weight=3.0, crossfit=True),
    "crossfit_w3_kd": dict(schedule="joint", align_weight=3.0, distill_weight=1.0, crossfit=True),
    # ... whose teachers also learnt every other SCP statement (a richer 12-lead embedding)
    "crossfit_rich_w3": dict(schedule="joint", align_weight=3.0, crossfit="rich"),
    # a self-supervised 12-lead teacher: both encoders from scratch, CLIP-like InfoNCE between the
    # self-cut Lead-I window and its whole 12-lead record (no labels), then fine-tune
    "clip_twostage": dict(schedule="two_stage", teacher_init="random", cotrain=True, align_loss="infonce"),
}
#: the label-scarce study (phase scarce): this fraction of the training records keeps its labels
SCARCE_FRACTION = 0.25
#: the control for the rich teacher: Lead I from scratch with the same extra statements
SCRATCH_AUX = {"aux_tasks": "statements"}
#: variants judged on the validation folds of the whole cross-validation (seed 0)
CROSSFIT_VARIANTS = ["crossfit_w3", "crossfit_w3_kd"]
#: Not ablated on validation (shares twostage_ft's alignment stage), only run in the main grid.
EXTRA_VARIANTS = {"twostage_linear": dict(schedule="two_stage", probe="linear")}
ABLATION_SPLITS = [(10, 0), (5, 0)]
#: second ablation round at the main-grid budget, reusing the main grid's teachers
ABLATION_MAIN_SPLITS = [(10, 0), (1, 0), (2, 0)]
MAIN_SPLITS = [(10, 0), (10, 1), (10, 2)] + [(k, 0) for k in range(1, 10)]
#: a second CV seed for the key comparison only (12-lead teacher, scratch, SelfMIS) when budget allows
CV_SEED1_SPLITS = [(k, 1) for k in range(1, 10)]
#: the cross-validation with seed 0 (fold 10 first)
CV_SPLITS = [(10, 0)] + [(k, 0) for k in range(1, 10)]


def overrides_to_args(d: dict) -> list:
    args = []
    for k, v in d.items():
        if k == "crossfit":  # a grid option (which teachers), not a trainer option
            continue
        args += ["--" + k.replace("_", "-")] + ([str(x) for x in v] if isinstance(v, list) else [str(v)])
    return args


class Job:
    def __init__(self, out: Path, method: str, fold: int, seed: int, extra: dict | None = None, needs=None):
        self.out, self.method, self.fold, self.seed = out, method, fold, seed
        self.extra = dict(extra or {})
        # needs: the Job(s) whose model.pt is the teacher (two for cross-fitting)
        self.needs = [needs] if isinstance(needs, Job) else list(needs or [])

    @property
    def done(self):
        return (self.out / "metrics.json").is_file()

    @property
    def teachers_done(self):
        return all(n.done for n in self.needs)

    def busy(self, stale_s: float = 120.0) -> bool:
        """Not done but written to recently: another process is training it."""
        files = [f for f in self.out.glob("*") if f.name != "train.log"] if self.out.is_dir() else []
        return not self.done and bool(files) and time.time() - max(f.stat().st_mtime for f in files) < stale_s

    def cmd(self, common: dict):
        c = dict(common, method=self.method, test_fold=self.fold, seed=self.seed, out=str(self.out))
        c.update(self.extra)
        if self.needs:
            if self.extra.get("teacher_tasks") == "MI":  # that ablation trains its own teacher
                c.pop("teacher", None)
            else:
                c["teacher"] = ",".join(str(n.out / "model.pt") for n in self.needs)
        return [PY, "-m", "selfmis.train.cli"] + overrides_to_args(c)


def run_jobs(jobs, common, workers=2, log_dir: Path | None = None):
    """A tiny scheduler: at most ``workers`` training processes, teachers before students."""
    pending, running = [j for j in jobs if not j.done], []
    t0 = time.time()
    while pending or running:
        for j, p, f in list(running):
            if p.poll() is not None:
                running.remove((j, p, f))
                f.close()
                state = "ok" if p.returncode == 0 else f"FAILED rc={p.returncode} (see {f.name})"
                print(f"[{time.time() - t0:6.0f}s] {j.out.relative_to(j.out.parents[1])}: {state}", flush=True)
        ready = [j for j in pending if j.teachers_done or j.extra.get("teacher_tasks") == "MI"]
        active = [r[0] for r in running] + pending
        blocked = [j for j in pending if j.extra.get("teacher_tasks") != "MI" and any(
            not n.done and all(n is not a for a in active) and not n.busy() for n in j.needs)]
        for j in blocked:  # its teacher failed: give up on it
            pending.remove(j)
            print(f"skipping {j.out}: teacher missing", flush=True)
        ready = [j for j in ready if not j.busy()]  # e.g. still running under a previous runner
        while ready and len(running) < workers:
            j = ready.pop(0)
            pending.remove(j)
            j.out.mkdir(parents=True, exist_ok=True)
            f = open(j.out / "train.log", "w")
            running.append((j, subprocess.Popen(j.cmd(common), stdout=f, stderr=subprocess.STDOUT), f))
        time.sleep(1)


def grid(root: Path, splits, selfmis_variants: dict, baselines=BASELINES, extra_variants=None, extra_splits=()):
    """Jobs in priority order: every method on each split (teacher first), then extra SelfMIS
    variants on ``extra_splits`` only (they run last, when the budget allows)."""
    jobs, late = [], []
    for fold, seed in splits:
        d = root / f"f{fold:02d}_s{seed}"
        teacher = Job(d / "twelve_lead", "twelve_lead", fold, seed)
        if "twelve_lead" in baselines:
            jobs.append(teacher)
        for m in baselines:
            if m != "twelve_lead":
                job = Job(d / m, m, fold, seed, needs=teacher if m == "generative" else None)
                # the costly secondary baselines run after SelfMIS/scratch are done on every split
                (late if m in ("simclr", "generative") else jobs).append(job)
        for name, ov in selfmis_variants.items():
            needs = teacher
            if ov.get("crossfit"):
                needs = crossfit_teachers(jobs, d, fold, seed, ov["crossfit"] == "rich")
            elif ov.get("teacher_init") == "random":
                needs = None  # learns its own teacher
            jobs.append(Job(d / name, "selfmis", fold, seed, ov, needs=needs))
    jobs += late
    for fold, seed in extra_splits:
        d = root / f"f{fold:02d}_s{seed}"
        teacher = next(j for j in jobs if j.out == d / "twelve_lead")
        for name, ov in (extra_variants or {}).items():
            jobs.append(Job(d / name, "selfmis", fold, seed, ov, needs=teacher))
    return jobs


def crossfit_teachers(jobs, d: Path, fold: int, seed: int, rich: bool = False):
    """Two 12-lead teachers of one split, on alternate halves of its training folds (added to
    ``jobs`` once, before the students that need them). ``rich``: they also learn the extra
    SCP statements."""
    from selfmis.train.trainer import split_folds
    _, train_folds = split_folds(fold)
    out, tag = [], "twelve_half_rich" if rich else "twelve_half"
    for name, half in ((tag + "_a", train_folds[0::2]), (tag + "_b", train_folds[1::2])):
        job = next((j for j in jobs if j.out == d / name), None)
        if job is None:
            job = Job(d / name, "twelve_lead", fold, seed, dict({"train_folds": half}, **(SCRATCH_AUX if rich else {})))
            jobs.append(job)
        out.append(job)
    return out


# --------------------------------------------------------------------------- report

def _load(run: Path):
    m = json.loads((run / "metrics.json").read_text())
    s = np.load(run / "scores.npz")
    return m, s


def collect(root: Path, splits, names):
    """{name: {(fold, seed): (metrics, scores)}} for finished runs."""
    out = {}
    for n in names:
        for fold, seed in splits:
            run = root / f"f{fold:02d}_s{seed}" / n
            if (run / "metrics.json").is_file():
                out.setdefault(n, {})[(fold, seed)] = _load(run)
    return out


def paired_bootstrap_diff(y, s_a, s_b, n_boot=1000, seed=0):
    """AUROC(a) - AUROC(b) on the same records, with a percentile bootstrap CI.

    ``s_a``/``s_b`` may be lists of score arrays (one per seed, same records): the difference is
    then the mean over seeds, and the bootstrap resamples records, each with all its seeds' scores.
    """
    from selfmis.train.evaluate import auroc
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


def make_report(root: Path, results: Path, selfmis_name: str, ablation: dict | None, command: str,
                n_boot: int = 1000, budget: dict | None = None):
    from selfmis.train.evaluate import auroc, auprc, bootstrap_ci, frechet_distance

    results.mkdir(parents=True, exist_ok=True)
    methods = ["twelve_lead", "selfmis", "scratch", "simclr", "generative", "random"]
    extra_selfmis = [n for n in (ablation or {}).get("main_variants", []) if n != selfmis_name]
    runs = collect(root, MAIN_SPLITS, BASELINES + [selfmis_name] + extra_selfmis)
    if selfmis_name in runs:
        runs["selfmis"] = runs.pop(selfmis_name)
    for n in extra_selfmis:
        if n in runs:
            methods.append(n)
    tasks = {"MI": 0, "IMI": 1, "MI_vs_NORM": None}
    report = {"command": command, "selfmis_variant": selfmis_name, "ablation": ablation, "budget": budget,
              "splits": {"fold10_seeds": [0, 1, 2], "cv": "test fold k, val fold k%10+1, seed 0"}}

    def col(s, key, task):
        Y, S = s[f"Y_{key}"], s[key]
        if tasks[task] is not None:
            return Y[:, tasks[task]], S[:, tasks[task]]
        k = (Y[:, 0] > 0) | ((Y[:, -1] > 0) & (Y[:, 0] == 0))
        return Y[k, 0], S[k, 0]

    rows = {}
    for m in methods:
        if m not in runs:
            continue
        r = rows[m] = {}
        for task in tasks:
            f10 = [(seed, col(runs[m][(10, seed)][1], "test", task)) for seed in (0, 1, 2) if (10, seed) in runs[m]]
            a10 = [auroc(y, s) for _, (y, s) in f10]
            ci0 = list(bootstrap_ci(*f10[0][1], auroc, n_boot, 0)) if f10 else None
            cv = [(k, col(runs[m][(k, 0)][1], "test", task)) for k in range(1, 11) if (k, 0) in runs[m]]
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
            unit = lambda E: E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-9)
            gn = [frechet_distance(unit(s["emb_single"]), unit(s["emb_twelve"]))
                  for _, s in runs[m].values() if "emb_single" in s]
            r["frechet_unit_mean"], r["frechet_unit_sd"] = float(np.mean(gn)), float(np.std(gn))
            cos = [float(np.mean(np.sum(unit(s["emb_single"]) * unit(s["emb_twelve"]), 1)))
                   for _, s in runs[m].values() if "emb_single" in s]
            r["cosine_same_record_mean"] = float(np.mean(cos))
        r["n_runs"] = len(runs[m])
    report["methods"] = rows

    # SelfMIS vs scratch, paired: per fold/seed differences and a pooled paired bootstrap
    comp = {}
    if "selfmis" in runs and "scratch" in runs:
        for task in tasks:
            diffs10 = [auroc(*col(runs["selfmis"][(10, s)][1], "test", task)) -
                       auroc(*col(runs["scratch"][(10, s)][1], "test", task))
                       for s in (0, 1, 2) if (10, s) in runs["selfmis"] and (10, s) in runs["scratch"]]
            keys = [k for k in range(1, 11) if (k, 0) in runs["selfmis"] and (k, 0) in runs["scratch"]]
            diffs_cv = [auroc(*col(runs["selfmis"][(k, 0)][1], "test", task)) -
                        auroc(*col(runs["scratch"][(k, 0)][1], "test", task)) for k in keys]
            ent = {"fold10_diffs": diffs10, "cv_fold_diffs": diffs_cv,
                   "cv_mean_diff": float(np.mean(diffs_cv)) if diffs_cv else None,
                   "cv_sd_diff": float(np.std(diffs_cv, ddof=1)) if len(diffs_cv) > 1 else None}
            if len(keys) == 10:
                ya = np.concatenate([col(runs["selfmis"][(k, 0)][1], "test", task)[0] for k in keys])
                sa = np.concatenate([col(runs["selfmis"][(k, 0)][1], "test", task)[1] for k in keys])
                sb = np.concatenate([col(runs["scratch"][(k, 0)][1], "test", task)[1] for k in keys])
                ent["cv_pooled_diff"], ent["cv_pooled_diff_ci"] = paired_bootstrap_diff(ya, sa, sb, n_boot)
            comp[task] = ent
    report["selfmis_minus_scratch"] = comp
    report["variants"] = variant_table(root, {"selfmis": selfmis_name, **{n: n for n in extra_selfmis}}, n_boot)
    report["cv_two_seeds"] = cv_two_seeds(root, selfmis_name, n_boot)
    report["studies"] = {name: [paired_cv(root, a, b, n_boot) for a, b in pairs] for name, pairs in STUDIES.items()}
    (results / "report.json").write_text(json.dumps(report, indent=1))
    _plots(runs, methods, results, col)
    _studies_plot(report["studies"], results / "studies.png")
    (results / "README.md").write_text(_markdown(report, methods))
    return report


#: session-2 studies: (run name, reference run name) compared fold by fold over the seed-0 CV
STUDIES = {
    "cross-fitted teachers": [("crossfit_w3", "scratch"), ("crossfit_w3_kd", "scratch"), ("crossfit_w3", "joint_w3")],
    "teachers that also learn 32 more SCP statements": [
        ("crossfit_rich_w3", "scratch"), ("scratch_aux", "scratch"), ("crossfit_rich_w3", "scratch_aux")],
    "self-supervised 12-lead teacher (CLIP-like, co-trained, no labels), then fine-tune": [
        ("clip_twostage", "scratch"), ("clip_twostage", "simclr")],
    "a quarter of the training labels (SelfMIS aligns every training record)": [
        ("joint_w3_lf25", "scratch_lf25"), ("scratch_lf25", "scratch"), ("twelve_lead_lf25", "twelve_lead")],
    "a tenth of the training labels": [
        ("joint_w3_lf10", "scratch_lf10"), ("scratch_lf10", "scratch"), ("twelve_lead_lf10", "twelve_lead")],
}


def paired_cv(root: Path, a: str, b: str, n_boot: int = 1000, seeds=(0, 1, 2)) -> dict:
    """Run ``a`` minus run ``b`` over every seed with a complete 10-fold CV of both: validation and
    test MI AUROC per (fold, seed), the CV-mean difference per seed, and the pooled out-of-fold test
    AUROC difference (mean over seeds) with a paired bootstrap CI that resamples records (each
    record once, with its score from every seed)."""
    from selfmis.train.evaluate import auroc
    full = [sd for sd in seeds if all((root / f"f{k:02d}_s{sd}" / n / "metrics.json").is_file()
                                      for k in range(1, 11) for n in (a, b))]
    out = {"a": a, "b": b, "seeds": full, "splits": [(k, sd) for sd in full for k in range(1, 11)]}
    if not full:
        return out
    load = {(n, sd): [_load(root / f"f{k:02d}_s{sd}" / n) for k in range(1, 11)] for n in (a, b) for sd in full}
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
    from selfmis.train.evaluate import auroc
    out = {}
    names = {"twelve_lead": "twelve_lead", "scratch": "scratch", "selfmis": variant,
             "simclr": "simclr", "generative": "generative", "random": "random"}
    for task, j in (("MI", 0), ("IMI", 1)):
        t = out[task] = {}
        for label, n in names.items():
            per_seed = {}
            for seed in (0, 1):
                runs = [root / f"f{k:02d}_s{seed}" / n / "scores.npz" for k in range(1, 11)]
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


def _plots(runs, methods, results, col):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def roc(y, s):
        o = np.argsort(-s)
        y = y[o].astype(bool)
        tpr = np.r_[0, np.cumsum(y) / max(1, y.sum())]
        fpr = np.r_[0, np.cumsum(~y) / max(1, (~y).sum())]
        return fpr, tpr
    from selfmis.train.evaluate import auroc
    for task in ("MI", "IMI"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        for m in methods:
            if m not in runs:
                continue
            if (10, 0) in runs[m]:
                y, s = col(runs[m][(10, 0)][1], "test", task)
                axes[0].plot(*roc(y, s), label=f"{m} ({auroc(y, s):.3f})")
            keys = [k for k in range(1, 11) if (k, 0) in runs[m]]
            if len(keys) == 10:
                y = np.concatenate([col(runs[m][(k, 0)][1], "test", task)[0] for k in keys])
                s = np.concatenate([col(runs[m][(k, 0)][1], "test", task)[1] for k in keys])
                axes[1].plot(*roc(y, s), label=f"{m} ({auroc(y, s):.3f})")
        for ax, t in zip(axes, (f"{task}: test fold 10, seed 0", f"{task}: 10-fold CV, pooled out-of-fold")):
            ax.plot([0, 1], [0, 1], "k:", lw=0.8)
            ax.set(title=t, xlabel="1 - specificity", ylabel="sensitivity")
            ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(results / f"roc_{task}.png", dpi=110)
        plt.close(fig)


def _studies_plot(studies: dict, path: Path):
    """Forest plot: every paired study row, validation and test MI AUROC differences (mean over
    fold-seed pairs ± 95% t-interval of that mean)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for rs in studies.values() for r in rs if r.get("splits")]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.4))
    for i, r in enumerate(rows):
        n = len(r["splits"])
        for dy, mean, sd, color, lab in ((-0.15, r["val_mi_diff_mean"], r["val_mi_diff_sd"], "tab:gray", "validation"),
                                         (0.15, r["MI"]["fold_diff_mean"], r["MI"]["fold_diff_sd"], "tab:blue", "test")):
            half = 1.96 * sd / np.sqrt(n)
            ax.errorbar(mean, i + dy, xerr=half, fmt="o", color=color, capsize=3, label=lab if i == 0 else None)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{r['a']} - {r['b']} (seeds {','.join(map(str, r['seeds']))})" for r in rows],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("MI AUROC difference, mean over CV folds x seeds (95% CI of the mean)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _f(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def _markdown(rep, methods):
    L = ["# Accuracy: SelfMIS (Lead I) vs baselines on the PTB-XL subset", "",
         "Generated by `train/experiments.py` (do not edit by hand).", "",
         "Reproduce everything (ablations, variant choice on validation, main grid, report): "
         "`.venv/bin/python -m selfmis.train.experiments --phase all`; the session-2 studies: `--phase crossfit`, "
         "`--phase rich`, `--phase scarce --label-fraction 0.25`, `--phase scarce --label-fraction 0.1`, "
         "`--phase clip`, `--phase baselines-seed1` (then `--phase report`).", "",
         f"This report's last command: `{rep['command']}` (runs under `runs/exp`, `runs/ablate`; "
         "each run's exact config is its `config.json`, seeds in the table).", "",
         "Data: shared PTB-XL subset (1,987 records, 100 Hz). Single-lead models see Lead I only; a 10 s "
         "record is scored as the mean logit over 5 s windows every 1 s (6 windows). The 12-lead model sees "
         "the whole record. Splits: test fold k, validation fold k%10+1, train on the other 8 "
         "(patient-disjoint `strat_fold`). Fold 10: seeds 0, 1, 2. Cross-validation: every fold as test once, "
         "seed 0 per fold in the main tables; the baselines, the main SelfMIS row and the label-scarce study were "
         "repeated with seed 1 (and 2) over the whole CV (tables below). Model selection (best epoch, "
         "SelfMIS variant, thresholds) on validation only.", "",
         f"SelfMIS variant in the main grid (chosen on validation): `{rep['selfmis_variant']}`", "",
         f"Budget (every method, main grid): {rep.get('budget')}", ""]
    for task, title in (("MI", "MI superclass"), ("IMI", "IMI (inferior MI), reported separately"),
                        ("MI_vs_NORM", "MI vs NORM (records that are MI or NORM)")):
        L += [f"## {title}: AUROC", "",
              "| method | fold 10 mean ± sd (3 seeds) | fold 10 seed 0 [95% CI] | CV mean ± sd over 10 folds "
              "| CV pooled out-of-fold [95% CI] | AUPRC CV pooled |", "|---|---|---|---|---|---|"]
        for m in methods:
            r = rep["methods"].get(m, {}).get(task)
            if not r:
                continue
            seeds = r["fold10_auroc_seeds"]
            ci = r["fold10_seed0_ci"]
            L.append(f"| {m} | {_f(r['fold10_mean'])} ± {_f(r['fold10_sd'])} (n={len(seeds)}) | "
                     f"{_f(seeds[0] if seeds else None)} [{_f(ci[0] if ci else None)}, {_f(ci[1] if ci else None)}] | "
                     f"{_f(r['cv_mean'])} ± {_f(r['cv_sd'])} ({len(r['cv_folds'])} folds) | "
                     f"{_f(r.get('cv_pooled_auroc'))} [{_f((r.get('cv_pooled_ci') or [None])[0])}, "
                     f"{_f((r.get('cv_pooled_ci') or [None, None])[1])}] | {_f(r.get('cv_pooled_auprc'))} |")
        n10 = rep["methods"].get("scratch", {}).get(task, {})
        L += ["", f"Positives: fold 10 n={n10.get('fold10_n_pos')}, CV pooled n={n10.get('cv_pooled_n_pos')}.", ""]
    L += ["## SelfMIS minus Lead-I-from-scratch (paired, same records)", "",
          "| task | fold 10 per-seed diffs | CV per-fold mean ± sd | CV pooled diff [paired bootstrap 95% CI] |",
          "|---|---|---|---|"]
    for task, c in rep["selfmis_minus_scratch"].items():
        ci = c.get("cv_pooled_diff_ci") or [None, None]
        L.append(f"| {task} | {', '.join(f'{d:+.3f}' for d in c['fold10_diffs'])} | "
                 f"{_f(c['cv_mean_diff'])} ± {_f(c['cv_sd_diff'])} | {_f(c.get('cv_pooled_diff'))} "
                 f"[{_f(ci[0])}, {_f(ci[1])}] |")
    c = rep["selfmis_minus_scratch"].get("MI", {})
    sd = (rep["methods"].get("scratch", {}).get("MI", {}) or {}).get("fold10_sd")
    if c.get("cv_pooled_diff_ci") and sd is not None:
        lo, hi = c["cv_pooled_diff_ci"]
        beats = lo > 0 and (c["cv_mean_diff"] or 0) > sd
        L += ["", f"**Verdict (MI AUROC):** SelfMIS minus scratch = {c['cv_mean_diff']:+.3f} (mean over 10 CV folds), "
              f"pooled paired 95% CI [{lo:+.3f}, {hi:+.3f}]; seed-to-seed sd of scratch on fold 10 = {sd:.3f}. "
              + ("SelfMIS beats Lead I from scratch by more than the seed spread and the CI excludes 0."
                 if beats else "SelfMIS does **not** beat Lead I from scratch by more than the noise "
                 "(seed spread / CI includes 0).")]
    c2 = rep.get("cv_two_seeds", {})
    if c2.get("MI", {}).get("diff", {}).get("seeds") == [0, 1]:
        L += ["", "## Cross-validation repeated with a second seed (every baseline and the main SelfMIS row)", "",
              "| task | method | CV mean seed 0 | CV mean seed 1 | mean ± sd over seeds |", "|---|---|---|---|---|"]
        for task in ("MI", "IMI"):
            for m in ("twelve_lead", "selfmis", "scratch", "simclr", "generative", "random"):
                r = c2[task].get(m)
                if r and len(r["cv_mean_per_seed"]) == 2:
                    L.append(f"| {task} | {m} | {r['cv_mean_per_seed'][0]:.3f} | {r['cv_mean_per_seed'][1]:.3f} | "
                             f"{r['mean_over_seeds']:.3f} ± {_f(r['sd_over_seeds'])} |")
            dd = c2[task]["diff"]
            L.append(f"| {task} | SelfMIS - scratch | {dd['cv_mean_diff_per_seed'][0]:+.3f} | "
                     f"{dd['cv_mean_diff_per_seed'][1]:+.3f} | {dd['all_fold_seed_diffs_mean']:+.3f} ± "
                     f"{dd['all_fold_seed_diffs_sd']:.3f} (20 fold-seed pairs) |")
    var = rep.get("variants", {})
    if len(var) > 2:
        best = max((n for n in var if n != "scratch"), key=lambda n: var[n]["val_mi_auroc_cv_mean"])
        rep["best_on_validation"] = rep["selfmis_variant"] if best == "selfmis" else best
    if len(var) > 1:
        L += ["", "## Every SelfMIS variant with a full cross-validation, beside scratch (seed 0)", "",
              "The choice between variants is made on the **validation** column only (mean over the 10 CV "
              "splits' validation folds); the test columns are shown for every variant so nothing is hidden.", "",
              "| variant | val MI AUROC (CV mean) | test MI CV mean | MI - scratch: CV mean ± sd | "
              "MI - scratch pooled [95% CI] | IMI - scratch pooled [95% CI] |", "|---|---|---|---|---|---|"]
        for n, e in var.items():
            if n == "scratch":
                L.append(f"| scratch | {e['val_mi_auroc_cv_mean']:.3f} | – | – | – | – |")
                continue
            mi, imi = e["MI"], e["IMI"]
            L.append(f"| {rep['selfmis_variant'] + ' (main row)' if n == 'selfmis' else n} | "
                     f"{e['val_mi_auroc_cv_mean']:.3f} | {mi['cv_mean_auroc']:.3f} | "
                     f"{mi['cv_mean_diff']:+.3f} ± {mi['cv_sd_diff']:.3f} | {mi['cv_pooled_diff']:+.3f} "
                     f"[{mi['cv_pooled_diff_ci'][0]:+.3f}, {mi['cv_pooled_diff_ci'][1]:+.3f}] | "
                     f"{imi['cv_pooled_diff']:+.3f} [{imi['cv_pooled_diff_ci'][0]:+.3f}, "
                     f"{imi['cv_pooled_diff_ci'][1]:+.3f}] |")
        if rep.get("best_on_validation"):
            b = "selfmis" if rep["best_on_validation"] == rep["selfmis_variant"] else rep["best_on_validation"]
            L += ["", f"Best SelfMIS variant on validation: `{rep['best_on_validation']}` (val MI "
                  f"{var[b]['val_mi_auroc_cv_mean']:.3f}, vs {var['selfmis']['val_mi_auroc_cv_mean']:.3f} for the "
                  f"main row `{rep['selfmis_variant']}` and {var['scratch']['val_mi_auroc_cv_mean']:.3f} for scratch)."]
    if any(r.get("splits") for rows in rep.get("studies", {}).values() for r in rows):
        L += ["", "## Session-2 studies (paired over the 10-fold CV)", "",
              "Each row: run A minus run B on the same splits, over every seed with a complete CV of both. "
              "Validation is what a choice may use; test is reported for every row. Pooled: out-of-fold test "
              "predictions of all folds, mean over seeds, paired bootstrap over records.", "",
              "| study | A | B | CV seeds | val MI: A / B | A - B val MI (mean ± sd) | test MI CV mean: A / B | "
              "A - B test MI per fold (mean ± sd) | A - B test MI CV mean per seed | A - B test MI pooled [95% CI] "
              "| A - B test IMI pooled [95% CI] |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        for study, rows in rep["studies"].items():
            for r in rows:
                if not r.get("splits"):
                    continue
                a, b, mi, imi = r["a"], r["b"], r["MI"], r["IMI"]
                L.append(f"| {study} | {a} | {b} | {', '.join(map(str, r['seeds']))} | "
                         f"{r['val_mi_' + a]:.3f} / {r['val_mi_' + b]:.3f} | "
                         f"{r['val_mi_diff_mean']:+.3f} ± {_f(r['val_mi_diff_sd'])} | "
                         f"{r['test_mi_' + a]:.3f} / {r['test_mi_' + b]:.3f} | "
                         f"{mi['fold_diff_mean']:+.3f} ± {_f(mi['fold_diff_sd'])} | "
                         f"{', '.join(f'{x:+.3f}' for x in mi['cv_mean_diff_per_seed'])} | {mi['pooled_diff']:+.3f} "
                         f"[{mi['pooled_diff_ci'][0]:+.3f}, {mi['pooled_diff_ci'][1]:+.3f}] | {imi['pooled_diff']:+.3f} "
                         f"[{imi['pooled_diff_ci'][0]:+.3f}, {imi['pooled_diff_ci'][1]:+.3f}] |")
    L += ["", "## Latent gap (Fréchet distance, single-lead vs 12-lead embeddings, test records)", "",
          "| method | Fréchet (raw) mean ± sd over runs | Fréchet of unit-normalised embeddings | "
          "mean cosine(single-lead, 12-lead), same record |", "|---|---|---|---|"]
    for m in methods:
        r = rep["methods"].get(m, {})
        if "frechet_mean" in r:
            L.append(f"| {m} | {r['frechet_mean']:.2f} ± {r['frechet_sd']:.2f} | "
                     f"{r['frechet_unit_mean']:.4f} ± {r['frechet_unit_sd']:.4f} | {r['cosine_same_record_mean']:.3f} |")
    L += ["", "SelfMIS: projector output vs the frozen teacher's pooled embedding (the space it is aligned in). "
          "Generative: the 12-lead classifier's embedding of the generated leads vs of the real leads. "
          "Lower is closer; the two spaces are the same teacher's, so the numbers compare. The raw distance "
          "of SelfMIS is large because the cosine loss leaves the projector's norm free; the unit-normalised "
          "columns are the ones to compare.", ""]
    ab = rep.get("ablation")
    if ab:
        L += ["## SelfMIS ablations (validation MI AUROC only; never test)", "",
              f"Splits: {ab['splits']} (test fold, seed) -> validation fold = test%10+1.", "",
              "| variant | overrides | " + " | ".join(f"val f{f % 10 + 1} (test f{f})" for f, _ in ab["splits"]) + " | mean |",
              "|---|---|" + "---|" * (len(ab["splits"]) + 1)]
        for n, v in sorted(ab["val"].items(), key=lambda kv: -kv[1]["mean"]):
            L.append(f"| {n} | `{json.dumps(v['overrides'])}` | " + " | ".join(_f(x) for x in v["scores"])
                     + f" | {v['mean']:.3f} |")
        L += ["", "These ran at the trainer defaults (20 epochs, 15 pretraining epochs), before the main grid.", ""]
        mb = ab.get("main_budget")
        if mb and mb["val"]:
            L += ["### Second round: validation MI AUROC at the main-grid budget (main grid's teachers)", "",
                  f"Splits: {mb['splits']}.", "",
                  "| variant | " + " | ".join(f"val f{f % 10 + 1} (test f{f})" for f, _ in mb["splits"]) + " | mean |",
                  "|---|" + "---|" * (len(mb["splits"]) + 1)]
            for n, v in sorted(mb["val"].items(), key=lambda kv: -kv[1]["mean"]):
                L.append(f"| {n} | " + " | ".join(_f(x) for x in v["scores"]) + f" | {v['mean']:.3f} |")
            L += [""]
    L += ["![ROC MI](roc_MI.png)", "", "![ROC IMI](roc_IMI.png)", "", "![paired studies](studies.png)", ""]
    return "\n".join(L)


# --------------------------------------------------------------------------- main

def ablation_results(root: Path, names, splits=ABLATION_SPLITS):
    val = {}
    for n in names:
        scores = []  # None where that split's run is missing (budget)
        for fold, seed in splits:
            p = root / f"f{fold:02d}_s{seed}" / n / "metrics.json"
            scores.append(json.loads(p.read_text())["val"]["MI"].get("auroc") if p.is_file() else None)
        if any(x is not None for x in scores):
            val[n] = {"scores": scores, "overrides": ABLATIONS.get(n, {"method": n}),
                      "mean": float(np.mean([x for x in scores if x is not None]))}
    return val


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="selfmis-experiments", description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", default="all", choices=["ablate", "main", "ablate-main", "cv-seed1", "crossfit", "rich", "scarce", "crossfit-seeds",
                                                  "baselines-seed1", "clip",
                                                  "report", "all"])
    p.add_argument("--root", default="runs/exp")
    p.add_argument("--results", default="benchmarks/results/accuracy")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data", default=None)
    p.add_argument("--variant", default=None, help="SelfMIS variant for the main grid (default: best on val)")
    p.add_argument("--extra-variants", nargs="*", default=["twostage_ft", "twostage_linear"],
                   help="more SelfMIS variants to run in the main grid (reported as extra rows)")
    p.add_argument("--ablations", nargs="*", default=list(ABLATIONS))
    p.add_argument("--label-fraction", type=float, default=SCARCE_FRACTION, help="phase scarce: labels kept")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="phase scarce: CV seeds")
    p.add_argument("--ablate-root", default="runs/ablate", help="ablation runs (own budget: DEFAULTS epochs)")
    # one budget for every method of the main grid (sized for 2 shared CPU cores)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--pretrain-epochs", type=int, default=8)
    a = p.parse_args(argv)
    root, results, aroot = Path(a.root), Path(a.results), Path(a.ablate_root)
    common = {"progress": False, "threads": 1}
    main_common = dict(common, epochs=a.epochs, pretrain_epochs=a.pretrain_epochs, teacher_epochs=a.epochs)
    if a.data:
        common["data"] = a.data
    command = "python -m selfmis.train.experiments " + " ".join(argv if argv is not None else sys.argv[1:])
    if a.phase in ("ablate", "all"):
        # scratch on the same splits gives the paired reference for the ablation table
        run_jobs(grid(aroot, ABLATION_SPLITS, {n: ABLATIONS[n] for n in a.ablations},
                      baselines=["twelve_lead", "scratch"]), common, a.workers)
    val = ablation_results(aroot, list(ABLATIONS) + ["scratch"])
    cands = {n: v for n, v in val.items() if n in ABLATIONS}
    variant = a.variant or (max(cands, key=lambda n: cands[n]["mean"]) if cands else "joint_cos")
    print(f"SelfMIS variant for the main grid: {variant}", flush=True)
    extra = [v for v in a.extra_variants if v != variant]
    if a.phase in ("main", "all"):
        allv = {**ABLATIONS, **EXTRA_VARIANTS}
        # extra variants (plain two-stage alignment, linear probe) on fold 10's seeds only
        run_jobs(grid(root, MAIN_SPLITS, {variant: ABLATIONS[variant]},
                      extra_variants={v: allv[v] for v in extra}, extra_splits=[(10, 0), (10, 1), (10, 2)]),
                 main_common, a.workers)
    if a.phase == "cv-seed1":  # second CV seed for scratch vs SelfMIS (and their teachers)
        run_jobs(grid(root, CV_SEED1_SPLITS, {variant: ABLATIONS[variant]}, baselines=["twelve_lead", "scratch"]),
                 main_common, a.workers)
    if a.phase == "crossfit":  # session 2: cross-fitted teachers, both variants over the whole CV
        run_jobs(grid(root, CV_SPLITS, {v: ABLATIONS[v] for v in CROSSFIT_VARIANTS}, baselines=[]),
                 main_common, a.workers)
    if a.phase == "rich":  # rich cross-fitted teachers, and the matching scratch control
        jobs = grid(root, CV_SPLITS, {"crossfit_rich_w3": ABLATIONS["crossfit_rich_w3"]}, baselines=[])
        jobs += [Job(root / f"f{k:02d}_s{sd}" / "scratch_aux", "scratch", k, sd, SCRATCH_AUX) for k, sd in CV_SPLITS]
        run_jobs(jobs, main_common, a.workers)
    if a.phase == "scarce":  # a quarter of the training labels; SelfMIS aligns every training record
        lf, tag = {"label_fraction": a.label_fraction}, f"_lf{round(100 * a.label_fraction)}"
        jobs = []
        for sd in a.seeds:
            for k in [10] + list(range(1, 10)):
                d = root / f"f{k:02d}_s{sd}"
                teacher = Job(d / ("twelve_lead" + tag), "twelve_lead", k, sd, lf)
                jobs += [teacher, Job(d / ("scratch" + tag), "scratch", k, sd, lf),
                         Job(d / ("joint_w3" + tag), "selfmis", k, sd, dict(ABLATIONS["joint_w3"], **lf),
                             needs=teacher)]
        run_jobs(jobs, main_common, a.workers)
    if a.phase == "crossfit-seeds":  # the variant chosen on validation: CV seed 1 and fold-10 seed 2
        run_jobs(grid(root, [(k, 1) for k in range(1, 11)] + [(10, 2)], {variant: ABLATIONS[variant]},
                      baselines=[]), main_common, a.workers)
    if a.phase == "clip":  # the self-supervised teacher over the whole CV
        run_jobs(grid(root, CV_SPLITS, {"clip_twostage": ABLATIONS["clip_twostage"]}, baselines=[]),
                 main_common, a.workers)
    if a.phase == "baselines-seed1":  # the secondary baselines' second CV seed
        run_jobs(grid(root, [(10, 1)] + CV_SEED1_SPLITS, {}, baselines=["twelve_lead", "simclr", "generative", "random"]),
                 main_common, a.workers)
    if a.phase == "ablate-main":  # after the main grid: variants at its budget, its teachers
        run_jobs(grid(root, ABLATION_MAIN_SPLITS, {n: ABLATIONS[n] for n in a.ablations if n != variant},
                      baselines=["twelve_lead"]), main_common, a.workers)
    if a.phase in ("report", "all", "main", "ablate-main", "cv-seed1"):
        ab = {"splits": ABLATION_SPLITS, "val": val, "chosen": variant, "main_variants": extra,
              "main_budget": {"splits": ABLATION_MAIN_SPLITS,
                              "val": ablation_results(root, [variant, "scratch"] + list(ABLATIONS) + extra,
                                                      ABLATION_MAIN_SPLITS)}}
        rep = make_report(root, results, variant, ab, command,
                          budget=dict(epochs=a.epochs, pretrain_epochs=a.pretrain_epochs, batch_size=64,
                                      threads=1, model="ResNet1d widths 32-64-96-128, depth 1 (0.39M params)"))
        print((results / "README.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
