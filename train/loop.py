"""The training loop: one resumable stage, read top to bottom (as nanoGPT's ``train.py``).

Every method is a sequence of stages; a stage trains an ``objective`` (an ``nn.Module`` whose
forward returns the loss) for some epochs and keeps the best epoch on validation. Under
``torchrun`` the objective is wrapped in ``DistributedDataParallel`` (NCCL on CUDA, gloo on CPU)
with synchronised BatchNorm, and every rank takes equal shards of the same global batches
(``distributed.epoch_shards``), so N processes train as one process with that batch would.

Files per stage (``checkpoint.save_checkpoint``'s format): after every epoch the stage state
(``model``, the whole objective, the optimizer) goes to ``out/<name>.last.pt``; a finished stage
is ``out/<name>.pt`` and is skipped when resuming a run of the same configuration.
"""
from __future__ import annotations

import logging
import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.utils.data
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from selfmis.train.checkpoint import load_checkpoint, load_weights_into, save_checkpoint
from selfmis.train.distributed import Runtime, all_mean, available_cores, epoch_shards, rank_spread, sync_batchnorm
from selfmis.train.runlog import RunLog
from selfmis.train.settings import same_run

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    """What one run carries from stage to stage."""

    rt: Runtime                                   # device, rank, world size, autocast
    runlog: RunLog | None = None                  # metrics.jsonl/csv (rank 0 only)
    log: list = field(default_factory=list)       # every stage's per-epoch records
    skipped_in_training: set = field(default_factory=set)  # ecg_ids found corrupt before a stage
    n_train_labeled: int = 0
    teacher_from: str = ""                        # where the 12-lead teacher came from
    teacher_model: torch.nn.Module | None = None  # kept for the latent-gap measurement


@dataclass
class Progress:
    """A stage's place: the next epoch, the best validation score and its weights, the history."""

    start: int = 0
    best: float = -np.inf
    best_state: dict | None = None
    history: list = field(default_factory=list)

    def keep_if_best(self, score: float, model) -> None:
        if score > self.best or self.best_state is None:
            self.best, self.best_state = score, {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def run_stage(name, model, objective, n_items, make_batch, epochs, cfg, state: TrainState, val_fn=None):
    """Train ``objective`` (``objective(**batch) -> loss``) for ``epochs``; ``make_batch(positions,
    rng, part) -> dict`` builds a shard; ``model`` is what gets saved; keep the best epoch on
    validation (``val_fn() -> MI AUROC``, rank 0). Returns ``model`` with the chosen weights."""
    rt, out = state.rt, Path(cfg["out"])
    done, last = out / f"{name}.pt", out / f"{name}.last.pt"
    if _resumable(done, cfg):
        load_weights_into(model, done)
        model.to(rt.device)
        state.log.append({"stage": name, "resumed": "finished"})
        return model
    objective.to(rt.device)
    if rt.distributed:
        sync_batchnorm(objective, rt.device)  # statistics of the global batch, as in one process
    opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=cfg["lr"],
                            weight_decay=cfg["weight_decay"])
    progress = _resume(model, objective, opt, last, cfg)
    net = _ddp(objective, rt)
    salt = zlib.crc32(name.encode())  # not hash(): salted per process
    for epoch in range(progress.start, epochs):
        batches = StepBatches(make_batch, epoch_shards(n_items, cfg["batch_size"], rt.world, rt.rank, cfg["seed"],
                                                       epoch), cfg["seed"], epoch, salt)
        rec = train_epoch(net, opt, batches, f"{name} {epoch + 1}/{epochs}", epoch * len(batches),
                          epochs * len(batches), cfg, rt)
        rec = dict(stage=name, epoch=epoch, **rec)
        if rt.distributed:  # DDP keeps every rank's parameters equal: check, never assume
            rec["rank_param_spread"] = rank_spread(objective)
            if rec["rank_param_spread"] > 1e-4:
                log.warning("%s epoch %d: parameters differ between ranks by %.3g", name, epoch,
                            rec["rank_param_spread"])
        if val_fn is not None and rt.rank == 0:
            rec["val_mi_auroc"] = score = val_fn()
            progress.keep_if_best(score, model)
        progress.history.append(rec)
        if rt.rank == 0:
            _log_and_save(rec, last, model, objective, opt, progress, epoch, cfg, state)
        if rt.distributed:
            dist.barrier()
    return _finish(model, progress, done, last, cfg, state)


def train_epoch(net, opt, batches: "StepBatches", desc: str, first_step: int, total: int, cfg, rt) -> dict:
    """One pass over this rank's batches with the cosine schedule; the epoch's metrics record."""
    net.train()
    global_batch = batches.shards[0][1][1]
    bar = tqdm(batch_stream(batches, cfg, rt), total=len(batches), desc=desc, leave=False,
               disable=not cfg["progress"] or rt.rank != 0)
    t0, c0, losses = time.time(), time.process_time(), []
    for step, batch in enumerate(bar):
        lr = cosine_lr(first_step + step, total, cfg["lr"])
        for g in opt.param_groups:
            g["lr"] = lr
        with rt.autocast():
            loss = net(**to_device(batch, rt.device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
        if step % 20 == 19:
            bar.set_postfix(loss=f"{float(torch.stack(losses[-20:]).mean()):.4f}")
    seconds, cpu_seconds = time.time() - t0, time.process_time() - c0
    return {"loss": all_mean(float(torch.stack(losses).float().mean()), rt.device),
            "lr": lr, "seconds": seconds, "records_per_s": len(batches) * global_batch / max(seconds, 1e-9),
            # this process's CPU time (all its threads): throughput on a shared machine
            "cpu_seconds": cpu_seconds,
            "device": str(rt.device), "world": rt.world}


def cosine_lr(step, total, base, warmup=0.05):
    w = max(1, int(warmup * total))
    if step < w:
        return base * (step + 1) / w
    return base * 0.5 * (1 + math.cos(math.pi * (step - w) / max(1, total - w)))


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


# --------------------------------------------------------------------------- resume and save

def _resumable(path: Path, cfg) -> bool:
    return bool(cfg["resume"] and path.is_file() and same_run(load_checkpoint(path)["config"], cfg))


def _resume(model, objective, opt, last: Path, cfg) -> Progress:
    """The interrupted stage's progress from ``out/<name>.last.pt`` (model, objective, optimizer)."""
    if not _resumable(last, cfg):
        return Progress()
    ex = load_weights_into(model, last, optimizer=opt)["extra"]
    if ex.get("objective"):  # extra projectors, aux head, co-trained teacher
        objective.load_state_dict(ex["objective"], strict=False)
    return Progress(ex["epoch"] + 1, ex["best"], ex.get("best_state") or None, ex["history"])


def _ddp(objective, rt: Runtime):
    if not rt.distributed:
        return objective
    # every parameter is in the graph on every rank (objectives mask instead of skipping), but a
    # stage may leave a part unused on all ranks (the head while aligning): find_unused handles it
    return DistributedDataParallel(objective, device_ids=[rt.device] if rt.device.type == "cuda" else None,
                                   find_unused_parameters=True, broadcast_buffers=False)


def _log_and_save(rec, last, model, objective, opt, progress: Progress, epoch, cfg, state: TrainState):
    log.info("%s", rec)
    if state.runlog:
        state.runlog.write(rec)
    best = float(progress.best) if np.isfinite(progress.best) else -1.0
    save_checkpoint(last, model, cfg, {"epoch": epoch, "best": best, "history": progress.history,
                                       "best_state": progress.best_state or {},
                                       "objective": {k: v.detach().cpu() for k, v in
                                                     objective.state_dict().items()}}, opt)


def _finish(model, progress: Progress, done: Path, last: Path, cfg, state: TrainState):
    rt = state.rt
    if progress.best_state is not None:  # model selection on validation, never on test
        model.load_state_dict(progress.best_state)
    if rt.distributed:  # rank 0 chose the epoch: everyone takes its weights
        for p in model.state_dict().values():
            dist.broadcast(p, 0)
    state.log.extend(progress.history)
    if rt.rank == 0:
        save_checkpoint(done, model, cfg, {"history": progress.history})
        last.unlink(missing_ok=True)
    return model
