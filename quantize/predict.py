"""Predict functions over preprocessed windows, for ``selfmis evaluate --model BUNDLE`` and the pipeline.

Both return ``predict(windows) -> (N, n_labels) float32 logits`` where
``windows`` is ``(N, 1, W)`` (the evaluator's convention) or ``(N, W)``,
already preprocessed with ``preprocess_window``. The TFLite one runs the bundle
exactly as the gateway does (``selfmis.edge_runtime.interpreter.TFLiteModel``:
card checks, quantise/dequantise with the interpreter's own parameters).
"""
from __future__ import annotations

import numpy as np

from selfmis.edge_runtime.interpreter import TFLiteModel
from selfmis.train.evaluate import torch_predict_fn

__all__ = ["tflite_predict", "torch_predict", "bundle_predict"]


def tflite_predict(bundle, num_threads: int = 1, use_xnnpack: bool = True, kernels: str | None = None):
    """predict_fn for a bundle directory (or ``Bundle``); ``.model`` holds the ``TFLiteModel``
    (``kernels``: as :class:`TFLiteModel` chooses them; None: the environment's, else the card's)."""
    return bundle_predict(TFLiteModel(bundle, num_threads=num_threads, use_xnnpack=use_xnnpack, kernels=kernels))


def bundle_predict(model):
    """predict_fn over windows ``(N, 1, W)`` or ``(N, W)`` for any model with ``predict_logits((N, W))``
    and a ``card`` (LiteRT's :class:`TFLiteModel`, TFLite Micro's ``MicroModel``)."""

    def predict(windows):
        x = np.asarray(windows, np.float32)
        return model.predict_logits(x.reshape(len(x), -1))

    predict.model = model
    predict.labels = list(model.card.labels)
    return predict


def torch_predict(model, batch_size: int = 512):
    """predict_fn for a torch module taking (B, 1, W): the trainer's helper, fed (N, W) or (N, 1, W)."""
    predict_lead = torch_predict_fn(model, batch_size)

    def predict(windows):
        x = np.asarray(windows, np.float32)
        return predict_lead(x.reshape(len(x), 1, -1))

    return predict
