"""Accuracy beside cost: MI AUROC of the teacher, SelfMIS single-lead, student fp32 and student int8.

Read, never recomputed here (the benchmark must stay < 10 min): from the JSON files
the accuracy and quantize owners write into ``benchmarks/results/accuracy`` and
``benchmarks/results/quantize`` (and ``--accuracy-dir``), and from the shipped
bundle's model card ``metrics``. The files' layout is not fixed, so every number
that looks like an MI AUROC is collected with the JSON path it came from
(:func:`find_mi_auroc`) and assigned to a model category by the words in that path
(:func:`categorise`). Each row names its file and path.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["find_mi_auroc", "categorise", "collect_accuracy", "CATEGORIES"]

HERE = Path(__file__).resolve().parent
CATEGORIES = ("teacher", "selfmis-lead1", "student-fp32", "student-int8")


def _num(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, dict):
        for k in ("value", "point", "auroc", "AUROC", "mean", "estimate"):
            if isinstance(v.get(k), (int, float)) and not isinstance(v.get(k), bool):
                return float(v[k])
    return None


def _ci(v):
    if isinstance(v, dict):
        for k in ("ci", "ci95", "auroc_ci", "95ci"):
            c = v.get(k)
            if isinstance(c, (list, tuple)) and len(c) == 2 and all(isinstance(x, (int, float)) for x in c):
                return [float(c[0]), float(c[1])]
        lo, hi = v.get("ci_low", v.get("lo")), v.get("ci_high", v.get("hi"))
        if isinstance(lo, (int, float)) and isinstance(hi, (int, float)):
            return [float(lo), float(hi)]
    return None


def find_mi_auroc(obj, path: str = "") -> list:
    """[(json path, auroc, ci or None)] for every MI AUROC found in ``obj``.

    Recognised: ``{"MI": {"auroc": x}}``, ``{"MI": {"auroc": {"value": x, "ci": [a, b]}}}``,
    ``{"auroc": {"MI": x}}``, ``{"mi_auroc": x}`` / ``{"MI_auroc": x}`` / ``{"auroc_mi": x}``.
    """
    found = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            p = f"{path}/{k}"
            kl = str(k).lower()
            if kl in ("mi_auroc", "auroc_mi", "mi-auroc", "auroc_mi_test") and _num(v) is not None:
                found.append((p, _num(v), _ci(v) or _ci(obj)))
                continue
            if kl == "mi" and isinstance(v, dict):
                # quantize/evaluate: {"auroc", "auroc_ci"}; train/experiments: {"fold10_mean", "fold10_seed0_ci"}
                for ak, ck in (("auroc", "auroc_ci"), ("AUROC", "auroc_ci"), ("auc", "auc_ci"), ("roc_auc", "ci"),
                               ("fold10_mean", "fold10_seed0_ci"), ("cv_pooled_auroc", "cv_pooled_ci")):
                    if ak in v and _num(v[ak]) is not None:
                        ci = v.get(ck) if isinstance(v.get(ck), (list, tuple)) and len(v.get(ck)) == 2 else None
                        found.append((f"{p}/{ak}", _num(v[ak]), ci or _ci(v[ak]) or _ci(v)))
                        break
                else:
                    found.extend(find_mi_auroc(v, p))
                continue
            if kl in ("auroc", "auc") and isinstance(v, dict) and "MI" in v and _num(v["MI"]) is not None:
                found.append((f"{p}/MI", _num(v["MI"]), _ci(v["MI"])))
                continue
            found.extend(find_mi_auroc(v, p))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found.extend(find_mi_auroc(v, f"{path}[{i}]"))
    return found


def categorise(text: str):
    """Model category from words in a JSON path (or a file name), or None."""
    t = text.lower().replace("-", "_")
    if "student" in t or "tflite" in t or "int8" in t:
        if any(w in t for w in ("int8", "tflite_int8", "integer", "quant_int8", "/int8")):
            return "student-int8"
        if any(w in t for w in ("fp32", "float32", "torch", "float")):
            return "student-fp32"
        return "student-int8" if "tflite" in t else "student-fp32"
    if "selfmis" in t or "lead1" in t or "lead_i" in t:
        return "selfmis-lead1"
    if "teacher" in t or "12lead" in t or "12_lead" in t or "twelve" in t:
        return "teacher"
    return None


def _rel(p) -> str:
    try:
        return str(Path(p).resolve().relative_to(HERE.parent))
    except ValueError:
        return str(p)


def collect_accuracy(args, models, costs, latency, notes) -> dict:
    # quantize first: its figures are of the exact artefacts measured here (teacher checkpoint, student
    # files); the accuracy report (train/experiments) adds the 12-lead teacher and seed means
    dirs = [HERE / "results" / "quantize", HERE / "results" / "accuracy"] + [Path(d) for d in
                                                                             getattr(args, "accuracy_dir", [])]
    rows = []
    for d in dirs:
        if not d.is_dir():
            continue
        for f in sorted(d.rglob("*.json")):
            try:
                obj = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            quant = d.name == "quantize" or "quantize" in f.stem
            for p, v, ci in find_mi_auroc(obj):
                cat = categorise(p) or categorise(f.stem)
                if quant and cat == "teacher":
                    # the quantize pipeline's "teacher" is the SelfMIS Lead-I model it distils from
                    cat = "selfmis-lead1" if obj.get("teacher_kind", "selfmis") == "selfmis" else None
                rows.append({"file": _rel(f), "path": p, "mi_auroc": v, "ci95": ci, "category": cat})
    b = (models or {}).get("bundle")
    if b:
        try:
            card = json.loads((Path(b["dir"]) / "card.json").read_text())
            kind = (card.get("training") or {}).get("teacher_kind", "selfmis")
            for p, v, ci in find_mi_auroc(card.get("metrics", {}), "/metrics"):
                cat = ("selfmis-lead1" if kind == "selfmis" else None) if "teacher" in p else \
                    ("student-fp32" if "fp32" in p else "student-int8")
                rows.append({"file": _rel(Path(b["dir"]) / "card.json"), "path": p, "mi_auroc": v, "ci95": ci,
                             "category": cat})
        except (OSError, ValueError):
            pass
    if not rows:
        notes.append("accuracy: no MI AUROC found in benchmarks/results/{accuracy,quantize} or the bundle's card; "
                     "the accuracy-vs-cost table and plot are empty")
    # one figure per category for the table and plots: the first found (quantize results first), all in rows
    best = {}
    for r in rows:
        c = r["category"]
        if c and c not in best:
            best[c] = r
    lat_by = {r["id"]: r for r in (latency or {}).get("rows", [])}

    def p50(i):
        return (lat_by.get(i) or {}).get("steady_ms", {}).get("p50")

    cost_key = {"teacher": None, "selfmis-lead1": "teacher-torch-fp32", "student-fp32": "student-torch-fp32",
                "student-int8": "student-tflite-int8"}
    lat_key = {"selfmis-lead1": "teacher/torch-fp32/1t", "student-fp32": "student/torch-fp32/1t",
               "student-int8": "student/tflite-int8/xnnpack/1t"}
    table = []
    for c in CATEGORIES:
        r = best.get(c)
        ck = cost_key.get(c)
        cst = costs.get(ck, {}) if ck else {}
        table.append({"category": c, "mi_auroc": r["mi_auroc"] if r else None, "ci95": r["ci95"] if r else None,
                      "from": f"{r['file']}:{r['path']}" if r else None,
                      "file_size": cst.get("file_size"), "params": cst.get("params"), "macs": cst.get("macs"),
                      "latency_p50_ms_1t": p50(lat_key[c]) if c in lat_key else None,
                      "cost_source": cst.get("source")})
    return {"rows": rows, "table": table,
            "method": "MI AUROC on the PTB-XL test fold read from result files (not recomputed): quantize results "
                      "score the exact measured artefacts; the train/experiments report gives fold-10 means over "
                      "seeds with seed 0's CI; size/latency from this run, 1 thread"}
