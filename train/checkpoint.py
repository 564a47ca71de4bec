"""Checkpoints: state dict + architecture + config (+ optimizer for resume).

Loaded with ``torch.load(weights_only=True)``: a checkpoint is plain tensors,
numbers, strings, lists and dicts, never pickled code.

One convention from training to quantization: ``selfmis train --out RUN`` writes
``RUN/model.pt``; every loader (:func:`load_checkpoint`, :func:`load_model`, the
quantize teacher, ``selfmis train --teacher``) accepts either the run folder ``RUN``
or the file itself (:func:`resolve_checkpoint`).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from selfmis.train.models import build_model

__all__ = ["CheckpointError", "CHECKPOINT_NAME", "resolve_checkpoint", "save_checkpoint", "load_checkpoint", "load_model", "load_weights_into"]

FORMAT = "selfmis-checkpoint"
#: The checkpoint's file name inside a run folder.
CHECKPOINT_NAME = "model.pt"
VERSION = 1


class CheckpointError(ValueError):
    """Not a SelfMIS checkpoint, or one of another architecture than expected."""


def resolve_checkpoint(path) -> Path:
    """The checkpoint file of ``path``: ``path/model.pt`` for a run folder, else ``path`` itself.

    Raises
    ------
    FileNotFoundError
        Neither a file nor a run folder holding ``model.pt`` (the message names the path).
    """
    p = Path(path)
    if p.is_dir():
        if not (p / CHECKPOINT_NAME).is_file():
            raise FileNotFoundError(f"{p}: a folder without {CHECKPOINT_NAME} (not a finished training run)")
        return p / CHECKPOINT_NAME
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint (a run folder with {CHECKPOINT_NAME}, or the file)")
    return p


def save_checkpoint(path, model, config: dict, extra: dict | None = None, optimizer=None) -> Path:
    """Write atomically (temp file + ``os.replace``) so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"format": FORMAT, "version": VERSION, "arch": dict(model.arch),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "config": dict(config), "extra": dict(extra or {})}
    if optimizer is not None:
        blob["optimizer"] = optimizer.state_dict()
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path, map_location="cpu") -> dict:
    """The checkpoint's dict; ``path`` is a run folder or the file (:func:`resolve_checkpoint`)."""
    path = resolve_checkpoint(path)
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a SelfMIS checkpoint (no format={FORMAT!r})")
    return blob


def _check_arch(path, have: dict, want: dict) -> None:
    if have != want:
        diff = {k: (have.get(k), want.get(k)) for k in set(have) | set(want) if have.get(k) != want.get(k)}
        raise CheckpointError(f"{path}: checkpoint architecture differs from the model "
                              f"(field: (checkpoint, model)) {diff}")


def load_model(path, map_location="cpu", expect: str | None = None):
    """``(model, config)`` in eval mode. ``expect`` (e.g. ``"ResNet1d"``) rejects other architectures."""
    blob = load_checkpoint(path, map_location)
    arch = blob["arch"]
    if expect is not None and arch.get("name") != expect:
        raise CheckpointError(f"{path}: checkpoint holds a {arch.get('name')!r}, expected {expect!r}")
    try:
        model = build_model(arch)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: cannot build architecture {arch}: {exc}") from None
    load_weights_into(model, blob, path)
    model.eval()
    config = dict(blob["config"])
    config["_extra"] = blob.get("extra", {})
    return model, config


def load_weights_into(model, blob_or_path, path=None, optimizer=None) -> dict:
    """Load a checkpoint into an existing model; a clear error if the architecture differs."""
    blob = load_checkpoint(blob_or_path) if not isinstance(blob_or_path, dict) else blob_or_path
    path = path or blob_or_path
    _check_arch(path, blob["arch"], dict(model.arch))
    missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: state dict does not match {model.arch.get('name')}: "
                              f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    if optimizer is not None and "optimizer" in blob:
        optimizer.load_state_dict(blob["optimizer"])
    return blob
