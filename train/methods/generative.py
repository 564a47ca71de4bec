"""Generative baseline: Lead I -> 12-lead reconstruction (MSE), then the frozen 12-lead teacher
classifies the reconstruction."""
from __future__ import annotations

import torch

from selfmis.train.crops import fixed_crop
from selfmis.train.data import LEADS
from selfmis.train.inputs import usable
from selfmis.train.loop import TrainState, run_stage
from selfmis.train.methods.teachers import get_teacher
from selfmis.train.models import GenerativeLead1
from selfmis.train.objectives import Reconstruction


def train_generative(data, cfg, state: TrainState):
    teacher = get_teacher(data, cfg, state)
    torch.manual_seed(cfg["seed"])
    model = GenerativeLead1(classifier=teacher.arch)
    model.classifier.load_state_dict(teacher.state_dict())
    for p in model.classifier.parameters():  # the 12-lead classifier stays frozen
        p.requires_grad_(False)
    X = data["train"]["X"]
    keep = usable(X, data["train"]["ids"], state)

    def make(pos, rng, part):  # a random 5 s window of all 12 leads: Lead I in, the 12 leads out
        return {"target": torch.from_numpy(fixed_crop(X[keep[pos]], rng, part=part))}

    model.classifier.eval()
    run_stage("reconstruct", model.recon, Reconstruction(model.recon, LEADS.index(cfg["lead"])), len(keep), make,
              cfg["pretrain_epochs"], cfg, state)
    model.classifier.to(state.rt.device)
    state.teacher_model = teacher
    return model
