"""A training run's configuration: the methods, every option with its default, the fold rule.

``resolve_config`` is the one place a configuration is checked; ``same_run`` decides whether a
saved stage belongs to this configuration (resume) or to another one (start afresh).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)

METHODS = ("selfmis", "scratch", "simclr", "generative", "twelve_lead", "random")

DEFAULTS = dict(
    method="selfmis", data=None, test_fold=10, val_fold=None, train_folds=None, lead="I", seed=0,
    max_records=None,
    # where it runs: device auto|cpu|cuda|cuda:N|mps; bf16 autocast on CUDA ("off" to disable);
    # threads 0 = the cores available (shared among the ranks of a node); workers -1 = batch
    # preparation in the main process on CPU, in min(4, cores) DataLoader workers on CUDA
    device="auto", amp="on", threads=0, workers=-1, tensorboard="",
    # model
    widths=[32, 64, 96, 128], depth=1, kernel=7,
    # optimisation (one budget for every single-lead method)
    batch_size=64, lr=3e-3, weight_decay=1e-2, epochs=20, pretrain_epochs=15,
    # teacher (12-lead)
    teacher="", teacher_epochs=20, teacher_tasks="all",
    # extra SCP statements learnt through an auxiliary head ("none" | "statements"): a richer
    # teacher embedding for SelfMIS, and the matching control for the single-lead baselines
    aux_tasks="none", aux_min_positives=10,
    # label-scarce study: only this fraction of the training records keeps its labels (the same
    # records for every method and split: chosen by a hash of the ecg_id); SelfMIS still aligns
    # every training record, the other methods train on the labelled ones only
    label_fraction=1.0,
    # data-scaling study: only the training records of this fraction of the training *patients*
    # (chosen by a hash of the patient_id: nested across fractions, the same for every method)
    patient_fraction=1.0,
    # SelfMIS
    schedule="joint", crop_min_s=2.5, crop_max_s=10.0, crops_per_record=1,
    align_loss="cosine", align_target="pooled", align_weight=1.0, distill_weight=0.0,
    probe="finetune", cotrain=False, temperature=0.1,
    # "random": a self-supervised 12-lead teacher, learnt from scratch together with the student
    # by the alignment alone (CLIP-like, no labels; needs cotrain and the infonce loss)
    teacher_init="trained",
    # evaluation
    window_s=5.0, stride_s=1.0, n_boot=1000,
    out="runs/default", resume=True, progress=True,
)

#: keys that may change between a run and its resumption
RESUME_FREE = {"out", "resume", "progress", "threads", "n_boot", "data", "device", "amp", "workers", "tensorboard"}


def split_folds(test_fold: int, val_fold=None, train_folds=None) -> tuple:
    """(val_fold, train_folds) for a test fold. CV convention: validation is the next fold
    (10 -> 1), training is every other fold; either can be given explicitly."""
    test_fold = int(test_fold)
    val_fold = test_fold % 10 + 1 if val_fold is None else int(val_fold)
    if train_folds is None:
        train_folds = [f for f in range(1, 11) if f not in (test_fold, val_fold)]
    return val_fold, [int(f) for f in train_folds]


def resolve_config(config: dict) -> dict:
    """``DEFAULTS`` updated with ``config`` (``None`` values keep the default), checked, with the
    derived keys (``val_fold``, ``train_folds``, ``input``).

    Raises
    ------
    ValueError
        An unknown key, an unknown method, or options that do not go together.
    """
    cfg = dict(DEFAULTS)
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}")
    cfg.update({k: v for k, v in config.items() if v is not None})
    if cfg["method"] not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {cfg['method']!r}")
    cfg["val_fold"], cfg["train_folds"] = split_folds(cfg["test_fold"], cfg["val_fold"], cfg["train_folds"])
    _check_teacher_init(cfg)
    if cfg["amp"] not in ("on", "off"):
        raise ValueError(f"amp must be 'on' or 'off', not {cfg['amp']!r}")
    if cfg["aux_tasks"] not in ("none", "statements"):
        raise ValueError(f"aux_tasks must be 'none' or 'statements', not {cfg['aux_tasks']!r}")
    if cfg["aux_tasks"] != "none" and cfg["method"] not in ("twelve_lead", "scratch"):
        raise ValueError("aux_tasks applies to the twelve_lead teacher and the scratch control only")
    cfg["input"] = "12lead" if cfg["method"] == "twelve_lead" else "lead1"
    return cfg


def _check_teacher_init(cfg: dict) -> None:
    if cfg["teacher_init"] not in ("trained", "random"):
        raise ValueError(f"teacher_init must be 'trained' or 'random', not {cfg['teacher_init']!r}")
    if cfg["teacher_init"] == "random" and not (cfg["cotrain"] and cfg["align_loss"] == "infonce"):
        raise ValueError("teacher_init=random (self-supervised teacher) needs cotrain=True and align_loss=infonce: "
                         "a frozen random teacher or a cosine pull onto a moving one collapses")
    if cfg["teacher_init"] == "random" and cfg["distill_weight"]:
        raise ValueError("teacher_init=random has no labelled teacher logits to distil (distill_weight=0)")


def same_run(saved: dict, cfg: dict) -> bool:
    """Resume only a run of the same configuration; otherwise start the stage afresh."""
    diff = sorted(k for k in set(saved) | set(cfg)
                  if k not in RESUME_FREE and saved.get(k, DEFAULTS.get(k)) != cfg.get(k, DEFAULTS.get(k)))
    if diff:
        log.warning("not resuming from a run with another configuration (differs in %s)", diff)
    return not diff
