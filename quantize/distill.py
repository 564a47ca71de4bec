"""Knowledge distillation of the student from the teacher on Lead-I 5 s windows.

Loss = ``w_label`` * BCE(student, labels)
     + ``w_logit`` * T^2 * BCE(student / T, sigmoid(teacher / T))   (soft targets, per task)
     + ``w_embed`` * (1 - cos(embed_head(student features), teacher embedding))

Teacher outputs are computed once on all training windows (the teacher is
frozen), so an epoch costs only the student's forward/backward.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .student import Student, StudentConfig

__all__ = ["DistillConfig", "distill"]


@dataclass
class DistillConfig:
    epochs: int = 40
    batch: int = 128
    lr: float = 4e-3
    weight_decay: float = 1e-3
    temperature: float = 2.0
    w_label: float = 0.5
    w_logit: float = 1.0
    w_embed: float = 0.5
    pos_weight_cap: float = 10.0
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def distill(X: np.ndarray, Y: np.ndarray, teacher_logits: np.ndarray, teacher_embed: np.ndarray | None,
            student_config: StudentConfig = StudentConfig(), config: DistillConfig = DistillConfig(),
            progress: bool = True, on_epoch=None) -> Student:
    """Train a :class:`Student` on windows X (n, W), labels Y (n, tasks) and the teacher's targets.

    ``on_epoch(epoch, student) -> score or None`` is called after each epoch (e.g. MI
    AUROC on the validation fold); when it returns scores, the weights of the best
    epoch are kept (``student.selected_epoch`` says which). Returned in eval mode.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    if teacher_embed is not None and config.w_embed > 0:
        student_config = StudentConfig.from_dict({**student_config.to_dict(), "embed_dim": teacher_embed.shape[1]})
    else:
        student_config = StudentConfig.from_dict({**student_config.to_dict(), "embed_dim": 0})
    student = Student(student_config)
    opt = torch.optim.AdamW(student.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    n_batches = int(np.ceil(len(X) / config.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * n_batches)
    pos = np.asarray(Y, np.float64).mean(0).clip(1e-3, None)
    pos_weight = torch.tensor(np.minimum((1 - pos) / pos, config.pos_weight_cap), dtype=torch.float32)
    Xt = torch.from_numpy(np.asarray(X, np.float32))[:, None]
    Yt = torch.from_numpy(np.asarray(Y, np.float32))
    T = config.temperature
    soft = torch.sigmoid(torch.from_numpy(np.asarray(teacher_logits, np.float32)) / T)
    Et = torch.from_numpy(np.asarray(teacher_embed, np.float32)) if student.embed_head is not None else None

    best_score, best_state, student.selected_epoch = -np.inf, None, config.epochs - 1
    bar = tqdm(range(config.epochs), desc="distilling student", disable=not progress)
    for epoch in bar:
        student.train()
        total = 0.0
        for idx in np.array_split(rng.permutation(len(X)), n_batches):
            idx = torch.from_numpy(idx)
            logits, emb = student.forward_distill(Xt[idx])
            loss = config.w_label * F.binary_cross_entropy_with_logits(logits, Yt[idx], pos_weight=pos_weight)
            loss = loss + config.w_logit * T * T * F.binary_cross_entropy_with_logits(logits / T, soft[idx])
            if emb is not None:
                loss = loss + config.w_embed * (1 - F.cosine_similarity(emb, Et[idx], dim=1)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        bar.set_postfix(loss=f"{total / len(X):.4f}")
        student.eval()
        score = on_epoch(epoch, student) if on_epoch is not None else None
        if score is not None and np.isfinite(score) and score > best_score:
            best_score, student.selected_epoch = float(score), epoch
            best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
        if score is not None:
            bar.set_postfix(loss=f"{total / len(X):.4f}", val=f"{score:.4f}", best=f"{best_score:.4f}")
    if best_state is not None:
        student.load_state_dict(best_state)
    student.selection_score = None if best_state is None else best_score
    return student.eval()


