"""Where and how training runs: device choice, the torchrun process group, batch sharding,
synchronised BatchNorm and cross-rank gathers.

One process per device under ``torchrun`` (``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` from its
environment): NCCL between CUDA devices, gloo between CPU processes. Every rank takes the same
number of steps with equal shards of one global batch (``epoch_shards``: the global permutation
is shared, the tail that does not fill a global batch is dropped, as ``DistributedSampler`` with
``drop_last=True``), so no rank ever skips a collective. Random crops are drawn for the whole
global batch from a generator shared by all ranks, and each rank keeps its rows: N processes see
exactly the batch one process would.
"""
from __future__ import annotations

import contextlib
import datetime
import logging
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

log = logging.getLogger(__name__)

__all__ = ["DeviceError", "Runtime", "available_cores", "select_device", "setup", "epoch_shards",
           "sync_batchnorm", "GlooSyncBatchNorm", "gather", "all_mean", "rank_spread"]


class DeviceError(ValueError):
    """A ``--device`` that is malformed or not present on this machine."""


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def select_device(spec: str = "auto") -> torch.device:
    """``auto`` (CUDA, else MPS, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Under torchrun with several processes, ``cuda``/``auto`` give each rank ``cuda:LOCAL_RANK``.
    """
    spec = (spec or "auto").strip().lower()
    multi = world_size() > 1
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank() % torch.cuda.device_count() if multi else 0)
        return torch.device("mps") if _mps_available() and not multi else torch.device("cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"--device {spec!r}: not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {spec}: no CUDA device here (torch {torch.__version__}, "
                              f"cuda available: False)")
        n = torch.cuda.device_count()
        if multi:
            if dev.index is not None:
                raise DeviceError(f"--device {spec}: under torchrun pass --device cuda; each rank takes "
                                  "cuda:LOCAL_RANK (restrict GPUs with CUDA_VISIBLE_DEVICES)")
            return torch.device("cuda", local_rank() % n)
        idx = dev.index or 0
        if idx >= n:
            raise DeviceError(f"--device {spec}: only {n} CUDA device(s) visible (cuda:0..cuda:{n - 1})")
        return torch.device("cuda", idx)
    if dev.type == "mps":
        if not _mps_available():
            raise DeviceError(f"--device {spec}: Apple MPS is not available here")
        if multi:
            raise DeviceError("--device mps: one process only (no collective backend for MPS)")
        return dev
    raise DeviceError(f"--device {spec}: unsupported device type {dev.type!r} (auto, cpu, cuda, cuda:N, mps)")


@dataclass
class Runtime:
    """The device, this process's rank in the job, and whether bf16 autocast is on."""

    device: torch.device
    rank: int = 0
    world: int = 1
    amp: bool = False

    def autocast(self):
        """bf16 autocast on CUDA (no loss scaling needed: bf16 has float32's exponent range)."""
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str = "auto", amp: str = "on", threads: int = 0) -> Runtime:
    """Pick the device, join the torchrun process group (if any) and set the CPU thread count.

    ``threads=0``: the available cores shared among the ranks of this node.
    """
    dev = select_device(device)
    world = world_size()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    torch.set_num_threads(int(threads) or max(1, available_cores() // max(1, local_world)))
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(minutes=int(os.environ.get("SELFMIS_DIST_TIMEOUT_MIN", 30))))
    rank = dist.get_rank() if dist.is_initialized() else 0
    if amp not in ("on", "off"):
        raise ValueError(f"amp must be 'on' or 'off', not {amp!r}")
    return Runtime(dev, rank, dist.get_world_size() if dist.is_initialized() else 1,
                   amp=(amp == "on" and dev.type == "cuda"))


def epoch_shards(n_items: int, batch_size: int, world: int, rank: int, seed: int, epoch: int):
    """This rank's shards for one epoch: a list of ``(positions, (offset, global_batch))``.

    The permutation is the same on every rank; a global batch is ``batch_size // world`` items per
    rank (at least 2, which BatchNorm and contrastive losses need); the tail that would leave some
    rank short is dropped, so every rank runs the same number of equal steps.
    """
    per_rank = batch_size // world
    if per_rank < 2:
        raise ValueError(f"batch size {batch_size} over {world} processes leaves {per_rank} per process; "
                         "need at least 2 (raise --batch-size)")
    if n_items < per_rank * world:  # a small set: one smaller global batch rather than none
        per_rank = n_items // world
        if per_rank < 2:
            raise ValueError(f"{n_items} training items cannot give {world} processes 2 items each")
    g = per_rank * world
    perm = np.random.default_rng([seed, epoch]).permutation(n_items)
    return [(perm[s * g + rank * per_rank: s * g + (rank + 1) * per_rank], (rank * per_rank, g))
            for s in range(n_items // g)]


class GlooSyncBatchNorm(nn.BatchNorm1d):
    """BatchNorm whose training statistics are those of the global batch, on any device.

    ``torch.nn.SyncBatchNorm`` runs on GPUs only; this one all-reduces per-channel sums through
    the autograd-aware ``torch.distributed.nn.all_reduce`` (gloo on CPU), so forward and backward
    equal one process's BatchNorm over the whole batch. State-dict keys are BatchNorm1d's.
    """

    def forward(self, x):
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        n = torch.tensor(float(x.numel() // x.shape[1]), device=x.device)
        dist.all_reduce(n)
        mean = all_reduce(x.sum(dims)) / n
        xc = x - mean.view(shape)
        var = all_reduce((xc * xc).sum(dims)) / n  # two passes: as precise as a local BatchNorm
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * n / max(1.0, float(n) - 1))
            self.num_batches_tracked += 1
        y = xc / torch.sqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``module`` synchronised across ranks (in place; weights kept):
    ``torch.nn.SyncBatchNorm`` on CUDA, :class:`GlooSyncBatchNorm` elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for name, child in module.named_children():
        if type(child) in (nn.BatchNorm1d,):
            new = GlooSyncBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                    child.track_running_stats).to(child.weight.device)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            sync_batchnorm(child, device)
    return module


def gather(x: torch.Tensor) -> torch.Tensor:
    """Rows of every rank, in rank order (= the global batch), with gradients flowing back to each
    rank's own rows; identity in one process. For losses whose negatives span the batch."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return x
    if x.requires_grad:
        from torch.distributed.nn.functional import all_gather
        return torch.cat(all_gather(x))
    out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(out, x.contiguous())
    return torch.cat(out)


def rank_spread(module: nn.Module) -> float:
    """Largest difference of any trainable parameter between ranks (0.0 when they agree, as DDP
    must keep them); every rank must call it. Cheap: two all-reduces of the flat parameters."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return 0.0
    flat = torch.cat([p.detach().float().reshape(-1) for p in module.parameters() if p.requires_grad])
    hi, lo = flat.clone(), flat.clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    return float((hi - lo).max())


def all_mean(value: float, device) -> float:
    """Mean of a number over the ranks (every rank must call it)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()
