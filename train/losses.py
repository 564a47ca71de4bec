"""Alignment and contrastive losses (small, so the training loop reads top to bottom)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["align_loss", "info_nce", "nt_xent", "distill_loss", "crop_teacher_map"]


def align_loss(z_student, z_teacher, kind: str = "cosine", temperature: float = 0.1):
    """Pull each single-lead embedding onto the 12-lead embedding of the same record.

    ``cosine``: 1 - cos (scale-free), ``mse``: MSE of L2-normalised vectors,
    ``infonce``: the other records of the batch are negatives (ablation).
    Works on (B, D) or feature maps (B, D, T) (aligned per time step).
    """
    if z_student.dim() == 3:  # (B, D, T) -> (B*T, D)
        z_student = z_student.transpose(1, 2).reshape(-1, z_student.shape[1])
        z_teacher = z_teacher.transpose(1, 2).reshape(-1, z_teacher.shape[1])
    if kind == "cosine":
        return (1 - F.cosine_similarity(z_student, z_teacher, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(F.normalize(z_student, dim=-1), F.normalize(z_teacher, dim=-1))
    if kind == "infonce":
        return info_nce(z_student, z_teacher, temperature)
    raise ValueError(f"unknown align loss {kind!r}")


def info_nce(a, b, temperature: float = 0.1):
    logits = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


def nt_xent(z1, z2, temperature: float = 0.1):
    """SimCLR loss: two views of the same record are positives, the 2B-2 others negatives."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def distill_loss(student_logits, teacher_logits, temperature: float = 2.0):
    """Multi-label KD: BCE against the teacher's softened probabilities."""
    return F.binary_cross_entropy_with_logits(student_logits / temperature,
                                              torch.sigmoid(teacher_logits / temperature))


def crop_teacher_map(teacher_map, starts, crop_len: int, n_total: int, t_out: int):
    """The part of the teacher's feature map (B, D, Tt) over each crop, resampled to ``t_out`` steps.

    Teacher step k covers samples [k, k+1) * n_total / Tt; the crop covers [start, start + crop_len).
    """
    B, D, Tt = teacher_map.shape
    centres = starts[:, None] + (torch.arange(t_out, dtype=torch.float32, device=teacher_map.device)[None, :] + 0.5) * crop_len / t_out
    pos = (centres / n_total * Tt - 0.5).clamp(0, Tt - 1)  # fractional teacher index
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=Tt - 1)
    w = (pos - lo.float())[:, None, :]
    g_lo = torch.gather(teacher_map, 2, lo[:, None, :].expand(B, D, t_out))
    g_hi = torch.gather(teacher_map, 2, hi[:, None, :].expand(B, D, t_out))
    return g_lo * (1 - w) + g_hi * w
