"""SimCLR: augmentation-invariance contrastive pretraining on Lead I, then the same head as
every single-lead method (linear probe or fine-tuning)."""
from __future__ import annotations

import torch

from selfmis.train.crops import simclr_view
from selfmis.train.inputs import lead_of, new_encoder, usable
from selfmis.train.loop import TrainState, run_stage
from selfmis.train.methods.probes import linear_probe
from selfmis.train.methods.supervised import finetune
from selfmis.train.objectives import SimCLR


def train_simclr(data, cfg, state: TrainState):
    model = new_encoder(cfg, 1, proj_dim=128)
    X_lead = lead_of(data["train"], cfg)
    keep = usable(X_lead, data["train"]["ids"], state)

    def make(pos, rng, part):
        xb = X_lead[keep[pos]]
        v1, v2 = (torch.from_numpy(simclr_view(xb, rng, part=part)) for _ in range(2))
        return {"v1": v1, "v2": v2}

    run_stage("simclr", model, SimCLR(model, cfg["temperature"]), len(keep), make, cfg["pretrain_epochs"], cfg, state)
    if cfg["probe"] == "linear":
        return linear_probe(model, data, cfg, state)
    return finetune("finetune", model, data, cfg, state)
