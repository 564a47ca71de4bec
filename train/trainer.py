"""SelfMIS training and its baselines: ``train(config) -> result``.

Methods (``config["method"]``; one module each under ``selfmis.train.methods``):

- ``twelve_lead``: 12-lead model on whole records (upper bound; also the SelfMIS teacher).
- ``scratch``: Lead I supervised from scratch on random 5 s crops.
- ``selfmis``: self-alignment of a single-lead student to a 12-lead teacher (``methods.selfmis``).
- ``simclr``: augmentation-invariance contrastive pretraining on Lead I, then the same head.
- ``generative``: Lead I -> 12-lead reconstruction (MSE), then the frozen 12-lead teacher.
- ``random``: random-init frozen encoder + linear probe (floor).

A run: resolve the configuration (``settings``), load the folds (``splits``), run the method's
stages (each one ``loop.run_stage``: resumable, DDP under ``torchrun``), then on rank 0 choose
thresholds on validation, score validation and test, and write ``model.pt`` (``checkpoint``'s
format), ``scores.npz`` and ``metrics.json``. Corrupt records are found once before a stage,
never by skipping a step.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from selfmis.train.checkpoint import save_checkpoint
from selfmis.train.data import DEFAULT_TASKS
from selfmis.train.distributed import setup
from selfmis.train.evaluate import choose_threshold, frechet_distance, predict_records, score_predictions
from selfmis.train.loop import TrainState
from selfmis.train.methods import TRAINERS
from selfmis.train.methods.teachers import crossfit_assignment
from selfmis.train.runlog import RunLog
from selfmis.train.settings import DEFAULTS, METHODS, resolve_config, split_folds
from selfmis.train.splits import keep_labeled_only, kept_patients, labeled_records, load_data
from selfmis.train.validation import single_lead_val_fn

log = logging.getLogger(__name__)

__all__ = ["train", "DEFAULTS", "METHODS", "split_folds", "resolve_config", "load_data", "labeled_records",
           "kept_patients", "crossfit_assignment", "single_lead_val_fn", "TRAINERS"]


def train(config: dict) -> dict:
    """Train one method on one split; write ``out/model.pt``, ``out/metrics.json``, ``out/scores.npz``.

    Parameters
    ----------
    config : dict
        Overrides of ``DEFAULTS`` (``None`` keeps a default).

    Returns
    -------
    dict
        The run: configuration, device, and on rank 0 the validation/test metrics with CIs.
    """
    cfg = resolve_config(config)
    rt = setup(cfg["device"], cfg["amp"], cfg["threads"])
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    if rt.rank == 0:
        (out / "config.json").write_text(json.dumps(cfg, indent=1))
    t0 = time.time()
    data = load_data(cfg)
    state = TrainState(rt, runlog=RunLog(out, cfg["tensorboard"]) if rt.rank == 0 else None)
    if cfg["method"] != "selfmis" or cfg["schedule"] != "joint":
        keep_labeled_only(data)  # (two-stage SelfMIS then aligns the labelled records only)
    state.n_train_labeled = int(data["train"]["labeled"].sum())
    log.info("training records: %d, labelled: %d on %s (world %d, amp %s, %d threads)", len(data["train"]["ids"]),
             state.n_train_labeled, rt.device, rt.world, rt.amp, torch.get_num_threads())
    model = TRAINERS[cfg["method"]](data, cfg, state)
    if state.runlog:
        state.runlog.close()
    # evaluation and the saved files on the CPU: a checkpoint loads anywhere
    model.cpu().eval()
    if state.teacher_model is not None:
        state.teacher_model.cpu().eval()
    result = {"method": cfg["method"], "config": cfg, "world_size": rt.world, "device": str(rt.device),
              "amp_bf16": rt.amp, "threads": torch.get_num_threads()}
    if rt.rank == 0:
        result.update(evaluate_and_save(model, data, cfg, state, out, t0))
        (out / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    if rt.world > 1:
        dist.barrier()
    return result


def evaluate_and_save(model, data, cfg, state: TrainState, out: Path, t0: float) -> dict:
    """Thresholds on validation; ``model.pt`` and ``scores.npz``; validation and test metrics."""
    s_val, s_test = record_scores(model, cfg, data["val"]), record_scores(model, cfg, data["test"])
    thr = choose_thresholds(data["val"]["Y"], s_val)
    extra = {"thresholds": thr, "skipped_at_load": len(data["skipped_at_load"]),
             "skipped_in_training": sorted(state.skipped_in_training), "log": state.log}
    save_checkpoint(out / "model.pt", model, cfg, extra)
    npz = dict(val=s_val, test=s_test, Y_val=data["val"]["Y"], Y_test=data["test"]["Y"],
               ids_val=data["val"]["ids"], ids_test=data["test"]["ids"])
    if state.teacher_model is not None:  # latent gap: single-lead vs 12-lead embeddings, test records
        npz["emb_single"] = record_scores(model, cfg, data["test"], embed=True)
        npz["emb_twelve"] = record_scores(state.teacher_model, dict(cfg, input="12lead"), data["test"], embed=True)
    np.savez(out / "scores.npz", **npz)
    result = {
        "val": score_predictions(s_val, data["val"]["Y"], n_boot=200, seed=cfg["seed"]),
        "test": score_predictions(s_test, data["test"]["Y"], thresholds=thr, n_boot=cfg["n_boot"], seed=cfg["seed"]),
        "skipped_at_load": data["skipped_at_load"], "skipped_in_training": sorted(state.skipped_in_training),
        "seconds": time.time() - t0, "log": state.log, "n_train": len(data["train"]["ids"]), "n_train_labeled": state.n_train_labeled,
    }
    if "emb_single" in npz:
        result["frechet_single_vs_12lead"] = frechet_distance(npz["emb_single"], npz["emb_twelve"])
    return result


def choose_thresholds(Y, scores) -> dict:
    """Per task (with positives) and MI vs NORM: the decision thresholds chosen on validation."""
    thr = {}
    for j, t in enumerate(DEFAULT_TASKS):
        if Y[:, j].sum() > 0:
            thr[t] = choose_threshold(Y[:, j], scores[:, j])
    k = (Y[:, 0] > 0) | (Y[:, -1] > 0)
    thr["MI_vs_NORM"] = choose_threshold(Y[k, 0], scores[k, 0])
    return thr


def record_scores(model, cfg, split, embed=False):
    return predict_records(model, cfg, split["X"], embed=embed)

