"""The whole chain: teacher -> distilled student -> ONNX -> TFLite fp32/int8 -> checks -> bundle + table.

:func:`run_pipeline` is what ``selfmis quantize`` runs. Every step checks its
output (ONNX vs torch, fp32 TFLite vs torch, int8 vs fp32 on the test fold) and
raises with the numbers when a check fails; the int8 bundle is written with
``selfmis.bundle.write_bundle`` and validated through the runtime's own
``TFLiteModel``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfmis.bundle import sha256_file
from selfmis.provenance import data_summary, portable_path, provenance, scrub_paths
from selfmis.preprocess import PreprocessSpec
from selfmis.train.checkpoint import resolve_checkpoint
from selfmis.train.data import resolve_data_root
from selfmis.train.evaluate import auroc, score_predictions

from . import card as cardmod
from .convert import convert_onnx, tflite_op_names
from .distill import DistillConfig, distill
from .export_onnx import export_onnx, onnx_op_types, onnx_parity
from .latency import tflite_latency_ms, torch_latency_ms
from .metrics import sigmoid
from .micro import micro_report
from .predict import tflite_predict, torch_predict
from .report import _clean, write_results  # _clean: strict JSON in the card (NaN -> null)
from .student import StudentConfig, count_params
from .teacher import TeacherError, load_teacher, save_standin, teacher_outputs, train_standin_teacher
from .validate import INT8_MI_AUROC_TOL, ValidationError, check_fp32_parity, compare_int8
from .windows import Folds, TRAIN_STRIDE_S, load_lead1, record_mean, windows_of

log = logging.getLogger(__name__)

__all__ = ["PipelineOptions", "run_pipeline", "MAX_INT8_BYTES"]

#: The shipped int8 file must fit a smartwatch-class flash budget.
MAX_INT8_BYTES = 64 * 1024


@dataclass
class PipelineOptions:
    out: Path                                   # bundle directory (model.tflite + card.json)
    teacher: Path | None = None                 # SelfMIS checkpoint: a training run's folder or its model.pt
    standin: bool = False                       # train a stand-in teacher instead (never implicitly)
    work: Path = Path("artifacts/quantize")     # intermediates (ONNX, TFLite, logs)
    data: str | None = None                     # PTB-XL folder (default: the shared subset)
    results: Path | None = None                 # where to write the table (JSON + Markdown); None: <work>/results
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    n_calib: int = 400
    keep_ncw: bool = False                      # keep (1, 1, W) input instead of (1, W, 1)
    quant_type: str = "per-channel"
    n_boot: int = 1000
    seed: int = 0
    standin_epochs: int = 12
    progress: bool = True
    strict: bool = False                        # raise when the int8 PTQ budget is exceeded
    command: str = ""                           # how this run was started (recorded in the table)
    select_on_val: bool = True                  # keep the epoch with the best validation MI AUROC
    folds: object = None                        # windows.Folds override (default: the teacher's own split)
    micro_strict: bool = True                   # fail when TFLite Micro disagrees with LiteRT (else: record it)
    max_int8_bytes: int | None = MAX_INT8_BYTES  # the gateway budget; None: no limit (the student front)
    threads: int = 0                            # torch threads for distillation; 0: torch's default (all cores)


def _say(msg: str) -> None:
    print(f"[quantize] {msg}", flush=True)


def _thresholds(res: dict, tasks) -> dict:
    """Task -> logit threshold the evaluator chose on validation (tasks it could score only)."""
    return {t: res[t]["threshold"] for t in tasks if t in res and "threshold" in res[t]}


def _auroc_row(res: dict) -> dict:
    out = {}
    for t, r in res.items():
        out[t] = {k: r[k] for k in ("auroc", "auroc_ci", "n_positives", "n", "status") if k in r}
    return out


def _standin_teacher(path: Path, w_train, folds, opts: PipelineOptions):
    """The stand-in at ``path`` when it was trained on these folds with these settings, else a new one."""
    want = {"folds": folds.to_dict(), "epochs": opts.standin_epochs, "seed": opts.seed}
    if path.is_file():
        try:
            teacher, tcfg, kind = load_teacher(path)
            if kind == "stand-in" and all(tcfg.get("provenance", {}).get(k) == v for k, v in want.items()):
                return teacher, tcfg
        except TeacherError:
            pass  # unreadable: trained again below
    teacher = train_standin_teacher(w_train.X, w_train.window_labels, epochs=opts.standin_epochs,
                                    seed=opts.seed, progress=opts.progress)
    save_standin(teacher, path, want)
    return teacher, dict(teacher.config)


def run_pipeline(opts: PipelineOptions) -> dict:
    import torch

    t0 = time.time()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    work, out = Path(opts.work), Path(opts.out)
    work.mkdir(parents=True, exist_ok=True)
    spec = PreprocessSpec()
    report: dict = {"options": {"out": portable_path(out),
                                "teacher": portable_path(opts.teacher) if opts.teacher else None,
                                "standin": opts.standin, "n_calib": opts.n_calib, "keep_ncw": opts.keep_ncw,
                                "quant_type": opts.quant_type, "seed": opts.seed}}

    # ---------------------------------------------------------------- teacher and data
    if opts.standin:
        kind, tcfg, folds = "stand-in", {}, opts.folds or Folds.from_teacher_config({})
        teacher_path = work / "standin_teacher.pt"
        _say("--standin: training a stand-in teacher (NOT SelfMIS)")
    elif opts.teacher is None:
        raise TeacherError("no teacher: pass the SelfMIS checkpoint (a training run's folder or its model.pt), "
                           "or ask for a stand-in explicitly (--standin)")
    else:
        try:
            teacher_path = resolve_checkpoint(opts.teacher)
        except FileNotFoundError as exc:
            raise TeacherError(f"teacher: {exc}; train it first (make model) or pass --standin") from None
        teacher_sha = sha256_file(teacher_path)  # first: the trainer may replace the file later
        teacher, tcfg, kind = load_teacher(teacher_path)
        folds = opts.folds or Folds.from_teacher_config(tcfg)
    _say(f"folds: train {list(folds.train)}, val {list(folds.val)}, test {list(folds.test)}")
    ds_train = load_lead1(folds.train, opts.data, opts.progress)
    ds_val = load_lead1(folds.val, opts.data, opts.progress)
    ds_test = load_lead1(folds.test, opts.data, opts.progress)
    tasks = tuple(ds_test.tasks)
    w_train = windows_of(ds_train, TRAIN_STRIDE_S)
    w_val, w_test = windows_of(ds_val), windows_of(ds_test)
    _say(f"windows: train {w_train.X.shape} ({w_train.n_records} records), val {w_val.X.shape}, "
         f"test {w_test.X.shape}")
    if opts.standin:
        teacher, tcfg = _standin_teacher(teacher_path, w_train, folds, opts)
    teacher.eval()
    if kind != "selfmis":
        teacher_sha = sha256_file(teacher_path)
    _say(f"teacher: {kind} ({teacher_path}, sha256 {teacher_sha[:12]})")

    # ---------------------------------------------------------------- distillation
    # the teacher is frozen: its targets are cached per checkpoint, folds and window stride
    cache_dir = work.parent / "teacher_targets"  # shared by runs with other student options
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_key = hashlib.sha256(np.asarray(w_train.ecg_ids, np.int64).tobytes()
                              + str(ds_test_root(opts.data)).encode()).hexdigest()[:12]
    cache = cache_dir / f"teacher_{teacher_sha[:16]}_{data_key}_{TRAIN_STRIDE_S}.npz"
    if cache.is_file():
        z = np.load(cache)
        t_logits, t_embed = z["logits"], (z["embed"] if z["embed"].size else None)
    else:
        t_logits, t_embed = teacher_outputs(teacher, w_train.X, progress=opts.progress)
        np.savez(cache, logits=t_logits, embed=t_embed if t_embed is not None else np.zeros(0))
    _say(f"teacher targets: logits {t_logits.shape}, embeddings {None if t_embed is None else t_embed.shape}")

    def val_mi_auroc(epoch, model):
        """Model selection on the validation fold only (record-level MI AUROC); test is never looked at."""
        lg = torch_predict(model)(w_val.X[:, None, :])
        return auroc(w_val.Y[:, 0], record_mean(lg, w_val.record, w_val.n_records)[:, 0])

    student = distill(w_train.X, w_train.window_labels, t_logits, t_embed, opts.student, opts.distill,
                      progress=opts.progress, on_epoch=val_mi_auroc if opts.select_on_val else None)
    _say(f"student: epoch {student.selected_epoch} kept (validation MI AUROC {student.selection_score})")
    params = count_params(student)
    torch.save({"config": student.config.to_dict(), "state_dict": student.state_dict()}, work / "student.pt")
    _say(f"student: {params} parameters deployed (BN folded, no embedding head)")

    # ---------------------------------------------------------------- ONNX
    onnx_path = export_onnx(student, work / "student.onnx", spec.window_samples)
    ort_diff = onnx_parity(student, onnx_path, w_test.X[:64])
    _say(f"ONNX {onnx_path} ops {onnx_op_types(onnx_path)}; onnxruntime vs torch max |d| {ort_diff:.2e}")

    # ---------------------------------------------------------------- TFLite
    rng = np.random.default_rng(opts.seed)
    calib_idx = rng.choice(len(w_train.X), size=min(opts.n_calib, len(w_train.X)), replace=False)
    calib = w_train.X[np.sort(calib_idx)]
    files = convert_onnx(onnx_path, work / "tflite", calib, keep_ncw=opts.keep_ncw, quant_type=opts.quant_type)
    ops = {"float32": tflite_op_names(files.float32), "int8": tflite_op_names(files.int8)}
    sizes = {"float32": files.float32.stat().st_size, "int8": files.int8.stat().st_size}
    _say(f"TFLite layout {files.layout}; sizes {sizes}; ops {ops['int8']}")

    # bundles: fp32 (work) and int8 (shipped); thresholds are filled after validation
    labels = list(tasks)
    fp32_dir = work / "bundle_fp32"
    cardmod.bundle_tflite(fp32_dir, files.float32,
                          cardmod.make_card(files.float32, files.layout, labels, name="selfmis-lead1-student-fp32",
                                            spec=spec, params=params))
    int8_tmp = work / "bundle_int8"
    cardmod.bundle_tflite(int8_tmp, files.int8,
                          cardmod.make_card(files.int8, files.layout, labels, spec=spec, params=params))

    # ---------------------------------------------------------------- predictions
    predictors = {"teacher": torch_predict(teacher), "student_torch": torch_predict(student),
                  "student_fp32_tflite": tflite_predict(fp32_dir), "student_int8_tflite": tflite_predict(int8_tmp)}
    win_logits, rec = {}, {}
    for name, fn in predictors.items():
        for split, w in (("val", w_val), ("test", w_test)):
            lg = fn(w.X[:, None, :])
            win_logits[(name, split)] = lg
            rec[(name, split)] = record_mean(lg, w.record, w.n_records)

    # fp32 TFLite must be torch to 1e-4 on real windows (every test and val window)
    fp32_diff = max(check_fp32_parity(win_logits[("student_torch", s)], win_logits[("student_fp32_tflite", s)])
                    for s in ("val", "test"))
    _say(f"fp32 TFLite vs torch on {len(w_val.X) + len(w_test.X)} real windows: max |dlogit| {fp32_diff:.2e}")

    results = {}
    for name in predictors:
        results[name] = score_predictions(rec[(name, "test")], w_test.Y, tasks, rec[(name, "val")], w_val.Y,
                                          n_boot=opts.n_boot, seed=opts.seed)
    thr_int8 = _thresholds(results["student_int8_tflite"], tasks)
    cmp = compare_int8(results["student_fp32_tflite"], results["student_int8_tflite"],
                       rec[("student_fp32_tflite", "test")], rec[("student_int8_tflite", "test")], thr_int8, tasks)
    win_i8 = np.abs(win_logits[("student_int8_tflite", "test")] - win_logits[("student_fp32_tflite", "test")])
    cmp["window_logits"] = {"max_abs": float(win_i8.max()), "mean_abs": float(win_i8.mean())}
    mi = {k: results[k]["MI"].get("auroc") for k in results}
    _say("MI AUROC on test: " + ", ".join(f"{k} {v:.4f}" for k, v in mi.items() if v is not None))

    # ---------------------------------------------------------------- latency (quick, one thread)
    lat = {"teacher_torch_eager_fp32_ms": torch_latency_ms(teacher, spec.window_samples),
           "student_torch_eager_fp32_ms": torch_latency_ms(student, spec.window_samples),
           "student_fp32_tflite_ms": tflite_latency_ms(files.float32),
           "student_int8_tflite_ms": tflite_latency_ms(files.int8)}
    lat["int8_speedup_vs_teacher_eager"] = lat["teacher_torch_eager_fp32_ms"] / lat["student_int8_tflite_ms"]
    _say("latency per window (ms, 1 thread): " + ", ".join(f"{k} {v:.4f}" for k, v in lat.items()))

    # ---------------------------------------------------------------- targets
    checks = {
        "fp32_tflite_vs_torch_max_abs": fp32_diff,
        "onnxruntime_vs_torch_max_abs": ort_diff,
        "student_vs_teacher_mi_auroc": None if None in (mi["student_torch"], mi["teacher"])
        else mi["student_torch"] - mi["teacher"],
        "int8_vs_fp32_mi_auroc": None if cmp["mi_auroc_loss"] is None else -cmp["mi_auroc_loss"],
        "int8_bytes": sizes["int8"],
    }
    targets = {
        "student_within_0.01_of_teacher": checks["student_vs_teacher_mi_auroc"] is not None
        and checks["student_vs_teacher_mi_auroc"] >= -0.01,
        "int8_within_0.003_of_fp32": checks["int8_vs_fp32_mi_auroc"] is not None
        and checks["int8_vs_fp32_mi_auroc"] >= -0.003,
        "int8_ptq_loss_within_0.005": bool(cmp["within_ptq_budget"]),
        "int8_at_most_64KiB": sizes["int8"] <= MAX_INT8_BYTES,
        "int8_10x_faster_than_teacher_eager": lat["int8_speedup_vs_teacher_eager"] >= 10.0,
    }
    if opts.max_int8_bytes is not None and sizes["int8"] > opts.max_int8_bytes:
        raise ValidationError(f"{files.int8}: {sizes['int8']} bytes > {MAX_INT8_BYTES}; shrink the student")
    if cmp["mi_auroc_loss"] is None:
        _say("WARNING: MI cannot be scored on the test fold (too few positives): int8 vs fp32 AUROC not checked")
    elif not cmp["within_ptq_budget"]:
        msg = (f"int8 PTQ loses {cmp['mi_auroc_loss']:.4f} MI AUROC (> {INT8_MI_AUROC_TOL}) against fp32 on the "
               f"test fold: quantization-aware training is needed to close the gap")
        _say("WARNING: " + msg)
        if opts.strict:
            raise ValidationError(msg)

    # ---------------------------------------------------------------- the shipped bundle
    data_name = ds_test_root(opts.data).name  # the folder's name: never a machine path in a card
    data_used = data_summary(data_name, [*ds_train.ecg_ids, *ds_val.ecg_ids, *ds_test.ecg_ids],
                             fs=spec.fs, lead="I")
    test_desc = {"data": data_name, "split": f"strat_fold {list(folds.test)}",
                 "threshold_split": f"strat_fold {list(folds.val)}", "fs": spec.fs, "lead": "I",
                 "seed": opts.seed, "n_records": int(w_test.n_records),
                 "scoring": "record = mean logit over 5 s windows every 1 s (selfmis.train.evaluate)",
                 "bootstrap": f"{opts.n_boot} record resamples, 95% percentile CI"}
    metrics = dict(test_desc, auroc=_auroc_row(results["student_int8_tflite"]),
                   fp32_auroc=_auroc_row(results["student_fp32_tflite"]),
                   teacher_auroc=_auroc_row(results["teacher"]),
                   int8_vs_fp32=cmp, latency_ms_quick=lat)
    training = {"teacher": portable_path(teacher_path), "teacher_kind": kind,
                "teacher_sha256": teacher_sha,
                "teacher_config": {k: v for k, v in tcfg.items() if isinstance(v, (int, float, str, bool, list))},
                "data": data_name, "folds": folds.to_dict(), "lead": "I",
                "windows": f"5 s every {TRAIN_STRIDE_S} s, preprocess_window", "n_train_windows": int(len(w_train.X)),
                "student": student.config.to_dict(), "distill": opts.distill.to_dict(),
                "selected_epoch": int(student.selected_epoch),
                "selection": "best validation-fold MI AUROC" if opts.select_on_val else "last epoch",
                "calibration": {"n_windows": int(len(calib)), "from": f"training folds {list(folds.train)}",
                                "seed": opts.seed},
                "quant_type": opts.quant_type, "onnx_ops": onnx_op_types(onnx_path), "tflite_ops": ops["int8"],
                "provenance": provenance(opts.command or None, data_used)}
    if kind == "selfmis" and (teacher_path.parent / "provenance.json").is_file():  # written by selfmis train
        training["teacher_provenance"] = json.loads((teacher_path.parent / "provenance.json").read_text())

    card = cardmod.make_card(files.int8, files.layout, labels, spec=spec,
                             thresholds={t: float(sigmoid(v)) for t, v in thr_int8.items()},
                             metrics=_clean(scrub_paths(metrics)), params=params,
                             training=_clean(scrub_paths(training)),
                             description=("Distilled depthwise-separable 1-D CNN student of the "
                                          f"{'SelfMIS' if kind == 'selfmis' else 'STAND-IN (not SelfMIS)'} "
                                          "Lead-I teacher; full-integer int8 (int8 weights, activations, "
                                          "input and output). Input: one preprocessed 5 s Lead-I window. "
                                          "Thresholds are probabilities (sigmoid of the logit) chosen on "
                                          "the validation fold with Youden's J."))
    # calibration and operating points: fitted on validation, reported on test (selfmis calibrate does
    # the same for an existing bundle)
    from .calibrate import calibrate_scores, label_prevalence, with_calibration

    cal = calibrate_scores(rec[("student_int8_tflite", "val")], w_val.Y, rec[("student_int8_tflite", "test")],
                           w_test.Y, labels, label_prevalence(opts.data, labels), opts.n_boot, opts.seed,
                           describe={**{k: test_desc[k] for k in ("data", "lead", "fs", "seed", "scoring")},
                                     "fit_split": test_desc["threshold_split"], "test_split": test_desc["split"]})
    card = with_calibration(card, _clean(scrub_paths(cal)))
    bundle = cardmod.bundle_tflite(out, files.int8, card)
    # TFLite Micro (the microcontroller target): measured arena, parity with LiteRT on the validation windows
    card.micro = micro_report(bundle, w_val.X, w_val.record,
                              f"validation strat_fold {list(folds.val)}, {len(w_val.X)} windows")
    bundle = cardmod.bundle_tflite(out, files.int8, card)
    if card.micro.get("measured") and not card.micro["parity"]["ok"]:
        msg = f"{out}: TFLite Micro disagrees with LiteRT: {card.micro['parity']}"
        if opts.micro_strict:
            raise ValidationError(msg)
        _say("WARNING: " + msg)
    _say("TFLite Micro: " + (f"arena {card.micro['arena_bytes']} B, max {card.micro['parity']['reference']['max_lsb']}"
                             " LSB vs LiteRT" if card.micro.get("measured") else card.micro["reason"]))
    # the shipped bundle must load and give the same logits through the runtime
    shipped = tflite_predict(out)(w_test.X[:32])
    if not np.array_equal(shipped, win_logits[("student_int8_tflite", "test")][:32]):
        raise ValidationError(f"{out}: shipped bundle does not reproduce the validated int8 logits")
    _say(f"bundle written: {bundle.model_path} ({bundle.card.file_size} bytes)")

    report.update({"teacher_kind": kind, "folds": folds.to_dict(), "params": {"student": params,
                   "teacher": int(sum(p.numel() for p in teacher.parameters()))},
                   "sizes_bytes": sizes, "layout": files.layout, "ops": ops, "results": results,
                   "int8_vs_fp32": cmp, "latency_ms": lat, "checks": checks, "targets": targets, "micro": card.micro,
                   "thresholds_logit": thr_int8, "evaluation": test_desc, "training": training,
                   "bundle": portable_path(out), "seconds": time.time() - t0, "command": opts.command,
                   "provenance": training["provenance"]})

    j, m = write_results(scrub_paths(report), opts.results or work / "results")
    _say(f"table: {m} and {j}")
    return report


def ds_test_root(data) -> Path:
    return resolve_data_root(data)


def dump_json(obj, path) -> None:
    Path(path).write_text(json.dumps(obj, indent=1, default=float) + "\n")
