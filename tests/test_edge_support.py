"""Shared helpers for the edge-runtime tests (imported by the other test_edge_* files).

``model_bundle()`` is the shipped default bundle (edge_runtime/models/default)
when present; otherwise ``stand_in_bundle()`` builds, once per process, a tiny
full-int8 TFLite model with TensorFlow (tests only; the runtime never imports
TF) in the project's bundle format.
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PTBXL = Path(os.environ.get("SELFMIS_PTBXL", Path(__file__).resolve().parents[2] / "shared" / "data" / "ptbxl-subset"))
SAMPLE = REPO / "core" / "sample_data" / "ptbxl"


def ptbxl_root() -> Path | None:
    for root in (PTBXL, SAMPLE):
        if (root / "ptbxl_database.csv").is_file() or (root / "records100").is_dir():
            return root
    return None


def record_path(ecg_id: int, hr: bool = False) -> str | None:
    root = ptbxl_root()
    if root is None:
        return None
    sub, suf = ("records500", "hr") if hr else ("records100", "lr")
    p = root / sub / f"{(ecg_id // 1000) * 1000:05d}" / f"{ecg_id:05d}_{suf}"
    return str(p) if Path(str(p) + ".hea").is_file() else None


def quiet_env(tmp: Path | None = None) -> dict:
    tmp = Path(tmp or tempfile.gettempdir())
    env = dict(os.environ)
    env.update({"TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_HOME": str(tmp / "keras"),
                "MPLCONFIGDIR": str(tmp / "mpl"), "XDG_CACHE_HOME": str(tmp / "xdg"),
                "PYTHONUNBUFFERED": "1"})
    return env


def run_cli(argv, capsys) -> tuple:
    """``edge-run ARGV`` in this process: (exit code, the JSON Lines events it wrote to stdout)."""
    from selfmis.edge_runtime import cli
    code = cli.main(argv)
    return code, [json.loads(l) for l in capsys.readouterr().out.splitlines() if l.strip()]


@functools.lru_cache(maxsize=None)
def model_bundle() -> str:
    """The shipped default bundle when it is there and loads, else the TF-built stand-in."""
    from selfmis.bundle import BundleError, load_bundle
    from selfmis.edge_runtime.models import default_bundle_dir
    try:
        load_bundle(default_bundle_dir())
        return str(default_bundle_dir())
    except BundleError:
        return stand_in_bundle()


@functools.lru_cache(maxsize=None)
def stand_in_bundle() -> str:
    """Directory of a stand-in bundle (labels MI, IMI; input (1, 500, 1) int8, NWC)."""
    d = Path(tempfile.mkdtemp(prefix="selfmis-edge-model-"))
    for k, v in quiet_env(d).items():
        if k in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
            os.environ.setdefault(k, v)
    import tensorflow as tf
    from selfmis.bundle import ModelCard, TensorSpec, write_bundle
    from selfmis.edge_runtime.interpreter import interpreter_backend
    from selfmis.preprocess import PreprocessSpec

    tf.keras.utils.set_random_seed(7)
    inp = tf.keras.Input((500, 1), batch_size=1, name="ecg")
    h = tf.keras.layers.Conv1D(8, 7, strides=2, activation="relu")(inp)
    h = tf.keras.layers.Conv1D(8, 5, strides=2, activation="relu")(h)
    h = tf.keras.layers.GlobalAveragePooling1D()(h)
    init = tf.keras.initializers.RandomNormal(stddev=1.5, seed=3)
    out = tf.keras.layers.Dense(2, name="logits", kernel_initializer=init,
                                bias_initializer=tf.keras.initializers.Constant([0.3, -0.4]))(h)
    model = tf.keras.Model(inp, out)
    rng = np.random.default_rng(0)

    def rep():
        for _ in range(32):
            yield [rng.normal(0, 1, (1, 500, 1)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    blob = conv.convert()
    Interpreter, _, _ = interpreter_backend()
    it = Interpreter(model_content=blob)
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    spec = lambda d, layout="": TensorSpec(d["name"], [int(v) for v in d["shape"]],
                                           np.dtype(d["dtype"]).name, layout,
                                           float(d["quantization"][0]), int(d["quantization"][1]))
    card = ModelCard(name="stand-in-test-model", lead="I", labels=["MI", "IMI"],
                     preprocessing=PreprocessSpec().to_dict(), input=spec(i, "NWC"), output=spec(o),
                     thresholds={"MI": 0.5, "IMI": 0.5},
                     description="random-weight stand-in for tests; not a medical model")
    write_bundle(d / "bundle", blob, card)
    return str(d / "bundle")
