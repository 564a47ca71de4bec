"""Each training stage as one ``nn.Module`` whose ``forward(**batch)`` returns the loss.

Everything a stage optimises lives inside its module (encoder, projectors, heads, a co-trained
teacher), so ``DistributedDataParallel`` averages every gradient and no parameter drifts between
ranks. Per-record targets (teacher embeddings, feature maps, logits) are non-persistent buffers
on the training device, indexed by the batch's record indices. Every parameter takes part in
every step on every rank (masked sums instead of skipped branches), so the graph is the same on
all ranks whatever records a shard holds.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from selfmis.train import losses
from selfmis.train.distributed import gather

__all__ = ["Supervised", "SelfAlignment", "SimCLR", "Reconstruction", "masked_bce"]


def masked_bce(logits, y, mask):
    """BCE averaged over the records with ``mask`` 1 (0 when there are none, with the graph kept)."""
    per_record = F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(1)
    return (per_record * mask).sum() / mask.sum().clamp_min(1)


class Supervised(nn.Module):
    """BCE on the task logits (``task_mask``: tasks that count), plus an optional auxiliary head's
    BCE on extra SCP statements (``aux_head``, not part of the saved encoder)."""

    def __init__(self, encoder, aux_head: nn.Module | None = None, task_mask=None):
        super().__init__()
        self.encoder, self.aux_head = encoder, aux_head
        n = encoder.head.out_features
        self.register_buffer("task_mask", torch.ones(n) if task_mask is None else task_mask, persistent=False)

    def forward(self, x, y, y_aux=None):
        z = self.encoder.embed(x)
        loss = F.binary_cross_entropy_with_logits(self.encoder.head(z).float(), y, reduction="none")
        loss = (loss * self.task_mask).sum(1).mean() / self.task_mask.sum()
        if self.aux_head is not None:
            loss = loss + F.binary_cross_entropy_with_logits(self.aux_head(z).float(), y_aux)
        return loss


class SelfAlignment(nn.Module):
    """SelfMIS: the single-lead student's embedding of a self-cut crop pulled onto the 12-lead
    teacher's embedding of the whole record (joint: + BCE on the labelled records, + optional
    logit distillation).

    ``extra_projectors``: one more projector per further cross-fitted teacher (record ``who`` is
    aligned through projector ``who``); ``teacher``: a co-trained 12-lead teacher (else frozen
    targets ``t_emb``/``t_map``/``t_logits`` computed once). ``teacher_bce``: the co-trained
    teacher keeps learning the labels (False for the self-supervised one).
    """

    def __init__(self, student, *, extra_projectors=(), teacher=None, t_emb=None, t_map=None, t_logits=None,
                 align_target="pooled", align_kind="cosine", temperature=0.1, align_weight=1.0,
                 distill_weight=0.0, joint=True, teacher_bce=True, n_total=1000):
        super().__init__()
        self.student, self.teacher = student, teacher
        self.extra_projectors = nn.ModuleList(extra_projectors)
        for name, t in (("t_emb", t_emb), ("t_map", t_map), ("t_logits", t_logits)):
            self.register_buffer(name, t, persistent=False)
        self.align_target, self.kind, self.T = align_target, align_kind, temperature
        self.align_weight, self.distill_weight = align_weight, distill_weight
        self.joint, self.teacher_bce, self.n_total = joint, teacher_bce, n_total

    def projector(self, k: int):
        return self.student.proj if k == 0 else self.extra_projectors[k - 1]

    def forward(self, x, idx, y, labeled, who, starts, crop_len, x12=None):
        f = self.student.features(x)
        extra = 0.0
        if self.teacher is not None:  # ablation: the teacher moves too
            tf = self.teacher.features(x12)
            t_pool = tf.mean(-1)
            if self.teacher_bce:  # kept on task by its own BCE on the labelled records
                extra = masked_bce(self.teacher.head(t_pool).float(), y, labeled)
        else:
            tf = None if self.t_map is None else self.t_map[idx]
            t_pool = self.t_emb[idx]
        if self.align_target == "featmap":
            target = losses.crop_teacher_map(tf, starts, int(crop_len), self.n_total, f.shape[-1])
            za, ta = self.student.proj(f).float(), target.float()  # losses in float32 under autocast
            if self.kind == "infonce":  # negatives from the whole global batch
                za, ta = gather(za), gather(ta)
            la = losses.align_loss(za, ta, self.kind, self.T)
        else:
            la = self.pooled_alignment(f.mean(-1), t_pool, who)
        la = la + extra
        if not self.joint:
            return la
        logits = self.student.head(f.mean(-1)).float()
        loss = masked_bce(logits, y, labeled) + self.align_weight * la  # every record aligns; labelled ones BCE
        if self.distill_weight:
            loss = loss + self.distill_weight * losses.distill_loss(logits, self.t_logits[idx])
        return loss

    def pooled_alignment(self, z, t_pool, who):
        """Sum over projectors of each one's alignment on its records, weighted by their share."""
        if self.kind == "infonce":
            z, t_pool, who = gather(z), gather(t_pool), gather(who)
        total = 0.0
        for k in range(1 + len(self.extra_projectors)):
            p, m = self.projector(k)(z), who == k
            if m.any():
                total = total + losses.align_loss(p[m].float(), t_pool[m].float(), self.kind, self.T) * m.float().mean()
            else:  # none of this shard's records: a zero that keeps the projector in the graph
                total = total + 0.0 * p.sum()
        return total


class SimCLR(nn.Module):
    """NT-Xent between two augmented views (Chen et al., ICML 2020); negatives span the global batch."""

    def __init__(self, encoder, temperature=0.1):
        super().__init__()
        self.encoder, self.T = encoder, temperature

    def forward(self, v1, v2):
        z1 = self.encoder.proj(self.encoder.embed(v1)).float()
        z2 = self.encoder.proj(self.encoder.embed(v2)).float()
        return losses.nt_xent(gather(z1), gather(z2), self.T)


class Reconstruction(nn.Module):
    """Generative baseline: Lead ``lead`` of a window -> its 12 preprocessed leads (MSE)."""

    def __init__(self, recon, lead: int = 0):
        super().__init__()
        self.recon, self.lead = recon, lead

    def forward(self, target):
        pred = self.recon(target[:, self.lead:self.lead + 1])
        return F.mse_loss(pred.float(), target)
