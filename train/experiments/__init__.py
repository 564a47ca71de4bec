"""The accuracy report in one command: ``python -m selfmis.train.experiments --phase all``.

- ``grid``: the runs (methods, SelfMIS variants, splits) and ``run_dir``, the one folder layout
- ``runner``: ``run_jobs``, the subprocess scheduler (teachers before students, resumable)
- ``stats``: AUROC per method, cross-validation summaries, paired bootstrap differences
- ``report``: ``make_report`` -> report.json, README.md, ROC and forest plots
- ``cli``: ``main(argv)``, the phases
"""
from selfmis.train.experiments.cli import main
from selfmis.train.experiments.grid import ABLATIONS, BASELINES, Job, grid, run_dir
from selfmis.train.experiments.report import make_report
from selfmis.train.experiments.runner import run_jobs
from selfmis.train.experiments.stats import paired_bootstrap_diff, paired_cv

__all__ = ["main", "ABLATIONS", "BASELINES", "Job", "grid", "run_dir", "run_jobs", "make_report",
           "paired_bootstrap_diff", "paired_cv"]
