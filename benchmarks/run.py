"""``selfmis bench``: latency, throughput, memory, energy and accuracy of the MI detector.

Usage::

    selfmis bench [--quick] [--out DIR]          # default DIR: benchmarks/results/latest
    python -m selfmis.benchmarks.run --quick

Sections (``--skip`` any of them): ``latency`` (per-window inference, in process,
runtimes interleaved), ``coldstart`` (fresh process: import + load + first
inference), ``imports`` (runtime/CLI import time and RSS), ``streaming`` (the real
``edge-run`` pipeline: replay at full speed and the virtual device), ``gateway``
(wearables per core and the cost of each outlet: :mod:`.gateway_scale`), ``accuracy``
(MI AUROC from the project's result files), ``beats`` (the online beat detector and
quality gate beside NeuroKit2's detectors, WFDB's XQRS and ``ecg_quality``, on MIT-BIH
record 100 and PTB-XL; only where neurokit2 and wfdb are installed), ``plots``.

torch / onnxruntime parts are skipped with a note where those packages are not
installed (a Raspberry Pi with only the ``edge`` extra).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from selfmis.bundle import sha256_file

from . import beat_reference as BR
from . import energy as E, gateway_scale as G, streaming as S
from .accuracy import collect_accuracy
from .artefacts import find_models, load_torch_model
from .headline import energy_section, headline_values
from .latency import bootstrap_ratio, load_runner, summarize_runner, time_interleaved
from .machine import cpu_info, machine_info, measured_matmul_peak, peak_estimate
from .live_paths import markdown as live_md, run_live_paths
from .macs import count_tflite, count_torch
from .report import write_markdown, write_plots
from .standin import calibration_windows
from .stats import ratio, summarize
from .targets import evaluate_targets, format_verdict

__all__ = ["main", "build_parser", "DEFAULT_OUT"]

_HERE = Path(__file__).resolve().parent
#: benchmarks/results/latest in a source checkout; ./selfmis-bench where the package is installed
DEFAULT_OUT = (_HERE / "results" / "latest") if (_HERE.parent / "pyproject.toml").is_file() \
    else Path.cwd() / "selfmis-bench"
SECTIONS = ("latency", "coldstart", "imports", "streaming", "gateway", "accuracy", "beats", "plots")


def have(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="selfmis bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short run (< 1 min) for CI and smoke tests")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: %(default)s)")
    ap.add_argument("--skip", default="", help=f"comma-separated sections to skip: {','.join(SECTIONS)}")
    ap.add_argument("--teacher", help="SelfMIS teacher checkpoint: a run folder or its model.pt (default: artifacts/selfmis_lead1)")
    ap.add_argument("--student-dir", help="folder with the student (.pt, .onnx, fp32 and int8 .tflite)")
    ap.add_argument("--bundle", help="int8 bundle edge-run uses (default: edge_runtime/models/default)")
    ap.add_argument("--record", help="record to stream (default: a bundled PTB-XL 500 Hz record, looped)")
    ap.add_argument("--stream-minutes", type=float, help="ECG minutes to replay (default 60, quick 5)")
    ap.add_argument("--latency-budget", type=float, help="seconds of interleaved timing (default 60, quick 4)")
    ap.add_argument("--cpu", type=int, default=0, help="core for the one-core runs (taskset; default 0)")
    ap.add_argument("--board-watts", type=float, default=E.DEFAULT_BOARD_WATTS,
                    help=f"incremental board power while one core is busy, W ({E.BOARD_WATTS_NOTE})")
    ap.add_argument("--ina219", metavar="BUS:ADDR", help="measure board power with an INA219 (e.g. 1:0x40)")
    ap.add_argument("--ina-chip", choices=("ina219", "ina260"), default="ina219")
    ap.add_argument("--ina-shunt-ohm", type=float, default=0.1, help="INA219 shunt resistor (default 0.1)")
    ap.add_argument("--accuracy-dir", action="append", default=[],
                    help="extra folder of accuracy JSON files (default: benchmarks/results/{accuracy,quantize})")
    return ap


def _taskset(cpu: int) -> list:
    if shutil.which("taskset") and hasattr(os, "sched_getaffinity") and cpu in os.sched_getaffinity(0):
        return ["taskset", "-c", str(cpu)]
    return []


def _child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("CUDA_VISIBLE_DEVICES", "")
    return env


def _file_size(p):
    try:
        return Path(p).stat().st_size if p else None
    except OSError:
        return None


# --------------------------------------------------------------------------- models & costs

def model_costs(models: dict, notes: list) -> dict:
    """Params, MACs per window and file size of each model, counted from the model itself."""
    out = {}
    st = models["student"]
    if have("torch"):
        try:
            t = models["teacher"]
            m = load_torch_model(t["kind"], t["path"])
            c = count_torch(m, (1, 1, 500))
            size = _file_size(t["path"])
            if size is None:  # stand-in: serialised state dict size
                import io
                import torch

                buf = io.BytesIO()
                torch.save(m.state_dict(), buf)
                size = buf.tell()
            out["teacher-torch-fp32"] = {"params": c["params"], "macs": c["macs"], "file_size": size,
                                         "method": c["method"], "source": t["source"]}
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on
            notes.append(f"teacher: cannot count ({type(exc).__name__}: {exc})")
        try:
            m = load_torch_model("student-file", st["torch"])
            c = count_torch(m, (1, 1, 500))
            out["student-torch-fp32"] = {"params": c["params"], "macs": c["macs"], "file_size": _file_size(st["torch"]),
                                         "method": c["method"] + " (BN folded)", "source": st["source"]}
        except Exception as exc:  # noqa: BLE001
            notes.append(f"student (torch): cannot count ({type(exc).__name__}: {exc})")
    if st.get("onnx"):
        out["student-onnx-fp32"] = {"file_size": _file_size(st["onnx"]), "source": st["source"]}
        if "student-torch-fp32" in out:
            out["student-onnx-fp32"].update(params=out["student-torch-fp32"]["params"],
                                            macs=out["student-torch-fp32"]["macs"], method="same graph as torch")
    for key, path, src in (("student-tflite-fp32", st.get("tflite_fp32"), st["source"]),
                           ("student-tflite-int8", st.get("tflite_int8"), st["source"]),
                           ("bundle-tflite-int8", (models.get("bundle") or {}).get("tflite_int8"),
                            (models.get("bundle") or {}).get("source"))):
        if not path:
            continue
        try:
            c = count_tflite(path)
            out[key] = {"params": c.get("params"), "macs": c.get("macs"), "file_size": _file_size(path),
                        "ops": c.get("ops"), "method": c.get("method"), "source": src}
        except Exception as exc:  # noqa: BLE001
            notes.append(f"{key}: cannot count ({type(exc).__name__}: {exc})")
    return out


# --------------------------------------------------------------------------- latency

def _same_file(a, b) -> bool:
    """Same path or byte-identical content (the shipped bundle is a copy of the work folder's int8 file)."""
    if not a or not b:
        return False
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True

        return sha256_file(a) == sha256_file(b)
    except OSError:
        return False


def latency_specs(models: dict, threads_all: int, quick: bool = False) -> list:
    specs = []
    tcounts = [1] if quick else sorted({1, threads_all})
    st, t = models["student"], models["teacher"]
    for n in tcounts:
        if have("torch"):
            specs.append(dict(id=f"teacher/torch-fp32/{n}t", runtime="torch", model="teacher", precision="fp32",
                              threads=n, source=t["source"], cost="teacher-torch-fp32",
                              loader=lambda t=t: load_torch_model(t["kind"], t["path"])))
            specs.append(dict(id=f"student/torch-fp32/{n}t", runtime="torch", model="student", precision="fp32",
                              threads=n, source=st["source"], cost="student-torch-fp32",
                              loader=lambda st=st: load_torch_model("student-file", st["torch"])))
        if have("onnxruntime") and st.get("onnx"):
            specs.append(dict(id=f"student/onnxruntime-fp32/{n}t", runtime="onnxruntime", model="student",
                              precision="fp32", threads=n, path=st["onnx"], source=st["source"],
                              cost="student-onnx-fp32"))
        for prec, key in (("fp32", "tflite_fp32"), ("int8", "tflite_int8")):
            if not st.get(key):
                continue
            for xnn in (True, False):
                specs.append(dict(id=f"student/tflite-{prec}/{'xnnpack' if xnn else 'builtin'}/{n}t",
                                  runtime="tflite", model="student", precision=prec, threads=n, xnnpack=xnn,
                                  path=st[key], source=st["source"], cost=f"student-tflite-{prec}"))
        b = models.get("bundle")
        if b and not _same_file(b["tflite_int8"], st.get("tflite_int8")):
            for xnn in (True, False):
                specs.append(dict(id=f"bundle/tflite-int8/{'xnnpack' if xnn else 'builtin'}/{n}t", runtime="tflite",
                                  model="bundle", precision="int8", threads=n, xnnpack=xnn, path=b["tflite_int8"],
                                  source=b["source"], cost="bundle-tflite-int8"))
    return specs


def run_latency(models, costs, args, quick, notes, peaks) -> dict:
    import numpy as np

    threads_all = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    x = np.random.default_rng(0).standard_normal(500).astype(np.float32)
    try:  # a real preprocessed window when the records are there

        x = calibration_windows(1)[0]
    except Exception:  # noqa: BLE001
        pass
    runners = []
    for spec in latency_specs(models, threads_all, quick):
        try:
            runners.append((spec, load_runner(spec, x)))
        except Exception as exc:  # noqa: BLE001
            notes.append(f"latency: {spec['id']} not measured ({type(exc).__name__}: {str(exc)[:200]})")
    budget = args.latency_budget if args.latency_budget is not None else (2.0 if quick else 60.0)
    samples = time_interleaved([r for _, r in runners], budget_s=budget, min_runs=30 if quick else 200,
                               max_runs=1500 if quick else 20000)
    rows = []
    for spec, r in runners:
        macs = (costs.get(spec["cost"]) or {}).get("macs")
        row = summarize_runner(r, samples[r.id], macs)
        row["file_size"] = (costs.get(spec["cost"]) or {}).get("file_size")
        row["params"] = (costs.get(spec["cost"]) or {}).get("params")
        for name, pk in peaks.items():
            if pk.get("macs_per_s") and row["achieved_macs_per_s_at_p50"]:
                row[f"fraction_of_{name}_peak"] = row["achieved_macs_per_s_at_p50"] / (pk["macs_per_s"] * r.threads)
        rows.append(row)
    # output agreement between runtimes of the same model (a wrong model is not a fast model)
    ref = next((r for _, r in runners if r.model == "student" and r.runtime == "torch"), None)
    if ref is not None:
        for (spec, r), row in zip(runners, rows):
            if r.model == "student" and r.output is not None:
                out = np.asarray(r.output, dtype=np.float32).reshape(-1)
                if out.dtype != np.float32 or r.precision == "int8":
                    continue
                row["max_abs_diff_vs_torch"] = float(np.abs(out[: ref.output.size] - ref.output.reshape(-1)).max())
    raw = {r.id: [s * 1e3 for s in samples[r.id]] for _, r in runners}
    # 95% CI of the headline speed-up (student torch fp32 vs the fastest int8, 1 thread), resampling rounds

    rounds = getattr(time_interleaved, "last_rounds", {})
    by = {r.id: r for _, r in runners}
    cands = [r for r in by.values() if r.model == "student" and r.precision == "int8" and r.threads == 1]
    ci = None
    if "student/torch-fp32/1t" in by and cands:
        best = min(cands, key=lambda r: float(np.median(samples[r.id])))
        point, interval = bootstrap_ratio(samples["student/torch-fp32/1t"], rounds.get("student/torch-fp32/1t", []),
                                          samples[best.id], rounds.get(best.id, []))
        ci = {"pair": f"student/torch-fp32/1t / {best.id}", "ratio_of_medians": point, "ci95": interval,
              "estimator": "median ratio over the shared interleaved rounds (point and CI: the same estimator)",
              "method": "bootstrap over interleaved rounds (500 resamples), ratio of medians"}
    return {"rows": rows, "speedup_ci": ci, "budget_s": budget, "window_samples": 500,
            "method": "in-process, runtimes interleaved in rounds of ~5 ms blocks (rotating order); "
                      "timed: set input + invoke + read output", "_raw_ms": raw}


def speedups(rows: list) -> dict:
    by = {r["id"]: r for r in rows}

    def p50(i):
        return (by.get(i) or {}).get("steady_ms", {}).get("p50")

    out = {}
    # against the one-thread torch rows (the target's baseline; all-thread torch rows on a shared
    # machine measure contention) and against torch at the same thread count
    for n in sorted({r["threads"] for r in rows}):
        for base_n in sorted({1, n}):
            base_s, base_t = p50(f"student/torch-fp32/{base_n}t"), p50(f"teacher/torch-fp32/{base_n}t")
            for r in rows:
                if r["threads"] != n or r["runtime"] == "torch":
                    continue
                out[f"{r['id']} vs student/torch-fp32/{base_n}t"] = ratio(base_s, r["steady_ms"]["p50"])
                out[f"{r['id']} vs teacher/torch-fp32/{base_n}t"] = ratio(base_t, r["steady_ms"]["p50"])
    return {k: v for k, v in out.items() if v is not None}


# --------------------------------------------------------------------------- cold start

def run_coldstart(models, args, quick, notes) -> list:
    st, t = models["student"], models["teacher"]
    cases = []
    if have("torch"):
        target = f"{t['kind']}={t['path']}" if t["path"] else t["kind"]
        cases.append(("teacher/torch-fp32", "torch", target, False, t["source"]))
        cases.append(("student/torch-fp32", "torch", f"student-file={st['torch']}", False, st["source"]))
    if have("onnxruntime") and st.get("onnx"):
        cases.append(("student/onnxruntime-fp32", "onnxruntime", st["onnx"], False, st["source"]))
    if st.get("tflite_fp32"):
        cases.append(("student/tflite-fp32/xnnpack", "tflite", st["tflite_fp32"], True, st["source"]))
        cases.append(("student/tflite-fp32/builtin", "tflite", st["tflite_fp32"], False, st["source"]))
    if st.get("tflite_int8"):
        cases.append(("student/tflite-int8/xnnpack", "tflite", st["tflite_int8"], True, st["source"]))
        cases.append(("student/tflite-int8/builtin", "tflite", st["tflite_int8"], False, st["source"]))
    cases = [c + (1,) for c in cases]
    n_all = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if n_all > 1 and st.get("tflite_int8"):  # thread-pool start-up is part of a cold start too
        cases.append(("student/tflite-int8/xnnpack", "tflite", st["tflite_int8"], True, st["source"], n_all))
    if quick:
        cases = [c for c in cases if c[1] == "tflite"][:1]
    reps = 1 if quick else 3
    rows = []
    for cid, runtime, target, xnn, src, nthreads in cases:
        runs = []
        for _ in range(reps):
            pin = _taskset(args.cpu) if nthreads == 1 else []
            cmd = pin + [sys.executable, "-m", "selfmis.benchmarks.coldstart", runtime, target, str(nthreads),
                         "1" if xnn else "0"]
            t0 = time.perf_counter()
            p = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), timeout=300)
            wall = time.perf_counter() - t0
            try:
                d = json.loads(p.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                notes.append(f"coldstart {cid}: failed (rc={p.returncode}): {p.stderr.strip()[-300:]}")
                break
            d["process_wall_s"] = wall
            runs.append(d)
        if not runs:
            continue
        med = {k: summarize([r[k] for r in runs if r.get(k) is not None])["p50"]
               for k in ("process_wall_s", "import_s", "load_s", "first_s", "rss_peak_mb")}
        rows.append({"id": f"{cid}/{nthreads}t", "runtime": runtime, "source": src, "reps": len(runs), "median": med,
                     "runs": runs})
    return rows


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    """``selfmis bench``: run the sections not skipped, write ``bench.json`` and ``bench.md``; 0, or
    2 for an unknown section."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    bad = skip - set(SECTIONS)
    if bad:
        print(f"selfmis bench: unknown section(s) {sorted(bad)}; known: {SECTIONS}", file=sys.stderr)
        return 2
    quick = args.quick
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    t_start = time.perf_counter()
    notes: list = []

    def say(msg):
        print(f"[bench {time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)

    result = {"format": "selfmis-bench", "version": 1, "quick": quick,
              "machine": machine_info(["selfmis", "bench"] + argv), "notes": notes}
    models, costs = machine_and_models(result, args, quick, notes, say)
    raw = inference_sections(result, models, costs, args, skip, notes, say)
    streaming_sections(result, models, args, skip, notes, out_dir, say)
    if "gateway" not in skip:
        say("gateway: wearables per core and outlet costs ...")
        gw = dict(ns=(1,), warmup_s=6.0, measure_s=3.0, outlets_n=0) if quick else {}
        result["gateway"] = G.run_all(cpu=args.cpu, farm_cpu=1 - args.cpu if args.cpu in (0, 1) else 0,
                                      out=out_dir, command="selfmis bench", log=say, **gw)
    if "accuracy" not in skip:
        result["accuracy"] = collect_accuracy(args, models, costs, result.get("latency"), notes)
    if "beats" not in skip:
        result["beats"] = run_beats(out_dir, quick, notes, say)
    result["energy"] = energy_section(result, args, notes)
    values, sources, intervals = headline_values(result)
    result["headline"] = values
    result["targets"] = evaluate_targets(values, sources, intervals)
    result["elapsed_s"] = time.perf_counter() - t_start
    write_results(result, raw, out_dir, skip, notes, say)
    return 0


def machine_and_models(result, args, quick, notes, say) -> tuple:
    """The machine's peaks, what is installed, the models found and their costs (into ``result``)."""
    cpu = cpu_info()
    say(f"machine: {result['machine']['cpu_model']}, {result['machine']['usable_cpus']} usable cores, "
        f"load {result['machine']['loadavg_at_start']}")
    peaks = {"theoretical": peak_estimate(cpu.get("flags"), cpu.get("mhz"))}
    if not quick:
        peaks["measured_matmul"] = measured_matmul_peak(cpu=args.cpu)
    result["peak"] = peaks
    if not have("torch"):
        notes.append("torch not installed: torch eager rows and MAC counting from torch skipped (edge-only install)")
    if not have("onnxruntime"):
        notes.append("onnxruntime not installed: onnxruntime rows skipped")
    models = find_models(args, notes)
    result["models"] = {k: ({kk: vv for kk, vv in v.items() if kk != "standin_info"} if v else None)
                        for k, v in models.items()}
    say(f"teacher: {models['teacher']['source']}")
    say(f"student: {models['student']['source']}")
    costs = model_costs(models, notes)
    result["costs"] = costs
    return models, costs


def inference_sections(result, models, costs, args, skip, notes, say) -> dict:
    """Per-window latency (runtimes interleaved) and cold start; returns the raw latencies (plots)."""
    raw = {}
    if "latency" not in skip:
        say("latency: per-window inference, runtimes interleaved ...")
        lat = run_latency(models, costs, args, args.quick, notes, result["peak"])
        raw = lat.pop("_raw_ms")
        lat["speedups_p50"] = speedups(lat["rows"])
        result["latency"] = lat
        for r in lat["rows"]:
            say(f"  {r['id']:<40} p50 {r['steady_ms']['p50']:.3f} ms  p99 {r['steady_ms']['p99']:.3f} ms  "
                f"(n={r['steady_ms']['n']})")
    if "coldstart" not in skip:
        say("cold start: fresh processes ...")
        result["coldstart"] = run_coldstart(models, args, args.quick, notes)
        for r in result["coldstart"]:
            say(f"  {r['id']:<40} process {r['median']['process_wall_s']:.3f} s")
    return raw


def streaming_sections(result, models, args, skip, notes, out_dir, say) -> None:
    """Import cost, the real ``edge-run`` pipeline, and every live path beside the replay."""
    if "imports" not in skip:
        say("imports: fresh processes ...")
        result["imports"] = S.measure_imports(args, args.quick, notes)
    if "streaming" in skip:
        return
    say("streaming: edge-run replay and virtual device ...")
    result["streaming"] = S.run_streaming(models, args, args.quick, notes, out_dir)
    bdir = (result["streaming"].get("bundle") or {}).get("dir")
    if bdir:
        say("streaming: every live path unpaced, side by side with replay ...")
        lp = run_live_paths(bdir, args.record, args.quick, args.cpu, notes,
                            seconds=max(60.0, 60.0 * args.stream_minutes) if args.stream_minutes else None)
        result["streaming"]["live_paths"] = lp
        for line in live_md(lp).splitlines():
            say("  " + line)


def write_results(result, raw, out_dir: Path, skip, notes, say) -> None:
    """Plots (unless skipped), ``bench.json`` and ``bench.md``; the verdicts on the console."""
    if "plots" not in skip:
        try:
            result["plots"] = write_plots(result, raw, out_dir)
        except Exception as exc:  # noqa: BLE001
            notes.append(f"plots not written ({type(exc).__name__}: {exc})")
            result["plots"] = []
    (out_dir / "bench.json").write_text(json.dumps(result, indent=2, default=_json_default) + "\n")
    write_markdown(result, out_dir / "bench.md")  # the beat reference included
    say("targets:")
    for row in result["targets"]:
        say(f"  {row['target']}: {format_verdict(row)}")
    say(f"wrote {out_dir / 'bench.json'}, {out_dir / 'bench.md'} in {result['elapsed_s']:.1f} s")


def run_beats(out_dir: Path, quick: bool, notes: list, say) -> dict | None:
    """The beat detector and quality gate beside NeuroKit2 and WFDB's XQRS (``beat_reference``), when
    both are installed (the ``train`` extra); its files go to ``OUT/beats/``."""
    try:  # imported, not just found: neurokit2 itself needs matplotlib, pandas and scipy
        import neurokit2  # noqa: F401
        import wfdb  # noqa: F401
    except ImportError as exc:
        notes.append(f"beat detector reference section skipped (neurokit2/wfdb not usable: {exc})")
        return None
    say("beats: runtime detector and quality gate vs NeuroKit2 / XQRS ...")
    res = BR.run(quick=quick, out_dir=out_dir / "beats", command="selfmis bench"
                             + (" --quick" if quick else ""), log=lambda s: say("  " + s))
    notes.extend(res["notes"])
    m = res.get("mitdb")
    if m:
        for k in ("runtime pipeline", "runtime detector", "xqrs", "nk:neurokit"):
            r = m["detectors"][k]
            say(f"  record {m['record']}: {k:<17} Se {100 * r['se']:.2f}%  PPV {100 * r['ppv']:.2f}%")
    return res if (m or res.get("ptbxl")) else None


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
