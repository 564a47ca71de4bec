"""The 12-lead teacher of SelfMIS and the generative baseline: loaded (checked for leaks), trained
here, or several cross-fitted ones; and its targets (embedding, feature map, logits)."""
from __future__ import annotations

import numpy as np
import torch

from selfmis.train.checkpoint import load_model
from selfmis.train.loop import TrainState
from selfmis.train.methods.supervised import train_twelve_lead
from selfmis.train.splits import keep_labeled_only


def teacher_paths(cfg) -> list:
    t = cfg["teacher"]
    return [p for p in (t.split(",") if isinstance(t, str) else t) if p]


def load_teacher(path, cfg):
    """A frozen 12-lead teacher; refuses one that trained on this run's test or validation fold
    or chose its epoch on the test fold."""
    teacher, tcfg = load_model(path, expect="ResNet1d")
    if teacher.arch["in_leads"] != 12:
        raise ValueError(f"teacher {path} is not a 12-lead model")
    leak = (set(tcfg.get("train_folds") or []) & {cfg["test_fold"], cfg["val_fold"]}) | \
        ({tcfg.get("val_fold")} & {cfg["test_fold"]})
    if leak:
        raise ValueError(f"teacher {path} trained or selected on fold(s) {sorted(leak)}, which this run "
                         f"evaluates on (test {cfg['test_fold']}, validation {cfg['val_fold']})")
    if float(tcfg.get("label_fraction", 1.0)) > cfg["label_fraction"]:
        raise ValueError(f"teacher {path} learnt from {tcfg.get('label_fraction', 1.0)} of the labels; this "
                         f"run keeps only {cfg['label_fraction']} (it would leak the others)")
    if float(tcfg.get("patient_fraction", 1.0)) > cfg["patient_fraction"]:
        raise ValueError(f"teacher {path} learnt from {tcfg.get('patient_fraction', 1.0)} of the training patients; "
                         f"this run keeps only {cfg['patient_fraction']} (it would leak the others)")
    return teacher, set(tcfg.get("train_folds") or [])


def get_teacher(data, cfg, state: TrainState):
    """The given teacher (``cfg["teacher"]``), or one trained here on the labelled records."""
    if teacher_paths(cfg):
        state.teacher_from = teacher_paths(cfg)[0]
        return load_teacher(teacher_paths(cfg)[0], cfg)[0]
    state.teacher_from = "trained here (teacher stage)"
    labeled_only = dict(data)
    keep_labeled_only(labeled_only)  # a teacher learns from labelled records only
    return train_twelve_lead(labeled_only, cfg, state, name="teacher")


def crossfit_assignment(paths, folds, cfg):
    """Cross-fitting: every training record is taught by a teacher that never trained on its fold.

    A teacher trained on the same records it teaches gives targets that are nearly the labels
    (its training-set AUROC is ~1); out-of-fold targets carry what 12 leads *generalise* to.
    Returns the teachers and, per record, the index of its teacher.
    """
    teachers, seen = zip(*(load_teacher(p, cfg) for p in paths))
    assign = np.full(len(folds), -1)
    for i, f in enumerate(folds):
        ok = [k for k, s in enumerate(seen) if f not in s]
        if not ok:
            raise ValueError(f"cross-fitting: every teacher trained on fold {f}; give teachers trained "
                             f"on disjoint halves of the training folds {cfg['train_folds']}")
        assign[i] = ok[i % len(ok)]
    return list(teachers), assign


def teacher_targets(teacher, X12p, device="cpu", batch=256):
    """The frozen teacher's pooled embedding, feature map and logits for every whole record."""
    teacher.to(device).eval()
    emb, maps, logits = [], [], []
    with torch.no_grad():
        for i in range(0, len(X12p), batch):
            f = teacher.features(torch.from_numpy(np.ascontiguousarray(X12p[i:i + batch])).to(device))
            maps.append(f)
            emb.append(f.mean(-1))
            logits.append(teacher.head(f.mean(-1)))
    return torch.cat(emb), torch.cat(maps), torch.cat(logits)
