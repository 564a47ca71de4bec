"""``selfmis calibrate``: fit calibration and operating points for an existing bundle and rewrite its card.

The model file is not touched (its sha256 stays the same); validation and test
folds are the ones the card names (``training.folds``), scored through the
gateway's own interpreter, 5 s windows every 1 s, mean logit per record::

    selfmis calibrate --model edge_runtime/models/default            # method per label chosen on validation
    selfmis calibrate --model edge_runtime/models/default --method platt
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from selfmis.bundle import CALIBRATION_METHODS, KERNEL_MODES

__all__ = ["main", "bundle_record_logits", "calibrate_bundle", "interpreter_record"]


def bundle_record_logits(bundle, folds, data=None, num_threads: int = 1, kernels: str | None = None):
    """(record logits (n, labels), labels Y (n, labels), ecg_ids) of ``folds`` through the bundle
    (the interpreter's kernels: ``kernels``, else as the runtime chooses them)."""
    from .predict import tflite_predict
    from .windows import load_lead1, record_mean, windows_of

    ds = load_lead1(folds, data)
    w = windows_of(ds)
    z = record_mean(tflite_predict(bundle, num_threads=num_threads, kernels=kernels)(w.X), w.record, w.n_records)
    return z, np.asarray(ds.Y), np.asarray(ds.ecg_ids)


def interpreter_record(model) -> dict:
    """What ``metrics.interpreter`` says about the interpreter a card's thresholds were validated with."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    try:
        backend = f"{model.backend} {version(model.backend)}"
    except PackageNotFoundError:
        backend = model.backend
    return {"backend": backend, "kernels": model.kernels, "machine": platform.machine(),
            "note": "the calibration and operating points (metrics.calibration, metrics.operating_points) were "
                    "fitted and measured with these kernels (card 'kernels'); the runtime runs them unless "
                    "SELFMIS_TFLITE_KERNELS says otherwise. "
                    "reference: the same int8 outputs on every CPU (x86, arm64; benchmarks/results/pi/)"}


def calibrate_bundle(bundle_dir, data=None, n_boot: int = 1000, seed: int = 0, out=None, method: str = "auto",
                     kernels: str | None = None):
    """Fit on the card's validation folds, report on its test folds, write the card (model unchanged):
    calibration, operating points, and the legacy uncalibrated Youden ``thresholds`` (same labels).

    ``method``: platt, temperature, isotonic, or auto (per label, chosen by cross-fitting inside
    validation; see :mod:`selfmis.quantize.calibrate`). ``kernels``: the interpreter kernels scored
    with (None: $SELFMIS_TFLITE_KERNELS, else the card's); the card records them (``kernels``)."""
    from dataclasses import replace

    from selfmis.bundle import load_bundle, write_bundle
    from selfmis.edge_runtime.interpreter import TFLiteModel
    from selfmis.train.evaluate import choose_threshold

    from .calibrate import calibrate_scores, label_prevalence, with_calibration
    from selfmis.train.data import resolve_data_root

    b = load_bundle(bundle_dir)
    folds = b.card.training.get("folds") or {"val": [1], "test": [10]}
    model = TFLiteModel(b, kernels=kernels)  # the kernels chosen once, for both splits and the card
    zv, yv, _ = bundle_record_logits(b, folds["val"], data, kernels=model.kernels)
    zt, yt, _ = bundle_record_logits(b, folds["test"], data, kernels=model.kernels)
    res = calibrate_scores(zv, yv, zt, yt, b.card.labels, label_prevalence(data, b.card.labels), n_boot, seed,
                           describe={"data": resolve_data_root(data).name, "fit_split": f"strat_fold {list(folds['val'])}",
                                     "test_split": f"strat_fold {list(folds['test'])}", "lead": b.card.lead,
                                     "fs": b.card.spec.fs, "seed": seed,
                                     "scoring": "record = mean logit over 5 s windows every 1 s"},
                           method=method)
    card = with_calibration(b.card, res)
    # the legacy uncalibrated Youden thresholds (older runtimes read them) from the same validation logits
    legacy = {t: float(1.0 / (1.0 + np.exp(-choose_threshold(yv[:, j], zv[:, j]))))
              for j, t in enumerate(b.card.labels) if t in b.card.thresholds}
    card = replace(card, kernels=model.kernels, thresholds=legacy,
                   metrics={**card.metrics, "interpreter": interpreter_record(model)})
    target = Path(out) if out is not None else b.directory
    return write_bundle(target, b.model_path, card)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="selfmis calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="bundle directory (its card is rewritten)")
    p.add_argument("--out", type=Path, default=None, help="write the bundle here instead (model copied)")
    p.add_argument("--data", default=None, help="PTB-XL folder (default: $SELFMIS_PTBXL or the shared subset)")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--method", default="auto", choices=("auto",) + CALIBRATION_METHODS,
                   help="calibration per label (default auto: the lowest cross-fitted log loss inside validation)")
    p.add_argument("--kernels", default=None, choices=KERNEL_MODES,
                   help="interpreter kernels to score with, recorded in the card as the ones its thresholds were "
                        "validated with (default: $SELFMIS_TFLITE_KERNELS, else the card's; reference: the same "
                        "int8 outputs on every CPU)")
    a = p.parse_args(argv)
    from selfmis.bundle import BundleError

    try:
        b = calibrate_bundle(a.model, a.data, a.n_boot, a.seed, a.out, a.method, a.kernels)
    except (BundleError, OSError, ValueError) as exc:
        print(f"selfmis calibrate: {exc}", file=sys.stderr)
        return 1
    c = b.card
    print(json.dumps({"bundle": str(b.directory), "sha256": c.sha256, "kernels": c.kernels,
                      "calibration": {k: v["method"] for k, v in c.calibration.items()},
                      "operating_points": {k: v["thresholds"] for k, v in c.operating_points.items()},
                      "ece_before_after_test": {k: [round(v["ece_before"], 4), round(v["ece_after"], 4)]
                              for k, v in c.metrics["calibration"]["per_label"].items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
