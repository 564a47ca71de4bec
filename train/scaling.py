"""Data-scaling curve: does SelfMIS' gain over Lead I from scratch grow or shrink with data?

For every test fold (10-fold CV, validation = next fold, patient-disjoint ``strat_fold``), seed
and fraction of the training *patients* (25/50/100%, nested: ``trainer.kept_patients``), three
runs: the 12-lead model (upper bound and SelfMIS' teacher, trained on the same patients), Lead I
from scratch, and SelfMIS (``joint``, align weight 3: the variant chosen on validation in the
accuracy study). Test scores are pooled over the folds; MI and IMI AUROC per fraction and method
(mean over seeds) with a percentile bootstrap over records, and the paired SelfMIS - scratch
difference with its own bootstrap.

    python -m selfmis.train.scaling --root runs/scaling --workers 2           # the full study
    python -m selfmis.train.scaling --folds 10 1 2 --epochs 6 --label reduced  # a reduced one
    python -m selfmis.train.scaling --report-only
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from selfmis.train.evaluate import auroc

FRACTIONS = (0.25, 0.5, 1.0)
METHODS = {"twelve_lead": dict(method="twelve_lead"), "scratch": dict(method="scratch"),
           "selfmis": dict(method="selfmis", schedule="joint", align_weight=3.0)}
TASKS = {"MI": 0, "IMI": 1}  # columns of DEFAULT_TASKS


def run_dir(root: Path, frac: float, fold: int, seed: int, method: str) -> Path:
    return root / f"p{round(100 * frac):03d}" / f"f{fold:02d}_s{seed}" / method


def run_one(root: Path, frac, fold, seed, method, common: dict, log) -> None:
    out = run_dir(root, frac, fold, seed, method)
    if (out / "metrics.json").is_file():
        return
    cfg = dict(common, **METHODS[method], test_fold=fold, seed=seed, patient_fraction=frac, out=str(out))
    if method == "selfmis":
        cfg["teacher"] = str(run_dir(root, frac, fold, seed, "twelve_lead") / "model.pt")
    out.mkdir(parents=True, exist_ok=True)
    (out / "request.json").write_text(json.dumps(cfg))
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "selfmis.train.cli", "--config", str(out / "request.json")],
                       capture_output=True, text=True)
    status = "ok" if r.returncode == 0 else f"FAILED rc={r.returncode}: {r.stderr[-400:]}"
    log(f"{time.strftime('%H:%M:%S')} p{frac} f{fold} s{seed} {method}: {time.time() - t0:.0f} s {status}")


def run_study(root: Path, folds, seeds, fractions, common: dict, workers: int, log) -> None:
    """One chain per (seed, fold, fraction): the 12-lead teacher, then scratch and SelfMIS;
    ``workers`` chains at once, fold-major so that a study stopped early leaves whole folds."""
    chains = [(fr, f, s) for f in folds for s in seeds for fr in fractions]

    def chain(split):
        for m in METHODS:
            run_one(root, *split, m, common, log)
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(chain, chains))


def complete_folds(root: Path, folds, seeds, fractions) -> list:
    """Folds with every method, fraction and seed finished (the report compares like with like)."""
    return [f for f in folds if all((run_dir(root, fr, f, s, m) / "scores.npz").is_file()
                                    for fr in fractions for s in seeds for m in METHODS)]


def pooled(root: Path, frac, method, folds, seeds):
    """Per seed, the test scores and labels pooled over the folds that finished: {seed: (Y, S)}."""
    out = {}
    for s in seeds:
        Ys, Ss = [], []
        for f in folds:
            d = run_dir(root, frac, f, s, method)
            if (d / "scores.npz").is_file():
                z = np.load(d / "scores.npz")
                Ys.append(z["Y_test"])
                Ss.append(z["test"])
        if Ys:
            out[s] = (np.concatenate(Ys), np.concatenate(Ss))
    return out


def seed_mean_auroc(per_seed: dict, task: int, idx=None) -> float:
    vals = []
    for Y, S in per_seed.values():
        i = slice(None) if idx is None else idx
        vals.append(auroc(Y[i, task], S[i, task]))
    return float(np.mean(vals))


def bootstrap(per_seed_a: dict, per_seed_b: dict | None, task: int, n_boot: int, seed: int = 0):
    """Percentile CI of the seed-mean AUROC (or of a - b on the same records) by resampling records."""
    n = len(next(iter(per_seed_a.values()))[0])
    y = next(iter(per_seed_a.values()))[0][:, task]
    rng, vals = np.random.default_rng(seed), []
    while len(vals) < n_boot:
        i = rng.integers(0, n, n)
        if y[i].min() == y[i].max():
            continue
        v = seed_mean_auroc(per_seed_a, task, i)
        if per_seed_b is not None:
            v -= seed_mean_auroc(per_seed_b, task, i)
        vals.append(v)
    return [float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))]


def report(root: Path, results: Path, folds, seeds, fractions, meta: dict, n_boot: int = 1000) -> dict:
    folds = complete_folds(root, folds, seeds, fractions)
    meta = dict(meta, folds=folds)
    rows = []
    for frac in fractions:
        runs = {m: pooled(root, frac, m, folds, seeds) for m in METHODS}
        common_seeds = sorted(set.intersection(*(set(r) for r in runs.values()))) if all(runs.values()) else []
        if not common_seeds:
            continue
        runs = {m: {s: r[s] for s in common_seeds} for m, r in runs.items()}
        ns = {m: len(next(iter(r.values()))[0]) for m, r in runs.items()}
        if len(set(ns.values())) != 1:  # some fold missing for one method: compare like with like
            continue
        n_train = [json.loads((run_dir(root, frac, f, s, "scratch") / "metrics.json").read_text())["n_train"]
                   for f in folds for s in common_seeds if (run_dir(root, frac, f, s, "scratch") / "metrics.json").is_file()]
        row = {"patient_fraction": frac, "seeds": common_seeds, "n_test_records": ns["scratch"],
               "mean_train_records": float(np.mean(n_train))}
        for t, j in TASKS.items():
            for m in METHODS:
                row[f"{m}_{t}"] = seed_mean_auroc(runs[m], j)
                row[f"{m}_{t}_ci"] = bootstrap(runs[m], None, j, n_boot)
            row[f"diff_{t}"] = row[f"selfmis_{t}"] - row[f"scratch_{t}"]
            row[f"diff_{t}_ci"] = bootstrap(runs["selfmis"], runs["scratch"], j, n_boot)
        rows.append(row)
    rep = dict(meta, rows=rows, data="shared PTB-XL subset, 100 Hz; single-lead = Lead I; test scores pooled over "
               "the test folds; AUROC = mean over seeds; 95% percentile bootstrap over records (1000)")
    results.mkdir(parents=True, exist_ok=True)
    tag = meta.get("label", "")
    stem = "scaling" + (f"_{tag}" if tag else "")
    (results / f"{stem}.json").write_text(json.dumps(rep, indent=1))
    (results / f"{stem}.md").write_text(markdown(rep))
    if rows:
        plot(rep, results / f"{stem}.png")
    return rep


def markdown(rep: dict) -> str:
    L = [f"# Data-scaling curve{' (' + rep['label'] + ')' if rep.get('label') else ''}", "",
         rep["data"] + ".", "", f"Folds (test): {rep['folds']}; seeds {rep['seeds']}; budget {rep['budget']}.",
         f"Command: `{rep['command']}`", ""]
    if rep.get("label"):
        L += [f"**{rep['label'].upper()}**: {rep.get('note', '')}", ""]
    for t in TASKS:
        L += [f"## {t} AUROC", "", "| training patients | train records | 12-lead | Lead I scratch | SelfMIS | "
              "SelfMIS - scratch |", "|---|---|---|---|---|---|"]
        for r in rep["rows"]:
            c = lambda k: f"{r[k]:.3f} [{r[k + '_ci'][0]:.3f}, {r[k + '_ci'][1]:.3f}]"
            L.append(f"| {round(100 * r['patient_fraction'])}% | {r['mean_train_records']:.0f} | "
                     f"{c('twelve_lead_' + t)} | {c('scratch_' + t)} | {c('selfmis_' + t)} | "
                     f"{r['diff_' + t]:+.3f} [{r['diff_' + t + '_ci'][0]:+.3f}, {r['diff_' + t + '_ci'][1]:+.3f}] |")
        L.append("")
    if rep.get("reading"):
        L += ["## Reading", "", rep["reading"], ""]
    return "\n".join(L)


def plot(rep: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = [r["mean_train_records"] for r in rep["rows"]]
    for ax, t in zip(axes, TASKS):
        for m, col in (("twelve_lead", "grey"), ("scratch", "tab:blue"), ("selfmis", "tab:red")):
            y = [r[f"{m}_{t}"] for r in rep["rows"]]
            lo = [r[f"{m}_{t}_ci"][0] for r in rep["rows"]]
            hi = [r[f"{m}_{t}_ci"][1] for r in rep["rows"]]
            ax.plot(x, y, "o-", color=col, label=m)
            ax.fill_between(x, lo, hi, color=col, alpha=0.15)
        ax.set_xscale("log")
        ax.set_xlabel("training records (25/50/100% of training patients)")
        ax.set_ylabel(f"{t} AUROC (test, pooled folds)")
        ax.set_title(t)
        ax.legend()
    fig.suptitle(f"Data scaling on the PTB-XL subset{' (' + rep['label'] + ')' if rep.get('label') else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfmis.train.scaling", description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default="runs/scaling")
    p.add_argument("--results", default="benchmarks/results/training")
    p.add_argument("--folds", type=int, nargs="+", default=list(range(1, 11)))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    p.add_argument("--epochs", type=int, default=12, help="every method's budget (the accuracy study's main grid)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data", default=None)
    p.add_argument("--label", default="", help="e.g. 'reduced': written into the report and file names")
    p.add_argument("--note", default="")
    p.add_argument("--reading", default="", help="the interpretation paragraph for the report")
    p.add_argument("--report-only", action="store_true")
    a = p.parse_args(argv)
    root = Path(a.root)
    common = {"progress": False, "threads": 1, "epochs": a.epochs, "teacher_epochs": a.epochs, "n_boot": 200}
    if a.data:
        common["data"] = a.data
    root.mkdir(parents=True, exist_ok=True)
    logf = open(root / "progress.log", "a")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()
    if not a.report_only:
        run_study(root, a.folds, a.seeds, a.fractions, common, a.workers, log)
    command = "python -m selfmis.train.scaling " + " ".join(argv if argv is not None else sys.argv[1:])
    meta = dict(folds=a.folds, seeds=a.seeds, budget=dict(epochs=a.epochs, batch_size=64, threads=1),
                command=command, label=a.label, note=a.note, reading=a.reading)
    rep = report(root, Path(a.results), a.folds, a.seeds, a.fractions, meta)
    log(f"report: {len(rep['rows'])} fractions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
