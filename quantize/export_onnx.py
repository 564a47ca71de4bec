"""Export the (BatchNorm-folded) student to ONNX with a fixed (1, 1, W) input, checked by onnxruntime."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from .student import ExportWrapper, Student, fold_batchnorm

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "export_onnx", "onnx_parity", "ExportError", "onnx_op_types"]

INPUT_NAME = "ecg"
OUTPUT_NAME = "logits"


class ExportError(RuntimeError):
    """A conversion step produced a model that does not match its source."""


def export_onnx(model: torch.nn.Module, path, window: int = 500, opset: int = 17) -> Path:
    """Write ``model`` as ONNX with input ``ecg`` (1, 1, window) and output ``logits``.

    A :class:`Student` is BN-folded and wrapped (logits only) first. The legacy
    TorchScript exporter is used: for a plain CNN it writes one self-contained
    file with no onnxscript rewrites, which onnx2tf reads most reliably.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(model, Student):
        model = ExportWrapper(fold_batchnorm(model))
    model = model.eval().float()
    dummy = torch.zeros(1, 1, window)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (dummy,), str(path), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=opset, dynamo=False,
                          do_constant_folding=True)
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))
    return path


def onnx_op_types(path) -> list:
    import onnx

    return sorted({n.op_type for n in onnx.load(str(path)).graph.node})


def onnx_parity(model: torch.nn.Module, path, windows: np.ndarray, tol: float = 1e-4) -> float:
    """Max |onnxruntime - torch| over ``windows`` (n, W); raises :class:`ExportError` above ``tol``."""
    import onnxruntime as ort

    if isinstance(model, Student):
        model = ExportWrapper(fold_batchnorm(model))
    model = model.eval()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.asarray(windows, np.float32).reshape(len(windows), 1, -1)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = np.concatenate([sess.run(None, {INPUT_NAME: x[i:i + 1]})[0] for i in range(len(x))])
    diff = float(np.abs(got - ref).max())
    if not diff <= tol:
        raise ExportError(f"{path}: onnxruntime differs from torch by {diff:.3g} > {tol}")
    return diff
