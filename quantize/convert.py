"""ONNX -> TFLite (float32 and full-integer int8) with onnx2tf, calibrated on real windows.

onnx2tf is run as ``[sys.executable, "-m", "onnx2tf", ...]`` (a venv that is not
activated has no ``onnx2tf`` on PATH) with TensorFlow's caches pointed at a
temporary folder. Facts this module relies on (shared/notes/toolchain.md):

* onnx2tf turns the channel-first (1, 1, W) input into channel-last (1, W, 1)
  unless ``-k`` keeps it; the calibration array must be in the TF layout.
* without ``-cind`` onnx2tf tries to download MS-COCO images for calibration.
* output names and order may change: tensors are found by shape afterwards.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfmis.bundle import model_operators

from .export_onnx import INPUT_NAME, ExportError

__all__ = ["TFLiteFiles", "convert_onnx", "tflite_io", "tflite_op_names", "tool_env"]


@dataclass
class TFLiteFiles:
    float32: Path
    int8: Path            # int8 weights and activations, int8 input and output
    layout: str           # input layout of both files: "NWC" (1, W, 1) or "NCW" (1, 1, W)
    log: str = ""


def tool_env() -> dict:
    """Environment for TensorFlow subprocesses: quiet, and no writes into $HOME."""
    env = dict(os.environ)
    tmp = Path(tempfile.gettempdir()) / "selfmis-tf"
    for var, sub in (("KERAS_HOME", "keras"), ("MPLCONFIGDIR", "mpl"), ("XDG_CACHE_HOME", "cache")):
        env.setdefault(var, str(tmp / sub))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")  # no GPU probing noise
    env.setdefault("OMP_NUM_THREADS", "1")      # shared 2-core machine
    env.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    env.setdefault("TF_NUM_INTEROP_THREADS", "1")
    return env


def convert_onnx(onnx_path, out_dir, calibration: np.ndarray, keep_ncw: bool = False,
                 quant_type: str = "per-channel", timeout_s: int = 600) -> TFLiteFiles:
    """Convert ``onnx_path`` into ``out_dir``; ``calibration`` is (n, W) preprocessed windows.

    Returns the float32 and full-integer int8 files. ``keep_ncw`` keeps the ONNX
    (1, 1, W) input layout (a transpose is then added inside the model).
    """
    onnx_path, out_dir = Path(onnx_path).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    calib = np.asarray(calibration, np.float32)
    if calib.ndim != 2 or len(calib) == 0:
        raise ValueError(f"calibration must be (n, W) windows, got {calib.shape}")
    # TF layout of the input: (n, W, 1) unless the ONNX layout is kept.
    calib_tf = calib[:, None, :] if keep_ncw else calib[:, :, None]
    calib_path = out_dir / "calibration.npy"
    np.save(calib_path, calib_tf)
    cmd = [sys.executable, "-m", "onnx2tf", "-i", str(onnx_path), "-o", str(out_dir),
           "-oiqt", "-qt", quant_type, "-iqd", "int8", "-oqd", "int8",
           # windows are already z-scored by preprocess_window: mean 0, std 1, no renormalisation
           "-cind", INPUT_NAME, str(calib_path), "[[[0.0]]]", "[[[1.0]]]"]
    if keep_ncw:
        cmd += ["-k", INPUT_NAME]
    proc = subprocess.run(cmd, env=tool_env(), capture_output=True, text=True, timeout=timeout_s,
                          cwd=str(out_dir))
    log = proc.stdout + proc.stderr
    (out_dir / "onnx2tf.log").write_text(log)
    stem = onnx_path.stem
    f32, i8 = out_dir / f"{stem}_float32.tflite", out_dir / f"{stem}_full_integer_quant.tflite"
    if proc.returncode != 0 or not f32.is_file() or not i8.is_file():
        tail = "\n".join(log.strip().splitlines()[-25:])
        raise ExportError(f"onnx2tf failed on {onnx_path} (rc={proc.returncode}); "
                          f"full log in {out_dir / 'onnx2tf.log'}:\n{tail}")
    layout = "NCW" if keep_ncw else "NWC"
    window = calib.shape[1]
    for path in (f32, i8):
        (inp,), _ = tflite_io(path)
        want = [1, 1, window] if keep_ncw else [1, window, 1]
        if list(inp["shape"]) != want:
            raise ExportError(f"{path}: input shape {list(inp['shape'])}, expected {want} ({layout})")
    return TFLiteFiles(float32=f32, int8=i8, layout=layout, log=log)


def tflite_io(path):
    """(input details, output details) of a .tflite file, via LiteRT."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=1)
    interp.allocate_tensors()
    return interp.get_input_details(), interp.get_output_details()


#: builtin op names of a .tflite (what the gateway will run): the one reader, in selfmis.bundle
tflite_op_names = model_operators
