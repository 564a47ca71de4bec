"""Lead-I 5 s windows cut from PTB-XL records, preprocessed exactly as the gateway does.

Windows are cut with ``selfmis.train.crops.record_windows`` (the evaluator's
own function, which applies
:func:`selfmis.preprocess.preprocess_window` to each window after
cutting it, as the runtime does on the stream), so distillation, calibration
and scoring see the same inputs as ``selfmis evaluate`` and the gateway.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from selfmis.train.crops import SPEC, record_windows
from selfmis.train.data import load_split
from selfmis.train.trainer import split_folds  # the trainer's own fold rule, not a copy

__all__ = ["EVAL_STRIDE_S", "TRAIN_STRIDE_S", "Folds", "Windows", "load_lead1", "windows_of", "record_mean"]

#: Scoring: 5 s windows every 1 s (6 per record), as selfmis.train.evaluate does.
EVAL_STRIDE_S = 1.0
#: Distillation: a window every 0.5 s (11 per record) — cheap augmentation by shifting.
TRAIN_STRIDE_S = 0.5


@dataclass
class Folds:
    """Which strat_folds train, validate and test (the teacher's own split, to avoid leakage).

    ``Folds.from_teacher_config({})`` is the trainer's default split (test 10, validation 1).
    """

    train: tuple
    val: tuple
    test: tuple

    @classmethod
    def from_teacher_config(cls, cfg: dict) -> "Folds":
        test = int(cfg.get("test_fold", 10))
        val, train = split_folds(test, cfg.get("val_fold"), cfg.get("train_folds"))
        return cls(tuple(train), (val,), (test,))

    def to_dict(self) -> dict:
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}


@dataclass
class Windows:
    X: np.ndarray           # (n_records * k, W) float32, preprocessed
    record: np.ndarray      # (n_records * k,) index of the record each window came from
    Y: np.ndarray           # (n_records, tasks) record labels
    ecg_ids: np.ndarray     # (n_records,)
    tasks: tuple
    stride_s: float

    @property
    def window_labels(self) -> np.ndarray:
        return self.Y[self.record]

    @property
    def n_records(self) -> int:
        return len(self.Y)


def load_lead1(folds, data_root=None, progress: bool = False):
    """Raw Lead-I records of ``folds`` (a ``selfmis.train.data.Dataset``, X (n, 1, 1000) mV)."""
    return load_split(data_root, folds=list(folds), leads=("I",), progress=progress)


def windows_of(ds, stride_s: float = EVAL_STRIDE_S, limit: int | None = None) -> Windows:
    """Preprocessed 5 s windows of every record of ``ds`` (record order kept)."""
    X, Y, ids = np.asarray(ds.X), np.asarray(ds.Y), np.asarray(ds.ecg_ids)
    if limit is not None:
        X, Y, ids = X[:limit], Y[:limit], ids[:limit]
    win = record_windows(X[:, 0], SPEC.window_s, stride_s)  # (n, k, 1, W)
    n, k = win.shape[:2]
    return Windows(X=np.ascontiguousarray(win.reshape(n * k, -1), dtype=np.float32),
                   record=np.repeat(np.arange(n), k), Y=Y, ecg_ids=ids, tasks=tuple(ds.tasks),
                   stride_s=stride_s)


def record_mean(window_logits: np.ndarray, record: np.ndarray, n_records: int) -> np.ndarray:
    """Mean logit over each record's windows -> (n_records, tasks), as the evaluator scores records."""
    out = np.zeros((n_records, window_logits.shape[1]), np.float64)
    np.add.at(out, record, window_logits)
    return out / np.maximum(np.bincount(record, minlength=n_records), 1)[:, None]
