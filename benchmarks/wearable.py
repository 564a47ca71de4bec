"""The wearable benchmark: the C chain on a Cortex-M4F -- parity, memory, instructions, energy.

``python -m selfmis.benchmarks.wearable`` (or ``make target-wearable``), on a fresh machine
with gcc, gcc-arm-none-eabi, libnewlib-arm-none-eabi and qemu-system-arm:

1. **parity on the host**: >= 100 real 500 Hz records (the shared PTB-XL subset's
   records500, plus the bundled sample record), each tiled 3x (30 s), pushed one sample at a
   time through the C chain (host gcc) and through the gateway's Pipeline; beats, int8
   windows, model outputs, decisions and alarm states compared with no tolerance;
2. **the target**: the same program cross-compiled for Cortex-M4F (hard float) and run under
   ``qemu-system-arm -M mps2-an386`` on records; output compared byte for byte with the host;
   flash/RAM from the linker map (text, data, bss) and the painted stack's high-water mark;
   instructions per second of ECG and per decision counted from QEMU's execution trace
   (``-singlestep -d exec,nochain``), per bundle, at 250 and 500 Hz input;
3. **energy** as a labelled model (:mod:`.wearable_energy`).

Writes ``benchmarks/results/wearable/`` (wearable.json, README.md, wearable.png).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..firmware_bridge.c_chain import ChainConfig, generate
from . import wearable_parity as wp

MCU = wp.MCU_DIR
ARCH = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
TARGET_CFLAGS = ["-std=c99", "-O2", "-ffp-contract=off", "-fno-math-errno", "-ffunction-sections",
                 "-fdata-sections", *ARCH]
MARKS = ["smx_mark_push_begin", "smx_mark_push_end", "smx_mark_score_begin", "smx_mark_score_end",
         "smx_mark_model_begin", "smx_mark_model_end"]


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return r


def build_target(bundle, cfg: ChainConfig, out_dir, model_dir, marks: bool = True) -> Path:
    """The replay program for Cortex-M4F (semihosting I/O, painted stack) -> ELF path (+ .map)."""
    out = Path(out_dir)
    generate(bundle, cfg, out)
    model_dir = Path(model_dir)
    srcs = sorted((MCU / "chain").glob("*.c")) + sorted(model_dir.glob("*.c")) + [
        MCU / "run" / "smx_replay.c", MCU / "qemu" / "startup.c", MCU / "qemu" / "marks.c",
        out / "smx_chain_params.c"]
    elf = out / "smx_replay.elf"
    _run(["arm-none-eabi-gcc", *TARGET_CFLAGS, "-DSMX_TARGET", *(["-DSMX_TRACE_MARKS"] if marks else []),
          "-I", MCU / "chain", "-I", out, "-I", model_dir, *srcs, "-T", MCU / "qemu" / "mps2_an386.ld",
          "-nostartfiles", "--specs=rdimon.specs", "-Wl,--gc-sections", f"-Wl,-Map,{out / 'smx_replay.map'}",
          "-lc", "-lrdimon", "-o", elf])
    return elf


def build_minimal(bundle, cfg: ChainConfig, out_dir, model_dir) -> Path:
    """The device image: library + model + the sketch's minimal main, no stdio (memory figures)."""
    out = Path(out_dir)
    generate(bundle, cfg, out)
    model_dir = Path(model_dir)
    fw = MCU.parent / "firmware" / "ad8232_decide"
    c = MCU.parent / "c"
    srcs = sorted((MCU / "chain").glob("*.c")) + sorted(model_dir.glob("*.c")) + [
        fw / "minimal_main.c", MCU / "qemu" / "startup.c", c / "selfmis_frame.c", c / "selfmis_decision.c",
        out / "smx_chain_params.c"]
    elf = out / "ad8232_decide.elf"
    _run(["arm-none-eabi-gcc", *TARGET_CFLAGS, "-DSMX_TARGET", "-I", MCU / "chain", "-I", out, "-I", model_dir,
          "-I", c, "-I", fw, *srcs, "-T", MCU / "qemu" / "mps2_an386.ld", "-nostartfiles", "--specs=nano.specs",
          "--specs=nosys.specs", "-Wl,--gc-sections", f"-Wl,-Map,{out / 'ad8232_decide.map'}", "-o", elf])
    return elf


def qemu_cmd(elf, trace: str | None = None) -> list:
    cmd = ["qemu-system-arm", "-M", "mps2-an386", "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    return cmd + (["-singlestep", "-d", "exec,nochain", "-D", trace] if trace else [])


def run_qemu(elf, samples: np.ndarray, work, timeout: float = 600) -> str:
    """Output of the replay ELF under QEMU on ``samples`` (semihosting reads work/input.f32)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    np.asarray(samples, "<f4").tofile(work / "input.f32")
    r = subprocess.run(qemu_cmd(elf), cwd=work, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"qemu exited {r.returncode}: {r.stdout[-500:]} {r.stderr[-500:]}")
    return r.stdout


def symbols(elf) -> dict:
    out = _run(["arm-none-eabi-nm", elf]).stdout
    return {f[2]: int(f[0], 16) for f in (l.split() for l in out.splitlines()) if len(f) == 3}


#: where each function's instructions go, outside a scored beat (the scored phase is split by the
#: markers: the model, and the rest of the scored beat: window band-pass FFT, detrend, z-score, int8,
#: calibration, decision). Static functions the compiler inlined count for their caller.
STAGES = {
    "resampler": ("rs_process", "resample"),
    "quality gate (1-s blocks: amplitude, MAD)": ("smx_assess", "median2", "mad2", "select_i", "noise_mad_i",
                                                  "noise_mad_d", "mad_d", "pow2", "smx_sort_d", "quality_push",
                                                  "window_reasons", "tail_reasons"),
    "beat detector (integer Pan-Tompkins)": ("smx_det_push", "filter", "to_q", "candidate", "decide",
                                             "classify", "search_back", "qrs", "isqrt64", "rr_mean", "thr1",
                                             "drop_noise_upto", "shift_floor"),
}
FFT_FUNCS = {"work", "bfly2", "bfly3", "bfly4", "bfly5", "bfly_generic", "smx_fft_filter", "real_filter", "factorise"}


def _stage_of(name: str, phase: int) -> str:
    base = name.split(".")[0]
    if phase == 2:
        return "model (plain C int8 kernels)"
    if phase == 1:
        return ("scored beat: window band-pass FFT" if base in FFT_FUNCS else
                "scored beat: detrend, z-score, int8, calibration, decision")
    for stage, funcs in STAGES.items():
        if base in funcs:
            return stage
    if base.startswith("__") or base.startswith("_aeabi"):
        return "soft-float double (quality statistics, detector thresholds, decision times)"
    return "chain glue: hold & fill, ring, quality events, beat bookkeeping"


def count_instructions(elf, samples: np.ndarray, work, timeout: float = 3600) -> dict:
    """Instructions executed under QEMU (one trace line per instruction with -singlestep),
    split by the markers: in pushes (the whole chain), in scored beats (window -> decision),
    in the model; and per function and stage (``trace_profile.c``). The trace streams through a
    FIFO into trace_profile (it is gigabytes)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    np.asarray(samples, "<f4").tofile(work / "input.f32")
    counter = work / "trace_profile"
    _run(["gcc", "-O2", "-o", counter, MCU / "qemu" / "trace_profile.c"])
    sym = symbols(elf)
    nm = _run(["arm-none-eabi-nm", "-S", "--defined-only", elf]).stdout
    funcs = [l.split() for l in nm.splitlines()]
    (work / "functions.txt").write_text("".join(f"{f[0]} {f[1]} {f[3]}\n" for f in funcs
                                                if len(f) == 4 and f[2] in "tTwW"))
    fifo = work / "trace.fifo"
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    q = subprocess.Popen(qemu_cmd(elf, str(fifo)), cwd=work, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    with open(fifo, "rb") as f:  # opens once QEMU has opened its log for writing
        cnt = subprocess.run([str(counter), work / "functions.txt", *[f"{sym[m]:x}" for m in MARKS]], stdin=f,
                             capture_output=True, text=True, timeout=timeout)
    q.wait(timeout=60)
    fifo.unlink()
    lines = [l.split() for l in cnt.stdout.splitlines()]
    total, push, score, model, n_push, n_score, n_model = map(int, lines[0][1:])
    per_func, stages = {}, {}
    for l in lines[1:]:
        n = list(map(int, l[2:5]))
        per_func[l[1]] = n
        for phase, v in enumerate(n):
            if v:
                st = _stage_of(l[1], phase)
                stages[st] = stages.get(st, 0) + v
    return {"total": total, "chain": push, "scored_beats": score, "model": model, "pushes": n_push,
            "n_scored": n_score, "n_model": n_model, "stages": stages, "functions": per_func}


def memory(elf) -> dict:
    """text/data/bss of the image (arm-none-eabi-size) and per input object from the map."""
    f = _run(["arm-none-eabi-size", "-A", elf]).stdout
    sec = {l.split()[0]: int(l.split()[1]) for l in f.splitlines()[2:] if len(l.split()) >= 2 and l.split()[1].isdigit()}
    return {"text": sec.get(".text", 0) + sec.get(".ARM.exidx", 0), "data": sec.get(".data", 0),
            "bss": sec.get(".bss", 0)}


# ------------------------------------------------------------------ the benchmark

def _commit() -> str:
    try:
        r = subprocess.run(["git", "-C", str(MCU.parents[1]), "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(MCU.parents[1]), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (r.stdout.strip() or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _records(data_root: Path, n: int) -> list:
    """The first ``n`` records500 of the shared subset (sorted by ecg_id), then the bundled 500 Hz one."""
    recs = sorted((data_root / "records500").glob("*/*_hr.hea"))[:n]
    bundled = MCU.parents[1] / "core" / "sample_data" / "ptbxl" / "records500" / "00000" / "00271_hr.hea"
    return [r.with_suffix("") for r in recs] + [bundled.with_suffix("")]


def _parity_one(args) -> dict:
    rec, bundle_dir, engine, fs, tile, exe = args
    from selfmis.bundle import load_bundle
    b = load_bundle(bundle_dir)
    x, fs_rec = wp.read_lead_i(rec)
    step = int(round(fs_rec / fs))
    x = np.tile(x[::step].copy(), tile)
    cfg = ChainConfig(fs, persist_s=5.0)
    c, _ = wp.run_c(exe, x)
    py = wp.python_reference(x, fs, _ref_model(bundle_dir, engine), cfg)
    rp = wp.compare(Path(rec).name, py, c, list(b.card.labels))
    return rp.__dict__


_MODELS: dict = {}


def _ref_model(bundle_dir, engine):
    key = (str(bundle_dir), engine)
    if key not in _MODELS:
        from selfmis.bundle import load_bundle
        _MODELS[key] = wp.reference_model(load_bundle(bundle_dir), engine)
    return _MODELS[key]


def parity(bundle, engine: str, records: list, fs: float, work: Path, jobs: int = 2, tile: int = 3) -> dict:
    """C chain (host) vs the gateway on every record; totals and every difference by record."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    cfg = ChainConfig(fs, persist_s=5.0)
    exe = wp.build_host(bundle, cfg, work / f"host-{bundle.card.sha256[:8]}-{int(fs)}",
                        wp.model_dir_for(bundle, work))
    args = [(r, str(bundle.directory), engine, fs, tile, exe) for r in records]
    rows = []
    # spawned workers: the QEMU runs go on in a thread of this process meanwhile (no fork under threads)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        for i, row in enumerate(ex.map(_parity_one, args), 1):
            rows.append(row)
            if i % 10 == 0 or i == len(args):
                print(f"  parity {bundle.directory.name} vs {engine} at {fs:g} Hz: {i}/{len(args)} records",
                      file=sys.stderr)
    tot = {k: sum(r[k] for r in rows) for k in ("beats_py", "beats_c", "windows", "windows_differing",
                                                 "window_samples_differing", "outputs_differing",
                                                 "decisions_py", "decisions_c", "probability_diffs")}
    tot["output_max_lsb"] = max(r["output_max_lsb"] for r in rows)
    tot["beat_diffs"] = sum(len(r["beat_diffs"]) for r in rows)
    tot["decision_state_diffs"] = sum(len(r["decision_diffs"]) for r in rows)
    states = {}
    for r in rows:
        for k, v in r["states"].items():
            states[k] = states.get(k, 0) + v
    tot["states_c"] = states
    tot["records"] = len(rows)
    tot["records_identical"] = sum(1 for r in rows if not (r["beat_diffs"] or r["windows_differing"] or
                                                          r["outputs_differing"] or r["decision_diffs"] or
                                                          r["probability_diffs"]))
    diffs = [{"record": r["record"], "beat_diffs": r["beat_diffs"], "decision_diffs": r["decision_diffs"][:20],
              "outputs_differing": r["outputs_differing"], "probability_diffs": r["probability_diffs"]}
             for r in rows if r["beat_diffs"] or r["decision_diffs"] or r["outputs_differing"]]
    return {"bundle": bundle.card.name, "reference": engine, "fs": fs, "totals": tot, "differences": diffs}


def target_run(bundle, fs: float, rec, work: Path, trace: bool = True, every_k: int = 1) -> dict:
    """One record on the emulated Cortex-M4F: identical to the host? memory, stack, instructions
    (scoring every ``every_k``-th beat: the decision cadence, ``--every-k-beats`` of edge-run and of
    the chain's generator)."""
    x, fs_rec = wp.read_lead_i(rec)
    x = x[::int(round(fs_rec / fs))].copy()
    cfg = ChainConfig(fs, every_k_beats=every_k)
    mdir = wp.model_dir_for(bundle, work)
    tag = f"{bundle.directory.name}-{int(fs)}-k{every_k}"
    host = wp.build_host(bundle, cfg, work / f"h-{tag}", mdir)
    _, host_text = wp.run_c(host, x)
    elf = build_target(bundle, cfg, work / f"t-{tag}", mdir)
    q = run_qemu(elf, x, work / f"q-{tag}")
    same = "\n".join(l for l in q.splitlines() if not l.startswith("M ")) + "\n" == host_text
    minimal = build_minimal(bundle, cfg, work / f"m-{tag}", mdir)
    mq = subprocess.run(qemu_cmd(minimal), cwd=work / f"q-{tag}", capture_output=True, text=True, timeout=600)
    line = next((l for l in (mq.stdout + "\n" + mq.stderr).splitlines() if l.startswith("M stack")), "")
    m = dict(zip(line.split()[1::2], map(int, line.split()[2::2])))
    if not m or mq.returncode != 0:
        raise RuntimeError(f"{minimal} under QEMU: exit {mq.returncode}, {mq.stdout[-300:]} {mq.stderr[-300:]}")
    mem = memory(minimal)
    arena = _model_arena(mdir)
    out = {"bundle": bundle.card.name, "fs": fs, "every_k_beats": every_k, "record": Path(rec).name,
           "seconds": len(x) / fs,
           "qemu_output_identical_to_host": same, "device_image": {**mem, "stack_high_water": m.get("stack"),
                                                                     "chain_struct_bytes": m.get("chain"),
                                                                     "model_arena_bytes": arena},
           "decision_frames": m.get("frames"), "decision_bytes": m.get("bytes"), "decisions": m.get("decisions")}
    img = out["device_image"]
    img["flash_bytes"] = mem["text"] + mem["data"]
    img["ram_bytes"] = mem["data"] + mem["bss"] + (m.get("stack") or 0)
    if trace:
        t0 = time.time()
        ic = count_instructions(elf, x, work / f"ic-{tag}")
        ic["host_seconds"] = round(time.time() - t0, 1)
        out["instructions"] = ic
    return out


def _model_arena(mdir: Path):
    m = re.search(r"#define\s+SMX_MODEL_ARENA_BYTES\s+(\d+)", (Path(mdir) / "smx_model.h").read_text())
    return int(m.group(1)) if m else None


def summarise_target(t: dict, beats_per_s: float) -> dict:
    """Instructions per second of ECG (whole record, and steady state) and per decision.

    *Steady*: the instructions outside scored beats per second, plus instructions per scored beat
    times the scored beats per second (the record's beats per second / the cadence k)."""
    ic = t.get("instructions")
    if not ic:
        return {}
    k = t.get("every_k_beats", 1)
    per_dec = ic["scored_beats"] / max(1, ic["n_scored"])
    rest_per_s = (ic["chain"] - ic["scored_beats"]) / t["seconds"]
    return {"chain_instr_per_s_record": ic["chain"] / t["seconds"],
            "instr_per_decision": per_dec, "model_instr_per_invoke": ic["model"] / max(1, ic["n_model"]),
            "non_scoring_instr_per_s": rest_per_s, "beats_per_s": beats_per_s, "every_k_beats": k,
            "scored_per_s": beats_per_s / k, "chain_instr_per_s_steady": rest_per_s + per_dec * beats_per_s / k,
            "stages_instr_per_s": {st: v / t["seconds"] for st, v in
                                   sorted(ic.get("stages", {}).items(), key=lambda kv: -kv[1])}}


def _command(argv: list, repo: Path) -> str:
    """The command line as run, with paths outside the repository named only by their role
    (a committed result never names a machine path)."""
    out, prev = [], None
    for a in argv:
        if prev in ("--out", "--work", "--data"):
            p = Path(a).resolve()
            a = str(p.relative_to(repo)) if p.is_relative_to(repo) else f"<{prev[2:]}>"
        out.append(a)
        prev = a
    return " ".join(["python -m selfmis.benchmarks.wearable", *out])


def _target_runs(a, rec, bundles: dict, work: Path) -> list:
    """The QEMU runs (external processes: they go on in a thread while the parity runs in a process pool)."""
    k = a.every_k_beats
    out = []
    for name, fs, kk, traced in (("micro", 250.0, 1, True), ("micro", 250.0, k, True), ("default", 250.0, 1, True),
                                 ("default", 250.0, k, True), ("micro", 500.0, 1, False)):
        print(f"wearable: Cortex-M4F under QEMU, {name} at {fs:g} Hz, every {kk} beat(s), on {rec.name}",
              file=sys.stderr)
        t = target_run(bundles[name], fs, rec, work, trace=traced and not a.no_trace, every_k=kk)
        x, fs_rec = wp.read_lead_i(rec)
        c, _ = wp.run_c(wp.build_host(bundles[name], ChainConfig(fs), work / f"hb-{name}-{int(fs)}",
                                      wp.model_dir_for(bundles[name], work)), x[::int(fs_rec / fs)].copy())
        t["summary"] = summarise_target(t, len(c["beats"]) / t["seconds"])
        out.append(t)
    return out


def _measure(a, recs: list, bundles: dict, work: Path, res: dict) -> None:
    """Parity (process pool) and the target runs (a thread) side by side, then the energy model."""
    from concurrent.futures import ThreadPoolExecutor
    from . import wearable_energy as energy
    t0 = time.time()
    with ThreadPoolExecutor(1) as pool:
        fut = pool.submit(_target_runs, a, recs[0], bundles, work)
        for name, engine, fs, n in (("micro", "tflm", 500.0, None), ("micro", "litert", 500.0, a.litert_records),
                                    ("default", "tflm", 500.0, a.default_records), ("micro", "tflm", 250.0, 20)):
            rr = recs if n is None else recs[:n]
            print(f"wearable: parity {name} vs {engine} at {fs:g} Hz on {len(rr)} records", file=sys.stderr)
            res["parity"].append(parity(bundles[name], engine, rr, fs, work, jobs=a.jobs))
        res["parity_seconds"] = round(time.time() - t0, 1)
        res["target"] = fut.result()
    for t in res["target"]:
        s = t["summary"]
        if s:
            key = f"{t['bundle'].split('-')[2]}@{int(t['fs'])}, every {t['every_k_beats']} beat(s)"
            res["energy"][key] = energy.model(t["fs"], s["chain_instr_per_s_steady"], s["instr_per_decision"],
                                              s["scored_per_s"], 56)
            res["energy"][key]["every_k_beats"] = t["every_k_beats"]


def main(argv=None) -> int:
    repo = MCU.parents[1]
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.wearable", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(repo.parent / "shared" / "data" / "ptbxl-subset"),
                    help="PTB-XL subset root (its records500 are used)")
    ap.add_argument("--records", type=int, default=100, help="records500 for the host parity (plus the bundled one)")
    ap.add_argument("--out", default=str(repo / "benchmarks" / "results" / "wearable"))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--default-records", type=int, default=None,
                    help="records for the default bundle's parity (default: all of --records)")
    ap.add_argument("--litert-records", type=int, default=None,
                    help="records for the parity against LiteRT (default: all of --records)")
    ap.add_argument("--every-k-beats", type=int, default=4,
                    help="the decision cadence measured besides every beat: score every k-th beat (default 4)")
    ap.add_argument("--no-trace", action="store_true", help="skip QEMU instruction counting (slow: ~0.1-0.6 M/s)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    a = ap.parse_args(argv)
    from selfmis.bundle import load_bundle
    from selfmis.edge_runtime.models import resolve_bundle
    from . import wearable_energy as energy
    data = Path(a.data)
    work = Path(a.work or tempfile.mkdtemp(prefix="selfmis-wearable-"))
    work.mkdir(parents=True, exist_ok=True)
    recs = _records(data, a.records)
    if len(recs) < a.records + 1:
        print(f"wearable: only {len(recs) - 1} records500 under {data}", file=sys.stderr)
        return 2
    bundles = {n: load_bundle(resolve_bundle(n)) for n in ("micro", "default")}
    res = {"commit": _commit(), "command": _command(argv if argv is not None else sys.argv[1:], repo),
           "data": f"{data.name}/records500: the first {a.records} records by ecg_id, plus "
                   "core/sample_data/ptbxl/records500/00000/00271_hr; Lead I, each tiled 3x (30 s), pushed one "
                   "sample at a time; decisions with --persist-s 5 (onsets and clears within 30 s)",
           "toolchain": {"gcc": _run(["gcc", "-dumpfullversion"]).stdout.strip(),
                         "arm-none-eabi-gcc": _run(["arm-none-eabi-gcc", "-dumpversion"]).stdout.strip(),
                         "qemu": _run(["qemu-system-arm", "--version"]).stdout.splitlines()[0]},
           "parity": [], "target": [], "energy": {}}
    _measure(a, recs, bundles, work, res)
    res["energy_assumptions"] = {k: {"value": v, "unit": u, "source": src}
                                 for k, (v, u, src) in {**energy.ASSUMPTIONS, **energy.BASELINE}.items()}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "wearable.json").write_text(json.dumps(res, indent=1, default=float) + "\n")
    from .wearable_report import write_report
    write_report(res, out)
    print(f"wearable: wrote {out}/wearable.json, README.md, wearable.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
