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

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfmis.simulate import synthetic_ecg

from . import energy as E
from .edge_process import (EDGE_RUN, child_env, default_record, model_args, parse_jsonl, run_measured,
                           standin_bundle, taskset, tile_record, write_wfdb16)
from .import_cost import measure_imports
from .stats import summarize

__all__ = ["write_wfdb16", "synthetic_ecg", "tile_record", "EDGE_RUN", "run_measured", "parse_jsonl",
           "measure_imports", "run_streaming", "standin_bundle"]


# --------------------------------------------------------------------------- streaming

def _replay(bundle, record_stem, cpu, timeout, extra=()) -> dict:
    cmd = taskset(cpu) + EDGE_RUN + ["--replay", str(record_stem), "--fast"] + model_args(bundle) + list(extra)
    r = run_measured(cmd, timeout=timeout)
    parsed = parse_jsonl(r["stdout"])
    r.update(parsed)
    r["command"] = " ".join(cmd)
    return r


def run_streaming(models, args, quick, notes, out_dir: Path) -> dict:
    """Replay (with energy where measurable), stage breakdown and 100 Hz replay (full runs), duty
    cycle, algorithmic wait and the paced virtual device; one dict for ``bench.json``."""
    res = {"driver": "edge-run (selfmis.edge_runtime.cli)", "cpu": args.cpu, "taskset": bool(taskset(args.cpu))}
    work = Path(tempfile.mkdtemp(prefix="selfmis-bench-"))
    try:
        bundle, bsrc = _bundle(models, work)
        res["bundle"] = {"dir": str(bundle), "source": bsrc}
        minutes = args.stream_minutes if args.stream_minutes is not None else (2.0 if quick else 60.0)
        rec = Path(args.record) if args.record else default_record()
        res["replay"], energy = replay_long(bundle, rec, minutes, args, notes, work)
        if not quick:
            res["stage_breakdown"] = stage_breakdown(bundle, work / "long", args.cpu, notes)
            replay_100hz = replay_at_model_rate(bundle, rec, minutes, args.cpu, work)
            if replay_100hz:
                res["replay_100hz"] = replay_100hz
        res["duty_cycle"] = duty_cycle(bundle, args, quick, work, energy, res)
        res["energy"] = energy
        # ---- algorithmic wait (simulated clock, 100 ms device frames)
        res["deferral"] = run_deferral(bundle, rec, quick, notes)
        # ---- virtual device over a pty
        res["virtual_device"] = run_virtual_device(bundle, rec, args, quick, notes, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return res


def _bundle(models, work: Path) -> tuple:
    """The bundle to stream through, and where it came from (a stand-in around the int8 student)."""
    b = models.get("bundle")
    if b:
        return Path(b["dir"]), b["source"]
    bundle = standin_bundle(work, models["student"]["tflite_int8"])
    return bundle, "stand-in: bundle around " + str(models["student"]["tflite_int8"])


def replay_long(bundle, rec, minutes, args, notes, work) -> tuple:
    """The record tiled to ``minutes`` replayed --fast on one core, with package (RAPL) or board
    (INA219) energy where measurable; returns (report, energy figures)."""
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
    rep = _replay_report(r, f"{rec.name} lead I tiled to {minutes:g} min at {fs:g} Hz", secs, notes)
    energy = {}
    if rapl.available and before is not None:
        energy["replay (rapl)"] = E.energy_figure(rapl.joules_between(before, after), "rapl",
                                                  f"package energy over the {minutes:g}-min replay (whole package)",
                                                  per=f"{minutes:g} min of ECG replayed")
    if ina_fig:
        energy["replay (ina219)"] = ina_fig
    return rep, energy


def _replay_report(r: dict, record: str, secs: float, notes: list) -> dict:
    """Real-time factor, decision latency and CPU per beat of one long replay."""
    s = r.get("summary") or {}
    lat = r["latencies_ms"]
    rep = {"record": record, "ecg_s": secs,
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
    return rep


def replay_at_model_rate(bundle, rec, minutes, cpu, work) -> dict | None:
    """The same record at the model rate (100 Hz, no resampling), for comparison only."""
    lr = Path(str(rec).replace("records500", "records100").replace("_hr", "_lr"))
    if lr == rec or not Path(str(lr) + ".hea").is_file():
        return None
    stem100, fs100, secs100 = tile_record(lr, minutes, work / "long100")
    r100 = _replay(bundle, stem100, cpu, timeout=600)
    s100 = r100.get("summary") or {}
    return {"record": f"{lr.name} lead I tiled to {minutes:g} min at {fs100:g} Hz",
            "ecg_s": secs100, "rc": r100["rc"], "beats": r100["beats"],
            "rtf": s100.get("realtime_factor"), "cpu_s": r100["cpu_s"],
            "rss_peak_mb": r100["rss_peak_mb"],
            "latency_p99_ms": (s100.get("latency_ms") or {}).get("p99")}


def duty_cycle(bundle, args, quick, work, energy: dict, res: dict) -> dict:
    """CPU per ECG second and per beat at 60 / 120 bpm (synthetic, exact rates), start-up removed;
    adds the per-beat and per-hour energy estimates to ``energy``."""
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
    return duty


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
    sim = subprocess.Popen(sim_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env())
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
