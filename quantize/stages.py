"""The stages of ``selfmis quantize``, each a function that takes data and returns data.

:func:`selfmis.quantize.pipeline.run_pipeline` calls them in this order::

    teacher_stage -> data_stage -> ready_teacher -> distil_stage -> export_stage -> convert_stage
    -> verify_stage -> calibrate_stage -> bundle_stage -> report_of

Every stage checks its own output and raises with the numbers when a check fails. Only
:func:`bundle_stage` writes the shipped bundle, once, with everything its card records.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfmis.bundle import Bundle, sha256_file
from selfmis.provenance import data_summary, portable_path, provenance, scrub_paths
from selfmis.preprocess import PreprocessSpec
from selfmis.train.checkpoint import resolve_checkpoint
from selfmis.train.data import resolve_data_root
from selfmis.train.evaluate import auroc, score_predictions

from . import card as cardmod
from .calibrate import calibrate_scores, label_prevalence, with_calibration
from .convert import convert_onnx, tflite_op_names
from .distill import distill
from .export_onnx import export_onnx, onnx_op_types, onnx_parity
from .latency import tflite_latency_ms, torch_latency_ms
from .metrics import sigmoid
from .micro import micro_report
from .options import MAX_INT8_BYTES, PipelineOptions
from .predict import tflite_predict, torch_predict
from .report import json_safe  # strict JSON in the card (NaN -> null)
from .student import count_params
from .teacher import TeacherError, load_teacher, save_standin, teacher_outputs, train_standin_teacher
from .validate import INT8_MI_AUROC_TOL, ValidationError, check_fp32_parity, compare_int8
from .windows import Folds, TRAIN_STRIDE_S, load_lead1, record_mean, windows_of

#: The int8 model's thresholds, calibration and metrics are measured with LiteRT's reference kernels: the
#: same int8 outputs on x86 and arm64 (benchmarks/results/pi/), so a Raspberry Pi decides as validated.
#: The card records them (``kernels``) and the runtime runs them by default.
VALIDATION_KERNELS = "reference"

__all__ = ["Teacher", "Data", "Student", "Exported", "Converted", "Verified", "Shipped",
           "teacher_stage", "data_stage", "ready_teacher", "distil_stage", "export_stage", "convert_stage",
           "verify_stage", "calibrate_stage", "bundle_stage", "report_of"]

#: The four models scored side by side, in the table's order.
MODELS = ("teacher", "student_torch", "student_fp32_tflite", "student_int8_tflite")


def say(msg: str) -> None:
    print(f"[quantize] {msg}", flush=True)


# ---------------------------------------------------------------- teacher and data
@dataclass
class Teacher:
    kind: str              # "selfmis" or "stand-in"
    path: Path             # its checkpoint
    config: dict
    folds: Folds           # the split every later stage uses (the teacher's own, unless overridden)
    model: object = None   # torch module; None until a stand-in is trained (ready_teacher)
    sha256: str = ""


@dataclass
class Data:
    name: str              # the data folder's name (never a machine path)
    tasks: tuple
    ds_train: object
    ds_val: object
    ds_test: object
    w_train: object        # windows every TRAIN_STRIDE_S seconds
    w_val: object          # windows every 1 s (the evaluator's)
    w_test: object


def teacher_stage(opts: PipelineOptions, work: Path) -> Teacher:
    """The SelfMIS checkpoint, loaded and hashed; or, with ``--standin``, where a stand-in will be trained."""
    if opts.standin:
        say("--standin: training a stand-in teacher (NOT SelfMIS)")
        return Teacher("stand-in", work / "standin_teacher.pt", {}, opts.folds or Folds.from_teacher_config({}))
    if opts.teacher is None:
        raise TeacherError("no teacher: pass the SelfMIS checkpoint (a training run's folder or its model.pt), "
                           "or ask for a stand-in explicitly (--standin)")
    try:
        path = resolve_checkpoint(opts.teacher)
    except FileNotFoundError as exc:
        raise TeacherError(f"teacher: {exc}; train it first (make model) or pass --standin") from None
    sha = sha256_file(path)  # first: the trainer may replace the file later
    model, cfg, kind = load_teacher(path)
    return Teacher(kind, path, cfg, opts.folds or Folds.from_teacher_config(cfg), model, sha)


def data_stage(folds: Folds, opts: PipelineOptions) -> Data:
    """Lead I of the three folds, cut into windows."""
    say(f"folds: train {list(folds.train)}, val {list(folds.val)}, test {list(folds.test)}")
    ds_train, ds_val, ds_test = (load_lead1(f, opts.data, opts.progress) for f in (folds.train, folds.val, folds.test))
    data = Data(resolve_data_root(opts.data).name, tuple(ds_test.tasks), ds_train, ds_val, ds_test,
                windows_of(ds_train, TRAIN_STRIDE_S), windows_of(ds_val), windows_of(ds_test))
    say(f"windows: train {data.w_train.X.shape} ({data.w_train.n_records} records), val {data.w_val.X.shape}, "
        f"test {data.w_test.X.shape}")
    return data


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


def ready_teacher(teacher: Teacher, data: Data, opts: PipelineOptions) -> Teacher:
    """The teacher in eval mode, a stand-in trained (or reused) on the training folds first."""
    if teacher.model is None:
        teacher.model, teacher.config = _standin_teacher(teacher.path, data.w_train, teacher.folds, opts)
        teacher.sha256 = sha256_file(teacher.path)
    teacher.model.eval()
    say(f"teacher: {teacher.kind} ({teacher.path}, sha256 {teacher.sha256[:12]})")
    return teacher


# ---------------------------------------------------------------- distillation
@dataclass
class Student:
    model: object          # the distilled torch module (BN folded, no embedding head)
    params: int


def _teacher_targets(teacher: Teacher, data: Data, opts: PipelineOptions, work: Path):
    """The frozen teacher's logits and embeddings on the training windows, cached per checkpoint, data and
    stride in ``<work>/../teacher_targets`` (shared by runs with other student options)."""
    cache_dir = work.parent / "teacher_targets"
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_key = hashlib.sha256(np.asarray(data.w_train.ecg_ids, np.int64).tobytes()
                              + str(resolve_data_root(opts.data)).encode()).hexdigest()[:12]
    cache = cache_dir / f"teacher_{teacher.sha256[:16]}_{data_key}_{TRAIN_STRIDE_S}.npz"
    if cache.is_file():
        z = np.load(cache)
        return z["logits"], (z["embed"] if z["embed"].size else None)
    t_logits, t_embed = teacher_outputs(teacher.model, data.w_train.X, progress=opts.progress)
    np.savez(cache, logits=t_logits, embed=t_embed if t_embed is not None else np.zeros(0))
    return t_logits, t_embed


def distil_stage(teacher: Teacher, data: Data, opts: PipelineOptions, work: Path) -> Student:
    """Distil the student from the teacher's targets; saved to ``<work>/student.pt``."""
    import torch

    t_logits, t_embed = _teacher_targets(teacher, data, opts, work)
    say(f"teacher targets: logits {t_logits.shape}, embeddings {None if t_embed is None else t_embed.shape}")
    w_val = data.w_val

    def val_mi_auroc(epoch, model):
        """Model selection on the validation fold only (record-level MI AUROC); test is never looked at."""
        lg = torch_predict(model)(w_val.X[:, None, :])
        return auroc(w_val.Y[:, 0], record_mean(lg, w_val.record, w_val.n_records)[:, 0])

    model = distill(data.w_train.X, data.w_train.window_labels, t_logits, t_embed, opts.student, opts.distill,
                    progress=opts.progress, on_epoch=val_mi_auroc if opts.select_on_val else None)
    say(f"student: epoch {model.selected_epoch} kept (validation MI AUROC {model.selection_score})")
    params = count_params(model)
    torch.save({"config": model.config.to_dict(), "state_dict": model.state_dict()}, work / "student.pt")
    say(f"student: {params} parameters deployed (BN folded, no embedding head)")
    return Student(model, params)


# ---------------------------------------------------------------- ONNX and TFLite
@dataclass
class Exported:
    path: Path
    ops: list              # as exported (the card records them as converted: Converted.onnx_ops)
    ort_diff: float        # onnxruntime vs torch, max |d logit| on 64 test windows


@dataclass
class Converted:
    files: object          # convert.TFLiteFiles: float32, int8, layout
    calib: np.ndarray      # the calibration windows
    ops: dict              # {"float32": [...], "int8": [...]}
    sizes: dict            # bytes
    fp32_dir: Path         # work bundles (no thresholds yet) through which the runtime's interpreter runs them
    int8_dir: Path
    onnx_ops: list         # of the ONNX file as converted (onnx2tf simplifies it in place: folds Constant nodes)


def export_stage(student: Student, data: Data, work: Path, spec: PreprocessSpec) -> Exported:
    path = export_onnx(student.model, work / "student.onnx", spec.window_samples)
    ort_diff = onnx_parity(student.model, path, data.w_test.X[:64])
    ops = onnx_op_types(path)
    say(f"ONNX {path} ops {ops}; onnxruntime vs torch max |d| {ort_diff:.2e}")
    return Exported(path, ops, ort_diff)


def convert_stage(exported: Exported, student: Student, data: Data, opts: PipelineOptions, work: Path,
                  spec: PreprocessSpec) -> Converted:
    """fp32 and full-integer int8 TFLite (calibrated on training windows), each in a work bundle."""
    rng = np.random.default_rng(opts.seed)
    w_train = data.w_train
    calib_idx = rng.choice(len(w_train.X), size=min(opts.n_calib, len(w_train.X)), replace=False)
    calib = w_train.X[np.sort(calib_idx)]
    files = convert_onnx(exported.path, work / "tflite", calib, keep_ncw=opts.keep_ncw, quant_type=opts.quant_type)
    ops = {"float32": tflite_op_names(files.float32), "int8": tflite_op_names(files.int8)}
    sizes = {"float32": files.float32.stat().st_size, "int8": files.int8.stat().st_size}
    say(f"TFLite layout {files.layout}; sizes {sizes}; ops {ops['int8']}")
    labels = list(data.tasks)
    fp32_dir, int8_dir = work / "bundle_fp32", work / "bundle_int8"
    cardmod.bundle_tflite(fp32_dir, files.float32,
                          cardmod.make_card(files.float32, files.layout, labels, name="selfmis-lead1-student-fp32",
                                            spec=spec, params=student.params))
    cardmod.bundle_tflite(int8_dir, files.int8,
                          cardmod.make_card(files.int8, files.layout, labels, spec=spec, params=student.params))
    return Converted(files, calib, ops, sizes, fp32_dir, int8_dir, onnx_op_types(exported.path))


# ---------------------------------------------------------------- verification
@dataclass
class Verified:
    win_logits: dict       # (model, split) -> window logits
    rec: dict              # (model, split) -> record logits (mean over windows)
    results: dict          # model -> score_predictions(...) on the test fold
    thresholds: dict       # int8 task -> logit threshold chosen on validation
    cmp: dict              # int8 vs fp32 (validate.compare_int8)
    latency: dict
    checks: dict
    targets: dict
    evaluation: dict       # what the numbers were measured on (data, split, rate, lead, seed, bootstrap)


def _thresholds(res: dict, tasks) -> dict:
    """Task -> logit threshold the evaluator chose on validation (tasks it could score only)."""
    return {t: res[t]["threshold"] for t in tasks if t in res and "threshold" in res[t]}


def _predict_all(predictors: dict, data: Data):
    win_logits, rec = {}, {}
    for name, fn in predictors.items():
        for split, w in (("val", data.w_val), ("test", data.w_test)):
            lg = fn(w.X[:, None, :])
            win_logits[(name, split)] = lg
            rec[(name, split)] = record_mean(lg, w.record, w.n_records)
    return win_logits, rec


def _latency(teacher: Teacher, student: Student, conv: Converted, spec: PreprocessSpec) -> dict:
    """Quick per-window latency, one thread (the benchmarks measure properly)."""
    lat = {"teacher_torch_eager_fp32_ms": torch_latency_ms(teacher.model, spec.window_samples),
           "student_torch_eager_fp32_ms": torch_latency_ms(student.model, spec.window_samples),
           "student_fp32_tflite_ms": tflite_latency_ms(conv.files.float32),
           "student_int8_tflite_ms": tflite_latency_ms(conv.files.int8)}
    lat["int8_speedup_vs_teacher_eager"] = lat["teacher_torch_eager_fp32_ms"] / lat["student_int8_tflite_ms"]
    say("latency per window (ms, 1 thread): " + ", ".join(f"{k} {v:.4f}" for k, v in lat.items()))
    return lat


def _checks_and_targets(fp32_diff, ort_diff, mi: dict, cmp: dict, sizes: dict, lat: dict):
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
    return checks, targets


def _enforce_budgets(conv: Converted, cmp: dict, opts: PipelineOptions) -> None:
    """Size over budget always raises; int8 PTQ loss over budget warns, or raises with ``strict``."""
    if opts.max_int8_bytes is not None and conv.sizes["int8"] > opts.max_int8_bytes:
        raise ValidationError(f"{conv.files.int8}: {conv.sizes['int8']} bytes > {MAX_INT8_BYTES}; "
                              "shrink the student")
    if cmp["mi_auroc_loss"] is None:
        say("WARNING: MI cannot be scored on the test fold (too few positives): int8 vs fp32 AUROC not checked")
    elif not cmp["within_ptq_budget"]:
        msg = (f"int8 PTQ loses {cmp['mi_auroc_loss']:.4f} MI AUROC (> {INT8_MI_AUROC_TOL}) against fp32 on the "
               f"test fold: quantization-aware training is needed to close the gap")
        say("WARNING: " + msg)
        if opts.strict:
            raise ValidationError(msg)


def _evaluation(data: Data, folds: Folds, opts: PipelineOptions, spec: PreprocessSpec) -> dict:
    return {"data": data.name, "split": f"strat_fold {list(folds.test)}",
            "threshold_split": f"strat_fold {list(folds.val)}", "fs": spec.fs, "lead": "I",
            "seed": opts.seed, "n_records": int(data.w_test.n_records),
            "scoring": "record = mean logit over 5 s windows every 1 s (selfmis.train.evaluate)",
            "bootstrap": f"{opts.n_boot} record resamples, 95% percentile CI"}


def verify_stage(teacher: Teacher, student: Student, exported: Exported, conv: Converted, data: Data,
                 opts: PipelineOptions, spec: PreprocessSpec) -> Verified:
    """Teacher, torch student, fp32 and int8 TFLite on validation and test: parity, scores, latency, budgets."""
    predictors = {"teacher": torch_predict(teacher.model), "student_torch": torch_predict(student.model),
                  "student_fp32_tflite": tflite_predict(conv.fp32_dir),
                  "student_int8_tflite": tflite_predict(conv.int8_dir, kernels=VALIDATION_KERNELS)}
    win_logits, rec = _predict_all(predictors, data)
    # fp32 TFLite must be torch to 1e-4 on real windows (every test and val window)
    fp32_diff = max(check_fp32_parity(win_logits[("student_torch", s)], win_logits[("student_fp32_tflite", s)])
                    for s in ("val", "test"))
    say(f"fp32 TFLite vs torch on {len(data.w_val.X) + len(data.w_test.X)} real windows: "
        f"max |dlogit| {fp32_diff:.2e}")
    w_val, w_test, tasks = data.w_val, data.w_test, data.tasks
    results = {name: score_predictions(rec[(name, "test")], w_test.Y, tasks, rec[(name, "val")], w_val.Y,
                                       n_boot=opts.n_boot, seed=opts.seed) for name in MODELS}
    thr = _thresholds(results["student_int8_tflite"], tasks)
    cmp = compare_int8(results["student_fp32_tflite"], results["student_int8_tflite"],
                       rec[("student_fp32_tflite", "test")], rec[("student_int8_tflite", "test")], thr, tasks)
    win_i8 = np.abs(win_logits[("student_int8_tflite", "test")] - win_logits[("student_fp32_tflite", "test")])
    cmp["window_logits"] = {"max_abs": float(win_i8.max()), "mean_abs": float(win_i8.mean())}
    mi = {k: results[k]["MI"].get("auroc") for k in results}
    say("MI AUROC on test: " + ", ".join(f"{k} {v:.4f}" for k, v in mi.items() if v is not None))
    lat = _latency(teacher, student, conv, spec)
    checks, targets = _checks_and_targets(fp32_diff, exported.ort_diff, mi, cmp, conv.sizes, lat)
    _enforce_budgets(conv, cmp, opts)
    return Verified(win_logits, rec, results, thr, cmp, lat, checks, targets,
                    _evaluation(data, teacher.folds, opts, spec))


# ---------------------------------------------------------------- calibration
def calibrate_stage(verified: Verified, data: Data, opts: PipelineOptions) -> dict:
    """Calibration and operating points of the int8 model: fitted on validation, reported on test
    (``selfmis calibrate`` does the same for an existing bundle)."""
    ev, labels = verified.evaluation, list(data.tasks)
    return calibrate_scores(verified.rec[("student_int8_tflite", "val")], data.w_val.Y,
                            verified.rec[("student_int8_tflite", "test")], data.w_test.Y, labels,
                            label_prevalence(opts.data, labels), opts.n_boot, opts.seed,
                            describe={**{k: ev[k] for k in ("data", "lead", "fs", "seed", "scoring")},
                                      "fit_split": ev["threshold_split"], "test_split": ev["split"]})


# ---------------------------------------------------------------- the shipped bundle
@dataclass
class Shipped:
    bundle: Bundle
    training: dict         # what the card records about how the model was made


def _auroc_row(res: dict) -> dict:
    out = {}
    for t, r in res.items():
        out[t] = {k: r[k] for k in ("auroc", "auroc_ci", "n_positives", "n", "status") if k in r}
    return out


def _training(teacher: Teacher, student: Student, conv: Converted, data: Data,
              opts: PipelineOptions, spec: PreprocessSpec) -> dict:
    folds = teacher.folds
    data_used = data_summary(data.name, [*data.ds_train.ecg_ids, *data.ds_val.ecg_ids, *data.ds_test.ecg_ids],
                             fs=spec.fs, lead="I")
    training = {"teacher": portable_path(teacher.path), "teacher_kind": teacher.kind,
                "teacher_sha256": teacher.sha256,
                "teacher_config": {k: v for k, v in teacher.config.items()
                                   if isinstance(v, (int, float, str, bool, list))},
                "data": data.name, "folds": folds.to_dict(), "lead": "I",
                "windows": f"5 s every {TRAIN_STRIDE_S} s, preprocess_window",
                "n_train_windows": int(len(data.w_train.X)),
                "student": student.model.config.to_dict(), "distill": opts.distill.to_dict(),
                "selected_epoch": int(student.model.selected_epoch),
                "selection": "best validation-fold MI AUROC" if opts.select_on_val else "last epoch",
                "calibration": {"n_windows": int(len(conv.calib)), "from": f"training folds {list(folds.train)}",
                                "seed": opts.seed},
                "quant_type": opts.quant_type, "onnx_ops": conv.onnx_ops, "tflite_ops": conv.ops["int8"],
                "provenance": provenance(opts.command or None, data_used)}
    prov = teacher.path.parent / "provenance.json"  # written by selfmis train
    if teacher.kind == "selfmis" and prov.is_file():
        training["teacher_provenance"] = json.loads(prov.read_text())
    return training


def _card(teacher: Teacher, student: Student, conv: Converted, verified: Verified, calibration: dict,
          training: dict, labels: list, spec: PreprocessSpec):
    metrics = dict(verified.evaluation, auroc=_auroc_row(verified.results["student_int8_tflite"]),
                   fp32_auroc=_auroc_row(verified.results["student_fp32_tflite"]),
                   teacher_auroc=_auroc_row(verified.results["teacher"]),
                   int8_vs_fp32=verified.cmp, latency_ms_quick=verified.latency)
    card = cardmod.make_card(conv.files.int8, conv.files.layout, labels, spec=spec,
                             thresholds={t: float(sigmoid(v)) for t, v in verified.thresholds.items()},
                             metrics=json_safe(scrub_paths(metrics)), params=student.params,
                             training=json_safe(scrub_paths(training)),
                             description=("Distilled depthwise-separable 1-D CNN student of the "
                                          f"{'SelfMIS' if teacher.kind == 'selfmis' else 'STAND-IN (not SelfMIS)'} "
                                          "Lead-I teacher; full-integer int8 (int8 weights, activations, "
                                          "input and output). Input: one preprocessed 5 s Lead-I window. "
                                          "Thresholds are probabilities (sigmoid of the logit) chosen on "
                                          "the validation fold with Youden's J."))
    card.kernels = VALIDATION_KERNELS
    return with_calibration(card, json_safe(scrub_paths(calibration)))


def bundle_stage(out: Path, teacher: Teacher, student: Student, conv: Converted,
                 verified: Verified, calibration: dict, data: Data, opts: PipelineOptions,
                 spec: PreprocessSpec) -> Shipped:
    """The int8 bundle at ``out``, written once with its complete card, then loaded back through the runtime."""
    training = _training(teacher, student, conv, data, opts, spec)
    card = _card(teacher, student, conv, verified, calibration, training, list(data.tasks), spec)
    # TFLite Micro (the microcontroller target): measured arena, parity with LiteRT on the validation windows;
    # run on the work copy of the same int8 file, with the final card (its thresholds decide the flips)
    w_val = data.w_val
    card.micro = micro_report(Bundle(conv.int8_dir, card), w_val.X, w_val.record,
                              f"validation strat_fold {list(teacher.folds.val)}, {len(w_val.X)} windows")
    bundle = cardmod.bundle_tflite(out, conv.files.int8, card)
    if card.micro.get("measured") and not card.micro["parity"]["ok"]:
        msg = f"{out}: TFLite Micro disagrees with LiteRT: {card.micro['parity']}"
        if opts.micro_strict:
            raise ValidationError(msg)
        say("WARNING: " + msg)
    say("TFLite Micro: " + (f"arena {card.micro['arena_bytes']} B, max {card.micro['parity']['reference']['max_lsb']}"
                            " LSB vs LiteRT" if card.micro.get("measured") else card.micro["reason"]))
    # the shipped bundle must load and give the same logits through the runtime
    shipped = tflite_predict(out)(data.w_test.X[:32])
    if not np.array_equal(shipped, verified.win_logits[("student_int8_tflite", "test")][:32]):
        raise ValidationError(f"{out}: shipped bundle does not reproduce the validated int8 logits")
    say(f"bundle written: {bundle.model_path} ({bundle.card.file_size} bytes)")
    return Shipped(bundle, training)


# ---------------------------------------------------------------- the report
def report_of(opts: PipelineOptions, teacher: Teacher, student: Student, conv: Converted, verified: Verified,
              shipped: Shipped, seconds: float) -> dict:
    """The run's table (``write_results`` turns it into JSON + Markdown)."""
    out = Path(opts.out)
    return {"options": {"out": portable_path(out),
                        "teacher": portable_path(opts.teacher) if opts.teacher else None,
                        "standin": opts.standin, "n_calib": opts.n_calib, "keep_ncw": opts.keep_ncw,
                        "quant_type": opts.quant_type, "seed": opts.seed},
            "teacher_kind": teacher.kind, "folds": teacher.folds.to_dict(),
            "params": {"student": student.params,
                       "teacher": int(sum(p.numel() for p in teacher.model.parameters()))},
            "sizes_bytes": conv.sizes, "layout": conv.files.layout, "ops": conv.ops, "results": verified.results,
            "int8_vs_fp32": verified.cmp, "latency_ms": verified.latency, "checks": verified.checks,
            "targets": verified.targets, "micro": shipped.bundle.card.micro,
            "thresholds_logit": verified.thresholds, "evaluation": verified.evaluation,
            "training": shipped.training, "bundle": portable_path(out), "seconds": seconds,
            "command": opts.command, "provenance": shipped.training["provenance"]}
