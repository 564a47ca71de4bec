"""1-D ResNet family for ECG: one encoder class, any number of input leads.

Every model of this package maps a preprocessed window ``(B, leads, W)`` to
logits ``(B, len(DEFAULT_TASKS))`` and has ``embed(x) -> (B, D)``. Global
average pooling makes them work for any ``W >= 250`` (2.5 s at 100 Hz), which
is what self-cutting and the gateway's 5 s windows need.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from selfmis.train.data import DEFAULT_TASKS

__all__ = ["ResNet1d", "GenerativeLead1", "LeadReconstructor", "build_model", "ARCHITECTURES"]


class BasicBlock1d(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        pad = kernel // 2
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride, pad, bias=False)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, 1, pad, bias=False)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.skip = None
        if stride != 1 or c_in != c_out:  # 1x1 projection so the residual shapes match
            self.skip = nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.skip is None else self.skip(x)))


class ResNet1d(nn.Module):
    """Stem + ``len(widths)`` stages (each halves time) of ``depth`` blocks + global pooling + head.

    ``features(x)`` gives the pre-pool feature map (B, D, W/32), ``embed(x)`` the pooled
    vector (B, D), ``forward(x)`` the task logits. ``proj`` is an optional projector used by
    SelfMIS alignment (kept in the checkpoint so the latent gap can be measured later).
    """

    def __init__(self, in_leads: int = 1, widths=(32, 64, 96, 128), depth: int = 1, kernel: int = 7,
                 n_tasks: int = len(DEFAULT_TASKS), proj_dim: int = 0, proj_kind: str = "mlp"):
        super().__init__()
        self.arch = dict(name="ResNet1d", in_leads=in_leads, widths=list(widths), depth=depth,
                         kernel=kernel, n_tasks=n_tasks, proj_dim=proj_dim, proj_kind=proj_kind)
        self.stem = nn.Sequential(nn.Conv1d(in_leads, widths[0], 15, 2, 7, bias=False),
                                  nn.BatchNorm1d(widths[0]), nn.ReLU())
        blocks, c = [], widths[0]
        for w in widths:
            for i in range(depth):
                blocks.append(BasicBlock1d(c, w, kernel, 2 if i == 0 else 1))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.dim = c
        self.head = nn.Linear(c, n_tasks)
        # projector into the teacher's latent space (SelfMIS); identity-free MLP as in SimCLR
        # "mlp" acts on the pooled vector, "conv" (1x1) on every time step of the feature map
        lin = nn.Linear if proj_kind == "mlp" else (lambda a, b: nn.Conv1d(a, b, 1))
        self.proj = nn.Sequential(lin(c, c), nn.ReLU(), lin(c, proj_dim)) if proj_dim else None

    def features(self, x):
        return self.blocks(self.stem(x))

    def embed(self, x):
        return self.features(x).mean(-1)

    def forward(self, x):
        return self.head(self.embed(x))

    def aligned_embed(self, x):
        """Embedding in the teacher's space (projector output), or the plain embedding."""
        if self.proj is None:
            return self.embed(x)
        if self.arch["proj_kind"] == "conv":
            return self.proj(self.features(x)).mean(-1)
        return self.proj(self.embed(x))


class LeadReconstructor(nn.Module):
    """Lead I window -> 12 preprocessed leads of the same window (generative baseline).

    A small fully-convolutional encoder-decoder (no pooling of time, so any W works);
    the output is re-standardised per lead, as ``preprocess_window`` would do.
    """

    def __init__(self, width: int = 32, n_layers: int = 6, kernel: int = 9, out_leads: int = 12):
        super().__init__()
        self.arch = dict(name="LeadReconstructor", width=width, n_layers=n_layers, kernel=kernel,
                         out_leads=out_leads)
        layers, c = [], 1
        for i in range(n_layers):
            d = 2 ** (i % 4)  # dilations widen the receptive field to ~1.5 s without downsampling
            layers += [nn.Conv1d(c, width, kernel, padding=d * (kernel // 2), dilation=d),
                       nn.BatchNorm1d(width), nn.GELU()]
            c = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv1d(width, out_leads, 1)

    def forward(self, x):
        y = self.out(self.body(x))
        # lead I itself is known: keep the input as the first output lead
        y = torch.cat([x, y[:, 1:]], dim=1)
        return (y - y.mean(-1, keepdim=True)) / y.std(-1, keepdim=True).clamp_min(1e-6)


class GenerativeLead1(nn.Module):
    """Baseline (3): reconstruct 12 leads from Lead I, then a frozen 12-lead classifier."""

    def __init__(self, recon: dict | None = None, classifier: dict | None = None):
        super().__init__()
        self.recon = LeadReconstructor(**_kwargs(recon or {}))
        self.classifier = ResNet1d(**_kwargs(classifier or dict(in_leads=12)))
        self.arch = dict(name="GenerativeLead1", recon=self.recon.arch, classifier=self.classifier.arch)

    def forward(self, x):
        return self.classifier(self.recon(x))

    def embed(self, x):
        return self.classifier.embed(self.recon(x))

    def aligned_embed(self, x):
        return self.embed(x)


def _kwargs(arch: dict) -> dict:
    return {k: v for k, v in arch.items() if k != "name"}


ARCHITECTURES = {"ResNet1d": ResNet1d, "GenerativeLead1": GenerativeLead1, "LeadReconstructor": LeadReconstructor}


def build_model(arch: dict) -> nn.Module:
    """Model from its ``arch`` dict (as stored in checkpoints)."""
    name = arch.get("name")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](**_kwargs(arch))
