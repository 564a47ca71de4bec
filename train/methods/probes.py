"""Linear probes: a frozen encoder with only its head trained (SelfMIS/SimCLR ``probe="linear"``,
and the random-encoder floor)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from selfmis.train.crops import record_windows
from selfmis.train.inputs import lead_of, new_encoder
from selfmis.train.loop import TrainState
from selfmis.train.validation import embed


def train_random(data, cfg, state: TrainState):
    """A random-init frozen encoder with a linear probe: the floor every method must beat."""
    return linear_probe(new_encoder(cfg, 1), data, cfg, state)


def linear_probe(model, data, cfg, state: TrainState, steps=300):
    """Frozen encoder, train only the head on embeddings of the evaluation windows of each record."""
    win = record_windows(lead_of(data["train"], cfg), cfg["window_s"], cfg["stride_s"])
    n, k = win.shape[:2]
    device = state.rt.device
    model.to(device).eval()
    Z = torch.from_numpy(embed(model, win.reshape(n * k, 1, -1))).to(device)
    Y = torch.from_numpy(np.repeat(data["train"]["Y"], k, axis=0)).to(device)
    mu, sd = Z.mean(0), Z.std(0) + 1e-6  # standardised features: one lr fits every encoder
    head = torch.nn.Linear(Z.shape[1], Y.shape[1]).to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-2, weight_decay=1e-3)
    for _ in tqdm(range(steps), desc="linear probe", leave=False, disable=not cfg["progress"]):
        loss = F.binary_cross_entropy_with_logits(head((Z - mu) / sd), Y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():  # fold the standardisation into the model's own head
        model.head.weight.copy_(head.weight / sd)
        model.head.bias.copy_(head.bias - (head.weight * mu / sd).sum(1))
    state.log.append({"stage": "linear_probe", "final_loss": float(loss.detach())})
    return model
