"""The experiment grid: which runs exist, with which trainer options, in which folder.

Every run of the accuracy report lives in ``run_dir(root, fold, seed, name)``; that function is the
only place that knows the folder layout (the scheduler, the statistics and the report all find runs
through it). A run is finished when its ``metrics.json`` exists.

Splits are ``(test fold, seed)``: validation fold ``test % 10 + 1``, training on the other 8
(``selfmis.train.trainer.split_folds``).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

__all__ = ["BASELINES", "ABLATIONS", "SCARCE_FRACTION", "SCRATCH_AUX", "CROSSFIT_VARIANTS", "EXTRA_VARIANTS",
           "ABLATION_SPLITS", "ABLATION_MAIN_SPLITS", "MAIN_SPLITS", "CV_SEED1_SPLITS", "CV_SPLITS", "CV_FOLDS",
           "STUDIES", "run_dir", "Job", "overrides_to_args", "grid", "crossfit_teachers", "rich_jobs",
           "scarce_jobs"]

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
#: the test folds of one complete cross-validation
CV_FOLDS = range(1, 11)

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


def run_dir(root: Path, fold: int, seed: int, name: str | None = None) -> Path:
    """The folder of run ``name`` on split (test ``fold``, ``seed``); without ``name``, the split's folder."""
    d = Path(root) / f"f{fold:02d}_s{seed}"
    return d if name is None else d / name


def overrides_to_args(d: dict) -> list:
    args = []
    for k, v in d.items():
        if k == "crossfit":  # a grid option (which teachers), not a trainer option
            continue
        args += ["--" + k.replace("_", "-")] + ([str(x) for x in v] if isinstance(v, list) else [str(v)])
    return args


class Job:
    """One training run: ``selfmis.train.cli`` with the grid's options, writing into ``out``."""

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

    @property
    def own_teacher(self) -> bool:
        """The teacherMI ablation trains its own teacher: it waits for no other job."""
        return self.extra.get("teacher_tasks") == "MI"

    def busy(self, stale_s: float = 120.0) -> bool:
        """Not done but written to recently: another process is training it."""
        files = [f for f in self.out.glob("*") if f.name != "train.log"] if self.out.is_dir() else []
        return not self.done and bool(files) and time.time() - max(f.stat().st_mtime for f in files) < stale_s

    def cmd(self, common: dict):
        c = dict(common, method=self.method, test_fold=self.fold, seed=self.seed, out=str(self.out))
        c.update(self.extra)
        if self.needs:
            if self.own_teacher:
                c.pop("teacher", None)
            else:
                c["teacher"] = ",".join(str(n.out / "model.pt") for n in self.needs)
        return [sys.executable, "-m", "selfmis.train.cli"] + overrides_to_args(c)


def grid(root: Path, splits, selfmis_variants: dict, baselines=BASELINES, extra_variants=None, extra_splits=()):
    """Jobs in priority order: every method on each split (teacher first), then extra SelfMIS
    variants on ``extra_splits`` only (they run last, when the budget allows)."""
    jobs, late = [], []
    for fold, seed in splits:
        teacher = Job(run_dir(root, fold, seed, "twelve_lead"), "twelve_lead", fold, seed)
        if "twelve_lead" in baselines:
            jobs.append(teacher)
        for m in baselines:
            if m != "twelve_lead":
                job = Job(run_dir(root, fold, seed, m), m, fold, seed, needs=teacher if m == "generative" else None)
                # the costly secondary baselines run after SelfMIS/scratch are done on every split
                (late if m in ("simclr", "generative") else jobs).append(job)
        for name, ov in selfmis_variants.items():
            needs = teacher
            if ov.get("crossfit"):
                needs = crossfit_teachers(jobs, root, fold, seed, ov["crossfit"] == "rich")
            elif ov.get("teacher_init") == "random":
                needs = None  # learns its own teacher
            jobs.append(Job(run_dir(root, fold, seed, name), "selfmis", fold, seed, ov, needs=needs))
    jobs += late
    for fold, seed in extra_splits:
        teacher = next(j for j in jobs if j.out == run_dir(root, fold, seed, "twelve_lead"))
        for name, ov in (extra_variants or {}).items():
            jobs.append(Job(run_dir(root, fold, seed, name), "selfmis", fold, seed, ov, needs=teacher))
    return jobs


def crossfit_teachers(jobs, root: Path, fold: int, seed: int, rich: bool = False):
    """Two 12-lead teachers of one split, on alternate halves of its training folds (added to
    ``jobs`` once, before the students that need them). ``rich``: they also learn the extra
    SCP statements."""
    from selfmis.train.trainer import split_folds  # lazy: the trainer imports torch
    _, train_folds = split_folds(fold)
    out, tag = [], "twelve_half_rich" if rich else "twelve_half"
    for name, half in ((tag + "_a", train_folds[0::2]), (tag + "_b", train_folds[1::2])):
        d = run_dir(root, fold, seed, name)
        job = next((j for j in jobs if j.out == d), None)
        if job is None:
            job = Job(d, "twelve_lead", fold, seed, dict({"train_folds": half}, **(SCRATCH_AUX if rich else {})))
            jobs.append(job)
        out.append(job)
    return out


def rich_jobs(root: Path):
    """Phase rich: SelfMIS with rich cross-fitted teachers over the CV, and the matching scratch control."""
    jobs = grid(root, CV_SPLITS, {"crossfit_rich_w3": ABLATIONS["crossfit_rich_w3"]}, baselines=[])
    return jobs + [Job(run_dir(root, k, sd, "scratch_aux"), "scratch", k, sd, SCRATCH_AUX) for k, sd in CV_SPLITS]


def scarce_jobs(root: Path, label_fraction: float, seeds):
    """Phase scarce: a fraction of the training labels; SelfMIS aligns every training record.
    Run names carry the fraction in percent (``scratch_lf25``)."""
    lf, tag = {"label_fraction": label_fraction}, f"_lf{round(100 * label_fraction)}"
    jobs = []
    for sd in seeds:
        for k in [10] + list(range(1, 10)):
            teacher = Job(run_dir(root, k, sd, "twelve_lead" + tag), "twelve_lead", k, sd, lf)
            jobs += [teacher, Job(run_dir(root, k, sd, "scratch" + tag), "scratch", k, sd, lf),
                     Job(run_dir(root, k, sd, "joint_w3" + tag), "selfmis", k, sd, dict(ABLATIONS["joint_w3"], **lf),
                         needs=teacher)]
    return jobs
