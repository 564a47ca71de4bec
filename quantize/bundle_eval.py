"""Score a TFLite bundle on PTB-XL exactly like ``selfmis evaluate`` scores a checkpoint.

For ``selfmis evaluate --model BUNDLE``: the bundle runs through the gateway's
``TFLiteModel`` (:func:`selfmis.quantize.tflite_predict`) and is scored by
``selfmis.train.evaluate.score_records`` (5 s windows every 1 s, mean logit per
record, AUROC/AUPRC with bootstrap CIs). Thresholds come from the card
(probabilities, chosen on validation when the bundle was built) unless
``val_folds`` asks for them to be chosen again.
"""
from __future__ import annotations

import numpy as np

from selfmis.bundle import load_bundle
from selfmis.train.data import LEADS, load_split
from selfmis.train.evaluate import score_records

from .metrics import logit
from .micro import micro_predict
from .predict import tflite_predict

__all__ = ["evaluate_bundle"]


def evaluate_bundle(bundle=None, data=None, split: str = "test", folds=None, val_folds=None, fs: int = 100,
                    n_boot: int = 1000, seed: int = 0, num_threads: int = 1, interpreter: str = "litert") -> dict:
    """Result dict shaped like ``selfmis.train.evaluate.evaluate_checkpoint``'s (``tasks`` per label).

    ``interpreter``: ``litert`` (the gateway's, default) or ``micro`` (TFLite Micro's reference kernels,
    as a microcontroller runs the model; needs the ``micro`` extra)."""

    b = load_bundle(bundle)
    card = b.card
    if card.spec.fs != 100 or card.spec.window_samples != 500:
        raise ValueError(f"{b.directory}: card expects {card.spec.fs} Hz / {card.spec.window_samples} samples; "
                         "selfmis.train.evaluate scores 100 Hz 5 s windows")
    fs_out = None if fs == 100 else 100
    train_folds = card.training.get("folds", {})
    if folds is None:
        folds = {"test": train_folds.get("test", [10]), "val": train_folds.get("val", [1]),
                 "all": list(range(1, 11))}.get(split)
    ds = load_split(data, split=split, folds=folds, fs=fs, fs_out=fs_out, progress=False)
    lead = LEADS.index(card.lead)
    if interpreter not in ("litert", "micro"):
        raise ValueError(f"interpreter must be litert or micro, not {interpreter!r}")
    predict = micro_predict(b) if interpreter == "micro" else tflite_predict(b, num_threads=num_threads)
    val = None
    thresholds = {t: float(logit(p)) for t, p in card.thresholds.items()} if val_folds is None else None
    if val_folds is not None:
        val = load_split(data, folds=list(val_folds), fs=fs, fs_out=fs_out, progress=False)
    res = score_records(predict, ds.X[:, lead], ds.Y, None if val is None else val.X[:, lead],
                        None if val is None else val.Y, tuple(card.labels), thresholds, n_boot, seed)
    return {"model": str(b.model_path), "name": card.name, "lead": card.lead, "data": str(data), "split": split,
            "folds": list(folds) if folds is not None else None, "fs": fs, "n_records": int(len(ds)),
            "skipped_records": len(ds.skipped), "interpreter": interpreter, "tasks": res["tasks"],
            "record_scores": np.asarray(res["record_scores"])}
