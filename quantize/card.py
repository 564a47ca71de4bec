"""Model cards and bundles for converted students, written only through ``selfmis.bundle``."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from selfmis.bundle import ModelCard, TensorSpec, write_bundle
from selfmis.preprocess import PreprocessSpec

from .convert import tflite_io

__all__ = ["tensor_specs", "make_card", "bundle_tflite", "toolchain_versions"]


def _spec(d: dict, layout: str = "") -> TensorSpec:
    scale, zp = d["quantization"]
    return TensorSpec(name=str(d["name"]), shape=[int(v) for v in d["shape"]],
                      dtype=np.dtype(d["dtype"]).name, layout=layout, scale=float(scale), zero_point=int(zp))


def tensor_specs(tflite_path, layout: str, n_labels: int) -> tuple:
    """(input TensorSpec, output TensorSpec) as the interpreter reports them.

    onnx2tf may rename outputs, so the output is chosen by shape (1, n_labels).
    """

    ins, outs = tflite_io(tflite_path)
    if len(ins) != 1:
        raise ValueError(f"{tflite_path}: expected one input, found {[d['name'] for d in ins]}")
    match = [d for d in outs if [int(v) for v in d["shape"]] == [1, n_labels]]
    if len(match) != 1:
        raise ValueError(f"{tflite_path}: expected one (1, {n_labels}) output, found "
                         f"{[(d['name'], list(d['shape'])) for d in outs]}")
    return _spec(ins[0], layout), _spec(match[0])


def toolchain_versions() -> dict:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    from selfmis import __version__

    out["selfmis-edge"] = __version__
    return out


def make_card(tflite_path, layout: str, labels, lead: str = "I", name: str = "selfmis-lead1-student-int8",
              spec: PreprocessSpec = PreprocessSpec(), thresholds: dict | None = None, metrics: dict | None = None,
              params: int = 0, training: dict | None = None, description: str = "") -> ModelCard:
    inp, out = tensor_specs(tflite_path, layout, len(labels))
    return ModelCard(name=name, lead=lead, labels=list(labels), preprocessing=spec.to_dict(), input=inp,
                     output=out, output_kind="logits", thresholds=dict(thresholds or {}),
                     metrics=dict(metrics or {}), params=int(params), versions=toolchain_versions(),
                     training=dict(training or {}), description=description)


def bundle_tflite(directory, tflite_path, card: ModelCard):
    """Write ``tflite_path`` + ``card`` as a bundle directory (``write_bundle`` fills size and sha256)."""
    return write_bundle(Path(directory), Path(tflite_path), card)
