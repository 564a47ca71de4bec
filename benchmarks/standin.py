"""Stand-in models, used only when the project's real artefacts are absent.

The benchmark must run in CI (a fresh clone: no ``artifacts/``) and before the
trained models exist. The stand-ins have the real architectures with seeded,
*untrained* weights, so their costs (latency, size, MACs) are the real models'
costs, but their outputs mean nothing: every result measured on one is labelled
``stand-in`` in the JSON and the Markdown.

* student: :class:`selfmis.quantize.student.Student` (default config), seed 0,
  committed as ``benchmarks/standin/`` (torch state dict, ONNX, TFLite fp32 and
  int8 from onnx2tf calibrated on preprocessed windows of the bundled PTB-XL
  records). Rebuild with ``python -m selfmis.benchmarks.standin`` (needs the
  ``train,convert`` extras; ~1 min).
* teacher: :class:`selfmis.train.models.ResNet1d` (default config, one lead),
  seed 0, built in memory (no file).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from selfmis.preprocess import PreprocessSpec, preprocess_window
from selfmis.readers import read_record
from selfmis.sample_data import BUNDLED_PTBXL

__all__ = ["STANDIN_DIR", "standin_files", "build_student", "build_teacher", "calibration_windows", "main"]

STANDIN_DIR = Path(__file__).resolve().parent / "standin"
SEED = 0


def standin_files() -> dict:
    d = STANDIN_DIR
    return {"dir": d, "torch": d / "student.pt", "onnx": d / "student.onnx",
            "tflite_fp32": d / "student_float32.tflite", "tflite_int8": d / "student_int8.tflite",
            "info": d / "standin.json"}


def build_student(state_path=None):
    """The stand-in student (torch), with the committed weights when ``state_path`` exists."""
    import torch

    from selfmis.quantize.student import Student, StudentConfig  # torch-side: lazily, like torch itself

    torch.manual_seed(SEED)
    if state_path and Path(state_path).is_file():
        blob = torch.load(str(state_path), map_location="cpu", weights_only=True)
        model = Student(StudentConfig.from_dict(blob["config"]))
        model.load_state_dict(blob["state_dict"])
    else:
        model = Student(StudentConfig())
    return model.eval()


def build_teacher():
    """The stand-in teacher: default single-lead ResNet1d, seeded, untrained."""
    import torch

    from selfmis.train.models import ResNet1d  # torch-side

    torch.manual_seed(SEED)
    return ResNet1d(in_leads=1).eval()


def calibration_windows(max_windows: int = 200):
    """Preprocessed 5 s Lead-I windows from the bundled PTB-XL records (100 Hz), hop 1 s."""
    import numpy as np

    spec = PreprocessSpec()
    root = BUNDLED_PTBXL / "records100"
    wins = []
    for hea in sorted(root.rglob("*.hea")):
        x = read_record(str(hea)[:-4]).lead("I")
        for s in range(0, len(x) - spec.window_samples + 1, int(spec.fs)):
            wins.append(x[s:s + spec.window_samples])
    if not wins:
        raise RuntimeError(f"no records under {root}")
    w = preprocess_window(np.stack(wins)[:, None, :], spec)[:, 0, :]
    return w[:max_windows].astype(np.float32)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def main(argv=None) -> int:
    """Rebuild the committed stand-in student files."""
    import tempfile

    import torch

    from selfmis.quantize.convert import convert_onnx  # TensorFlow / onnx2tf
    from selfmis.quantize.export_onnx import export_onnx, onnx_parity

    files = standin_files()
    STANDIN_DIR.mkdir(exist_ok=True)
    model = build_student(None)
    # BN running statistics of an untrained net are (0, 1): run a few calibration
    # windows through in train mode so folding and int8 ranges see realistic values.
    calib = calibration_windows()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.from_numpy(calib[:, None, :]))
    model.eval()
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict(), "seed": SEED},
               str(files["torch"]))
    export_onnx(model, files["onnx"], window=calib.shape[1])
    onnx_diff = onnx_parity(model, files["onnx"], calib[:16])
    with tempfile.TemporaryDirectory() as tmp:
        tfl = convert_onnx(files["onnx"], tmp, calib)
        files["tflite_fp32"].write_bytes(Path(tfl.float32).read_bytes())
        files["tflite_int8"].write_bytes(Path(tfl.int8).read_bytes())
        layout = tfl.layout
    from importlib import metadata
    info = {
        "what": "stand-in student: seeded, untrained (BN statistics from 3 passes over calibration windows); "
                "costs are real, outputs meaningless",
        "seed": SEED, "config": model.config.to_dict(), "layout": layout,
        "calibration": f"{len(calib)} preprocessed Lead-I windows from the bundled PTB-XL records100",
        "onnx_vs_torch_max_abs": onnx_diff,
        "versions": {p: metadata.version(p) for p in ("torch", "onnx", "onnx2tf", "tensorflow", "ai-edge-litert")},
        "sha256": {k: _sha(v) for k, v in files.items() if k not in ("dir", "info")},
    }
    files["info"].write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
