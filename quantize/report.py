"""The committed table: teacher, student fp32 and student int8 per task (JSON + Markdown)."""
from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["write_results", "markdown_table"]

ROWS = (("teacher", "teacher (torch fp32)"), ("student_torch", "student (torch fp32)"),
        ("student_fp32_tflite", "student fp32 TFLite"), ("student_int8_tflite", "student int8 TFLite"))


def json_safe(o):
    """JSON-safe copy: numpy scalars to Python, NaN to None."""
    if isinstance(o, dict):
        return {str(k): json_safe(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [json_safe(v) for v in o]
    if hasattr(o, "item") and not isinstance(o, (str, bytes)):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    return o


def _cell(r: dict) -> str:
    if r.get("status") != "ok" or r.get("auroc") is None:
        return f"n+={r.get('n_positives', '?')}: not scored"
    lo, hi = r["auroc_ci"]
    return f"{r['auroc']:.3f} [{lo:.3f}, {hi:.3f}]"


def markdown_table(report: dict) -> str:
    res, cmp, lat = report["results"], report["int8_vs_fp32"], report["latency_ms"]
    tasks = list(res["student_int8_tflite"].keys())
    ev = report["evaluation"]
    lines = [
        "# Quantized Lead-I student: teacher vs student fp32 vs student int8",
        "",
        f"Teacher: `{report['training']['teacher']}` ({report['teacher_kind']}). Test: {ev['split']} of "
        f"`{ev['data']}` ({ev['n_records']} records, Lead I, {ev['fs']:g} Hz); thresholds on {ev['threshold_split']}; "
        f"{ev['scoring']}; AUROC with {ev['bootstrap']}. Seed {ev['seed']}.",
        "",
        "| task | n+ | " + " | ".join(label for _, label in ROWS) + " | int8 - fp32 AUROC | decision agreement |",
        "|---|---|" + "---|" * len(ROWS) + "---|---|",
    ]
    for t in tasks:
        n_pos = res["student_int8_tflite"][t].get("n_positives", "")
        pt = cmp["per_task"].get(t, {})
        d = pt.get("auroc_diff")
        ag = pt.get("decision_agreement")
        lines.append(f"| {t} | {n_pos} | " + " | ".join(_cell(res[k].get(t, {})) for k, _ in ROWS)
                     + f" | {'' if d is None else f'{d:+.4f}'} | {'' if ag is None else f'{ag:.3f}'} |")
    p, s = report["params"], report["sizes_bytes"]
    lines += [
        "",
        "| | teacher | student fp32 | student int8 |",
        "|---|---|---|---|",
        f"| parameters | {p['teacher']:,} | {p['student']:,} | {p['student']:,} |",
        f"| file (bytes) | - | {s['float32']:,} | {s['int8']:,} |",
        f"| latency / window, 1 thread (ms, quick) | {lat['teacher_torch_eager_fp32_ms']:.3f} (torch eager) | "
        f"{lat['student_fp32_tflite_ms']:.4f} (TFLite) | {lat['student_int8_tflite_ms']:.4f} (TFLite, XNNPACK) |",
        "",
        f"int8 vs fp32 TFLite on test windows: max |dlogit| {cmp['window_logits']['max_abs']:.4f}, "
        f"mean {cmp['window_logits']['mean_abs']:.4f}. fp32 TFLite vs torch: max |dlogit| "
        f"{report['checks']['fp32_tflite_vs_torch_max_abs']:.2e}. int8 speed-up over the teacher in torch eager: "
        f"{lat['int8_speedup_vs_teacher_eager']:.0f}x. Input layout {report['layout']}.",
        "",
        "Targets: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in report["targets"].items()) + ".",
        "",
    ]
    if report.get("command"):
        lines += ["Rebuilt with:", "", "```", report["command"], "```", ""]
    return "\n".join(lines)


def write_results(report: dict, directory) -> tuple:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    j, m = directory / "quantize_results.json", directory / "quantize_results.md"
    j.write_text(json.dumps(json_safe(report), indent=1) + "\n")
    m.write_text(markdown_table(report))
    return j, m
