"""Supervised training: the 12-lead model (upper bound and SelfMIS teacher), Lead I from scratch,
and the fine-tuning stage every pretrained single-lead encoder ends with."""
from __future__ import annotations

import torch

from selfmis.preprocess import preprocess_window
from selfmis.train import validation
from selfmis.train.crops import SPEC
from selfmis.train.data import DEFAULT_TASKS
from selfmis.train.evaluate import auroc
from selfmis.train.inputs import aux_head, lead_of, new_encoder, supervised_batches, usable
from selfmis.train.loop import TrainState, run_stage
from selfmis.train.objectives import Supervised


def train_twelve_lead(data, cfg, state: TrainState, name="twelve_lead"):
    """The 12-lead model on whole preprocessed records (``name="teacher"``: SelfMIS's teacher stage)."""
    model = new_encoder(cfg, 12)
    X12p = preprocess_window(data["train"]["X"], SPEC)
    Xv = preprocess_window(data["val"]["X"], SPEC)
    mask = torch.ones(len(DEFAULT_TASKS))
    if cfg["teacher_tasks"] == "MI":  # ablation: a teacher that only learns the MI superclass
        mask = torch.zeros(len(DEFAULT_TASKS))
        mask[0] = 1.0
    aux = aux_head(model, data, cfg)
    keep = usable(X12p, data["train"]["ids"], state)
    make = supervised_batches(X12p, data["train"]["Y"], keep, cfg, data["train"].get("Yaux") if aux else None,
                              crop=False)
    val = lambda: auroc(data["val"]["Y"][:, 0], validation.eval_scores(model, Xv)[:, 0])  # noqa: E731
    epochs = cfg["teacher_epochs"] if name == "teacher" else cfg["epochs"]
    return run_stage(name, model, Supervised(model, aux, mask), len(keep), make, epochs, cfg, state, val)


def train_scratch(data, cfg, state: TrainState):
    """Lead I supervised from a random initialisation on random 5 s crops."""
    model = new_encoder(cfg, 1)
    return finetune("scratch", model, data, cfg, state, aux=aux_head(model, data, cfg))


def finetune(name, model, data, cfg, state: TrainState, aux=None):
    """Supervised training of a single-lead encoder on random 5 s crops (scratch, fine-tuning)."""
    X_lead = lead_of(data["train"], cfg)
    keep = usable(X_lead, data["train"]["ids"], state)
    make = supervised_batches(X_lead, data["train"]["Y"], keep, cfg, data["train"].get("Yaux") if aux else None)
    return run_stage(name, model, Supervised(model, aux), len(keep), make, cfg["epochs"], cfg, state,
                     validation.single_lead_val_fn(model, data, cfg))
