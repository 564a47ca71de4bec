"""The real streaming path: ``edge-run`` in a fresh process on one core.

* **replay** (``edge-run --replay FILE --fast``) of a long record at the
  wearable's rate (a bundled 500 Hz PTB-XL record, tiled to ``--stream-minutes``):
  real-time factor = seconds of ECG / wall seconds (the pipeline's own figure from
  its ``summary``, and the whole process's, start-up included); decision latency
  p50/p99 from the ``decision`` events (edge-run's definition: arrival of the chunk
  completing the beat's window -> decision emitted); peak RSS and CPU time from
  ``os.wait4`` (the kernel's accounting of that process).
* **duty cycle** at 60 and 120 bpm: synthetic ECG (sum-of-Gaussians P-QRS-T beats at
  an exact rate) replayed at full speed; CPU seconds per ECG second after removing the
  start-up CPU (a 10 s run) is the duty cycle one core would see in real time; CPU per
  beat, and the marginal CPU of one extra beat ((CPU120 - CPU60)/(beats120 - beats60)).
* **virtual device**: ``selfmis-sim`` streams a record over a pseudo-terminal in the
  binary protocol, paced in real time; ``edge-run --port`` reads it. Latency there
  includes the serial framing path.
* the live paths unpaced (pty binary, pty ASCII, TCP, BLE) side by side with replay are
  :mod:`.live_paths` (``selfmis bench`` runs both in its streaming section).
* **imports**: fresh interpreters importing the runtime, the CLI, and the CLI plus the
  TFLite interpreter, on one core; median of several runs; ``-X importtime`` top entries.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfmis.sample_data import BUNDLED_PTBXL
from selfmis.simulate import synthetic_ecg

import numpy as np

from . import energy as E
from .stats import percentile, summarize

__all__ = ["write_wfdb16", "synthetic_ecg", "tile_record", "EDGE_RUN", "run_measured", "parse_jsonl",
           "measure_imports", "run_streaming", "standin_bundle"]



# --------------------------------------------------------------------------- records

def write_wfdb16(stem, signal_mv, fs: float, lead: str = "I", gain: float = 1000.0) -> Path:
    """Write a one-lead WFDB format-16 record (``stem.hea`` + ``stem.dat``); returns the stem."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    counts = np.clip(np.rint(np.asarray(signal_mv, np.float64) * gain), -32767, 32767).astype("<i2")
    counts.tofile(str(stem) + ".dat")
    n = len(counts)
    first = int(counts[0]) if n else 0
    checksum = (int(counts.astype(np.int64).sum()) + 32768) % 65536 - 32768  # WFDB: 16-bit sum of the samples
    Path(str(stem) + ".hea").write_text(
        f"{stem.name} 1 {fs:g} {n}\n{stem.name}.dat 16 {gain:g}(0)/mV 16 0 {first} {checksum} 0 {lead}\n")
    return stem


def tile_record(record_path, minutes: float, out_stem, lead: str = "I") -> tuple:
    """Lead ``lead`` of a record repeated to ``minutes``; returns (stem, fs, seconds)."""
    from selfmis.readers import read_record

    rec = read_record(str(record_path))
    x = rec.lead(lead)
    n = int(round(minutes * 60 * rec.fs))
    reps = -(-n // len(x))
    y = np.tile(x, reps)[:n]
    return write_wfdb16(out_stem, y, rec.fs, lead), rec.fs, n / rec.fs


def default_record() -> Path:

    base = BUNDLED_PTBXL
    hits = sorted(base.glob("records500/*/*.hea")) or sorted(base.glob("records100/*/*.hea"))
    if not hits:
        raise FileNotFoundError(f"no bundled records under {base}")
    return Path(str(hits[0])[:-4])


# --------------------------------------------------------------------------- processes

#: the real ``edge-run``, in a fresh interpreter (``python -m`` so that the venv's Python is the one measured)
EDGE_RUN = [sys.executable, "-m", "selfmis.edge_runtime.cli"]


def model_args(bundle) -> list:
    return ["--model", str(bundle)] if bundle is not None else []


def _env() -> dict:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def taskset(cpu: int) -> list:
    if shutil.which("taskset") and hasattr(os, "sched_getaffinity") and cpu in os.sched_getaffinity(0):
        return ["taskset", "-c", str(cpu)]
    return []


def run_measured(cmd: list, timeout: float = 600.0, stdin=None) -> dict:
    """Run ``cmd`` (which may start with ``taskset -c N``); wall, CPU seconds and peak RSS of the command
    itself, measured by :mod:`selfmis.benchmarks.rusage_wrap` (see there why), plus its stdout."""
    pre = []
    if cmd[:1] == ["taskset"]:
        pre, cmd = cmd[:3], cmd[3:]
    with tempfile.TemporaryDirectory() as tmp:
        ru_path = os.path.join(tmp, "rusage.json")
        full = pre + [sys.executable, "-m", "selfmis.benchmarks.rusage_wrap", ru_path, "--"] + cmd
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            p = subprocess.Popen(full, stdout=out, stderr=err, stdin=stdin or subprocess.DEVNULL, env=_env())
            timed_out = False
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                p.kill()
                p.wait()
            wall = time.perf_counter() - t0
            out.seek(0)
            err.seek(0)
            text, etext = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        try:
            with open(ru_path) as fh:
                ru = json.load(fh)
        except (OSError, ValueError):
            ru = {"rc": p.returncode, "wall_s": wall, "cpu_s": None, "user_s": None, "sys_s": None,
                  "rss_peak_mb": None}
    ru.update(stdout=text, stderr=etext[-2000:], timed_out=timed_out, outer_wall_s=wall)
    return ru


def parse_jsonl(text: str) -> dict:
    beats, decisions, summary, other = 0, [], None, 0
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            other += 1
            continue
        kind = ev.get("type")
        if kind == "beat":
            beats += 1
        elif kind == "decision":
            decisions.append(ev)
        elif kind == "summary":
            summary = ev
    lat = [d["latency_ms"] for d in decisions if d.get("latency_ms") is not None]
    # decisions later than the 20 ms target, with their signal time: where to look first
    slow = [[d.get("t"), d["latency_ms"]] for d in decisions
            if d.get("latency_ms") is not None and d["latency_ms"] > 20.0]
    return {"beats": beats, "decisions": len(decisions), "latencies_ms": lat, "summary": summary,
            "slow_decisions": slow[:20], "n_slow_decisions": len(slow)}


def standin_bundle(work: Path, tflite_path) -> Path:
    """A bundle (card + model) around a stand-in int8 TFLite file, so edge-run can load it."""
    from selfmis.bundle import ModelCard, TensorSpec, write_bundle
    from selfmis.edge_runtime.interpreter import interpreter_backend
    from selfmis.preprocess import PreprocessSpec

    Interpreter, _, _ = interpreter_backend()
    it = Interpreter(model_path=str(tflite_path))
    it.allocate_tensors()
    i, o = it.get_input_details()[0], it.get_output_details()[0]
    n_out = int(np.prod(o["shape"]))
    try:
        from selfmis.train.data import DEFAULT_TASKS

        labels = list(DEFAULT_TASKS)[:n_out]
    except Exception:  # noqa: BLE001 - edge-only install
        labels = []
    labels += [f"out{k}" for k in range(len(labels), n_out)]

    def spec(d, layout=""):
        s, z = d["quantization"]
        return TensorSpec(name=d["name"], shape=[int(v) for v in d["shape"]], dtype=np.dtype(d["dtype"]).name,
                          layout=layout, scale=float(s), zero_point=int(z))

    card = ModelCard(name="bench-standin-int8", lead="I", labels=labels,
                     preprocessing=PreprocessSpec().to_dict(),
                     input=spec(i, "NWC" if list(i["shape"])[-1] == 1 else "NCW"), output=spec(o),
                     thresholds={l: 0.5 for l in labels},
                     description="STAND-IN (untrained) student for benchmarking only; outputs are meaningless")
    return write_bundle(work / "standin_bundle", tflite_path, card).directory


# --------------------------------------------------------------------------- imports

_IMPORT_SNIPPET = """
import time, sys, json
t = time.perf_counter()
for m in sys.argv[1].split(','):
    __import__(m)
if len(sys.argv) > 2 and sys.argv[2] == 'backend':
    from selfmis.edge_runtime.interpreter import interpreter_backend
    interpreter_backend()
dt = time.perf_counter() - t
hwm = None
try:
    hwm = [int(l.split()[1]) / 1024.0 for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
except Exception:
    import resource
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({'s': dt, 'rss_mb': hwm,
                  'heavy': sorted(m for m in ('torch', 'tensorflow', 'scipy', 'onnxruntime', 'pandas', 'matplotlib')
                                  if m in sys.modules)}))
"""


def measure_imports(args, quick: bool, notes: list) -> dict:
    reps = 2 if quick else 7
    cli = "selfmis.edge_runtime.cli"
    cases = {"selfmis.edge_runtime": ("selfmis.edge_runtime", False, "import selfmis.edge_runtime (package)"),
             cli: (cli, False, "import selfmis.edge_runtime.cli (what edge-run imports at start)"),
             "edge-run ready": (cli, True, "import the CLI + load the TFLite interpreter module "
                                           "(everything before the first model load)")}
    out = {"modules": {}, "reps": reps, "cpu": args.cpu}
    for key, (mods, backend, what) in cases.items():
        runs = []
        for _ in range(reps):
            cmd = taskset(args.cpu) + [sys.executable, "-c", _IMPORT_SNIPPET, mods] + (["backend"] if backend else [])
            r = run_measured(cmd, timeout=120)
            try:
                d = json.loads(r["stdout"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                notes.append(f"imports {key}: failed rc={r['rc']} {r['stderr'][-300:]}")
                break
            d["process_wall_s"] = r["wall_s"]
            runs.append(d)
        if not runs:
            continue
        out["modules"][key] = {
            "what": what, "median_s": percentile([r["s"] for r in runs], 50),
            "max_s": max(r["s"] for r in runs),
            "process_wall_median_s": percentile([r["process_wall_s"] for r in runs], 50),
            "rss_after_import_mb": percentile([r["rss_mb"] for r in runs], 50),
            "heavy_modules_loaded": runs[-1]["heavy"],
            "method": f"fresh interpreter on core {args.cpu}, perf_counter around the imports, median of {len(runs)} "
                      "(warm file cache)"}
    # the worst offenders, from -X importtime, for the biggest case
    key = list(out["modules"])[-1] if out["modules"] else None
    if key:
        mods, backend, _ = cases[key]
        cmd = [sys.executable, "-X", "importtime", "-c", _IMPORT_SNIPPET, mods] + (["backend"] if backend else [])
        rows = _importtime_lines(cmd)
        out["importtime_top"] = {"case": key, "top_cumulative_us": rows}
    # edge-run --help, a whole process
    runs = [run_measured(taskset(args.cpu) + EDGE_RUN + ["--help"], timeout=120)["wall_s"] for _ in range(reps)]
    out["edge_run_help_process_s"] = {"median_s": percentile(runs, 50),
                                      "method": "wall time of `edge-run --help` (interpreter start included)"}
    return out


def _importtime_lines(cmd, top: int = 12) -> list:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=_env())
    rows = []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
    # top-level-ish entries (depth <= 2) by cumulative time
    rows = sorted((r for r in rows if r[1] <= 2), reverse=True)[:top]
    return [{"module": name, "cumulative_us": us, "depth": d} for us, d, name in rows]


# --------------------------------------------------------------------------- streaming

def _replay(bundle, record_stem, cpu, timeout, extra=()) -> dict:
    cmd = taskset(cpu) + EDGE_RUN + ["--replay", str(record_stem), "--fast"] + model_args(bundle) + list(extra)
    r = run_measured(cmd, timeout=timeout)
    parsed = parse_jsonl(r["stdout"])
    r.update(parsed)
    r["command"] = " ".join(cmd)
    return r


def run_streaming(models, args, quick, notes, out_dir: Path) -> dict:
    res = {"driver": "edge-run (selfmis.edge_runtime.cli)", "cpu": args.cpu, "taskset": bool(taskset(args.cpu))}
    work = Path(tempfile.mkdtemp(prefix="selfmis-bench-"))
    try:
        b = models.get("bundle")
        if b:
            bundle, bsrc = Path(b["dir"]), b["source"]
        else:
            bundle = standin_bundle(work, models["student"]["tflite_int8"])
            bsrc = "stand-in: bundle around " + str(models["student"]["tflite_int8"])
        res["bundle"] = {"dir": str(bundle), "source": bsrc}
        minutes = args.stream_minutes if args.stream_minutes is not None else (2.0 if quick else 60.0)
        rec = Path(args.record) if args.record else default_record()
        stem, fs, secs = tile_record(rec, minutes, work / "long")
        rapl = E.Rapl()
        ina = None
        if args.ina219:
            try:
                bus, addr = E.parse_bus_addr(args.ina219)
                ina = E.Ina219(bus, addr, args.ina_shunt_ohm, args.ina_chip)
            except (RuntimeError, ValueError, OSError) as exc:
                notes.append(f"--ina219: {exc}")
        before = rapl.read() if rapl.available else None
        if ina:
            ina.start()
        r = _replay(bundle, stem, args.cpu, timeout=600)
        ina_fig = ina.stop() if ina else None
        after = rapl.read() if rapl.available else None
        s = r.get("summary") or {}
        lat = r["latencies_ms"]
        rep = {"record": f"{rec.name} lead I tiled to {minutes:g} min at {fs:g} Hz", "ecg_s": secs,
               "rc": r["rc"], "command": r["command"], "wall_s": r["wall_s"], "cpu_s": r["cpu_s"],
               "rss_peak_mb": r["rss_peak_mb"], "beats": r["beats"], "decisions": r["decisions"],
               "n_slow_decisions": r["n_slow_decisions"], "slow_decisions": r["slow_decisions"], "summary": s}
        if r["rc"] != 0 or not s:
            notes.append(f"streaming replay failed rc={r['rc']}: {r['stderr'][-500:]}")
        pipe_rtf = s.get("realtime_factor")
        rep["rtf_pipeline"] = pipe_rtf
        rep["rtf_process"] = secs / r["wall_s"] if r["wall_s"] > 0 else None
        rep["rtf"] = pipe_rtf if pipe_rtf is not None else rep["rtf_process"]
        rep["rtf_method"] = ("ECG seconds / pipeline wall seconds (edge-run summary.realtime_factor), "
                             f"replay --fast on one core; whole process incl. start-up: "
                             f"{rep['rtf_process']:.0f}x" if rep["rtf_process"] else "")
        if lat:
            rep["latency_ms"] = summarize(lat)
            rep["latency_p50_ms"], rep["latency_p99_ms"] = rep["latency_ms"]["p50"], rep["latency_ms"]["p99"]
            rep["latency_method"] = ("decision.latency_ms from edge-run: arrival of the chunk completing the "
                                     "beat window -> decision emitted (replay --fast, 2 s chunks)")
        if r["beats"]:
            rep["cpu_per_beat_ms"] = r["cpu_s"] / r["beats"] * 1e3
        energy = {}
        if rapl.available and before is not None:
            energy["replay (rapl)"] = E.energy_figure(rapl.joules_between(before, after), "rapl",
                                                      f"package energy over the {minutes:g}-min replay (whole package)",
                                                      per=f"{minutes:g} min of ECG replayed")
        if ina_fig:
            energy["replay (ina219)"] = ina_fig
        res["replay"] = rep

        if not quick:
            res["stage_breakdown"] = stage_breakdown(bundle, stem, args.cpu, notes)
            # the same record at the model rate (100 Hz, no resampling), for comparison only
            lr = Path(str(rec).replace("records500", "records100").replace("_hr", "_lr"))
            if lr != rec and Path(str(lr) + ".hea").is_file():
                stem100, fs100, secs100 = tile_record(lr, minutes, work / "long100")
                r100 = _replay(bundle, stem100, args.cpu, timeout=600)
                s100 = r100.get("summary") or {}
                res["replay_100hz"] = {"record": f"{lr.name} lead I tiled to {minutes:g} min at {fs100:g} Hz",
                                       "ecg_s": secs100, "rc": r100["rc"], "beats": r100["beats"],
                                       "rtf": s100.get("realtime_factor"), "cpu_s": r100["cpu_s"],
                                       "rss_peak_mb": r100["rss_peak_mb"],
                                       "latency_p99_ms": (s100.get("latency_ms") or {}).get("p99")}

        # ---- duty cycle at 60 / 120 bpm (synthetic, exact rates)
        dmin = 0.5 if quick else 10.0
        duty = {"ecg_minutes": dmin, "fs": 500.0,
                "method": "synthetic ECG at an exact rate replayed --fast on one core; CPU from os.wait4; "
                          "start-up CPU from a 10 s run subtracted; duty = CPU s per ECG s"}
        short = _replay(bundle, write_wfdb16(work / "syn_short", synthetic_ecg(60, 10.0), 500.0),
                        args.cpu, timeout=300)
        duty["startup_cpu_s"] = short["cpu_s"]
        duty["startup_beats"] = short["beats"]
        per_bpm = {}
        for bpm in (60, 120):
            x = synthetic_ecg(bpm, dmin * 60)
            rr = _replay(bundle, write_wfdb16(work / f"syn_{bpm}", x, 500.0), args.cpu, timeout=600)
            cpu = max(0.0, rr["cpu_s"] - short["cpu_s"])
            ecg_s = dmin * 60 - 10.0
            nb = max(1, rr["beats"] - short["beats"])
            per_bpm[str(bpm)] = {"beats": rr["beats"], "expected_beats": int(dmin * 60 * bpm / 60),
                                 "decisions": rr["decisions"], "cpu_s": rr["cpu_s"], "rc": rr["rc"],
                                 "cpu_per_beat_ms": cpu / nb * 1e3, "duty_cycle": cpu / ecg_s,
                                 "rss_peak_mb": rr["rss_peak_mb"],
                                 "rtf_pipeline": (rr.get("summary") or {}).get("realtime_factor")}
            energy[f"per beat at {bpm} bpm"] = E.estimate_from_cpu(
                cpu / nb, args.board_watts, per="beat",
                note=f"{E.BOARD_WATTS_NOTE if args.board_watts == E.DEFAULT_BOARD_WATTS else 'user-given'}; "
                     f"CPU per beat measured on this machine ({res.get('cpu_model', 'see machine')}), "
                     "not on the board")
            energy[f"per hour at {bpm} bpm"] = E.estimate_from_cpu(cpu / ecg_s * 3600, args.board_watts,
                                                                   per="hour of monitoring",
                                                                   note="duty cycle x 3600 s")
        b60, b120 = per_bpm["60"], per_bpm["120"]
        if b120["beats"] > b60["beats"]:
            duty["marginal_cpu_per_beat_ms"] = (b120["cpu_s"] - b60["cpu_s"]) / (b120["beats"] - b60["beats"]) * 1e3
        duty["per_bpm"] = per_bpm
        res["duty_cycle"] = duty
        res["energy"] = energy

        # ---- algorithmic wait (simulated clock, 100 ms device frames)
        res["deferral"] = run_deferral(bundle, rec, quick, notes)

        # ---- virtual device over a pty
        res["virtual_device"] = run_virtual_device(bundle, rec, args, quick, notes, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return res


def run_deferral(bundle, rec, quick, notes) -> dict:
    from selfmis.edge_runtime.interpreter import TFLiteModel
    from selfmis.readers import read_record

    from .deferral import simulate_deferral

    try:
        model = TFLiteModel(bundle, num_threads=1)
    except Exception as exc:  # noqa: BLE001
        return {"skipped": f"{type(exc).__name__}: {exc}"}
    secs = 30.0 if quick else 120.0
    cases = {f"synthetic {b} bpm, {secs:g} s": (synthetic_ecg(b, secs), 500.0) for b in (60, 72, 120)}
    r = read_record(str(rec))
    cases[f"{rec.name} (10 s record)"] = (r.lead("I"), r.fs)
    out = {"method": "Pipeline fed 100 ms chunks on a simulated clock that stands still while it computes: "
                     "latency = time spent waiting for later chunks only (0 = decided on the chunk that "
                     "completed the window)", "cases": {}}
    for name, (x, fs) in cases.items():
        out["cases"][name] = simulate_deferral(model, x, fs)
    return out


#: pipeline stages, by the function that does each (cProfile cumulative time)
STAGES = (("resample + hold/fill", "pipeline.py", "_resample"),
          ("quality gate", "quality.py", "push"),
          ("beat detection", "beats.py", "push"),
          ("preprocess_window", "preprocess.py", "preprocess_window"),
          ("model (quantise + invoke)", "interpreter.py", "predict_proba"),
          ("rolling decision", "decision.py", "add"),
          ("JSON output", "output.py", "write_all"),
          ("source (read/decode)", "replay.py", "_iter"))


def stage_breakdown(bundle, stem, cpu, notes) -> dict:
    """Where a replay's time goes, by stage: cProfile of one edge-run replay (shares, profiler overhead included)."""
    import pstats

    with tempfile.TemporaryDirectory() as tmp:
        prof = os.path.join(tmp, "p.out")
        cmd = taskset(cpu) + [sys.executable, "-m", "cProfile", "-o", prof, "-m", EDGE_RUN[-1], "--replay",
                              str(stem), "--fast"] + model_args(bundle)
        r = run_measured(cmd, timeout=600)
        if r["rc"] != 0 or not os.path.exists(prof):
            notes.append(f"stage breakdown: profiling failed rc={r['rc']}")
            return {"skipped": "profiling failed"}
        st = pstats.Stats(prof)
        total = None
        stages = {}
        for (fname, _line, func), (_cc, _nc, _tt, ct, _callers) in st.stats.items():
            if func == "run" and fname.endswith("cli.py"):
                total = max(total or 0.0, ct)
            for name, f, fn in STAGES:
                if fname.endswith(f) and func == fn:
                    stages[name] = stages.get(name, 0.0) + ct
    parsed = parse_jsonl(r["stdout"])
    beats = max(1, parsed["beats"])
    out = {"method": "cProfile of one `edge-run --replay --fast` (beat lines on); cumulative seconds of the "
                     "function doing each stage; profiler overhead inflates small functions, read as shares",
           "total_s": total, "beats": parsed["beats"],
           "stages": {k: {"s": v, "ms_per_beat": v / beats * 1e3,
                          "share": (v / total) if total else None} for k, v in
                      sorted(stages.items(), key=lambda kv: -kv[1])}}
    return out


def run_virtual_device(bundle, rec, args, quick, notes, work) -> dict:
    """The binary pty path paced in real time: the decision latency a user meets."""
    seconds = 12.0 if quick else 60.0
    link = work / "vdev"
    sim_cmd = [sys.executable, "-m", "selfmis.firmware_bridge.virtual_device", str(rec), "--pty", "--link", str(link),
               "--loop", "--seconds", str(seconds + 5.0)]
    other_cpu = next((c for c in sorted(os.sched_getaffinity(0)) if c != args.cpu), None) \
        if hasattr(os, "sched_getaffinity") else None
    if other_cpu is not None:
        sim_cmd = taskset(other_cpu) + sim_cmd
    sim = subprocess.Popen(sim_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    try:
        t0 = time.time()
        while not link.exists() and time.time() - t0 < 20:
            time.sleep(0.05)
        if not link.exists():
            return {"skipped": f"virtual device did not create {link}: {sim.stderr.read(2000) if sim.poll() is not None else ''}"}
        cmd = taskset(args.cpu) + EDGE_RUN + ["--port", str(link), "--max-seconds", str(seconds),
                                              "--retries", "0"] + model_args(bundle)
        r = run_measured(cmd, timeout=seconds + 60)
    finally:
        if sim.poll() is None:
            sim.terminate()
            try:
                sim.wait(10)
            except subprocess.TimeoutExpired:
                sim.kill()
    parsed = parse_jsonl(r["stdout"])
    out = {"paced": "real time",
           "rtf": (parsed["summary"] or {}).get("realtime_factor"),
           "command": " ".join(cmd), "simulator": " ".join(sim_cmd), "ecg_s": seconds, "rc": r["rc"],
           "wall_s": r["wall_s"], "cpu_s": r["cpu_s"], "rss_peak_mb": r["rss_peak_mb"],
           "beats": parsed["beats"], "decisions": parsed["decisions"], "summary": parsed["summary"],
           "n_slow_decisions": parsed["n_slow_decisions"],
           "slow_decisions_t_s_latency_ms": parsed["slow_decisions"]}
    if parsed["latencies_ms"]:
        out["latency_ms"] = summarize(parsed["latencies_ms"])
        out["latency_p50_ms"], out["latency_p99_ms"] = out["latency_ms"]["p50"], out["latency_ms"]["p99"]
        out["latency_method"] = ("decision.latency_ms from edge-run reading the virtual device over a pty "
                                 "in real time (serial framing path, rate checked against arrivals)")
    if not parsed["decisions"]:
        notes.append(f"virtual device: no decisions (rc={r['rc']}): {r['stderr'][-400:]}")
    return out
