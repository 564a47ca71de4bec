"""A run's records: train/validation/test by fold, the label- and patient-fraction subsets, and
the auxiliary SCP statements (numpy only)."""
from __future__ import annotations

import logging
import zlib

import numpy as np

from selfmis.train.data import DEFAULT_TASKS, PTBXL, load_split

log = logging.getLogger(__name__)


def load_data(cfg):
    """Train/val/test as raw 100 Hz arrays (one cached load of all folds, then split by fold)."""
    ds = load_split(cfg["data"], split="all", progress=cfg["progress"])
    out = {}
    for name, folds in (("train", cfg["train_folds"]), ("val", [cfg["val_fold"]]), ("test", [cfg["test_fold"]])):
        idx = np.flatnonzero(np.isin(ds.folds, folds))
        if cfg["max_records"]:
            idx = idx[: cfg["max_records"]]
        if name == "train" and cfg["patient_fraction"] < 1:
            idx = idx[kept_patients(ds.patient_ids[idx], cfg["patient_fraction"])]
        out[name] = dict(X=np.asarray(ds.X[idx]), Y=ds.Y[idx], ids=ds.ecg_ids[idx], folds=ds.folds[idx])
    out["skipped_at_load"] = {int(k): v for k, v in ds.skipped.items()}
    out["train"]["labeled"] = labeled_records(out["train"]["ids"], cfg["label_fraction"])
    if cfg["aux_tasks"] == "statements":
        add_statement_labels(out, cfg)
    return out


def labeled_records(ids, fraction: float) -> np.ndarray:
    """Which records keep their labels: ``crc32(ecg_id) < fraction`` of the range, so the subset is
    nested across fractions and identical for every method, seed and split."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label_fraction must be in (0, 1], not {fraction}")
    u = np.array([zlib.crc32(f"ecg{int(e)}".encode()) / 2 ** 32 for e in ids])
    return u < fraction


def kept_patients(patient_ids, fraction: float) -> np.ndarray:
    """Records whose patient is in the first ``fraction`` of the hash range: ``crc32(patient_id)``,
    so 25% is inside 50% is inside 100% (nested), patient-disjoint from validation and test
    (folds are), and the same for every method and seed."""
    if not 0 < fraction <= 1:
        raise ValueError(f"patient_fraction must be in (0, 1], not {fraction}")
    u = np.array([zlib.crc32(f"patient{int(p)}".encode()) / 2 ** 32 for p in patient_ids])
    return u < fraction


def keep_labeled_only(data):
    """The training split reduced to its labelled records (methods that need a label per record)."""
    lab = data["train"]["labeled"]
    data["train"] = {k: (v[lab] if isinstance(v, np.ndarray) and len(v) == len(lab) else v)
                     for k, v in data["train"].items()}


def add_statement_labels(data, cfg):
    """``data[split]["Yaux"]``: every other SCP statement of ``scp_statements.csv`` (form, rhythm,
    diagnostic) with at least ``aux_min_positives`` positives in the training folds."""
    db = PTBXL(cfg["data"])
    codes = [c for c in db.statements.index if c not in DEFAULT_TASKS]
    Ytr = db.labels(data["train"]["ids"], tasks=codes)
    keep = np.flatnonzero(Ytr.sum(0) >= cfg["aux_min_positives"])
    data["aux_codes"] = [codes[i] for i in keep]
    for name in ("train", "val", "test"):
        data[name]["Yaux"] = db.labels(data[name]["ids"], tasks=codes)[:, keep]
    log.info("auxiliary statements (%d): %s", len(keep), " ".join(data["aux_codes"]))
