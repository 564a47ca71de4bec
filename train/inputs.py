"""What a stage trains on: fresh encoders, the usable records, the lead, supervised batches."""
from __future__ import annotations

import numpy as np
import torch

from selfmis.train.crops import fixed_crop
from selfmis.train.data import DEFAULT_TASKS, LEADS
from selfmis.train.models import ResNet1d


def new_encoder(cfg, in_leads=1, proj_dim=0, proj_kind="mlp"):
    """A ResNet1d with the run's widths, seeded with the run's seed (every method starts alike)."""
    torch.manual_seed(cfg["seed"])
    return ResNet1d(in_leads, cfg["widths"], cfg["depth"], cfg["kernel"], len(DEFAULT_TASKS), proj_dim, proj_kind)


def aux_head(model, data, cfg):
    """An auxiliary linear head on the embedding for the extra statements (trained with the
    encoder, not saved with it), or None when ``aux_tasks="none"``."""
    if "aux_codes" not in data:
        return None
    torch.manual_seed(cfg["seed"] + 2)
    return torch.nn.Linear(model.dim, len(data["aux_codes"]))


def good_rows(xb, ids, state, chunk=1024):
    """Which records are usable (finite, no flat lead); the others are counted once by ecg_id."""
    ok = np.ones(len(xb), bool)
    for i in range(0, len(xb), chunk):  # in chunks: no full-size temporary copies of a large set
        x = np.asarray(xb[i:i + chunk])
        fin = np.isfinite(x).all(axis=tuple(range(1, x.ndim)))
        ok[i:i + chunk] = fin & (np.nan_to_num(x).std(-1) > 1e-6).all(-1)
    for eid in ids[~ok]:
        state.skipped_in_training.add(int(eid))
    return ok


def usable(X, ids, state) -> np.ndarray:
    """Indices of the records a stage trains on: corrupt ones are dropped before training, so a
    shard is never emptied mid-epoch (every rank must take every step)."""
    keep = np.flatnonzero(good_rows(X, ids, state))
    if len(keep) < 2:
        raise ValueError(f"only {len(keep)} usable training records")
    return keep


def lead_of(d, cfg):
    """The run's lead of a split's records, as ``(n, 1, samples)``."""
    return d["X"][:, LEADS.index(cfg["lead"]):LEADS.index(cfg["lead"]) + 1]


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
