"""Cross-validation of the shipped students: one SelfMIS teacher per test fold, the ``default`` and ``micro``
students distilled from each, per-record logits saved, and a pooled report.

The students study (``benchmarks/students.py``) picked the shipped models on one split (test fold 10,
validation fold 1: 39 MI records). This study repeats the whole chain per PTB-XL ``strat_fold`` k:

1. a SelfMIS teacher with exactly the s3 teacher's configuration but ``test_fold = k`` (validation is the
   next fold, k % 10 + 1, training the other eight: the trainer's own ``split_folds``); for k = 10 the s3
   teacher itself and its student bundles are reused, not retrained;
2. the ``default`` (dscnn-6k) and ``micro`` (dscnn-2k, seed 1) students distilled, converted to int8 and
   checked by the quantize pipeline exactly as the students study builds its members;
3. per-record logits (record = mean logit over 5 s windows every 1 s) of the teacher and of each student
   in fp32 and int8 on the fold's validation and test records, saved to ``foldK/logits.npz``.

Every step is skipped when its output exists (resumable; a killed run picks up at the step it was in; the
trainer resumes its own epochs). ``report`` pools the finished folds from the saved logits only
(``selfmis.benchmarks.crossval_report``): nothing is retrained to redo the report.

Run (one core, low priority; artefacts outside the repository)::

    nice -n 19 taskset -c 1 python -m selfmis.benchmarks.crossval run --work /work/artifacts/crossval
    python -m selfmis.benchmarks.crossval report --work /work/artifacts/crossval
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from selfmis.quantize.predict import tflite_predict, torch_predict
from selfmis.quantize.teacher import load_teacher
from selfmis.quantize.windows import Folds, load_lead1, record_mean, windows_of

from .crossval_report import RESULTS, write_crossval_report, write_fold
from .students import MEMBERS, build

#: Folds in the order they are run: 10 first (reused), then spread over the folds so that a study cut
#: short still pools test folds from across the dataset.
FOLD_ORDER = (10, 1, 5, 3, 7, 2, 9, 4, 6, 8)
#: role -> the students study's member (same StudentConfig, distillation settings and seed)
ROLES = {"default": "dscnn-6k", "micro": "dscnn-2k-s1"}
#: the s3 study's teacher (test fold 10) and its student bundles, reused for fold 10
S3 = Path("/work/artifacts/s3-students")
S3_TEACHER_CONFIG = S3 / "selfmis_lead1.pt" / "config.json"


def _say(msg: str) -> None:
    print(f"[crossval {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def teacher_config(test_fold: int, out: Path, data=None, base: Path = S3_TEACHER_CONFIG) -> dict:
    """The s3 teacher's configuration with another test fold (validation and training folds re-derived).

    ``data`` names the PTB-XL folder explicitly: ``None`` makes the trainer search next to the code, and
    a copy of the code elsewhere would silently find only the few records bundled in the package."""
    from selfmis.train.data import resolve_data_root

    cfg = json.loads(Path(base).read_text())
    cfg.pop("input", None)  # derived by the trainer
    cfg.update(test_fold=int(test_fold), val_fold=None, train_folds=None, out=str(out), threads=1,
               device="cpu", progress=False, resume=True, data=str(resolve_data_root(data)))
    return cfg


def fold_paths(work: Path, k: int, reuse10: bool = True) -> dict:
    """Where fold k's teacher and student bundles live (fold 10: the s3 study's, when reused)."""
    if k == 10 and reuse10 and (S3 / "selfmis_lead1.pt" / "model.pt").is_file():
        return {"teacher": S3 / "selfmis_lead1.pt", "students": S3 / "students", "reused": True}
    return {"teacher": work / f"fold{k}" / "teacher", "students": work / f"fold{k}" / "students", "reused": False}


def train_teacher(k: int, out: Path, data=None) -> Path:
    from selfmis.train.trainer import train

    if (out / "model.pt").is_file() and (out / "metrics.json").is_file():
        return out / "model.pt"
    _say(f"fold {k}: training the SelfMIS teacher -> {out}")
    t0 = time.time()
    res = train(teacher_config(k, out, data))
    _say(f"fold {k}: teacher done in {time.time() - t0:.0f} s (val MI AUROC "
         f"{res['val']['MI'].get('auroc')}, test MI AUROC {res['test']['MI'].get('auroc')})")
    return out / "model.pt"


def save_logits(k: int, teacher: Path, bundles: dict, path: Path, data=None) -> None:
    """Per-record logits of the teacher and of each role's int8 bundle and fp32 twin, validation and test."""
    model, tcfg, _ = load_teacher(teacher)
    folds = Folds.from_teacher_config(tcfg)
    if folds.test != (k,):
        raise RuntimeError(f"{teacher}: teacher of test fold {folds.test}, expected ({k},)")
    predictors = {"teacher": torch_predict(model.eval())}
    for role, b in bundles.items():
        predictors[f"{role}_int8"] = tflite_predict(b)
        predictors[f"{role}_fp32"] = tflite_predict(b.parent / "bundle_fp32")
    arrays = {}
    for split, f in (("val", folds.val), ("test", folds.test)):
        w = windows_of(load_lead1(f, data))
        arrays[f"{split}_Y"] = w.Y.astype(np.int8)
        arrays[f"{split}_ecg_ids"] = np.asarray(w.ecg_ids)
        for name, fn in predictors.items():
            arrays[f"{split}_{name}"] = record_mean(fn(w.X), w.record, w.n_records).astype(np.float32)
        labels = list(w.tasks)
    meta = {"test_fold": k, "folds": folds.to_dict(), "labels": labels, "teacher": str(teacher),
            "bundles": {r: str(b) for r, b in bundles.items()}, "members": ROLES,
            "scoring": "record = mean logit over 5 s windows every 1 s, Lead I, 100 Hz"}
    write_fold(path, meta, arrays)


def run_fold(k: int, work: Path, data=None, reuse10: bool = True) -> Path:
    paths = fold_paths(work, k, reuse10)
    fold_dir = work / f"fold{k}"
    fold_dir.mkdir(parents=True, exist_ok=True)
    out = fold_dir / "logits.npz"
    if out.is_file():
        return out
    t0 = time.time()
    teacher = train_teacher(k, paths["teacher"], data) if not paths["reused"] else paths["teacher"] / "model.pt"
    members = {m.name: m for m in MEMBERS}
    bundles = {}
    for role, name in ROLES.items():
        _say(f"fold {k}: student {role} ({name})")
        bundles[role] = build(members[name], teacher, paths["students"], data)
    save_logits(k, teacher, bundles, out, data)
    (fold_dir / "timing.json").write_text(json.dumps({"fold": k, "seconds": time.time() - t0,
                                                      "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                      "reused": paths["reused"]}) + "\n")
    _say(f"fold {k}: done in {time.time() - t0:.0f} s -> {out}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.crossval", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train/distil/save logits fold by fold (resumable)")
    r.add_argument("--work", type=Path, default=Path("/work/artifacts/crossval"))
    r.add_argument("--folds", type=int, nargs="+", default=list(FOLD_ORDER))
    r.add_argument("--data", default=None, help="PTB-XL folder (default: the trainer's search; give it when "
                                                "running a copy of the code)")
    r.add_argument("--no-reuse", action="store_true", help="retrain fold 10 instead of reusing the s3 teacher")
    p = sub.add_parser("report", help="pool the finished folds' saved logits (no training)")
    p.add_argument("--work", type=Path, default=Path("/work/artifacts/crossval"))
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.cmd == "run":
        import torch
        torch.set_num_threads(1)  # one core: the other belongs to the speed benchmarks
        for k in a.folds:
            run_fold(k, a.work, a.data, reuse10=not a.no_reuse)
        return 0
    files = sorted(a.work.glob("fold*/logits.npz"))
    if not files:
        print(f"crossval: no finished fold under {a.work} (run first)", file=sys.stderr)
        return 2
    summary = write_crossval_report(files, a.out, n_boot=a.n_boot, seed=a.seed)
    print(json.dumps(summary, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
