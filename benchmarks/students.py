"""The student front: accuracy against size, MACs, latency and TFLite Micro arena, and the rule that picks
the shipped models from validation only.

Every member is distilled from the same SelfMIS teacher by the quantize pipeline (same folds, windows,
40 epochs, epoch kept on validation MI AUROC, int8 PTQ, every check of ``selfmis quantize``), so the only
thing that changes is the student:

* ``dscnn-*``: the depthwise-separable CNN at five widths/depths (~2k to ~100k parameters);
* ``resnet-*``: residual full-convolution blocks (a second family);
* ``*-x3``: k = 3 students of the same size and other seeds, logits averaged (run as 3 interpreters).

Measured per member: validation and test (fold 10) MI / IMI AUROC for fp32 and int8 (record = mean logit
of 5 s windows every 1 s, bootstrap CIs), int8 file size, MACs, LiteRT int8 p50/p99 on one core
(interleaved, side by side, XNNPACK as on the gateway), TFLite Micro arena (measured) and TFLM time per
window relative to LiteRT's builtin kernels (host, reference kernels).

The rule (validation only, the test fold never chooses):

* ``default`` (gateways): the best validation MI AUROC (int8) among single models with an int8 file
  <= 64 KB and LiteRT p50 <= 0.1 ms here;
* ``micro`` (microcontrollers): the smallest TFLM arena among single models whose validation MI AUROC is
  within 0.01 of ``default``'s.

Run: ``python -m selfmis.benchmarks.students --teacher artifacts/selfmis_lead1.pt/... [--ship]``; results in
``benchmarks/results/students/`` (JSON, Markdown, Pareto PNG). The two shipped students are
cross-validated (a teacher per test fold) by ``selfmis.benchmarks.crossval``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from selfmis.bundle import load_bundle, write_bundle
from selfmis.edge_runtime.models import MODELS_DIR
from selfmis.quantize.bundle_eval import evaluate_bundle
from selfmis.quantize.distill import DistillConfig
from selfmis.quantize.pipeline import PipelineOptions, run_pipeline
from selfmis.quantize.predict import tflite_predict
from selfmis.quantize.student import StudentConfig
from selfmis.quantize.windows import load_lead1
from selfmis.train.evaluate import score_records

from selfmis.provenance import provenance, scrub_paths

from .latency import load_runner, summarize_runner, time_interleaved
from .macs import count_tflite
from .students_report import plot_front, render

RESULTS = Path(__file__).resolve().parent / "results" / "students"
MAX_DEFAULT_BYTES = 64 * 1024
MAX_DEFAULT_P50_MS = 0.1
MICRO_AUROC_SLACK = 0.01
#: The model shipped before this study, a candidate like the others (so the rule can keep it).
SHIPPED = "shipped-dscnn-15k"


@dataclass
class Member:
    name: str
    student: StudentConfig
    seed: int = 0
    note: str = ""


def _ds(stem, blocks, k=7):
    return StudentConfig(family="dscnn", stem_channels=stem, blocks=blocks, kernel=k)


def _res(stem, blocks, k=5):
    return StudentConfig(family="resnet", stem_channels=stem, blocks=blocks, kernel=k)


MEMBERS = [  # in build order: the most informative first (a long study can be cut short)
    Member(SHIPPED, _ds(16, [[24, 2], [32, 2], [48, 2], [64, 2], [96, 1]]),
           note="edge_runtime/models/default before this study (teacher of session 1)"),
    Member("dscnn-15k", _ds(16, [[24, 2], [32, 2], [48, 2], [64, 2], [96, 1]]), note="the shipped size"),
    Member("dscnn-2k", _ds(8, [[12, 2], [16, 2], [24, 2], [32, 2]])),
    Member("dscnn-6k", _ds(12, [[16, 2], [24, 2], [32, 2], [48, 2], [64, 1]])),
    Member("resnet-19k", _res(8, [[12, 2], [16, 2], [24, 2], [32, 2]])),
    Member("dscnn-53k", _ds(32, [[48, 2], [64, 2], [96, 2], [128, 2], [192, 1]])),
    Member("dscnn-2k-s1", _ds(8, [[12, 2], [16, 2], [24, 2], [32, 2]]), seed=1, note="ensemble member"),
    Member("dscnn-2k-s2", _ds(8, [[12, 2], [16, 2], [24, 2], [32, 2]]), seed=2, note="ensemble member"),
    Member("dscnn-103k", _ds(48, [[64, 2], [96, 2], [128, 2], [192, 2], [256, 1]])),
    Member("resnet-39k", _res(12, [[16, 2], [24, 2], [32, 2], [48, 2]])),
]
ENSEMBLES = {"dscnn-2k-x3": ["dscnn-2k", "dscnn-2k-s1", "dscnn-2k-s2"]}


def build(member: Member, teacher: Path, work: Path, data=None, force: bool = False) -> Path:
    """Distil + convert + validate one member with the quantize pipeline; returns its int8 bundle."""
    out = work / member.name / "bundle"
    if member.name == SHIPPED:
        if not (out / "card.json").is_file():
            shutil.copytree(MODELS_DIR / "default", out)
        return out
    if (out / "card.json").is_file() and not force:
        return out
    opts = PipelineOptions(out=out, teacher=teacher, work=work / member.name, data=data,
                           results=work / member.name / "results", student=member.student,
                           distill=DistillConfig(seed=member.seed), seed=member.seed, progress=False,
                           micro_strict=False,  # a member that fails TFLM parity is reported, not fatal
                           max_int8_bytes=None,  # the front spans sizes; the rule applies the 64 KB limit
                           command=f"python -m selfmis.benchmarks.students (member {member.name})")
    run_pipeline(opts)
    return out


def _auroc(res: dict, task: str):
    t = res["tasks"].get(task, {})
    return {"auroc": t.get("auroc"), "ci": t.get("auroc_ci")} if t.get("status") == "ok" else None


def score_member(bundle: Path, data, n_boot: int) -> dict:
    """Validation and test MI / IMI AUROC of the int8 bundle and of its fp32 twin."""
    fp32 = bundle.parent / "bundle_fp32"
    out = {}
    for split in ("val", "test"):
        for prec, b in (("int8", bundle), ("fp32", fp32)):
            if not (b / "card.json").is_file():  # the model shipped before this study has no fp32 twin here
                continue
            res = evaluate_bundle(b, data, split=split, n_boot=n_boot)
            out[f"{split}_{prec}"] = {t: _auroc(res, t) for t in ("MI", "IMI")}
    return out


def score_ensemble(bundles: list, data, n_boot: int) -> dict:
    """Averaged logits of k int8 bundles, scored like one model (validation and test)."""
    card = load_bundle(bundles[0]).card
    folds = card.training.get("folds", {})
    preds = [tflite_predict(b) for b in bundles]

    def predict(windows):
        return np.mean([p(windows) for p in preds], axis=0)

    out = {}
    for split in ("val", "test"):
        ds = load_lead1(folds.get(split, [1] if split == "val" else [10]), data)
        res = score_records(predict, ds.X[:, 0], ds.Y, None, None, tuple(card.labels), None, n_boot, 0)
        out[f"{split}_int8"] = {t: _auroc(res, t) for t in ("MI", "IMI")}
    return out


def measure_latency(bundles: dict, budget_s: float) -> dict:
    """LiteRT int8 p50/p99 per window, one thread, XNNPACK, every member interleaved in one run."""
    x = np.zeros((1, 500), np.float32)
    runners = []
    for name, b in bundles.items():
        card = load_bundle(b).card
        x = np.zeros(card.input.shape, np.int8)
        runners.append(load_runner({"id": name, "runtime": "tflite", "model": name, "precision": "int8",
                                    "threads": 1, "xnnpack": True, "path": str(load_bundle(b).model_path)}, x))
    secs = time_interleaved(runners, budget_s)
    return {r.id: summarize_runner(r, secs[r.id], None)["steady_ms"] for r in runners}


def choose(rows: dict) -> dict:
    """The written rule, on validation figures only (see the module docstring)."""
    singles = {n: r for n, r in rows.items() if not r.get("ensemble") and r["val_int8"]["MI"]}
    eligible = {n: r for n, r in singles.items()
                if r["int8_bytes"] <= MAX_DEFAULT_BYTES and r["litert_ms"]["p50"] <= MAX_DEFAULT_P50_MS}
    if not eligible:
        raise RuntimeError("no member meets the default's size and latency limits")
    default = max(eligible, key=lambda n: (eligible[n]["val_int8"]["MI"]["auroc"], -eligible[n]["int8_bytes"]))
    floor = singles[default]["val_int8"]["MI"]["auroc"] - MICRO_AUROC_SLACK
    near = {n: r for n, r in singles.items()
            if r["val_int8"]["MI"]["auroc"] >= floor and r.get("arena_bytes") and r.get("micro_ok")}
    micro = min(near, key=lambda n: (near[n]["arena_bytes"], -near[n]["val_int8"]["MI"]["auroc"]))
    return {"default": default, "micro": micro,
            "rule": {"default": f"max validation MI AUROC (int8) with int8 file <= {MAX_DEFAULT_BYTES} B and "
                                f"LiteRT p50 <= {MAX_DEFAULT_P50_MS} ms (one core, this machine)",
                     "micro": f"smallest measured TFLM arena with validation MI AUROC >= default's - "
                              f"{MICRO_AUROC_SLACK}, among models that pass TFLM parity (<= 1 LSB against "
                              "LiteRT's builtin kernels, no record-level decision changed)"}}


def write_report(report: dict, out: Path) -> None:
    """students.json, then README.md and front.png rendered from it (:mod:`.students_report`)."""
    out.mkdir(parents=True, exist_ok=True)
    report = scrub_paths(report)
    (out / "students.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (out / "README.md").write_text(render(report))
    plot_front(report, out / "front.png")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.students", description=__doc__.split("\n\n")[0])
    ap.add_argument("--teacher", required=True, type=Path, help="SelfMIS teacher checkpoint (selfmis train --out DIR: DIR/model.pt)")
    ap.add_argument("--work", type=Path, default=Path("artifacts/students"))
    ap.add_argument("--data", default=None)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--only", nargs="*", help="build only these members")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--latency-budget", type=float, default=20.0, help="seconds of interleaved timing")
    ap.add_argument("--ship", nargs="*", choices=["default", "micro"], default=None, metavar="ROLE",
                    help="copy the chosen bundle of each ROLE (default, micro; none given: both) to "
                         "edge_runtime/models/ROLE")
    ap.add_argument("--build-only", action="store_true", help="build the members, write no report")
    ap.add_argument("--no-build", action="store_true", help="report on the members already built")
    a = ap.parse_args(argv)
    t0 = time.time()
    bundles = {}
    for m in MEMBERS:
        if a.only and m.name not in a.only:
            continue
        if a.no_build:
            if (a.work / m.name / "bundle" / "card.json").is_file() or m.name == SHIPPED:
                bundles[m.name] = build(m, a.teacher, a.work, a.data)
            continue
        print(f"[students] {m.name}: building ({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        bundles[m.name] = build(m, a.teacher, a.work, a.data)
    if a.build_only:
        return 0
    lat = measure_latency(bundles, a.latency_budget)
    rows = {}
    for m in MEMBERS:
        if m.name not in bundles:
            continue
        b = bundles[m.name]
        card = load_bundle(b).card
        print(f"[students] {m.name}: scoring", file=sys.stderr, flush=True)
        sc = score_member(b, a.data, a.n_boot)
        micro = card.micro or {}
        rows[m.name] = dict(sc, family=m.student.family, params=card.params, int8_bytes=card.file_size,
                            macs=count_tflite(load_bundle(b).model_path).get("macs"), litert_ms=lat[m.name],
                            arena_bytes=micro.get("arena_bytes"),
                            micro_rel=micro.get("parity", {}).get("reference", {}).get("micro_over_litert_time"),
                            micro_ok=micro.get("parity", {}).get("ok"), micro_parity=micro.get("parity"),
                            seed=m.seed, note=m.note,
                            student=m.student.to_dict(), bundle=str(b))
    for ens, names in ENSEMBLES.items():
        if not all(n in rows for n in names):
            continue
        sc = score_ensemble([bundles[n] for n in names], a.data, a.n_boot)
        p50 = sum(rows[n]["litert_ms"]["p50"] for n in names)
        p99 = sum(rows[n]["litert_ms"]["p99"] for n in names)
        rows[ens] = dict(sc, ensemble=names, family="ensemble", params=sum(rows[n]["params"] for n in names),
                         int8_bytes=sum(rows[n]["int8_bytes"] for n in names),
                         macs=sum(rows[n]["macs"] or 0 for n in names),
                         litert_ms={"p50": p50, "p99": p99, "note": "sum of the members' (run one after another)"},
                         arena_bytes=max(rows[n]["arena_bytes"] or 0 for n in names),
                         note="k interpreters, logits averaged; arena: the largest member's (run in turn)")
    choice = choose(rows)
    sample = load_bundle(bundles[choice["default"]]).card.metrics
    report = {"rows": rows, "choice": choice, "seconds": time.time() - t0,
              "data": {**(load_bundle(bundles[choice["default"]]).card.training.get("provenance") or {}).get(
                           "data", {"name": sample.get("data")}),
                       "val": sample.get("threshold_split"), "test": sample.get("split"), "n_boot": a.n_boot},
              "provenance": provenance(),
              "command": "python -m selfmis.benchmarks.students --teacher "
              f"{a.teacher}" + (" --ship " + " ".join(a.ship) if a.ship is not None else "")}
    if a.ship is not None:
        for role in (a.ship or ["default", "micro"]):
            src = Path(rows[choice[role]]["bundle"])
            dst = MODELS_DIR / role
            if dst.exists():
                shutil.rmtree(dst)
            shutil.copytree(src, dst)
            b = load_bundle(dst)
            b.card.name = f"selfmis-lead1-{role}-{choice[role]}-int8"
            write_bundle(dst, b.model_path, b.card)
        report["shipped"] = {role: choice[role] for role in (a.ship or ["default", "micro"])}
    write_report(report, a.out)
    print(json.dumps({"choice": choice, "seconds": report["seconds"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
