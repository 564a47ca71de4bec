"""Which models are measured: the project's real artefacts when present, else labelled stand-ins.

Search order (each overridable on the command line):

* teacher (torch): ``--teacher`` or ``artifacts/selfmis_lead1`` (the run folder `make model` trains; a file also works) (loaded with
  ``selfmis.train.checkpoint.load_model``); else the stand-in ResNet1d.
* student (torch, ONNX, TFLite fp32, TFLite int8): ``--student-dir`` or the quantize
  output folders listed in :data:`STUDENT_DIRS`; a folder counts when it holds a torch
  student and an int8 TFLite. Missing ONNX / fp32 files are converted from the real
  torch student on the fly (needs the convert extra). Else the committed stand-in
  student (``benchmarks/standin``), whose four files are one model.
* shipped bundle: ``edge_runtime/models/default`` (int8, the model ``edge-run`` uses),
  measured as its own row when present.

Every model dict carries ``source``: ``"real: <path>"`` or ``"stand-in: <why>"``.
"""
from __future__ import annotations

import glob
import json
from pathlib import Path

from selfmis.bundle import sha256_file
from selfmis.edge_runtime.models import default_bundle_dir

from .standin import STANDIN_DIR, build_teacher, standin_files

__all__ = ["ROOT", "find_models", "load_torch_model", "STUDENT_DIRS", "default_bundle"]

#: where ``artifacts/`` is looked for: the source checkout this file lives in, else the working directory
#: (an installed wheel has no checkout around it)
_HERE = Path(__file__).resolve().parent
ROOT = _HERE.parent if (_HERE.parent / "pyproject.toml").is_file() else Path.cwd()
STUDENT_DIRS = ("artifacts/quantize", "artifacts/student", "artifacts/quantized", "artifacts/bundle",
                "artifacts")
#: what `make model` trains (a run folder holding model.pt), then the older single-file name
TEACHER_PATHS = ("artifacts/selfmis_lead1", "artifacts/selfmis_lead1.pt")


def default_bundle():
    """The shipped bundle directory, or None."""
    d = default_bundle_dir()
    return d if (d / "card.json").is_file() else None


def _first(d: Path, patterns) -> Path | None:
    for pat in patterns:
        hits = sorted(glob.glob(str(d / pat)))
        if hits:
            return Path(hits[0])
    return None


def _student_files(d: Path) -> dict:
    return {
        "torch": _first(d, ("student.pt", "student*.pt")),
        "onnx": _first(d, ("student.onnx", "*.onnx", "*/student.onnx", "*/*.onnx")),
        "tflite_fp32": _first(d, ("tflite/*_float32.tflite", "*float32.tflite", "*fp32*.tflite",
                                     "*/*float32.tflite")),
        "tflite_int8": _first(d, ("tflite/*_full_integer_quant.tflite", "*full_integer_quant.tflite", "*int8*.tflite",
                                    "*/*full_integer_quant.tflite",
                                  "model.tflite")),
    }


def load_torch_model(kind: str, path=None):
    """Eval-mode torch module for ``kind``: teacher-checkpoint, teacher-standin, student-file."""
    if kind == "teacher-checkpoint":
        from selfmis.train.checkpoint import load_model  # torch-side: a gateway runs the benchmarks without it

        model, _ = load_model(path)
        return model.eval()
    if kind == "teacher-standin":
        return build_teacher()
    if kind == "student-file":
        return _load_student(path)
    raise ValueError(f"unknown torch model kind {kind!r}")


def _load_student(path):
    """A student saved as {"config", "state_dict"} (the stand-in's and quantize's format)."""
    import torch

    from selfmis.quantize.student import ExportWrapper, Student, StudentConfig, fold_batchnorm  # torch-side

    blob = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict):
        raise ValueError(f"{path}: not a student checkpoint")
    cfg = blob.get("config") or blob.get("student_config") or {}
    sd = blob.get("state_dict") or blob.get("model") or blob
    model = Student(StudentConfig.from_dict(cfg) if cfg else StudentConfig())
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if [k for k in missing if not k.startswith("embed_head")]:
        raise ValueError(f"{path}: student state dict lacks {missing[:5]}")
    # what is deployed: BN folded, logits only (same graph as the ONNX/TFLite files)
    return ExportWrapper(fold_batchnorm(model)).eval()


def _complete_student_dirs() -> list:
    out = []
    for pt in sorted(glob.glob(str(ROOT / "artifacts" / "*" / "student.pt"))):
        d = Path(pt).parent
        if _student_files(d)["tflite_int8"]:
            out.append(d)
    return out


def _dir_matching_bundle(bundle_dir) -> Path | None:
    """The artifacts/* work folder holding the shipped bundle's exact int8 model (by sha256), or None."""
    try:
        card = json.loads((Path(bundle_dir) / "card.json").read_text())
        want = card.get("sha256") or sha256_file(Path(bundle_dir) / card.get("model_file", "model.tflite"))
    except (OSError, ValueError):
        return None
    for d in _complete_student_dirs():
        f = _student_files(d)["tflite_int8"]
        try:
            if sha256_file(f) == want:
                return d
        except OSError:
            continue
    return None


def find_models(args, notes: list) -> dict:
    """{"teacher": {...}, "student": {...}, "bundle": {...} or None}."""
    out = {}
    # ---- teacher
    tpath = getattr(args, "teacher", None)
    cands = [Path(tpath)] if tpath else [ROOT / p for p in TEACHER_PATHS]
    teacher = None
    for p in cands:
        p = p / "model.pt" if p.is_dir() else p  # a run folder or the checkpoint (one convention)
        if p.is_file():
            teacher = {"kind": "teacher-checkpoint", "path": str(p), "source": f"real: {p}"}
            break
    if teacher is None:
        if tpath:
            notes.append(f"--teacher {tpath} not found; using the stand-in teacher")
        teacher = {"kind": "teacher-standin", "path": None,
                   "source": "stand-in: untrained ResNet1d (default single-lead config, seed 0); "
                             f"{tpath or 'artifacts/selfmis_lead1'} absent"}
    out["teacher"] = teacher
    # ---- student
    sdir = getattr(args, "student_dir", None)
    dirs = [Path(sdir)] if sdir else [ROOT / d for d in STUDENT_DIRS]
    b_dir = Path(args.bundle) if getattr(args, "bundle", None) else default_bundle()
    if not sdir and b_dir is not None:
        # the work folder whose int8 file is byte-identical to the shipped bundle's model comes first
        match = _dir_matching_bundle(b_dir)
        if match is not None:
            dirs = [match] + dirs
        others = [str(d.relative_to(ROOT)) for d in _complete_student_dirs() if d not in dirs]
        if others:
            notes.append(f"other student work folders not measured (pick one with --student-dir): {others}")
    student = None
    for d in dirs:
        if not d.is_dir() or d.resolve() == STANDIN_DIR.resolve():
            continue
        f = _student_files(d)
        if f["torch"] and f["tflite_int8"]:
            student = {k: (str(v) if v else None) for k, v in f.items()}
            student["source"] = f"real: {d}" + (" (int8 file identical to the shipped bundle's)"
                                                 if b_dir is not None and d == _dir_matching_bundle(b_dir) else "")
            student["dir"] = str(d)
            break
    if student is None:
        f = standin_files()
        student = {k: str(f[k]) for k in ("torch", "onnx", "tflite_fp32", "tflite_int8")}
        info = {}
        try:
            info = json.loads(Path(f["info"]).read_text())
        except (OSError, ValueError):
            pass
        student["source"] = ("stand-in: untrained Student (default config, seed 0), "
                             "benchmarks/standin; no real student found")
        student["dir"] = str(f["dir"])
        student["standin_info"] = info
        if sdir:
            notes.append(f"--student-dir {sdir}: no torch student + int8 TFLite there; using the stand-in")
    out["student"] = student
    # ---- shipped bundle
    b = Path(args.bundle) if getattr(args, "bundle", None) else default_bundle()
    if b is not None and (Path(b) / "card.json").is_file():
        out["bundle"] = {"dir": str(b), "tflite_int8": str(Path(b) / "model.tflite"), "source": f"real: {b}"}
    else:
        out["bundle"] = None
        notes.append("no shipped bundle at edge_runtime/models/default (card.json + model.tflite): the "
                     "streaming benchmark uses a bundle made from the stand-in int8 model")
    return out
