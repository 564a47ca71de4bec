"""Model selection on the validation fold: MI AUROC of a model's outputs, averaged over windows."""
from __future__ import annotations

import numpy as np
import torch

from selfmis.train.crops import record_windows
from selfmis.train.evaluate import auroc, torch_predict_fn
from selfmis.train.inputs import lead_of


def eval_scores(model, x):
    """Model outputs on ``x`` (numpy, preprocessed) in eval mode, then back to training mode."""
    model.eval()
    s = torch_predict_fn(model)(x)
    model.train()
    return s


def single_lead_val_fn(model, data, cfg):
    """``() -> MI AUROC`` of ``model`` on the validation records (mean over their windows)."""
    win = record_windows(lead_of(data["val"], cfg), cfg["window_s"], cfg["stride_s"])
    n, k = win.shape[:2]
    xv = win.reshape(n * k, 1, -1)
    y = data["val"]["Y"][:, 0]
    return lambda: auroc(y, eval_scores(model, xv).reshape(n, k, -1).mean(1)[:, 0])


def embed(model, x):
    """Pooled embeddings (not the projector's) of preprocessed windows, in batches."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return torch.cat([model.embed(torch.from_numpy(np.ascontiguousarray(x[i:i + 512])).to(device)).float().cpu()
                          for i in range(0, len(x), 512)]).numpy()
