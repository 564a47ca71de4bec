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

Every stage is an ``nn.Module`` whose forward returns the loss (``objectives``); under
``torchrun`` it is wrapped in ``DistributedDataParallel`` (NCCL on CUDA, gloo on CPU) with
synchronised BatchNorm, and every rank takes equal shards of the same global batches
(``distributed.epoch_shards``), so N processes train as one process with that batch would.
Corrupt records are found once before a stage, never by skipping a step.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import torch.utils.data
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from selfmis.preprocess import preprocess_window
from selfmis.train.checkpoint import load_checkpoint, load_model, load_weights_into, save_checkpoint
from selfmis.train.crops import SPEC, fixed_crop, record_windows, self_cut, simclr_view
from selfmis.train.data import DEFAULT_TASKS, LEADS, load_split
from selfmis.train.distributed import all_mean, available_cores, epoch_shards, rank_spread, setup, sync_batchnorm
from selfmis.train.evaluate import auroc, choose_threshold, score_predictions, torch_predict_fn
from selfmis.train.models import GenerativeLead1, ResNet1d
from selfmis.train.objectives import Reconstruction, SelfAlignment, SimCLR, Supervised
from selfmis.train.runlog import RunLog

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
    if cfg["amp"] not in ("on", "off"):
        raise ValueError(f"amp must be 'on' or 'off', not {cfg['amp']!r}")
    if cfg["aux_tasks"] not in ("none", "statements"):
        raise ValueError(f"aux_tasks must be 'none' or 'statements', not {cfg['aux_tasks']!r}")
    if cfg["aux_tasks"] != "none" and cfg["method"] not in ("twelve_lead", "scratch"):
        raise ValueError("aux_tasks applies to the twelve_lead teacher and the scratch control only")
    cfg["input"] = "12lead" if cfg["method"] == "twelve_lead" else "lead1"
    return cfg


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


def aux_head(model, data, cfg):
    """An auxiliary linear head on the embedding for the extra statements (trained with the
    encoder, not saved with it), or None when ``aux_tasks="none"``."""
    if "aux_codes" not in data:
        return None
    torch.manual_seed(cfg["seed"] + 2)
    return torch.nn.Linear(model.dim, len(data["aux_codes"]))


# --------------------------------------------------------------------------- the loop

def cosine_lr(step, total, base, warmup=0.05):
    w = max(1, int(warmup * total))
    if step < w:
        return base * (step + 1) / w
    return base * 0.5 * (1 + math.cos(math.pi * (step - w) / max(1, total - w)))


#: keys that may change between a run and its resumption
RESUME_FREE = {"out", "resume", "progress", "threads", "n_boot", "data", "device", "amp", "workers", "tensorboard"}


def same_run(saved: dict, cfg: dict) -> bool:
    """Resume only a run of the same configuration; otherwise start the stage afresh."""
    diff = sorted(k for k in set(saved) | set(cfg)
                  if k not in RESUME_FREE and saved.get(k, DEFAULTS.get(k)) != cfg.get(k, DEFAULTS.get(k)))
    if diff:
        log.warning("not resuming from a run with another configuration (differs in %s)", diff)
    return not diff


class StepBatches(torch.utils.data.Dataset):
    """One epoch's batches for this rank: item ``step`` is ``make_batch(records, rng, part)``.

    The generator depends on (seed, epoch, step, stage) only, so batches are the same whether they
    are built here or in DataLoader workers, on one rank or many.
    """

    def __init__(self, make_batch, shards, seed, epoch, salt):
        self.make_batch, self.shards, self.key = make_batch, shards, (seed, epoch, salt)

    def __len__(self):
        return len(self.shards)

    def __getitem__(self, step):
        pos, part = self.shards[step]
        seed, epoch, salt = self.key
        return self.make_batch(pos, np.random.default_rng([seed, epoch, step, salt]), part)


def batch_stream(ds: StepBatches, cfg, rt):
    """In the main process (CPU default: no copies, no worker start-up), or DataLoader workers with
    pinned memory (CUDA default: crops are cut and filtered on the CPU while the GPU trains)."""
    workers = cfg["workers"]
    if workers < 0:
        workers = min(4, max(1, available_cores() // max(1, rt.world))) if rt.device.type == "cuda" else 0
    if workers == 0:
        return (ds[i] for i in range(len(ds)))
    return torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=workers,
                                       pin_memory=rt.device.type == "cuda", prefetch_factor=4,
                                       persistent_workers=False)


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def run_stage(name, model, objective, n_items, make_batch, epochs, cfg, state, val_fn=None):
    """Train ``objective`` (an ``nn.Module``: ``objective(**batch) -> loss``) for ``epochs``;
    ``make_batch(positions, rng, part) -> dict`` builds a shard; ``model`` is what gets saved;
    keep the best epoch on validation.

    Resumable: after every epoch the stage state (``model``, the whole objective, optimizer) goes
    to ``out/<name>.last.pt``; a finished stage is ``out/<name>.pt`` and is skipped when resuming.
    """
    out = Path(cfg["out"])
    done, last = out / f"{name}.pt", out / f"{name}.last.pt"
    rt = state["rt"]
    if cfg["resume"] and done.is_file() and same_run(load_checkpoint(done)["config"], cfg):
        load_weights_into(model, done)
        model.to(rt.device)
        state["log"].append({"stage": name, "resumed": "finished"})
        return model
    objective.to(rt.device)
    if rt.distributed:
        sync_batchnorm(objective, rt.device)  # statistics of the global batch, as in one process
    opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=cfg["lr"],
                            weight_decay=cfg["weight_decay"])
    start, best, best_state, history = 0, -np.inf, None, []
    if cfg["resume"] and last.is_file() and same_run(load_checkpoint(last)["config"], cfg):
        blob = load_weights_into(model, last, optimizer=opt)
        ex = blob["extra"]
        if ex.get("objective"):  # extra projectors, aux head, co-trained teacher
            objective.load_state_dict(ex["objective"], strict=False)
        start, best, history = ex["epoch"] + 1, ex["best"], ex["history"]
        best_state = ex.get("best_state") or None
    net = objective
    if rt.distributed:
        # every parameter is in the graph on every rank (objectives mask instead of skipping), but a
        # stage may leave a part unused on all ranks (the head while aligning): find_unused handles it
        net = DistributedDataParallel(objective, device_ids=[rt.device] if rt.device.type == "cuda" else None,
                                      find_unused_parameters=True, broadcast_buffers=False)
    salt = zlib.crc32(name.encode())  # not hash(): salted per process
    for epoch in range(start, epochs):
        objective.train()
        shards = epoch_shards(n_items, cfg["batch_size"], rt.world, rt.rank, cfg["seed"], epoch)
        steps, global_batch = len(shards), shards[0][1][1]
        total = epochs * steps
        bar = tqdm(batch_stream(StepBatches(make_batch, shards, cfg["seed"], epoch, salt), cfg, rt), total=steps,
                   desc=f"{name} {epoch + 1}/{epochs}", leave=False, disable=not cfg["progress"] or rt.rank != 0)
        t0, c0, losses_ = time.time(), time.process_time(), []
        for step, batch in enumerate(bar):
            lr = cosine_lr(epoch * steps + step, total, cfg["lr"])
            for g in opt.param_groups:
                g["lr"] = lr
            with rt.autocast():
                loss = net(**to_device(batch, rt.device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses_.append(loss.detach())
            if step % 20 == 19:
                bar.set_postfix(loss=f"{float(torch.stack(losses_[-20:]).mean()):.4f}")
        seconds, cpu_seconds = time.time() - t0, time.process_time() - c0
        rec = {"stage": name, "epoch": epoch, "loss": all_mean(float(torch.stack(losses_).float().mean()), rt.device),
               "lr": lr, "seconds": seconds, "records_per_s": steps * global_batch / max(seconds, 1e-9),
               # this process's CPU time (all its threads): throughput on a shared machine
               "cpu_seconds": cpu_seconds,
               "device": str(rt.device), "world": rt.world}
        if rt.distributed:  # DDP keeps every rank's parameters equal: check, never assume
            rec["rank_param_spread"] = rank_spread(objective)
            if rec["rank_param_spread"] > 1e-4:
                log.warning("%s epoch %d: parameters differ between ranks by %.3g", name, epoch,
                            rec["rank_param_spread"])
        if val_fn is not None and rt.rank == 0:
            rec["val_mi_auroc"] = score = val_fn()
            if score > best or best_state is None:
                best, best_state = score, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        history.append(rec)
        if rt.rank == 0:
            log.info("%s", rec)
            if state.get("runlog"):
                state["runlog"].write(rec)
            save_checkpoint(last, model, cfg, {"epoch": epoch, "best": float(best) if np.isfinite(best) else -1.0,
                                               "history": history, "best_state": best_state or {},
                                               "objective": {k: v.detach().cpu() for k, v in
                                                             objective.state_dict().items()}}, opt)
        if rt.distributed:
            dist.barrier()
    if best_state is not None:  # model selection on validation, never on test
        model.load_state_dict(best_state)
    if rt.distributed:  # rank 0 chose the epoch: everyone takes its weights
        for p in model.state_dict().values():
            dist.broadcast(p, 0)
    state["log"].extend(history)
    if rt.rank == 0:
        save_checkpoint(done, model, cfg, {"history": history})
        last.unlink(missing_ok=True)
    return model


# --------------------------------------------------------------------------- helpers

def new_encoder(cfg, in_leads=1, proj_dim=0, proj_kind="mlp"):
    torch.manual_seed(cfg["seed"])
    return ResNet1d(in_leads, cfg["widths"], cfg["depth"], cfg["kernel"], len(DEFAULT_TASKS), proj_dim, proj_kind)


def good_rows(xb, ids, state, chunk=1024):
    """Which records are usable (finite, no flat lead); the others are counted once by ecg_id."""
    ok = np.ones(len(xb), bool)
    for i in range(0, len(xb), chunk):  # in chunks: no full-size temporary copies of a large set
        x = np.asarray(xb[i:i + chunk])
        fin = np.isfinite(x).all(axis=tuple(range(1, x.ndim)))
        ok[i:i + chunk] = fin & (np.nan_to_num(x).std(-1) > 1e-6).all(-1)
    for eid in ids[~ok]:
        state["skipped_in_training"].add(int(eid))
    return ok


def usable(X, ids, state) -> np.ndarray:
    """Indices of the records a stage trains on: corrupt ones are dropped before training, so a
    shard is never emptied mid-epoch (every rank must take every step)."""
    keep = np.flatnonzero(good_rows(X, ids, state))
    if len(keep) < 2:
        raise ValueError(f"only {len(keep)} usable training records")
    return keep


def lead_of(d, cfg):
    return d["X"][:, LEADS.index(cfg["lead"]):LEADS.index(cfg["lead"]) + 1]  # (n, 1, samples)


def _scores(model, x):
    """Model outputs on ``x`` (numpy, preprocessed) in eval mode, then back to training mode."""
    model.eval()
    s = torch_predict_fn(model)(x)
    model.train()
    return s


def single_lead_val_fn(model, data, cfg):
    win = record_windows(lead_of(data["val"], cfg), cfg["window_s"], cfg["stride_s"])
    n, k = win.shape[:2]
    xv = win.reshape(n * k, 1, -1)
    y = data["val"]["Y"][:, 0]
    return lambda: auroc(y, _scores(model, xv).reshape(n, k, -1).mean(1)[:, 0])


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


def supervised_batches(X, Y, keep, cfg, Yaux=None, crop=True):
    """Shards for a supervised stage: a random 5 s crop of each record (``crop``) or the whole
    (already preprocessed) record, with its labels."""
    def make(pos, rng, part):
        idx = keep[pos]
        x = fixed_crop(X[idx], rng, part=part) if crop else np.ascontiguousarray(X[idx])
        b = {"x": torch.from_numpy(x), "y": torch.from_numpy(Y[idx])}
        if Yaux is not None:
            b["y_aux"] = torch.from_numpy(Yaux[idx])
        return b
    return make


def finetune(name, model, data, cfg, state, aux=None):
    """Supervised training of a single-lead encoder on random 5 s crops (scratch, fine-tuning)."""
    X_lead = lead_of(data["train"], cfg)
    keep = usable(X_lead, data["train"]["ids"], state)
    make = supervised_batches(X_lead, data["train"]["Y"], keep, cfg, data["train"].get("Yaux") if aux else None)
    return run_stage(name, model, Supervised(model, aux), len(keep), make, cfg["epochs"], cfg, state,
                     single_lead_val_fn(model, data, cfg))


def linear_probe(model, data, cfg, state, steps=300):
    """Frozen encoder, train only the head on embeddings of the evaluation windows of each record."""
    win = record_windows(lead_of(data["train"], cfg), cfg["window_s"], cfg["stride_s"])
    n, k = win.shape[:2]
    device = state["rt"].device
    model.to(device).eval()
    Z = torch.from_numpy(_embed(model, win.reshape(n * k, 1, -1))).to(device)
    Y = torch.from_numpy(np.repeat(data["train"]["Y"], k, axis=0)).to(device)
    mu, sd = Z.mean(0), Z.std(0) + 1e-6  # standardised features: one lr fits every encoder
    head = torch.nn.Linear(Z.shape[1], Y.shape[1]).to(device)
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


def _embed(model, x):
    """Pooled embeddings (not the projector's) of preprocessed windows, in batches."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model.embed(torch.from_numpy(np.ascontiguousarray(x[i:i + 512])).to(device)).float().cpu()
                          for i in range(0, len(x), 512)]).numpy()


# --------------------------------------------------------------------------- methods

def train_twelve_lead(data, cfg, state, name="twelve_lead"):
    model = new_encoder(cfg, 12)
    X12p = preprocess_window(data["train"]["X"], SPEC)
    Xv = preprocess_window(data["val"]["X"], SPEC)
    mask = torch.ones(len(DEFAULT_TASKS))
    if cfg["teacher_tasks"] == "MI":  # ablation: a teacher that only learns the MI superclass
        mask = torch.zeros(len(DEFAULT_TASKS))
        mask[0] = 1.0
    aux = aux_head(model, data, cfg)
    keep = usable(X12p, data["train"]["ids"], state)
    make = supervised_batches(X12p, data["train"]["Y"], keep, cfg, data["train"].get("Yaux") if aux else None,
                              crop=False)
    val = lambda: auroc(data["val"]["Y"][:, 0], _scores(model, Xv)[:, 0])
    epochs = cfg["teacher_epochs"] if name == "teacher" else cfg["epochs"]
    return run_stage(name, model, Supervised(model, aux, mask), len(keep), make, epochs, cfg, state, val)


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
    device = state["rt"].device
    X12p = preprocess_window(data["train"]["X"], SPEC)
    assign = np.zeros(len(X12p), dtype=np.int64)  # which teacher (and projector) each record aligns to
    if len(teacher_paths(cfg)) > 1:  # cross-fitting
        if cfg["cotrain"] or cfg["align_target"] != "pooled":
            raise ValueError("cross-fitted teachers support pooled alignment to frozen teachers only")
        teachers, assign = crossfit_assignment(teacher_paths(cfg), data["train"]["folds"], cfg)
        state["teacher_from"] = "cross-fitted: " + ", ".join(teacher_paths(cfg))
        targets = [teacher_targets(t, X12p, device) for t in teachers]
        pick = torch.from_numpy(assign).to(device)
        # logits share one label space, so they mix; embeddings do not (one projector per teacher)
        rows = torch.arange(len(pick), device=device)
        t_logits = torch.stack([t[2] for t in targets])[pick, rows]
        t_emb = torch.stack([t[0] for t in targets])[pick, rows]
        t_map, teacher = None, teachers[0]
    elif cfg["teacher_init"] == "random":
        teacher = new_encoder(cfg, 12)
        state["teacher_from"] = "self-supervised here (co-trained by the alignment, no labels)"
        t_emb = t_map = t_logits = None
    else:
        teacher = get_teacher(data, cfg, state)
        t_emb, t_map, t_logits = teacher_targets(teacher, X12p, device)
    for p in teacher.parameters():
        p.requires_grad_(cfg["cotrain"])
    X_lead, Y, ids = lead_of(data["train"], cfg), data["train"]["Y"], data["train"]["ids"]
    keep = usable(X_lead, ids, state)
    # featmap alignment: a per-time-step projector (1x1 conv) onto the teacher's map over the crop
    model = new_encoder(cfg, 1, proj_dim=teacher.dim,
                        proj_kind="conv" if cfg["align_target"] == "featmap" else "mlp")
    # extra projectors, one per further cross-fitted teacher (not part of the saved student)
    extra = []
    if assign.max() > 0:
        torch.manual_seed(cfg["seed"] + 1)
        extra = [copy.deepcopy(model.proj).apply(_reset) for _ in range(int(assign.max()))]
    val_fn = single_lead_val_fn(model, data, cfg)
    labeled = data["train"]["labeled"].astype(np.float32)
    reps = cfg["crops_per_record"]  # several self-cut crops of every record per epoch

    def make(pos, rng, part):
        idx = keep[pos % len(keep)]
        x, starts, L = self_cut(X_lead[idx], rng, cfg["crop_min_s"], cfg["crop_max_s"], part=part)
        b = {"x": torch.from_numpy(x), "idx": torch.from_numpy(idx), "y": torch.from_numpy(Y[idx]),
             "labeled": torch.from_numpy(labeled[idx]), "who": torch.from_numpy(assign[idx]),
             "starts": torch.from_numpy(starts).float(), "crop_len": int(L)}
        if cfg["cotrain"]:
            b["x12"] = torch.from_numpy(np.ascontiguousarray(X12p[idx]))
        return b

    def objective(joint):
        return SelfAlignment(model, extra_projectors=extra, teacher=teacher if cfg["cotrain"] else None,
                             t_emb=t_emb, t_map=t_map, t_logits=t_logits, align_target=cfg["align_target"],
                             align_kind=cfg["align_loss"], temperature=cfg["temperature"],
                             align_weight=cfg["align_weight"], distill_weight=cfg["distill_weight"], joint=joint,
                             teacher_bce=cfg["teacher_init"] != "random", n_total=X_lead.shape[-1])
    if cfg["schedule"] == "two_stage":
        run_stage("align", model, objective(False), len(keep) * reps, make, cfg["pretrain_epochs"], cfg, state)
        model = linear_probe(model, data, cfg, state) if cfg["probe"] == "linear" else \
            finetune("finetune", model, data, cfg, state)
    else:
        model = run_stage("joint", model, objective(True), len(keep) * reps, make, cfg["epochs"], cfg, state, val_fn)
    state["teacher_model"] = teacher
    return model


def _reset(m):
    if hasattr(m, "reset_parameters"):
        m.reset_parameters()


def train_scratch(data, cfg, state):
    model = new_encoder(cfg, 1)
    return finetune("scratch", model, data, cfg, state, aux=aux_head(model, data, cfg))


def train_random(data, cfg, state):
    return linear_probe(new_encoder(cfg, 1), data, cfg, state)


def train_simclr(data, cfg, state):
    model = new_encoder(cfg, 1, proj_dim=128)
    X_lead = lead_of(data["train"], cfg)
    keep = usable(X_lead, data["train"]["ids"], state)

    def make(pos, rng, part):
        xb = X_lead[keep[pos]]
        v1, v2 = (torch.from_numpy(simclr_view(xb, rng, part=part)) for _ in range(2))
        return {"v1": v1, "v2": v2}

    run_stage("simclr", model, SimCLR(model, cfg["temperature"]), len(keep), make, cfg["pretrain_epochs"], cfg, state)
    if cfg["probe"] == "linear":
        return linear_probe(model, data, cfg, state)
    return finetune("finetune", model, data, cfg, state)


def train_generative(data, cfg, state):
    teacher = get_teacher(data, cfg, state)
    torch.manual_seed(cfg["seed"])
    model = GenerativeLead1(classifier=teacher.arch)
    model.classifier.load_state_dict(teacher.state_dict())
    for p in model.classifier.parameters():  # the 12-lead classifier stays frozen
        p.requires_grad_(False)
    X = data["train"]["X"]
    keep = usable(X, data["train"]["ids"], state)

    def make(pos, rng, part):  # a random 5 s window of all 12 leads: Lead I in, the 12 leads out
        return {"target": torch.from_numpy(fixed_crop(X[keep[pos]], rng, part=part))}

    model.classifier.eval()
    run_stage("reconstruct", model.recon, Reconstruction(model.recon, LEADS.index(cfg["lead"])), len(keep), make,
              cfg["pretrain_epochs"], cfg, state)
    model.classifier.to(state["rt"].device)
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
    rt = setup(cfg["device"], cfg["amp"], cfg["threads"])
    rank, world = rt.rank, rt.world
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        (out / "config.json").write_text(json.dumps(cfg, indent=1))
    t0 = time.time()
    data = load_data(cfg)
    state = {"rt": rt, "rank": rank, "world": world, "log": [], "skipped_in_training": set(),
             "runlog": RunLog(out, cfg["tensorboard"]) if rank == 0 else None}
    if cfg["method"] != "selfmis" or cfg["schedule"] != "joint":
        keep_labeled_only(data)  # (two-stage SelfMIS then aligns the labelled records only)
    state["n_train_labeled"] = int(data["train"]["labeled"].sum())
    log.info("training records: %d, labelled: %d on %s (world %d, amp %s, %d threads)", len(data["train"]["ids"]),
             state["n_train_labeled"], rt.device, world, rt.amp, torch.get_num_threads())
    model = TRAINERS[cfg["method"]](data, cfg, state)
    if state["runlog"]:
        state["runlog"].close()
    # evaluation and the saved files on the CPU: a checkpoint loads anywhere
    model.cpu().eval()
    if "teacher_model" in state:
        state["teacher_model"].cpu().eval()
    result = {"method": cfg["method"], "config": cfg, "world_size": world, "device": str(rt.device),
              "amp_bf16": rt.amp, "threads": torch.get_num_threads()}
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
