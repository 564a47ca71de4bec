"""Every committed study: its JSON, the one function that renders its Markdown, its command and cost.

A report under ``benchmarks/results/`` is a view of its JSON: :data:`STUDIES` names, for each
Markdown file, the JSON it is rendered from and the function that renders it (the study's own
``markdown``), the command that regenerates the JSON, and the cost that run measured (read from
the JSON; "not recorded" where the study did not record it). ``tests/test_reports.py`` re-renders
every report from its JSON and fails on any difference.

    python -m selfmis.benchmarks.reports list              # every study, command and measured cost
    python -m selfmis.benchmarks.reports render [NAME...]  # rewrite the Markdown from the committed JSON
    python -m selfmis.benchmarks.reports check             # exit 1 when a report differs from its JSON
    python -m selfmis.benchmarks.reports run NAME          # regenerate one study (its command), then render
    python -m selfmis.benchmarks.reports quick --out DIR   # the cheap studies, quick sizes, into DIR

(``make results``, ``make results STUDY=NAME``, ``make results-quick``.)
"""
from __future__ import annotations

import argparse
import difflib
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from selfmis.provenance import provenance, scrub_paths
from selfmis.quantize.report import markdown_table as quantize_markdown
from selfmis.train.experiments.report import render_markdown as accuracy_markdown
from selfmis.train.scaling import markdown as scaling_markdown

from . import beat_reference, clinical, crossval_report, export_bench, gap_policy, gateway_cost, gateway_scale
from . import ascii_lines, hostile, io_loop, is_ecg, live_amplification, live_paths, pi_armhf_apt, pi_report, replay_formats
from . import training_scale, wearable_model, wearable_report
from .report import render_markdown as bench_markdown
from .students_report import render as students_markdown

__all__ = ["Study", "STUDIES", "render", "check", "cost", "main"]

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Study:
    name: str
    markdown: str                       # relative to benchmarks/results
    json: str                           # the data it is rendered from
    render: Callable[[dict], str]       # JSON -> Markdown, the only writer of the file
    command: str                        # regenerates the JSON (and the Markdown)
    quick: str = ""                     # a CI-sized run of the same study ({out}: its folder), if any


# --------------------------------------------------------------------------- renderers without a module
def _paced(res: dict) -> str:
    """live_paths/paced_10min.md: one real-time run, from its JSON."""
    s = res["summary"]
    lat = s["latency_ms"]
    held = sum((s.get("suppressed") or {}).values())
    return "\n".join([
        f"# Decision latency in real time, {s['signal_s'] / 60:g} minutes", "",
        " → ".join(f"`{c}`" for c in res["commands"]) + f" (git {res['git']}; load: `{res['uptime_start']}` at "
        f"start, `{res['uptime_end']}` at end).", "",
        "| signal | beats | decisions | latency p50 | p99 | max | first decision | held while the rate was unverified |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s['signal_s']:g} s | {s['beats']} | {s['decisions']} | {lat['p50']:.3f} ms | {lat['p99']:.3f} ms | "
        f"{lat['max']:.3f} ms | t = {res['first_decision_t_s']:.2f} s | {held} beats |", "",
        f"Target: p99 <= {res.get('target_p99_ms', 20):g} ms after the window completes: "
        f"{'met' if lat['p99'] <= res.get('target_p99_ms', 20) else 'NOT met'}. Latency = "
        f"{res['latency_definition']}.", *([""] + res["notes"] if res.get("notes") else []), ""])


def _seed_check(res: dict) -> str:
    """quantize/seed_check.md: the same teacher, student seeds side by side."""
    runs = {k: v for k, v in res.items() if isinstance(v, dict)}
    test = res.get("test_split", "the test fold")
    lines = [f"# Seed check: MI AUROC on {test} (same teacher, student seed {' vs '.join(k.split()[1] for k in runs)})",
             "", "| run | teacher | student torch | student fp32 TFLite | student int8 TFLite | selected epoch |",
             "|---|---|---|---|---|---|"]
    for name, r in runs.items():
        lines.append(f"| {name} | {r['teacher']:.4f} | {r['student_torch']:.4f} | {r['student_fp32_tflite']:.4f} | "
                     f"{r['student_int8_tflite']:.4f} | {r['selected_epoch']} |")
    lines += ["", "Commands: " + "; ".join(f"`{r['command']}`" for r in runs.values()), ""]
    return "\n".join(lines)


def _training_scale(rep: dict) -> str:
    """training/scale.md: the study's tables, then the runs it was assembled from."""
    text = training_scale.markdown(rep)
    if rep.get("runs"):
        text += "\n## Runs\n\n" + "\n".join(f"- `{r}`" for r in rep["runs"]) + "\n"
    sg = rep.get("synth_generation")
    if sg:
        text += (f"\nSynthetic set: `{sg['command']}`: {sg['wall_s']:g} s wall, {sg['cpu_s']:g} s CPU.\n")
    for note in rep.get("run_notes", []):
        text += f"{note}\n"
    return text


def _live_paths(res: dict) -> str:
    return f"Command: `{res['command']}`\n\n" + live_paths.markdown(res)


def _accuracy(rep: dict) -> str:
    return accuracy_markdown(rep, list(rep["methods"]))


def _crossval(r: dict) -> str:
    return crossval_report.markdown(r, r.get("command", ""))


def _beats(res: dict) -> str:
    return beat_reference.markdown(res) + "\n"


# --------------------------------------------------------------------------- the registry
_GW = "python -m selfmis.benchmarks.gateway_scale --rt"
#: BEFORE: a `git worktree` of the baseline commit with its own `make install` (the JSON names both commits)
_GC = "python -m selfmis.benchmarks.gateway_cost --before-python BEFORE/.venv/bin/python --n 100,200 --reps 2 --rt"
#: the issue-26 baseline against main on one host (gateway_cost_host and its rerun: the same command)
_GC_HOST = ("python -m selfmis.benchmarks.gateway_cost --before-python BEFORE/.venv/bin/python --before-name "
            "issue-baseline-a4819f8 --after-name main --n 100,150,200 --reps 2 --rt --after-kernels default "
            "--earlier benchmarks/results/gateway/gateway_scale.json --out benchmarks/results/gateway --name")
STUDIES = (
    Study("bench", "latest/bench.md", "latest/bench.json", bench_markdown, "selfmis bench",
          "selfmis bench --quick --out {out}"),
    Study("bench-beats", "latest/beats/beats.md", "latest/beats/beats.json", _beats, "selfmis bench"),
    Study("bench-gateway", "latest/gateway_scale.md", "latest/gateway_scale.json", gateway_scale.markdown,
          "selfmis bench"),
    Study("beats", "beats/beats.md", "beats/beats.json", _beats, "python -m selfmis.benchmarks.beat_reference",
          "python -m selfmis.benchmarks.beat_reference --quick --out {out}"),
    Study("clinical", "clinical/clinical.md", "clinical/clinical.json", clinical.markdown,
          "python -m selfmis.benchmarks.clinical --minutes 10"),
    Study("crossval", "crossval/README.md", "crossval/crossval.json", _crossval,
          "python -m selfmis.benchmarks.crossval run && python -m selfmis.benchmarks.crossval report"),
    Study("export", "export/export.md", "export/export.json", export_bench.markdown,
          "python -m selfmis.benchmarks.export_bench",
          "python -m selfmis.benchmarks.export_bench --hours 0.05 --out {out}"),
    Study("gap-policy", "gap_policy/gap_policy.md", "gap_policy/gap_policy.json", gap_policy.markdown,
          "python -m selfmis.benchmarks.gap_policy"),
    Study("gateway-scale", "gateway/gateway_scale.md", "gateway/gateway_scale.json", gateway_scale.markdown,
          f"{_GW} --out benchmarks/results/gateway"),
    Study("gateway-scale-run1", "gateway/gateway_scale_run1.md", "gateway/gateway_scale_run1.json",
          gateway_scale.markdown, f"{_GW} (first of two runs)"),
    Study("gateway-outlets", "gateway/outlets/gateway_scale.md", "gateway/outlets/gateway_scale.json",
          gateway_scale.markdown, f"{_GW} --outlets-n 10 --out benchmarks/results/gateway/outlets"),
    Study("live-paths", "live_paths/live_paths.md", "live_paths/live_paths.json", _live_paths,
          "python -m selfmis.benchmarks.live_paths",
          "python -m selfmis.benchmarks.live_paths --quick --out {out}"),
    Study("paced-10min", "live_paths/paced_10min.md", "live_paths/paced_10min.json", _paced,
          "see the JSON's commands (a virtual device paced in real time into edge-run for 10 minutes)"),
    Study("quantize", "quantize/quantize_results.md", "quantize/quantize_results.json", quantize_markdown,
          "make model"),
    Study("seed-check", "quantize/seed_check.md", "quantize/seed_check.json", _seed_check,
          "see the JSON's commands (selfmis quantize with --seed 0 and --seed 1)"),
    Study("replay-formats", "replay_formats/replay_formats.md", "replay_formats/replay_formats.json",
          replay_formats.markdown, "python -m selfmis.benchmarks.replay_formats",
          "python -m selfmis.benchmarks.replay_formats --hours 0.05 --out {out}"),
    Study("students", "students/README.md", "students/students.json", students_markdown,
          "python -m selfmis.benchmarks.students --teacher artifacts/selfmis_lead1 --ship default micro"),
    Study("training-scale", "training/scale.md", "training/scale.json", _training_scale,
          "python -m selfmis.benchmarks.training_scale (the runs listed in the JSON)"),
    Study("scaling-reduced", "training/scaling_reduced.md", "training/scaling_reduced.json", scaling_markdown,
          "python -m selfmis.train.scaling --root runs/scaling --results benchmarks/results/training --folds 10 "
          "--seeds 0 --label reduced --epochs 8"),
    Study("wearable-model-parity", "wearable/model_parity.md", "wearable/model_parity.json", wearable_model.markdown,
          "python -m selfmis.benchmarks.wearable_model",
          "python -m selfmis.benchmarks.wearable_model --subset stratified --out {out}"),
    Study("is-ecg", "hostile/is_ecg.md", "hostile/is_ecg.json", is_ecg.markdown,
          "python -m selfmis.benchmarks.is_ecg --out benchmarks/results/hostile"),
    Study("hostile", "hostile/hostile.md", "hostile/hostile.json", hostile.markdown,
          "python -m selfmis.benchmarks.hostile --size-kb 512 --out benchmarks/results/hostile"),
    Study("live-amplification", "hostile/live_amplification.md", "hostile/live_amplification.json",
          live_amplification.markdown,
          "python -m selfmis.benchmarks.live_amplification --passes 6 --out benchmarks/results/hostile"),
    Study("ascii-lines", "hostile/ascii_lines.md", "hostile/ascii_lines.json", ascii_lines.markdown,
          "python -m selfmis.benchmarks.ascii_lines --lines 200000 --out benchmarks/results/hostile"),
    Study("io-loop", "gateway/io_loop.md", "gateway/io_loop.json", io_loop.markdown,
          "python -m selfmis.benchmarks.io_loop --n 100,200 --reps 1 --warmup 10 --measure 20 --rt"),
    Study("gateway-cost", "gateway/gateway_cost.md", "gateway/gateway_cost.json", gateway_cost.markdown,
          f"{_GC} --out benchmarks/results/gateway"),
    Study("gateway-cost-late", "gateway/gateway_cost_late.md", "gateway/gateway_cost_late.json",
          gateway_cost.markdown, f"{_GC} --out benchmarks/results/gateway --name gateway_cost_late (repeated later)"),
    Study("gateway-cost-quiet", "gateway/gateway_cost_quiet.md", "gateway/gateway_cost_quiet.json",
          gateway_cost.markdown, "python -m selfmis.benchmarks.gateway_cost --before-python BEFORE/.venv/bin/python "
          "--before-name session-start-6e7fb2d --after-name main --n 100,200 --reps 1 --rt --out "
          "benchmarks/results/gateway --name gateway_cost_quiet (load average 0.7-2.1)"),
    Study("gateway-cost-final", "gateway/gateway_cost_final.md", "gateway/gateway_cost_final.json",
          gateway_cost.markdown, "python -m selfmis.benchmarks.gateway_cost --before-python BEFORE/.venv/bin/python "
          "--before-name session-start-6e7fb2d --after-name main --n 100,200 --reps 1 --rt --after-kernels default "
          "--out benchmarks/results/gateway --name gateway_cost_final (load average 0.2-1.1)"),
    Study("gateway-cost-host", "gateway/gateway_cost_host.md", "gateway/gateway_cost_host.json",
          gateway_cost.markdown, f"{_GC_HOST} gateway_cost_host (BEFORE: a checkout of a4819f8, whose "
          "gateway_scale runs set issue 26's baseline)"),
    Study("gateway-cost-host-rerun", "gateway/gateway_cost_host_rerun.md", "gateway/gateway_cost_host_rerun.json",
          gateway_cost.markdown, f"{_GC_HOST} gateway_cost_host_rerun (gateway_cost_host's command again, "
          "1 h 40 min later, main at 6330b2a)"),
    Study("target-pi", "pi/target_pi.md", "pi/target_pi.json", pi_report.markdown, "make target-pi"),
    Study("pi-armhf-apt", "pi/armhf_debian_numpy.md", "pi/armhf_debian_numpy.json", pi_armhf_apt.markdown,
          "python -m selfmis.benchmarks.pi_armhf_apt (as root, after make target-pi built the armhf tree)"),
    Study("wearable", "wearable/README.md", "wearable/wearable.json", wearable_report.markdown,
          "make target-wearable"),
    Study("accuracy", "accuracy/README.md", "accuracy/report.json", _accuracy,
          "python -m selfmis.train.experiments --phase all"),
)
BY_NAME = {s.name: s for s in STUDIES}

#: JSON keys where a study records its own cost (seconds of wall time).
_COST_KEYS = ("elapsed_s", "seconds", "wall_s")


def load(study: Study, root: Path = RESULTS) -> dict:
    return json.loads((root / study.json).read_text())


def render(study: Study, root: Path = RESULTS) -> str:
    return study.render(load(study, root))


def cost(study: Study, root: Path = RESULTS) -> str:
    """The run's own measured wall time, from its JSON, or say that it was not recorded."""
    res = load(study, root)
    for k in _COST_KEYS:
        if isinstance(res.get(k), (int, float)):
            return f"{res[k] / 60:.1f} min (measured: {k} in {study.json})"
    sg = res.get("synth_generation")
    return "not recorded in " + study.json + ("" if not sg else " (synthetic data: measured separately)")


def check(root: Path = RESULTS) -> list:
    """``[(study, unified diff)]`` for every report that differs from a render of its JSON."""
    out = []
    for s in STUDIES:
        want, got = (root / s.markdown).read_text(), render(s, root)
        if got != want:
            out.append((s, "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                                        s.markdown + " (committed)", s.markdown + " (rendered)"))))
    return out


def _missing() -> list:
    """Markdown files under results/ that no study renders (each must be a view of data, or say why not)."""
    known = {s.markdown for s in STUDIES} | set(NOT_RENDERED)
    return sorted(str(p.relative_to(RESULTS)) for p in RESULTS.rglob("*.md") if str(p.relative_to(RESULTS)) not in known)


#: Markdown under results/ that is prose about several studies, not the view of one JSON.
NOT_RENDERED = {
    "accuracy/FINDINGS.md": "the reading of the accuracy study (prose; its figures are views in accuracy/README.md)",
    "training/README.md": "index of the training studies (prose)",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.reports", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=["list", "render", "check", "run", "quick"])
    ap.add_argument("names", nargs="*", help="studies (default: all)")
    ap.add_argument("--out", type=Path, default=Path("artifacts/results-quick"), help="folder of `quick`")
    a = ap.parse_args(argv)
    unknown = [n for n in a.names if n not in BY_NAME]
    if unknown:
        print(f"unknown study {unknown}; known: {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    chosen = [BY_NAME[n] for n in a.names] or list(STUDIES)
    if a.action == "list":
        for s in chosen:
            print(f"{s.name:20s} {s.markdown}\n{'':20s} command: {s.command}\n{'':20s} cost: {cost(s)}"
                  + (f"\n{'':20s} quick: {s.quick.format(out='DIR')}" if s.quick else ""))
        return 0
    if a.action == "render":
        for s in chosen:
            (RESULTS / s.markdown).write_text(render(s))
            print(f"rendered {s.markdown} from {s.json}")
        return 0
    if a.action == "check":
        bad = [d for d in check() if d[0] in chosen]
        for s, diff in bad:
            print(diff)
        missing = _missing()
        for m in missing:
            print(f"{m}: no study renders it (add it to STUDIES or NOT_RENDERED)")
        return 1 if bad or missing else 0
    if a.action == "run":
        for s in chosen:
            print(f"$ {s.command}", file=sys.stderr)
            t0 = time.time()
            if subprocess.run(s.command, shell=True).returncode != 0:
                return 1
            res = load(s)
            if not any(isinstance(res.get(k), (int, float)) for k in _COST_KEYS):  # record what it cost
                res["elapsed_s"] = round(time.time() - t0, 1)
            # where it came from (a study that records its data adds it to its own provenance block)
            res.setdefault("provenance", provenance(command=s.command))
            (RESULTS / s.json).write_text(json.dumps(scrub_paths(res), indent=1) + "\n")
            (RESULTS / s.markdown).write_text(render(s))
        return 0
    for s in [s for s in chosen if s.quick]:  # quick
        out = a.out / s.name
        cmd = s.quick.format(out=shlex.quote(str(out)))
        print(f"$ {cmd}", file=sys.stderr)
        t0 = time.time()
        if subprocess.run(cmd, shell=True).returncode != 0:
            return 1
        print(f"{s.name}: {time.time() - t0:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
