"""SelfMIS training and its baselines, one readable loop per stage.

Methods (``config["method"]``):

- ``twelve_lead``: 12-lead model on whole records (upper bound; also the SelfMIS teacher).
- ``scratch``: Lead I supervised from scratch on random 5 s crops.
- ``selfmis``: self-alignment. A frozen 12-lead teacher sees the whole record; the
  single-lead student sees a *self-cut* window of the same record (random length
  2.5-10 s, random position, no hand-made augmentation) and its (projected) embedding
  is pulled onto the teacher's. ``schedule="two_stage"``: align, then linear probe or
  fine-tune; ``schedule="joint"``: supervised loss + alignment as a regulariser (+ optional
  logit distillation) from the first step.
- ``simclr``: augmentation-invariance contrastive pretraining on Lead I, then the same head.
- ``generative``: Lead I -> 12-lead reconstruction (MSE), then the frozen 12-lead teacher.
- ``random``: random-init frozen encoder + linear probe (floor).

Runs the same under ``torchrun`` (gloo on CPU): each rank takes a shard of every
batch and gradients are averaged by hand (works for any method call, not just forward).
"""
from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from selfmis.preprocess import preprocess_window
from selfmis.train import losses
from selfmis.train.checkpoint import load_checkpoint, load_model, load_weights_into, save_checkpoint
from selfmis.train.crops import SPEC, fixed_crop, record_windows, self_cut, simclr_view
from selfmis.train.data import DEFAULT_TASKS, LEADS, load_split
from selfmis.train.evaluate import auroc, choose_threshold, score_predictions
from selfmis.train.models import GenerativeLead1, LeadReconstructor, ResNet1d

log = logging.getLogger(__name__)

METHODS = ("selfmis", "scratch", "simclr", "generative", "twelve_lead", "random")

DEFAULTS = dict(
    method="selfmis", data=None, test_fold=10, val_fold=None, train_folds=None, lead="I", seed=0,
    threads=1, max_records=None,
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


# --------------------------------------------------------------------------- setup

def split_folds(test_fold: int, val_fold=None, train_folds=None) -> tuple:
    """(val_fold, train_folds) for a test fold. CV convention: validation is the next fold
    (10 -> 1), training is every other fold; either can be given explicitly."""
    test_fold = int(test_fold)
    val_fold = test_fold % 10 + 1 if val_fold is None else int(val_fold)
    if train_folds is None:
        train_folds = [f for f in range(1, 11) if f not in (test_fold, val_fold)]
    return val_fold, [int(f) for f in train_folds]


def resolve_config(config: dict) -> dict:
    cfg = dict(DEFAULTS)
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(unknown)}")
    cfg.update({k: v for k, v in config.items() if v is not None})
    if cfg["method"] not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {cfg['method']!r}")
    cfg["val_fold"], cfg["train_folds"] = split_folds(cfg["test_fold"], cfg["val_fold"], cfg["train_folds"])
    if cfg["teacher_init"] not in ("trained", "random"):
        raise ValueError(f"teacher_init must be 'trained' or 'random', not {cfg['teacher_init']!r}")
    if cfg["teacher_init"] == "random" and not (cfg["cotrain"] and cfg["align_loss"] == "infonce"):
        raise ValueError("teacher_init=random (self-supervised teacher) needs cotrain=True and align_loss=infonce: "
                         "a frozen random teacher or a cosine pull onto a moving one collapses")
    if cfg["teacher_init"] == "random" and cfg["distill_weight"]:
        raise ValueError("teacher_init=random has no labelled teacher logits to distil (distill_weight=0)")
    if cfg["aux_tasks"] not in ("none", "statements"):
        raise ValueError(f"aux_tasks must be 'none' or 'statements', not {cfg['aux_tasks']!r}")
    if cfg["aux_tasks"] != "none" and cfg["method"] not in ("twelve_lead", "scratch"):
        raise ValueError("aux_tasks applies to the twelve_lead teacher and the scratch control only")
    cfg["input"] = "12lead" if cfg["method"] == "twelve_lead" else "lead1"
    return cfg


def dist_info():
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return rank, world


def sync_grads(model, world: int):
    if world > 1:
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world


def sync_buffers(model, world: int):
    """BatchNorm statistics differ per rank; rank 0's are kept (no SyncBN on CPU)."""
    if world > 1:
        for b in model.buffers():
            dist.broadcast(b, 0)


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
    from selfmis.train.data import PTBXL

    db = PTBXL(cfg["data"])
    codes = [c for c in db.statements.index if c not in DEFAULT_TASKS]
    Ytr = db.labels(data["train"]["ids"], tasks=codes)
    keep = np.flatnonzero(Ytr.sum(0) >= cfg["aux_min_positives"])
    data["aux_codes"] = [codes[i] for i in keep]
    for name in ("train", "val", "test"):
        data[name]["Yaux"] = db.labels(data[name]["ids"], tasks=codes)[:, keep]
    log.info("auxiliary statements (%d): %s", len(keep), " ".join(data["aux_codes"]))


def aux_head_and_loss(model, data, cfg):
    """The parameters of an auxiliary linear head on the embedding (not saved with the model)
    and its BCE on the extra statements; ``([], None)`` when ``aux_tasks="none"``."""
    if "aux_codes" not in data:
        return [], None
    torch.manual_seed(cfg["seed"] + 2)
    head = torch.nn.Linear(model.dim, len(data["aux_codes"]))
    Ya = torch.from_numpy(data["train"]["Yaux"])

    def loss(z, idx):
        return F.binary_cross_entropy_with_logits(head(z), Ya[idx])
    return list(head.parameters()), loss


# --------------------------------------------------------------------------- the loop

def cosine_lr(step, total, base, warmup=0.05):
    w = max(1, int(warmup * total))
    if step < w:
        return base * (step + 1) / w
    return base * 0.5 * (1 + math.cos(math.pi * (step - w) / max(1, total - w)))


#: keys that may change between a run and its resumption
RESUME_FREE = {"out", "resume", "progress", "threads", "n_boot", "data"}


def same_run(saved: dict, cfg: dict) -> bool:
    """Resume only a run of the same configuration; otherwise start the stage afresh."""
    diff = sorted(k for k in set(saved) | set(cfg) if k not in RESUME_FREE and saved.get(k) != cfg.get(k))
    if diff:
        log.warning("not resuming from a run with another configuration (differs in %s)", diff)
    return not diff


def run_stage(name, model, params, n_items, batch_loss, epochs, cfg, state, val_fn=None):
    """Train ``params`` for ``epochs``; ``batch_loss(idx, rng) -> loss``; keep the best epoch on val.

    Resumable: after every epoch the stage state goes to ``out/<name>.last.pt``;
    a finished stage is ``out/<name>.pt`` and is skipped when resuming.
    """
    out = Path(cfg["out"])
    done, last = out / f"{name}.pt", out / f"{name}.last.pt"
    rank, world = state["rank"], state["world"]
    if cfg["resume"] and done.is_file() and same_run(load_checkpoint(done)["config"], cfg):
        load_weights_into(model, done)
        state["log"].append({"stage": name, "resumed": "finished"})
        return model
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    start, best, best_state, history = 0, -np.inf, None, []
    if cfg["resume"] and last.is_file() and same_run(load_checkpoint(last)["config"], cfg):
        blob = load_weights_into(model, last, optimizer=opt)
        ex = blob["extra"]
        start, best, history = ex["epoch"] + 1, ex["best"], ex["history"]
        best_state = ex.get("best_state") or None
    per_rank = max(1, cfg["batch_size"] // world)
    steps_per_epoch = max(1, math.ceil(n_items / cfg["batch_size"]))
    total = epochs * steps_per_epoch
    for epoch in range(start, epochs):
        model.train()
        rng = np.random.default_rng([cfg["seed"], epoch, rank, zlib.crc32(name.encode())])  # not hash(): salted per process
        perm = np.random.default_rng([cfg["seed"], epoch]).permutation(n_items)  # same on all ranks
        bar = tqdm(range(steps_per_epoch), desc=f"{name} {epoch + 1}/{epochs}", leave=False,
                   disable=not cfg["progress"] or rank != 0)
        losses_ = []
        for step in bar:
            batch = perm[step * cfg["batch_size"]:(step + 1) * cfg["batch_size"]]
            idx = batch[rank * per_rank:(rank + 1) * per_rank] if world > 1 else batch
            for g in opt.param_groups:
                g["lr"] = cosine_lr(epoch * steps_per_epoch + step, total, cfg["lr"])
            loss = batch_loss(idx, rng)
            opt.zero_grad(set_to_none=True)
            if loss is not None:
                loss.backward()
            sync_grads(model, world)
            opt.step()
            if loss is not None:
                losses_.append(loss.item())
                bar.set_postfix(loss=f"{np.mean(losses_[-20:]):.4f}")
        sync_buffers(model, world)
        rec = {"stage": name, "epoch": epoch, "loss": float(np.mean(losses_)) if losses_ else None}
        if val_fn is not None and rank == 0:
            rec["val_mi_auroc"] = score = val_fn()
            if score > best or best_state is None:
                best, best_state = score, copy.deepcopy(model.state_dict())
        history.append(rec)
        if rank == 0:
            log.info("%s", rec)
            save_checkpoint(last, model, cfg, {"epoch": epoch, "best": float(best) if np.isfinite(best) else -1.0,
                                               "history": history, "best_state": best_state or {}}, opt)
        if world > 1:
            dist.barrier()
    if best_state is not None:  # model selection on validation, never on test
        model.load_state_dict(best_state)
    if world > 1:
        for p in model.state_dict().values():
            dist.broadcast(p, 0)
    state["log"].extend(history)
    if rank == 0:
        save_checkpoint(done, model, cfg, {"history": history})
        last.unlink(missing_ok=True)
    return model


# --------------------------------------------------------------------------- helpers

def new_encoder(cfg, in_leads=1, proj_dim=0, proj_kind="mlp"):
    torch.manual_seed(cfg["seed"])
    return ResNet1d(in_leads, cfg["widths"], cfg["depth"], cfg["kernel"], len(DEFAULT_TASKS), proj_dim, proj_kind)


def good_rows(xb, ids, state):
    """Drop corrupt records (non-finite or flat lead) from a batch and count them once."""
    ok = np.isfinite(xb).all(axis=tuple(range(1, xb.ndim)))
    ok &= (np.nan_to_num(xb).std(-1) > 1e-6).all(-1)
    for eid in ids[~ok]:
        state["skipped_in_training"].add(int(eid))
    return ok


def lead_of(d, cfg):
    return d["X"][:, LEADS.index(cfg["lead"]):LEADS.index(cfg["lead"]) + 1]  # (n, 1, samples)


def single_lead_val_fn(model, data, cfg):
    win = record_windows(lead_of(data["val"], cfg), cfg["window_s"], cfg["stride_s"])
    n, k = win.shape[:2]
    xv = torch.from_numpy(win.reshape(n * k, 1, -1))
    y = data["val"]["Y"][:, 0]

    def val():
        model.eval()
        with torch.no_grad():
            s = model(xv).reshape(n, k, -1).mean(1)[:, 0].numpy()
        model.train()
        return auroc(y, s)
    return val


def teacher_targets(teacher, X12p, batch=256):
    """The frozen teacher's pooled embedding, feature map and logits for every whole record."""
    teacher.eval()
    emb, maps, logits = [], [], []
    with torch.no_grad():
        for i in range(0, len(X12p), batch):
            f = teacher.features(torch.from_numpy(X12p[i:i + batch]))
            maps.append(f)
            emb.append(f.mean(-1))
            logits.append(teacher.head(f.mean(-1)))
    return torch.cat(emb), torch.cat(maps), torch.cat(logits)


def supervised_loss_fn(model, X_lead, Y, cfg, state, ids, crop="fixed", aux_loss=None):
    Yt = torch.from_numpy(Y)

    def batch_loss(idx, rng):
        xb = X_lead[idx]
        ok = good_rows(xb, ids[idx], state)
        idx, xb = idx[ok], xb[ok]
        if len(idx) < 2:
            return None
        x = self_cut(xb, rng, cfg["crop_min_s"], cfg["crop_max_s"])[0] if crop == "self" else fixed_crop(xb, rng)
        z = model.embed(torch.from_numpy(x))
        loss = F.binary_cross_entropy_with_logits(model.head(z), Yt[idx])
        return loss if aux_loss is None else loss + aux_loss(z, idx)
    return batch_loss


def linear_probe(model, data, cfg, state, steps=300):
    """Frozen encoder, train only the head on embeddings of the evaluation windows of each record."""
    win = record_windows(lead_of(data["train"], cfg), cfg["window_s"], cfg["stride_s"])
    n, k = win.shape[:2]
    model.eval()
    with torch.no_grad():
        Z = torch.cat([model.embed(torch.from_numpy(win.reshape(n * k, 1, -1)[i:i + 512]))
                       for i in range(0, n * k, 512)])
    Y = torch.from_numpy(np.repeat(data["train"]["Y"], k, axis=0))
    mu, sd = Z.mean(0), Z.std(0) + 1e-6  # standardised features: one lr fits every encoder
    head = torch.nn.Linear(Z.shape[1], Y.shape[1])
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in tqdm(range(steps), desc="linear probe", leave=False, disable=not cfg["progress"]):
        loss = F.binary_cross_entropy_with_logits(head((Z - mu) / sd), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # fold the standardisation into the model's own head
        model.head.weight.copy_(head.weight / sd)
        model.head.bias.copy_(head.bias - (head.weight * mu / sd).sum(1))
    state["log"].append({"stage": "linear_probe", "final_loss": float(loss.detach())})
    return model


# --------------------------------------------------------------------------- methods

def train_twelve_lead(data, cfg, state, name="twelve_lead"):
    model = new_encoder(cfg, 12)
    X12p = preprocess_window(data["train"]["X"], SPEC)
    Xv = torch.from_numpy(preprocess_window(data["val"]["X"], SPEC))
    Y = torch.from_numpy(data["train"]["Y"])
    mask = torch.ones(Y.shape[1])
    if cfg["teacher_tasks"] == "MI":  # ablation: a teacher that only learns the MI superclass
        mask = torch.zeros(Y.shape[1])
        mask[0] = 1.0
    aux_params, aux_loss = aux_head_and_loss(model, data, cfg)

    def batch_loss(idx, rng):
        xb = X12p[idx]
        ok = good_rows(xb, data["train"]["ids"][idx], state)
        idx = idx[ok]
        if len(idx) < 2:
            return None
        z = model.embed(torch.from_numpy(X12p[idx]))
        l = F.binary_cross_entropy_with_logits(model.head(z), Y[idx], reduction="none")
        l = (l * mask).sum(1).mean() / mask.sum()
        return l if aux_loss is None else l + aux_loss(z, idx)

    def val():
        model.eval()
        with torch.no_grad():
            s = model(Xv)[:, 0].numpy()
        model.train()
        return auroc(data["val"]["Y"][:, 0], s)
    epochs = cfg["teacher_epochs"] if name == "teacher" else cfg["epochs"]
    return run_stage(name, model, list(model.parameters()) + aux_params, len(X12p), batch_loss, epochs, cfg,
                     state, val)


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


def get_teacher(data, cfg, state):
    if teacher_paths(cfg):
        state["teacher_from"] = teacher_paths(cfg)[0]
        return load_teacher(teacher_paths(cfg)[0], cfg)[0]
    state["teacher_from"] = "trained here (teacher stage)"
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


def train_selfmis(data, cfg, state):
    X12p = preprocess_window(data["train"]["X"], SPEC)
    assign = np.zeros(len(X12p), dtype=int)  # which teacher (and projector) each record aligns to
    if len(teacher_paths(cfg)) > 1:  # cross-fitting
        if cfg["cotrain"] or cfg["align_target"] != "pooled":
            raise ValueError("cross-fitted teachers support pooled alignment to frozen teachers only")
        teachers, assign = crossfit_assignment(teacher_paths(cfg), data["train"]["folds"], cfg)
        state["teacher_from"] = "cross-fitted: " + ", ".join(teacher_paths(cfg))
        targets = [teacher_targets(t, X12p) for t in teachers]
        pick = torch.from_numpy(assign)
        # logits share one label space, so they mix; embeddings do not (one projector per teacher)
        t_logits = torch.stack([t[2] for t in targets])[pick, torch.arange(len(pick))]
        t_emb = torch.stack([t[0] for t in targets])[pick, torch.arange(len(pick))]
        t_map, teacher = None, teachers[0]
    elif cfg["teacher_init"] == "random":
        teacher = new_encoder(cfg, 12)
        state["teacher_from"] = "self-supervised here (co-trained by the alignment, no labels)"
        t_emb = t_map = t_logits = None
    else:
        teacher = get_teacher(data, cfg, state)
        t_emb, t_map, t_logits = teacher_targets(teacher, X12p)
    for p in teacher.parameters():
        p.requires_grad_(cfg["cotrain"])
    X_lead, Y, ids = lead_of(data["train"], cfg), torch.from_numpy(data["train"]["Y"]), data["train"]["ids"]
    n_total = X_lead.shape[-1]
    # featmap alignment: a per-time-step projector (1x1 conv) onto the teacher's map over the crop
    model = new_encoder(cfg, 1, proj_dim=teacher.dim,
                        proj_kind="conv" if cfg["align_target"] == "featmap" else "mlp")
    # extra projectors, one per further cross-fitted teacher (not part of the saved student)
    projs = torch.nn.ModuleList([model.proj])
    if assign.max() > 0:
        torch.manual_seed(cfg["seed"] + 1)
        projs.extend(copy.deepcopy(model.proj).apply(_reset) for _ in range(int(assign.max())))
    val_fn = single_lead_val_fn(model, data, cfg)
    reps = cfg["crops_per_record"]  # several self-cut crops of every record per epoch
    labeled = torch.from_numpy(data["train"]["labeled"])

    def align_terms(idx, rng):
        xb = X_lead[idx]
        ok = good_rows(xb, ids[idx], state)
        idx, xb = idx[ok], xb[ok]
        if len(idx) < 2:
            return None, None, None
        x, starts, L = self_cut(xb, rng, cfg["crop_min_s"], cfg["crop_max_s"])
        f = model.features(torch.from_numpy(x))
        if cfg["cotrain"]:  # ablation: the teacher moves too (kept on task by its own BCE)
            tf = teacher.features(torch.from_numpy(X12p[idx]))
            t_pool = tf.mean(-1)
            lab = labeled[idx]
            extra = 0.0 if cfg["teacher_init"] == "random" or not lab.any() else \
                F.binary_cross_entropy_with_logits(teacher.head(t_pool)[lab], Y[idx][lab])
        else:
            tf, t_pool, extra = (None if t_map is None else t_map[idx]), t_emb[idx], 0.0
        if cfg["align_target"] == "featmap":
            target = losses.crop_teacher_map(tf, torch.from_numpy(starts).float(), L, n_total, f.shape[-1])
            la = losses.align_loss(model.proj(f), target, cfg["align_loss"], cfg["temperature"])
        else:
            z, who = f.mean(-1), torch.from_numpy(assign[idx])
            la = sum(losses.align_loss(projs[k](z[who == k]), t_pool[who == k], cfg["align_loss"],
                                       cfg["temperature"]) * (who == k).float().mean()
                     for k in who.unique().tolist())
        return la + extra, model.head(f.mean(-1)), idx

    def align_only(idx, rng):
        la, _, _ = align_terms(idx, rng)
        return la

    def joint(idx, rng):
        la, logits, idx = align_terms(idx, rng)
        if la is None:
            return None
        lab = labeled[idx]  # every record is aligned; only labelled ones enter the BCE
        bce = F.binary_cross_entropy_with_logits(logits[lab], Y[idx][lab]) if lab.any() else 0.0
        loss = bce + cfg["align_weight"] * la
        if cfg["distill_weight"]:
            loss = loss + cfg["distill_weight"] * losses.distill_loss(logits, t_logits[idx])
        return loss

    n_items = len(X_lead) * reps
    wrap = lambda fn: (lambda idx, rng: fn(idx % len(X_lead), rng))
    params = list(model.parameters()) + list(projs[1:].parameters()) + \
        (list(teacher.parameters()) if cfg["cotrain"] else [])
    if cfg["schedule"] == "two_stage":
        run_stage("align", model, params, n_items, wrap(align_only), cfg["pretrain_epochs"], cfg, state)
        if cfg["probe"] == "linear":
            model = linear_probe(model, data, cfg, state)
        else:
            model = run_stage("finetune", model, model.parameters(), len(X_lead),
                              supervised_loss_fn(model, X_lead, data["train"]["Y"], cfg, state, ids),
                              cfg["epochs"], cfg, state, val_fn)
    else:
        model = run_stage("joint", model, params, n_items, wrap(joint), cfg["epochs"], cfg, state, val_fn)
    state["teacher_model"] = teacher
    return model


def _reset(m):
    if hasattr(m, "reset_parameters"):
        m.reset_parameters()


def train_scratch(data, cfg, state):
    model = new_encoder(cfg, 1)
    X_lead = lead_of(data["train"], cfg)
    aux_params, aux_loss = aux_head_and_loss(model, data, cfg)
    loss_fn = supervised_loss_fn(model, X_lead, data["train"]["Y"], cfg, state, data["train"]["ids"],
                                 aux_loss=aux_loss)
    return run_stage("scratch", model, list(model.parameters()) + aux_params, len(X_lead), loss_fn,
                     cfg["epochs"], cfg, state,
                     single_lead_val_fn(model, data, cfg))


def train_random(data, cfg, state):
    return linear_probe(new_encoder(cfg, 1), data, cfg, state)


def train_simclr(data, cfg, state):
    model = new_encoder(cfg, 1, proj_dim=128)
    X_lead, ids = lead_of(data["train"], cfg), data["train"]["ids"]

    def contrastive(idx, rng):
        xb = X_lead[idx]
        idx, xb = idx[good_rows(xb, ids[idx], state)], xb[good_rows(xb, ids[idx], state)]
        if len(idx) < 2:
            return None
        v1, v2 = (torch.from_numpy(simclr_view(xb, rng)) for _ in range(2))
        return losses.nt_xent(model.proj(model.embed(v1)), model.proj(model.embed(v2)), cfg["temperature"])

    run_stage("simclr", model, model.parameters(), len(X_lead), contrastive, cfg["pretrain_epochs"], cfg, state)
    if cfg["probe"] == "linear":
        return linear_probe(model, data, cfg, state)
    return run_stage("finetune", model, model.parameters(), len(X_lead),
                     supervised_loss_fn(model, X_lead, data["train"]["Y"], cfg, state, ids),
                     cfg["epochs"], cfg, state, single_lead_val_fn(model, data, cfg))


def train_generative(data, cfg, state):
    teacher = get_teacher(data, cfg, state)
    torch.manual_seed(cfg["seed"])
    model = GenerativeLead1(classifier=teacher.arch)
    model.classifier.load_state_dict(teacher.state_dict())
    for p in model.classifier.parameters():  # the 12-lead classifier stays frozen
        p.requires_grad_(False)
    X, ids = data["train"]["X"], data["train"]["ids"]
    li = LEADS.index(cfg["lead"])
    W = SPEC.window_samples

    def recon(idx, rng):
        xb = X[idx]
        ok = good_rows(xb, ids[idx], state)
        xb = xb[ok]
        if len(xb) < 2:
            return None
        starts = rng.integers(0, xb.shape[-1] - W + 1, size=len(xb))
        crop = np.stack([x[:, s:s + W] for x, s in zip(xb, starts)])
        target = torch.from_numpy(preprocess_window(crop, SPEC))  # the 12 leads of the same window
        pred = model.recon(target[:, li:li + 1])
        return F.mse_loss(pred, target)

    model.classifier.eval()
    run_stage("reconstruct", model.recon, model.recon.parameters(), len(X), recon, cfg["pretrain_epochs"], cfg, state)
    state["teacher_model"] = teacher
    return model


TRAINERS = {"selfmis": train_selfmis, "scratch": train_scratch, "simclr": train_simclr,
            "generative": train_generative, "twelve_lead": train_twelve_lead, "random": train_random}


# --------------------------------------------------------------------------- entry point

def record_scores(model, cfg, split, embed=False):
    from selfmis.train.evaluate import predict_records
    return predict_records(model, cfg, split["X"], embed=embed)


def train(config: dict) -> dict:
    """Train one method on one split; write ``out/model.pt``, ``out/metrics.json``, ``out/scores.npz``."""
    cfg = resolve_config(config)
    torch.set_num_threads(int(cfg["threads"]))
    rank, world = dist_info()
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (out / "config.json").write_text(json.dumps(cfg, indent=1))
    t0 = time.time()
    data = load_data(cfg)
    state = {"rank": rank, "world": world, "log": [], "skipped_in_training": set()}
    if cfg["method"] != "selfmis" or cfg["schedule"] != "joint":
        keep_labeled_only(data)  # (two-stage SelfMIS then aligns the labelled records only)
    state["n_train_labeled"] = int(data["train"]["labeled"].sum())
    log.info("training records: %d, labelled: %d", len(data["train"]["ids"]), state["n_train_labeled"])
    model = TRAINERS[cfg["method"]](data, cfg, state)
    model.eval()
    result = {"method": cfg["method"], "config": cfg, "world_size": world}
    if rank == 0:
        s_val, s_test = record_scores(model, cfg, data["val"]), record_scores(model, cfg, data["test"])
        thr = {}
        for j, t in enumerate(DEFAULT_TASKS):
            if data["val"]["Y"][:, j].sum() > 0:
                thr[t] = choose_threshold(data["val"]["Y"][:, j], s_val[:, j])
        k = (data["val"]["Y"][:, 0] > 0) | (data["val"]["Y"][:, -1] > 0)
        thr["MI_vs_NORM"] = choose_threshold(data["val"]["Y"][k, 0], s_val[k, 0])
        extra = {"thresholds": thr, "skipped_at_load": len(data["skipped_at_load"]),
                 "skipped_in_training": sorted(state["skipped_in_training"]), "log": state["log"]}
        save_checkpoint(out / "model.pt", model, cfg, extra)
        npz = dict(val=s_val, test=s_test, Y_val=data["val"]["Y"], Y_test=data["test"]["Y"],
                   ids_val=data["val"]["ids"], ids_test=data["test"]["ids"])
        if "teacher_model" in state:  # latent gap: single-lead vs 12-lead embeddings, test records
            npz["emb_single"] = record_scores(model, cfg, data["test"], embed=True)
            npz["emb_twelve"] = record_scores(state["teacher_model"], dict(cfg, input="12lead"), data["test"],
                                              embed=True)
        np.savez(out / "scores.npz", **npz)
        result.update({
            "val": score_predictions(s_val, data["val"]["Y"], n_boot=200, seed=cfg["seed"]),
            "test": score_predictions(s_test, data["test"]["Y"], thresholds=thr, n_boot=cfg["n_boot"],
                                      seed=cfg["seed"]),
            "skipped_at_load": data["skipped_at_load"], "skipped_in_training": sorted(state["skipped_in_training"]),
            "seconds": time.time() - t0, "log": state["log"],
            "n_train": len(data["train"]["ids"]), "n_train_labeled": state["n_train_labeled"],
        })
        if "emb_single" in npz:
            from selfmis.train.evaluate import frechet_distance
            result["frechet_single_vs_12lead"] = frechet_distance(npz["emb_single"], npz["emb_twelve"])
        (out / "metrics.json").write_text(json.dumps(result, indent=1, default=str))
    if world > 1:
        dist.barrier()
    return result
