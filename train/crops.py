"""Windows the models see: self-cutting crops, SimCLR views, and evaluation windows.

Every window goes through :func:`preprocess_window` on exactly the samples the
model sees (the contract shared with the gateway): a crop is cut from the raw
record first, then filtered and z-scored on its own.
"""
from __future__ import annotations

import numpy as np

from selfmis.preprocess import PreprocessSpec, preprocess_window

__all__ = ["self_cut", "fixed_crop", "simclr_view", "record_windows", "SPEC"]

SPEC = PreprocessSpec()


def _draw(n_local: int, part):
    """How many records to draw random numbers for, and which of them are ours.

    ``part=(offset, n_global)``: this process holds rows ``offset:offset + n_local`` of a global
    batch; it draws for the whole batch from the generator every process shares and keeps its
    rows, so N processes crop exactly as one process would.
    """
    if part is None:
        return n_local, slice(None)
    off, n_global = part
    return n_global, slice(off, off + n_local)


def self_cut(X_raw: np.ndarray, rng: np.random.Generator, min_s: float = 2.5, max_s: float = 10.0,
             fs: float = SPEC.fs, part=None):
    """SelfMIS self-cutting: one random-length window at a random position of each record.

    ``X_raw`` is (B, 1, n) raw single-lead records (the same records the 12-lead teacher
    sees whole). One length per batch (uniform in [min_s, max_s]) so the batch is a tensor;
    each record gets its own start. Returns (crops (B, 1, L) preprocessed, starts, L).
    """
    n = X_raw.shape[-1]
    L = int(rng.integers(int(round(min_s * fs)), min(int(round(max_s * fs)), n) + 1))
    n_draw, mine = _draw(len(X_raw), part)
    starts = rng.integers(0, n - L + 1, size=n_draw)[mine]
    idx = starts[:, None] + np.arange(L)[None, :]
    crops = np.take_along_axis(X_raw, idx[:, None, :], axis=-1)
    return preprocess_window(crops, SPEC), starts, L


def fixed_crop(X_raw: np.ndarray, rng: np.random.Generator, window: int = SPEC.window_samples, part=None):
    """Random-position crop of the deployed window length (5 s), preprocessed."""
    n = X_raw.shape[-1]
    n_draw, mine = _draw(len(X_raw), part)
    starts = rng.integers(0, n - window + 1, size=n_draw)[mine]
    idx = starts[:, None] + np.arange(window)[None, :]
    return preprocess_window(np.take_along_axis(X_raw, idx[:, None, :], axis=-1), SPEC)


def simclr_view(X_raw: np.ndarray, rng: np.random.Generator, window: int = SPEC.window_samples,
                fs: float = SPEC.fs, part=None):
    """Baseline (2): a hand-made augmentation of a random 5 s crop (what SelfMIS avoids).

    Random crop, amplitude scaling, Gaussian noise and baseline wander (a slow sine),
    then the usual preprocessing (which removes most wander and scale again: the model
    sees what the gateway would produce from such a corrupted signal).
    """
    B, mine = _draw(len(X_raw), part)
    x = fixed_crop(X_raw, rng, window, part)  # unit variance, so noise levels are relative
    t = np.arange(window) / fs
    scale = rng.uniform(0.6, 1.4, size=(B, 1, 1))[mine]
    noise = (rng.normal(0, 1, size=(B,) + x.shape[1:]) * rng.uniform(0.0, 0.3, size=(B, 1, 1)))[mine]
    f_w = rng.uniform(0.05, 0.5, size=(B, 1, 1))[mine]
    wander = rng.uniform(0, 1.0, size=(B, 1, 1))[mine] * np.sin(2 * np.pi * f_w * t + rng.uniform(0, 2 * np.pi, (B, 1, 1))[mine])
    return preprocess_window((x * scale + noise + wander).astype(np.float32), SPEC)


def record_windows(X_raw: np.ndarray, window_s: float = SPEC.window_s, stride_s: float = 1.0,
                   fs: float = SPEC.fs) -> np.ndarray:
    """(n, samples) or (n, 1, samples) raw single-lead records -> (n, k, 1, W) preprocessed windows.

    5 s windows every 1 s (6 per 10 s record): the record score is the mean of their logits,
    which mirrors the gateway's rolling decision over beats.
    """
    X = np.asarray(X_raw, dtype=np.float32)
    if X.ndim == 3:
        X = X[:, 0]
    W, S = int(round(window_s * fs)), int(round(stride_s * fs))
    if X.shape[-1] < W:
        raise ValueError(f"records of {X.shape[-1]} samples are shorter than one {W}-sample window")
    starts = np.arange(0, X.shape[-1] - W + 1, S)
    win = np.stack([X[:, s:s + W] for s in starts], axis=1)  # (n, k, W)
    return preprocess_window(win, SPEC)[:, :, None, :]
