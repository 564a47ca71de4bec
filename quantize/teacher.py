"""The teacher: the SelfMIS Lead-I checkpoint, or (only when asked for) a quick stand-in.

The real teacher is loaded with ``selfmis.train.checkpoint.load_model(path)``
(``path`` is the training run's folder or its ``model.pt``)
(``forward(x (B,1,W)) -> logits (B, 11)``, ``embed(x) -> (B, D)``). The
stand-in (:class:`StandInTeacher`) has the same interface; it is a plain 1-D
CNN trained here in a couple of minutes so the pipeline can be built and
tested without a trained SelfMIS checkpoint (``selfmis quantize --standin``). Its
checkpoints carry ``kind = "selfmis-quantize-standin"`` so they are never mistaken
for SelfMIS. A teacher that is missing or cannot be read is a :class:`TeacherError`
(exit code ``MODEL``), never a silent fall-back to the stand-in.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from selfmis.exit_codes import CodedError, ExitCode
from selfmis.train.checkpoint import CheckpointError, load_model, resolve_checkpoint

__all__ = ["TeacherError", "StandInTeacher", "train_standin_teacher", "save_standin", "load_teacher", "teacher_outputs",
           "STANDIN_KIND"]

STANDIN_KIND = "selfmis-quantize-standin"


class TeacherError(CodedError):
    """The teacher checkpoint is missing or cannot be loaded (the message names the path)."""

    exit_code = ExitCode.MODEL


class StandInTeacher(nn.Module):
    """Conv-BN-ReLU x 5 with max pooling, global pooling, 128-d embedding, linear head."""
    def __init__(self, n_outputs: int = 11, width: int = 32, embed_dim: int = 128):
        super().__init__()
        c = [1, width, width, 2 * width, 2 * width, 4 * width]
        layers = []
        for a, b in zip(c, c[1:]):
            layers += [nn.Conv1d(a, b, 7, padding=3, bias=False), nn.BatchNorm1d(b), nn.ReLU(), nn.MaxPool1d(2)]
        self.body = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(c[-1], embed_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(embed_dim, n_outputs))
        self.config = {"n_outputs": n_outputs, "width": width, "embed_dim": embed_dim}

    def embed(self, x):
        return self.proj(self.body(x).mean(-1))

    def forward(self, x):
        return self.head(self.embed(x))


def train_standin_teacher(X: np.ndarray, Y: np.ndarray, epochs: int = 12, batch: int = 128, lr: float = 3e-3,
                          seed: int = 0, progress: bool = True) -> StandInTeacher:
    """Supervised BCE on preprocessed windows X (n, W) with labels Y (n, tasks)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = StandInTeacher(n_outputs=Y.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * int(np.ceil(len(X) / batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    # positives are rare for most MI statements: weight them up (capped) so they are learnt at all
    pos = Y.mean(0).clip(1e-3, None)
    pos_weight = torch.tensor(np.minimum((1 - pos) / pos, 10.0), dtype=torch.float32)
    lossf = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    Xt, Yt = torch.from_numpy(np.asarray(X, np.float32))[:, None], torch.from_numpy(np.asarray(Y, np.float32))
    model.train()
    for _ in tqdm(range(epochs), desc="stand-in teacher", disable=not progress):
        for idx in np.array_split(rng.permutation(len(X)), int(np.ceil(len(X) / batch))):
            opt.zero_grad()
            loss = lossf(model(Xt[idx]), Yt[idx])
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def save_standin(model: StandInTeacher, path, provenance: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": STANDIN_KIND, "config": model.config, "state_dict": model.state_dict(),
                "provenance": provenance}, path)
    return path


def load_teacher(path):
    """(model in eval mode, config dict, kind) for a SelfMIS checkpoint or a stand-in.

    Parameters
    ----------
    path : str or Path
        A training run's folder (holding ``model.pt``) or the checkpoint file itself.

    Raises
    ------
    TeacherError
        The checkpoint is missing or is neither a SelfMIS checkpoint nor a stand-in.
    """
    try:
        file = resolve_checkpoint(path)
    except FileNotFoundError as exc:
        raise TeacherError(f"teacher: {exc}") from None
    try:
        # weights_only: plain tensors and dicts; a stand-in's provenance is plain data too
        raw = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise TeacherError(f"teacher {file}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from None
    if isinstance(raw, dict) and raw.get("kind") == STANDIN_KIND:
        model = StandInTeacher(**raw["config"])
        model.load_state_dict(raw["state_dict"])
        return model.eval(), dict(raw["config"], provenance=raw.get("provenance", {})), "stand-in"
    try:
        model, config = load_model(file)
    except CheckpointError as exc:
        raise TeacherError(f"teacher: {exc}") from None
    cfg = config if isinstance(config, dict) else getattr(config, "__dict__", {"repr": repr(config)})
    return model.eval(), dict(cfg), "selfmis"


@torch.no_grad()
def teacher_outputs(model, X: np.ndarray, batch: int = 256, progress: bool = True):
    """(logits (n, tasks), embeddings (n, D) or None) of the teacher on windows X (n, W)."""
    model.eval()
    logits, embs = [], []
    has_embed = hasattr(model, "embed")
    for i in tqdm(range(0, len(X), batch), desc="teacher targets", disable=not progress):
        x = torch.from_numpy(np.asarray(X[i:i + batch], np.float32))[:, None]
        logits.append(model(x).float().numpy())
        if has_embed:
            embs.append(model.embed(x).float().numpy())
    return np.concatenate(logits), (np.concatenate(embs) if has_embed else None)
