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
import sys
from pathlib import Path

from selfmis.train.experiments.grid import (ABLATION_MAIN_SPLITS, ABLATION_SPLITS, ABLATIONS, CROSSFIT_VARIANTS,
                                            CV_SEED1_SPLITS, CV_SPLITS, EXTRA_VARIANTS, MAIN_SPLITS, SCARCE_FRACTION,
                                            grid, rich_jobs, scarce_jobs)
from selfmis.train.experiments.report import make_report
from selfmis.train.experiments.runner import run_jobs
from selfmis.train.experiments.stats import ablation_results

__all__ = ["main", "PHASES"]

PHASES = ["ablate", "main", "ablate-main", "cv-seed1", "crossfit", "rich", "scarce", "crossfit-seeds",
          "baselines-seed1", "clip", "report", "all"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="selfmis-experiments", description=__doc__.split("\n\n")[0])
    p.add_argument("--phase", default="all", choices=PHASES)
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
        run_jobs(rich_jobs(root), main_common, a.workers)
    if a.phase == "scarce":  # a quarter of the training labels; SelfMIS aligns every training record
        run_jobs(scarce_jobs(root, a.label_fraction, a.seeds), main_common, a.workers)
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
        make_report(root, results, variant, ab, command,
                    budget=dict(epochs=a.epochs, pretrain_epochs=a.pretrain_epochs, batch_size=64,
                                threads=1, model="ResNet1d widths 32-64-96-128, depth 1 (0.39M params)"))
        print((results / "README.md").read_text())
    return 0
