"""Scoring shared by every model of the project (PyTorch, TFLite, benchmarks).

Per task: AUROC and AUPRC with bootstrap 95% CIs, and F1/sensitivity/specificity at
a threshold chosen on the validation fold (never on test). A task with fewer than
``min_pos`` positives reports that instead of a number.

A single-lead model scores a 10 s record as the mean of its logits over 5 s
windows taken every 1 s: :func:`score_records` takes any ``predict_fn`` over
preprocessed Lead-I windows ``(N, 1, 500) float32 -> (N, T) logits``, so a TFLite
interpreter plugs in the same way as a torch module (:func:`torch_predict_fn`).

The CLI ``selfmis evaluate`` (checkpoints and TFLite bundles) is :mod:`selfmis.quantize.evaluate_cli`.
"""
from __future__ import annotations

import numpy as np

from selfmis.preprocess import preprocess_window
from selfmis.train.crops import record_windows, SPEC
from selfmis.train.data import DEFAULT_TASKS, LEADS, load_split

__all__ = [
    "auroc", "auprc", "bootstrap_ci", "choose_threshold", "threshold_metrics", "score_task",
    "score_predictions", "record_logits", "score_records", "torch_predict_fn", "frechet_distance",
    "predict_records", "format_task", "evaluate_checkpoint", "MIN_POSITIVES",
]

MIN_POSITIVES = 5


# --------------------------------------------------------------------------- metrics

def auroc(y, s) -> float:
    """Area under the ROC curve (scikit-learn's ``roc_auc_score``: ties count one half, the Mann-Whitney U);
    NaN when ``y`` holds one class only."""
    from sklearn.metrics import roc_auc_score

    y, s = np.asarray(y).astype(bool), np.asarray(s, dtype=np.float64)
    if y.all() or not y.any():
        return float("nan")
    return float(roc_auc_score(y, s))


def auprc(y, s) -> float:
    """Average precision (scikit-learn's ``average_precision_score``: step-wise area under precision-recall,
    tied scores one threshold); NaN without positives."""
    from sklearn.metrics import average_precision_score

    y, s = np.asarray(y).astype(bool), np.asarray(s, dtype=np.float64)
    if not y.any():
        return float("nan")
    return float(average_precision_score(y, s))


def bootstrap_ci(y, s, metric=auroc, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05):
    """Percentile bootstrap (resampling records) -> (low, high). Resamples with one class are redrawn."""
    y, s = np.asarray(y), np.asarray(s)
    rng = np.random.default_rng(seed)
    vals, tries = [], 0
    while len(vals) < n_boot and tries < 20 * n_boot:
        tries += 1
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        vals.append(metric(y[i], s[i]))
    if not vals:
        return float("nan"), float("nan")
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def choose_threshold(y_val, s_val, rule: str = "youden") -> float:
    """Threshold on validation scores: Youden's J (sens + spec - 1) or max F1."""
    y, s = np.asarray(y_val).astype(bool), np.asarray(s_val, dtype=np.float64)
    cands = np.unique(s)
    if len(cands) == 0 or y.all() or (~y).all():
        return 0.0
    best, best_t = -np.inf, float(cands[0])
    for t in cands:
        m = threshold_metrics(y, s, t)
        v = m["sensitivity"] + m["specificity"] - 1 if rule == "youden" else m["f1"]
        if v > best:
            best, best_t = v, float(t)
    return best_t


def threshold_metrics(y, s, t) -> dict:
    y, p = np.asarray(y).astype(bool), np.asarray(s) >= t
    tp, fp, fn, tn = int((p & y).sum()), int((p & ~y).sum()), int((~p & y).sum()), int((~p & ~y).sum())
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    prec = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * prec * sens / (prec + sens) if (prec + sens) and not np.isnan(sens) else 0.0
    return {"threshold": float(t), "sensitivity": sens, "specificity": spec, "precision": prec, "f1": f1,
            "tp": tp, "fp": fp, "fn": fn, "tn": tn}


def score_task(y, s, y_val=None, s_val=None, threshold=None, n_boot: int = 1000, seed: int = 0,
               min_pos: int = MIN_POSITIVES) -> dict:
    """All numbers for one binary task. ``threshold`` (e.g. stored at training time) wins over val data."""
    y = np.asarray(y).astype(bool)
    out = {"n": int(len(y)), "n_positives": int(y.sum())}
    if y.sum() < min_pos or (~y).sum() < min_pos:
        out["status"] = f"too few positives/negatives (< {min_pos}): not scored"
        return out
    out["status"] = "ok"
    out["auroc"], out["auroc_ci"] = auroc(y, s), list(bootstrap_ci(y, s, auroc, n_boot, seed))
    out["auprc"], out["auprc_ci"] = auprc(y, s), list(bootstrap_ci(y, s, auprc, n_boot, seed))
    out["prevalence"] = float(y.mean())
    if threshold is None and y_val is not None and np.asarray(y_val).sum() > 0:
        threshold, out["threshold_source"] = choose_threshold(y_val, s_val), "validation (Youden)"
    elif threshold is not None:
        out["threshold_source"] = "given (chosen on validation at training time)"
    if threshold is not None:
        out.update({k: v for k, v in threshold_metrics(y, s, threshold).items()})
    return out


def score_predictions(scores, Y, tasks=DEFAULT_TASKS, scores_val=None, Y_val=None, thresholds=None,
                      n_boot: int = 1000, seed: int = 0, min_pos: int = MIN_POSITIVES) -> dict:
    """Per-task scores from record-level logits ``scores (n, T)`` and labels ``Y (n, T)``.

    Adds ``MI_vs_NORM``: records that are MI or NORM only, scored by the MI logit.
    ``thresholds`` maps task -> threshold; otherwise they are chosen on ``scores_val``.
    """
    scores, Y = np.asarray(scores, dtype=np.float64), np.asarray(Y)
    tasks = list(tasks)
    thresholds = thresholds or {}
    out = {}
    for j, t in enumerate(tasks):
        yv = None if Y_val is None else Y_val[:, j]
        sv = None if scores_val is None else scores_val[:, j]
        out[t] = score_task(Y[:, j], scores[:, j], yv, sv, thresholds.get(t), n_boot, seed, min_pos)
    if "MI" in tasks and "NORM" in tasks:
        mi, no = tasks.index("MI"), tasks.index("NORM")

        def subset(Yx):
            return (Yx[:, mi] > 0) | ((Yx[:, no] > 0) & (Yx[:, mi] == 0))
        k = subset(Y)
        kv = subset(Y_val) if Y_val is not None else None
        out["MI_vs_NORM"] = score_task(
            Y[k, mi], scores[k, mi], None if kv is None else Y_val[kv, mi],
            None if kv is None else scores_val[kv, mi], thresholds.get("MI_vs_NORM"), n_boot, seed, min_pos)
    return out


# --------------------------------------------------------------------------- predictions

def torch_predict_fn(model, batch_size: int = 512, embed: bool = False):
    """predict_fn for a torch module: (N, leads, W) preprocessed -> (N, T) logits (or embeddings)."""
    import torch

    model.eval()
    device = next(model.parameters()).device  # wherever the model lives (CPU, CUDA, MPS)

    def predict(x):
        outs = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                xb = torch.as_tensor(np.ascontiguousarray(x[i:i + batch_size]), dtype=torch.float32).to(device)
                outs.append((model.aligned_embed(xb) if embed else model(xb)).float().cpu().numpy())
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)
    return predict


def record_logits(predict_fn, X_lead, window_s: float = SPEC.window_s, stride_s: float = 1.0) -> np.ndarray:
    """Raw single-lead 100 Hz records (n, samples) -> mean window logits (n, T)."""
    win = record_windows(X_lead, window_s, stride_s)  # (n, k, 1, W)
    n, k = win.shape[:2]
    out = np.asarray(predict_fn(win.reshape(n * k, 1, -1)), dtype=np.float64)
    out = out.reshape(n, k, -1) if out.ndim == 2 else out.reshape(n, k, 1)
    return out.mean(1)


def predict_records(model, config: dict, X_raw: np.ndarray, leads=LEADS, embed: bool = False) -> np.ndarray:
    """Record-level logits of a trained model on raw 100 Hz records (n, 12, samples)."""
    fn = torch_predict_fn(model, embed=embed)
    if config.get("input") == "12lead":  # the 12-lead model sees the whole record
        return fn(preprocess_window(X_raw, SPEC))
    lead = leads.index(config.get("lead", "I"))
    return record_logits(fn, X_raw[:, lead], config.get("window_s", SPEC.window_s), config.get("stride_s", 1.0))


def score_records(predict_fn, X_lead, Y, X_lead_val=None, Y_val=None, tasks=DEFAULT_TASKS,
                  thresholds=None, n_boot: int = 1000, seed: int = 0, window_s: float = SPEC.window_s,
                  stride_s: float = 1.0, min_pos: int = MIN_POSITIVES) -> dict:
    """Score any single-lead predictor on raw 100 Hz records the way the gateway decides.

    ``predict_fn((N, 1, W) preprocessed float32) -> (N, len(tasks))`` logits or scores;
    ``X_lead`` (n, samples) raw records of the lead the model uses (any amplitude scale);
    thresholds are chosen on ``X_lead_val``/``Y_val`` unless given.
    Returns {"tasks": {task: {...}}, "record_scores": (n, T) array}.
    """
    s = record_logits(predict_fn, X_lead, window_s, stride_s)
    sv = record_logits(predict_fn, X_lead_val, window_s, stride_s) if X_lead_val is not None else None
    res = score_predictions(s, Y, tasks, sv, Y_val, thresholds, n_boot, seed, min_pos)
    return {"tasks": res, "record_scores": s}


def frechet_distance(A, B) -> float:
    """Fréchet distance between Gaussians fitted to two embedding sets (n, D) (the latent gap)."""
    from scipy import linalg

    A, B = np.asarray(A, np.float64), np.asarray(B, np.float64)
    mu1, mu2 = A.mean(0), B.mean(0)
    c1, c2 = np.cov(A, rowvar=False), np.cov(B, rowvar=False)
    covmean, _ = linalg.sqrtm(c1 @ c2, disp=False)
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


# --------------------------------------------------------------------------- CLI

def format_task(t: dict) -> str:
    """One line per task, as `selfmis evaluate` prints it."""
    if t.get("status") != "ok":
        return f"n+={t['n_positives']:4d}  {t['status']}"
    s = (f"n+={t['n_positives']:4d}  AUROC {t['auroc']:.3f} [{t['auroc_ci'][0]:.3f}, {t['auroc_ci'][1]:.3f}]"
         f"  AUPRC {t['auprc']:.3f} [{t['auprc_ci'][0]:.3f}, {t['auprc_ci'][1]:.3f}]")
    if "f1" in t:
        s += f"  F1 {t['f1']:.3f} sens {t['sensitivity']:.3f} spec {t['specificity']:.3f}"
    return s


def evaluate_checkpoint(checkpoint, data=None, split="test", folds=None, val_folds=None, fs=100,
                        n_boot=1000, seed=0, progress=False) -> dict:
    """Load a checkpoint, score it on a PTB-XL folder (100 or 500 Hz records, resampled to 100)."""
    from selfmis.train.checkpoint import load_model  # torch: only the training side pays for it
    model, config = load_model(checkpoint)
    fs_out = None if fs == SPEC.fs else int(SPEC.fs)
    # the checkpoint's own split (test fold k, val fold k%10+1, train = the rest) unless folds are given
    test_folds = folds or ({"test": [config.get("test_fold", 10)], "val": [config.get("val_fold", 1)],
                            "train": config.get("train_folds")}.get(split))
    ds = load_split(data, split=split, folds=test_folds, fs=fs, fs_out=fs_out, progress=progress)
    if len(ds) == 0:
        raise SystemExit(f"no records in split {split!r} of {data}")
    thresholds = config.get("_extra", {}).get("thresholds")
    val = None
    if not thresholds:  # none stored: choose them on the validation fold
        vf = val_folds or [config.get("val_fold", 1)]
        val = load_split(data, folds=vf, fs=fs, fs_out=fs_out, progress=progress)
    s = predict_records(model, config, ds.X)
    sv = predict_records(model, config, val.X) if val is not None and len(val) else None
    res = score_predictions(s, ds.Y, ds.tasks, sv, None if sv is None else val.Y, thresholds, n_boot, seed)
    return {"checkpoint": str(checkpoint), "method": config.get("method"), "input": config.get("input"),
            "lead": config.get("lead"), "data": str(data), "split": split, "fs": fs,
            "n_records": int(len(ds)), "skipped_records": len(ds.skipped), "tasks": res}
