"""SelfMIS self-alignment: a 12-lead teacher sees the whole record, the single-lead student a
*self-cut* window of it (random length 2.5-10 s, random position, no hand-made augmentation), and
the student's (projected) embedding is pulled onto the teacher's.

``schedule="two_stage"``: align, then linear probe or fine-tune; ``schedule="joint"``: supervised
loss + alignment as a regulariser (+ optional logit distillation) from the first step. The teacher
is loaded, trained here, several cross-fitted ones, or (``teacher_init="random"``) learnt from
scratch together with the student by the alignment alone.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from selfmis.preprocess import preprocess_window
from selfmis.train import validation
from selfmis.train.crops import SPEC, self_cut
from selfmis.train.inputs import lead_of, new_encoder, usable
from selfmis.train.loop import TrainState, run_stage
from selfmis.train.methods.probes import linear_probe
from selfmis.train.methods.supervised import finetune
from selfmis.train.methods.teachers import crossfit_assignment, get_teacher, teacher_paths, teacher_targets
from selfmis.train.objectives import SelfAlignment


@dataclass
class Targets:
    """The teacher and what the student aligns to (``None``: computed live by a co-trained teacher)."""

    teacher: torch.nn.Module
    assign: np.ndarray                 # per record: which teacher (and projector) it aligns to
    emb: torch.Tensor | None = None    # pooled embeddings
    fmap: torch.Tensor | None = None   # feature maps
    logits: torch.Tensor | None = None


def train_selfmis(data, cfg, state: TrainState):
    X12p = preprocess_window(data["train"]["X"], SPEC)
    t = alignment_targets(data, X12p, cfg, state)
    for p in t.teacher.parameters():
        p.requires_grad_(cfg["cotrain"])
    X_lead, ids = lead_of(data["train"], cfg), data["train"]["ids"]
    keep = usable(X_lead, ids, state)
    # featmap alignment: a per-time-step projector (1x1 conv) onto the teacher's map over the crop
    model = new_encoder(cfg, 1, proj_dim=t.teacher.dim,
                        proj_kind="conv" if cfg["align_target"] == "featmap" else "mlp")
    extra = extra_projectors(model, t.assign, cfg)
    val_fn = validation.single_lead_val_fn(model, data, cfg)
    make = self_cut_batches(X_lead, X12p, data["train"], keep, t.assign, cfg)
    n_items = len(keep) * cfg["crops_per_record"]  # several self-cut crops of every record per epoch

    def objective(joint):
        return SelfAlignment(model, extra_projectors=extra, teacher=t.teacher if cfg["cotrain"] else None,
                             t_emb=t.emb, t_map=t.fmap, t_logits=t.logits, align_target=cfg["align_target"],
                             align_kind=cfg["align_loss"], temperature=cfg["temperature"],
                             align_weight=cfg["align_weight"], distill_weight=cfg["distill_weight"], joint=joint,
                             teacher_bce=cfg["teacher_init"] != "random", n_total=X_lead.shape[-1])
    if cfg["schedule"] == "two_stage":
        run_stage("align", model, objective(False), n_items, make, cfg["pretrain_epochs"], cfg, state)
        model = linear_probe(model, data, cfg, state) if cfg["probe"] == "linear" else \
            finetune("finetune", model, data, cfg, state)
    else:
        model = run_stage("joint", model, objective(True), n_items, make, cfg["epochs"], cfg, state, val_fn)
    state.teacher_model = t.teacher
    return model


def alignment_targets(data, X12p, cfg, state: TrainState) -> Targets:
    """Cross-fitted teachers, a self-supervised one co-trained here, or one teacher (given or trained)."""
    device = state.rt.device
    assign = np.zeros(len(X12p), dtype=np.int64)
    if len(teacher_paths(cfg)) > 1:  # cross-fitting
        if cfg["cotrain"] or cfg["align_target"] != "pooled":
            raise ValueError("cross-fitted teachers support pooled alignment to frozen teachers only")
        teachers, assign = crossfit_assignment(teacher_paths(cfg), data["train"]["folds"], cfg)
        state.teacher_from = "cross-fitted: " + ", ".join(teacher_paths(cfg))
        targets = [teacher_targets(t, X12p, device) for t in teachers]
        pick = torch.from_numpy(assign).to(device)
        # logits share one label space, so they mix; embeddings do not (one projector per teacher)
        rows = torch.arange(len(pick), device=device)
        return Targets(teachers[0], assign, emb=torch.stack([t[0] for t in targets])[pick, rows],
                       logits=torch.stack([t[2] for t in targets])[pick, rows])
    if cfg["teacher_init"] == "random":
        teacher = new_encoder(cfg, 12)
        state.teacher_from = "self-supervised here (co-trained by the alignment, no labels)"
        return Targets(teacher, assign)
    teacher = get_teacher(data, cfg, state)
    return Targets(teacher, assign, *teacher_targets(teacher, X12p, device))


def extra_projectors(model, assign, cfg) -> list:
    """One projector per further cross-fitted teacher (trained, not part of the saved student)."""
    if assign.max() <= 0:
        return []
    torch.manual_seed(cfg["seed"] + 1)
    return [copy.deepcopy(model.proj).apply(_reset) for _ in range(int(assign.max()))]


def _reset(m):
    if hasattr(m, "reset_parameters"):
        m.reset_parameters()


def self_cut_batches(X_lead, X12p, train, keep, assign, cfg):
    """Shards of self-cut crops of the student's lead, with labels, teacher index and crop place
    (and the whole 12-lead records when the teacher is co-trained)."""
    Y, labeled = train["Y"], train["labeled"].astype(np.float32)

    def make(pos, rng, part):
        idx = keep[pos % len(keep)]
        x, starts, L = self_cut(X_lead[idx], rng, cfg["crop_min_s"], cfg["crop_max_s"], part=part)
        b = {"x": torch.from_numpy(x), "idx": torch.from_numpy(idx), "y": torch.from_numpy(Y[idx]),
             "labeled": torch.from_numpy(labeled[idx]), "who": torch.from_numpy(assign[idx]),
             "starts": torch.from_numpy(starts).float(), "crop_len": int(L)}
        if cfg["cotrain"]:
            b["x12"] = torch.from_numpy(np.ascontiguousarray(X12p[idx]))
        return b
    return make
