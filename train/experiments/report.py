"""The accuracy report: ``report.json``, ``README.md`` (Markdown tables) and the ROC / forest plots.

``make_report`` reads the finished runs under ``root`` (statistics in ``stats.py``) and writes
everything into ``results`` (``benchmarks/results/accuracy/`` by default).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from selfmis.provenance import data_summary
from selfmis.train.data import resolve_data_root
from selfmis.train.evaluate import auroc
from selfmis.train.experiments.grid import BASELINES, CV_FOLDS, MAIN_SPLITS, STUDIES
from selfmis.train.experiments.stats import (collect, cv_two_seeds, method_rows, paired_cv, selfmis_minus_scratch,
                                             task_column, variant_table)

__all__ = ["make_report", "render_markdown", "METHODS"]

#: the rows of the main tables, in this order (extra SelfMIS variants follow)
METHODS = ["twelve_lead", "selfmis", "scratch", "simclr", "generative", "random"]


def make_report(root: Path, results: Path, selfmis_name: str, ablation: dict | None, command: str,
                n_boot: int = 1000, budget: dict | None = None):
    """Compute every table from the runs under ``root``; write report.json, README.md and the PNGs
    into ``results``; return the report dict. ``selfmis_name`` is the run name of the main SelfMIS row."""
    results.mkdir(parents=True, exist_ok=True)
    methods = list(METHODS)
    extra_selfmis = [n for n in (ablation or {}).get("main_variants", []) if n != selfmis_name]
    runs = collect(root, MAIN_SPLITS, BASELINES + [selfmis_name] + extra_selfmis)
    if selfmis_name in runs:
        runs["selfmis"] = runs.pop(selfmis_name)
    for n in extra_selfmis:
        if n in runs:
            methods.append(n)
    report = {"command": command, "data": _data_of(root), "selfmis_variant": selfmis_name, "ablation": ablation,
              "budget": budget,
              "splits": {"fold10_seeds": [0, 1, 2], "cv": "test fold k, val fold k%10+1, seed 0"}}
    report["methods"] = method_rows(runs, methods, n_boot)
    report["selfmis_minus_scratch"] = selfmis_minus_scratch(runs, n_boot)
    report["variants"] = variant_table(root, {"selfmis": selfmis_name, **{n: n for n in extra_selfmis}}, n_boot)
    report["cv_two_seeds"] = cv_two_seeds(root, selfmis_name, n_boot)
    report["studies"] = {name: [paired_cv(root, a, b, n_boot) for a, b in pairs] for name, pairs in STUDIES.items()}
    (results / "report.json").write_text(json.dumps(report, indent=1))
    _plots(runs, methods, results)
    _studies_plot(report["studies"], results / "studies.png")
    (results / "README.md").write_text(render_markdown(report, methods))
    return report


def _plots(runs, methods, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklearn.metrics import roc_curve

    def roc(y, s):
        fpr, tpr, _ = roc_curve(np.asarray(y).astype(bool), s)  # tied scores: one point, not a staircase
        return fpr, tpr
    for task in ("MI", "IMI"):
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        for m in methods:
            if m not in runs:
                continue
            if (10, 0) in runs[m]:
                y, s = task_column(runs[m][(10, 0)][1], "test", task)
                axes[0].plot(*roc(y, s), label=f"{m} ({auroc(y, s):.3f})")
            keys = [k for k in CV_FOLDS if (k, 0) in runs[m]]
            if len(keys) == 10:
                y = np.concatenate([task_column(runs[m][(k, 0)][1], "test", task)[0] for k in keys])
                s = np.concatenate([task_column(runs[m][(k, 0)][1], "test", task)[1] for k in keys])
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


def _data_line(d) -> str:
    """The data named from the report (never a typed count): name, records, rate, record-list hash."""
    if not d:
        return "PTB-XL (the data set's name, record count and rate are not recorded in this report.json)"
    return (f"{d['name']} ({d['n_records']:,} records, {d.get('fs', '?'):g} Hz; record list sha256 "
            f"{d['records_sha256'][:12]})")


def _data_of(root: Path):
    """:func:`selfmis.provenance.data_summary` of the data the runs under ``root`` trained on."""
    import pandas as pd

    cfg = next(root.rglob("config.json"), None)
    if cfg is None:
        return None
    c = json.loads(cfg.read_text())
    data = resolve_data_root(c.get("data"))
    ids = pd.read_csv(data / "ptbxl_database.csv", index_col=0).index
    return data_summary(data.name, ids, fs=100.0)


def _intro(rep: dict, methods: list) -> list:
    L = []
    L += ["# Accuracy: SelfMIS (Lead I) vs baselines on the PTB-XL subset", "",
         "Generated by `train/experiments/` (do not edit by hand).", "",
         "Reproduce everything (ablations, variant choice on validation, main grid, report): "
         "`.venv/bin/python -m selfmis.train.experiments --phase all`; the session-2 studies: `--phase crossfit`, "
         "`--phase rich`, `--phase scarce --label-fraction 0.25`, `--phase scarce --label-fraction 0.1`, "
         "`--phase clip`, `--phase baselines-seed1` (then `--phase report`).", "",
         f"This report's last command: `{rep['command']}` (runs under `runs/exp`, `runs/ablate`; "
         "each run's exact config is its `config.json`, seeds in the table).", "",
         f"Data: {_data_line(rep.get('data'))}. Single-lead models see Lead I only; a 10 s "
         "record is scored as the mean logit over 5 s windows every 1 s (6 windows). The 12-lead model sees "
         "the whole record. Splits: test fold k, validation fold k%10+1, train on the other 8 "
         "(patient-disjoint `strat_fold`). Fold 10: seeds "
         f"{', '.join(map(str, (rep.get('splits') or {}).get('fold10_seeds', [])))}. Cross-validation: every fold as test once, "
         "seed 0 per fold in the main tables; the baselines, the main SelfMIS row and the label-scarce study were "
         "repeated with seed 1 (and 2) over the whole CV (tables below). Model selection (best epoch, "
         "SelfMIS variant, thresholds) on validation only.", "",
         f"SelfMIS variant in the main grid (chosen on validation): `{rep['selfmis_variant']}`", "",
         f"Budget (every method, main grid): {rep.get('budget')}", ""]
    return L


def _auroc_tables(rep: dict, methods: list) -> list:
    L = []
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
    return L


def _minus_scratch(rep: dict, methods: list) -> list:
    L = []
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
    return L


def _two_seeds(rep: dict, methods: list) -> list:
    L = []
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
                     f"{dd['all_fold_seed_diffs_sd']:.3f} (every fold-seed pair) |")
    return L


def _variants(rep: dict, methods: list) -> list:
    L = []
    var = rep.get("variants", {})
    best_on_val = rep.get("best_on_validation")
    if len(var) > 2:
        best = max((n for n in var if n != "scratch"), key=lambda n: var[n]["val_mi_auroc_cv_mean"])
        best_on_val = rep["selfmis_variant"] if best == "selfmis" else best
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
        if best_on_val:
            b = "selfmis" if best_on_val == rep["selfmis_variant"] else best_on_val
            L += ["", f"Best SelfMIS variant on validation: `{best_on_val}` (val MI "
                  f"{var[b]['val_mi_auroc_cv_mean']:.3f}, vs {var['selfmis']['val_mi_auroc_cv_mean']:.3f} for the "
                  f"main row `{rep['selfmis_variant']}` and {var['scratch']['val_mi_auroc_cv_mean']:.3f} for scratch)."]
    return L


def _studies(rep: dict, methods: list) -> list:
    L = []
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
    return L


def _latent_gap(rep: dict, methods: list) -> list:
    L = []
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
    return L


def _ablation(rep: dict, methods: list) -> list:
    L = []
    ab = rep.get("ablation")
    if ab:
        L += ["## SelfMIS ablations (validation MI AUROC only; never test)", "",
              f"Splits: {[tuple(x) for x in ab['splits']]} (test fold, seed) -> validation fold = test%10+1.", "",
              "| variant | overrides | " + " | ".join(f"val f{f % 10 + 1} (test f{f})" for f, _ in ab["splits"]) + " | mean |",
              "|---|---|" + "---|" * (len(ab["splits"]) + 1)]
        for n, v in sorted(ab["val"].items(), key=lambda kv: -kv[1]["mean"]):
            L.append(f"| {n} | `{json.dumps(v['overrides'])}` | " + " | ".join(_f(x) for x in v["scores"])
                     + f" | {v['mean']:.3f} |")
        L += ["", "These ran at the trainer's defaults of the time (their epochs are not recorded in report.json), "
              "before the main grid.", ""]
        mb = ab.get("main_budget")
        if mb and mb["val"]:
            L += ["### Second round: validation MI AUROC at the main-grid budget (main grid's teachers)", "",
                  f"Splits: {[tuple(x) for x in mb['splits']]}.", "",
                  "| variant | " + " | ".join(f"val f{f % 10 + 1} (test f{f})" for f, _ in mb["splits"]) + " | mean |",
                  "|---|" + "---|" * (len(mb["splits"]) + 1)]
            for n, v in sorted(mb["val"].items(), key=lambda kv: -kv[1]["mean"]):
                L.append(f"| {n} | " + " | ".join(_f(x) for x in v["scores"]) + f" | {v['mean']:.3f} |")
            L += [""]
    return L


def _figures(rep: dict, methods: list) -> list:
    L = []
    L += ["![ROC MI](roc_MI.png)", "", "![ROC IMI](roc_IMI.png)", "", "![paired studies](studies.png)", ""]
    return L

#: The sections of the accuracy README, in order: each a view of one part of report.json.
SECTIONS = (_intro, _auroc_tables, _minus_scratch, _two_seeds, _variants, _studies, _latent_gap, _ablation, _figures)


def render_markdown(rep, methods) -> str:
    """The README.md of the report, from the report dict (``make_report``'s return value, or report.json)."""
    return "\n".join(line for section in SECTIONS for line in section(rep, methods))

