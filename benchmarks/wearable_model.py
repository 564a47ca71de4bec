"""The model on a wearable: the plain C engine against TFLite Micro and LiteRT, and what it costs.

``python -m selfmis.benchmarks.wearable_model`` exports every shipped bundle with
``selfmis deploy export-c --engine plain``, builds the host harness
(``firmware_bridge/mcu/model/smx_model_host.c``) with gcc, and feeds it every 5 s window of the PTB-XL
subset, cut and quantised as the quantize side does (:func:`selfmis.quantize.windows.windows_of`, 6 windows
a record at 100 Hz, :meth:`MicroModel.quantize`). It counts

* outputs where the plain engine differs from TFLite Micro (``tflite-micro``'s reference kernels):
  required 0;
* outputs where it differs from LiteRT's builtin kernels (required within 1 LSB) and from LiteRT's
  XNNPACK path (reported: XNNPACK rounds inside fused kernels);

and measures, with ``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -O2``, the plain engine's
flash (text + rodata + data of the model and kernel objects, ``arm-none-eabi-size -A``), its RAM (the
arena + any other static data) and the deepest stack frame of its functions (``-fstack-usage``), against
TFLite Micro's arena for the same model (measured by :func:`selfmis.quantize.micro.measure_arena`: the
smallest arena that allocates) and the flatbuffer TFLite Micro must keep in flash. TFLite Micro's
interpreter, op resolver and library code come on top of those two, so the ratios here are upper bounds
of the plain engine's share.

Writes ``benchmarks/results/wearable/model_parity.json`` and ``.md`` (commit, command, data). The CI test
(``tests/test_wearable_model.py``) runs the same functions on a fixed stratified subset.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from selfmis.bundle import load_bundle
from selfmis.edge_runtime.interpreter import TFLiteModel
from selfmis.edge_runtime.models import MODELS_DIR
from selfmis.firmware_bridge.c_model import KERNELS_DIR, export_plain_c
from selfmis.quantize.micro import MicroModel, measure_arena, micro_version
from selfmis.quantize.windows import EVAL_STRIDE_S, windows_of
from selfmis.train.data import PTBXL, load_split

from selfmis.provenance import data_summary, provenance, scrub_paths

__all__ = ["HOST_HARNESS", "M4_FLAGS", "build_host", "run_plain", "stratified_ids", "load_windows",
           "parity", "m4_footprint", "m4_instructions", "study", "main"]

HOST_HARNESS = KERNELS_DIR / "smx_model_host.c"
HOST_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-std=c99", "-Wall",
            "-Wextra", "-Werror", "-O2"]
RESULTS = Path(__file__).resolve().parent / "results" / "wearable"


def _run(cmd, **kw):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, **kw)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace") if isinstance(p.stderr, bytes) else p.stderr
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{err[-3000:]}")
    return p


def build_host(model_path, work_dir, cc: str = "gcc", fuse: bool = True) -> Path:
    """Export ``model_path`` as plain C into ``work_dir`` and build the host harness; return the binary."""
    work_dir = Path(work_dir)
    export_plain_c(model_path, work_dir, fuse=fuse)
    exe = work_dir / "smx_model_host"
    _run([cc, *HOST_FLAGS, "-I", work_dir, HOST_HARNESS, work_dir / "smx_model.c",
          work_dir / "selfmis_kernels.c", "-o", exe])
    return exe


def run_plain(exe, q: np.ndarray, n_out: int) -> np.ndarray:
    """int8 outputs of the host harness for int8 windows ``q`` (n, input_len)."""
    q = np.ascontiguousarray(q, np.int8)
    p = _run([exe], input=q.tobytes(), timeout=600)
    out = np.frombuffer(p.stdout, np.int8)
    if out.size != len(q) * n_out:
        raise RuntimeError(f"{exe}: {out.size} output bytes for {len(q)} windows x {n_out}")
    return out.reshape(len(q), n_out)


def stratified_ids(data_root, per_fold: int = 10) -> np.ndarray:
    """A fixed subset: in each strat_fold 1-10, the ``per_fold`` lowest ecg_ids with MI and the
    ``per_fold`` lowest without (deterministic; no randomness to seed)."""
    ds = PTBXL(data_root)
    ids = []
    for fold in range(1, 11):
        fold_ids = np.sort(ds.split_ids("all", folds=[fold]))
        mi = ds.labels(fold_ids, tasks=("MI",))[:, 0] > 0
        ids += list(fold_ids[mi][:per_fold]) + list(fold_ids[~mi][:per_fold])
    return np.asarray(sorted(ids))


def load_windows(data_root, ids=None):
    """Lead-I windows of every record (``ids``: a subset) as :func:`windows_of` cuts them."""
    ds = load_split(str(data_root), folds=list(range(1, 11)), leads=("I",), progress=False,
                    ids=None if ids is None else list(ids))
    return windows_of(ds, stride_s=EVAL_STRIDE_S)


def _diff(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int32) - b.astype(np.int32))
    return {"outputs_differing": int((d > 0).sum()), "windows_differing": int((d.max(axis=1) > 0).sum()),
            "max_lsb": int(d.max(initial=0))}


def parity(bundle_dir, X: np.ndarray, work_dir, fuse: bool = True) -> dict:
    """Plain C (host gcc) against TFLite Micro and LiteRT on float windows ``X`` (n, W)."""
    b = load_bundle(bundle_dir)
    micro = MicroModel(b)
    q = micro.quantize(np.asarray(X, np.float32).reshape(len(X), -1))
    exe = build_host(b.model_path, work_dir, fuse=fuse)
    n_out = int(np.prod(b.card.output.shape))
    t0 = time.perf_counter()
    plain = run_plain(exe, q, n_out)
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = micro.predict_raw(X).astype(np.int32)
    t_micro = time.perf_counter() - t0
    s, z = b.card.output.scale, b.card.output.zero_point
    out = {"bundle": b.card.name, "windows": int(len(q)), "outputs": int(plain.size),
           "tflite_micro": {"version": micro_version(), **_diff(plain, ref)}}
    for key, xnn in (("litert_builtin", False), ("litert_xnnpack", True)):
        raw = np.rint(TFLiteModel(b, use_xnnpack=xnn).predict_logits(X) / s + z).astype(np.int32)
        out[key] = _diff(plain, raw)
    out["seconds"] = {"plain_host_process": round(t_plain, 3), "tflite_micro_python": round(t_micro, 3)}
    out["ok"] = bool(out["tflite_micro"]["outputs_differing"] == 0 and out["litert_builtin"]["max_lsb"] <= 1)
    return out


def _sections(obj: Path, size_tool: str) -> dict:
    text = _run([size_tool, "-A", obj], text=True).stdout
    sec = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sec[parts[0]] = sec.get(parts[0], 0) + int(parts[1])
    return sec


def m4_footprint(model_path, work_dir, cc: str = "arm-none-eabi-gcc", size_tool: str = "arm-none-eabi-size") -> dict:
    """Flash, static RAM and worst stack frame of the plain engine for Cortex-M4F (objects, not linked)."""
    work_dir = Path(work_dir)
    info = export_plain_c(model_path, work_dir)
    total = {"flash_bytes": 0, "ram_bytes": 0}
    per_object, stack = {}, {}
    for src in ("smx_model.c", "selfmis_kernels.c"):
        obj = work_dir / (Path(src).stem + ".o")
        _run([cc, *M4_FLAGS, "-fstack-usage", "-c", work_dir / src, "-o", obj], cwd=str(work_dir))
        sec = _sections(obj, size_tool)
        flash = sum(v for k, v in sec.items() if k.startswith((".text", ".rodata", ".data")))
        ram = sum(v for k, v in sec.items() if k.startswith((".bss", ".data")))
        per_object[src] = {"flash_bytes": flash, "ram_bytes": ram, "sections": sec}
        total["flash_bytes"] += flash
        total["ram_bytes"] += ram
        su = obj.with_suffix(".su")
        for line in su.read_text().splitlines():
            m = re.match(r"\S+:\d+:\d+:(\S+)\s+(\d+)\s+(\S+)", line)
            if m:
                stack[m.group(1)] = {"bytes": int(m.group(2)), "kind": m.group(3)}
    # invoke -> a kernel -> smx_mbqm (-> static helpers, when not inlined): the deepest chain, bounded above
    frame = {k: v["bytes"] for k, v in stack.items()}
    kernels = [b for k, b in frame.items() if k.startswith("smx_") and k not in ("smx_model_invoke", "smx_mbqm")]
    stack_upper = (frame.get("smx_model_invoke", 0) + max(kernels, default=0) + frame.get("smx_mbqm", 0)
                   + sum(b for k, b in frame.items() if not k.startswith("smx_")))
    return {**total, "arena_bytes": info["arena_bytes"], "const_bytes": info["const_bytes"],
            "activation_bytes_without_reuse": info["activation_bytes_without_reuse"],
            "stack_bytes_upper": stack_upper,
            "stack_frames": stack, "objects": per_object,
            "compiler": _run([cc, "--version"], text=True).stdout.splitlines()[0], "flags": " ".join(M4_FLAGS)}


def m4_instructions(model_path, work_dir) -> dict:
    """Instructions of one ``smx_model_invoke()`` compiled for Cortex-M4F, counted in QEMU's execution
    trace (``qemu-system-arm -M mps2-an386 -singlestep -d exec,nochain``, :func:`.wearable.count_instructions`).
    An instruction count, not a cycle count (see benchmarks/results/wearable for the DWT procedure)."""
    from . import wearable  # the QEMU runner of the chain benchmark (qemu-system-arm needed only here)

    work_dir = Path(work_dir)
    export_plain_c(model_path, work_dir)
    elf = work_dir / "smx_model_count.elf"
    q = wearable.MCU / "qemu"
    _run(["arm-none-eabi-gcc", "-std=c99", "-O2", *wearable.ARCH, "-I", work_dir, KERNELS_DIR / "smx_model_count.c",
          work_dir / "smx_model.c", work_dir / "selfmis_kernels.c", q / "startup.c", q / "marks.c", "-T",
          q / "mps2_an386.ld", "-nostartfiles", "--specs=rdimon.specs", "-lc", "-lrdimon", "-o", elf])
    c = wearable.count_instructions(elf, np.zeros(1, np.float32), work_dir / "trace", timeout=600)
    if c["n_model"] != 1:
        raise RuntimeError(f"{elf}: expected one model invoke between the markers, counted {c['n_model']}")
    return {"instructions_per_invoke": int(c["model"]), "method": "qemu-system-arm mps2-an386 -singlestep "
            "-d exec,nochain trace between smx_mark_model_begin/end (smx_model_count.c)"}


def _tflm_side(model_path) -> dict:
    arena = measure_arena(model_path)
    return {"arena_bytes": arena["arena_bytes"], "allocator_total_bytes": arena["allocator_total_bytes"],
            "flatbuffer_bytes": Path(model_path).stat().st_size, "tflite_micro": arena["tflite_micro"]}


def study(data_root, subset: str = "all", bundles=None, progress=print) -> dict:
    """Parity and footprint of every bundle on ``subset`` ("all" windows or "stratified")."""
    bundles = bundles or sorted(p.parent for p in MODELS_DIR.glob("*/card.json"))
    ids = None if subset == "all" else stratified_ids(data_root)
    t0 = time.perf_counter()
    w = load_windows(data_root, ids)
    progress(f"{len(w.X)} windows of {w.n_records} records loaded in {time.perf_counter() - t0:.0f} s")
    rows = []
    with tempfile.TemporaryDirectory(prefix="smx-parity-") as tmp:
        for bdir in bundles:
            b = load_bundle(bdir)
            rep = parity(bdir, w.X, Path(tmp) / f"{bdir.name}-host")
            rep["footprint_m4"] = m4_footprint(b.model_path, Path(tmp) / f"{bdir.name}-m4")
            rep["instructions_m4"] = m4_instructions(b.model_path, Path(tmp) / f"{bdir.name}-qemu")
            rep["tflite_micro_footprint"] = _tflm_side(b.model_path)
            fp, tf = rep["footprint_m4"], rep["tflite_micro_footprint"]
            rep["ram_ratio_plain_over_tflm_arena"] = round((fp["ram_bytes"] + fp["stack_bytes_upper"])
                                                           / tf["arena_bytes"], 4)
            rep["flash_ratio_plain_over_tflm_flatbuffer"] = round(fp["flash_bytes"] / tf["flatbuffer_bytes"], 4)
            rep["bundle_dir"] = f"edge_runtime/models/{bdir.name}"
            progress(f"{bdir.name}: TFLM differing outputs {rep['tflite_micro']['outputs_differing']}, "
                     f"LiteRT max {rep['litert_builtin']['max_lsb']} LSB; RAM {fp['ram_bytes']} B vs TFLM "
                     f"arena {tf['arena_bytes']} B; flash {fp['flash_bytes']} B vs flatbuffer "
                     f"{tf['flatbuffer_bytes']} B")
            rows.append(rep)
    return {"data": data_summary(data_root, [int(e) for e in w.ecg_ids], subset=subset, lead="I", fs_hz=100,
                                 records=int(w.n_records), windows=int(len(w.X)),
                                 windows_per_record="5 s windows every 1 s (selfmis.quantize.windows.windows_of)"),
            "bundles": rows, "ok": all(r["ok"] for r in rows)}


def markdown(res: dict) -> str:
    d, p = res["data"], res["provenance"]
    lines = [
        "# The model on a wearable: plain C engine vs TFLite Micro and LiteRT",
        "",
        f"Commit `{p['commit']}`, {res['date_utc']}. Command: `{p['command']}`.",
        f"Data: PTB-XL `{d['name']}`, lead I at 100 Hz, {d['subset']} records: {d['records']} records "
        f"(records sha256 {d['records_sha256'][:12]}...), {d['windows']} windows ({d['windows_per_record']}), "
        "quantised with each bundle's input scale and zero point.",
        "",
        "## Parity (int8 outputs of the plain engine, host gcc, against each reference)",
        "",
        "| bundle | windows | outputs | vs TFLite Micro: outputs differing (max LSB) | vs LiteRT builtin "
        "(max LSB) | vs LiteRT XNNPACK (max LSB) | pass |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["bundles"]:
        t, lb, lx = r["tflite_micro"], r["litert_builtin"], r["litert_xnnpack"]
        lines.append(f"| {r['bundle_dir']} | {r['windows']} | {r['outputs']} | {t['outputs_differing']} "
                     f"({t['max_lsb']}) | {lb['outputs_differing']} ({lb['max_lsb']}) | "
                     f"{lx['outputs_differing']} ({lx['max_lsb']}) | {'yes' if r['ok'] else 'NO'} |")
    lines += [
        "",
        "Pass: identical to TFLite Micro "
        f"({res['bundles'][0]['tflite_micro']['version'] if res['bundles'] else '?'}) on every output, and within "
        "1 LSB of LiteRT's builtin kernels. XNNPACK (the gateway's default delegate) is reported, not required.",
        "",
        "## Memory on a Cortex-M4F (`" + (res["bundles"][0]["footprint_m4"]["flags"] if res["bundles"] else "")
        + "`)",
        "",
        "| bundle | plain flash (B) | TFLM flatbuffer alone (B) | plain static RAM = arena (B) | plain stack, upper "
        "bound (B) | TFLM arena, measured (B) | plain (RAM + stack) / TFLM arena | instructions per invoke (QEMU) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res["bundles"]:
        fp, tf = r["footprint_m4"], r["tflite_micro_footprint"]
        lines.append(f"| {r['bundle_dir']} | {fp['flash_bytes']} | {tf['flatbuffer_bytes']} | {fp['ram_bytes']} "
                     f"| {fp['stack_bytes_upper']} | {tf['arena_bytes']} | {r['ram_ratio_plain_over_tflm_arena']:.2f} "
                     f"| {r['instructions_m4']['instructions_per_invoke']} |")
    lines += [
        "",
        "Plain flash = text + rodata + data of the generated model object and the kernels object "
        "(`arm-none-eabi-size -A`, not linked: no libc is needed). Plain RAM = the static arena (the only "
        "static data); the stack bound adds the frames of invoke, the deepest kernel and every helper "
        "(`-fstack-usage`, all static frames). TFLite Micro's side counts only its arena (the smallest that "
        "allocates, found by bisection with the `tflite-micro` package) and the flatbuffer it reads in place: "
        "its interpreter object, op resolver, library code and stack come on top, so the plain engine's true "
        "share is lower than these ratios. Targets (issue 22): plain RAM <= 50% of TFLite Micro's, and no "
        "more flash. Instructions per invoke: one `smx_model_invoke()` built with the same flags, run under "
        "`qemu-system-arm -M mps2-an386` and counted in its `-singlestep -d exec,nochain` trace between two "
        "markers: an instruction count, not a cycle count (Cortex-M4 loads, multiplies and taken branches "
        "take more than one cycle; measure cycles on a board with the DWT cycle counter, "
        "`benchmarks/results/wearable/`).",
        "",
        "Host timing (this machine, shared; not a device figure): plain harness process vs TFLite Micro's "
        "Python-driven reference kernels, seconds for all windows: "
        + "; ".join(f"{r['bundle_dir']} {r['seconds']['plain_host_process']} vs {r['seconds']['tflite_micro_python']}"
                    for r in res["bundles"]) + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m selfmis.benchmarks.wearable_model``: write model_parity.json/.md; exit 1 on a parity failure."""
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.wearable_model", description=main.__doc__)
    ap.add_argument("--data", default=os.environ.get("SELFMIS_PTBXL"),
                    help="PTB-XL folder (default: $SELFMIS_PTBXL or ../shared/data/ptbxl-subset)")
    ap.add_argument("--subset", choices=("all", "stratified"), default="all")
    ap.add_argument("--out", default=str(RESULTS), help="output folder (default benchmarks/results/wearable)")
    a = ap.parse_args(argv)
    data = Path(a.data) if a.data else Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "ptbxl-subset"
    for tool in ("gcc", "arm-none-eabi-gcc", "arm-none-eabi-size"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install gcc gcc-arm-none-eabi libnewlib-arm-none-eabi", file=sys.stderr)
            return 4
    res = study(data, a.subset, progress=lambda s: print(s, file=sys.stderr, flush=True))
    command = ["python", "-m", "selfmis.benchmarks.wearable_model", *(sys.argv[1:] if argv is None else argv)]
    res["provenance"] = provenance(command=command)
    res["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    res = scrub_paths(res)  # no machine paths in committed results
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "model_parity.json").write_text(json.dumps(res, indent=1) + "\n", encoding="utf-8")
    (out / "model_parity.md").write_text(markdown(res), encoding="utf-8")
    print(json.dumps({"ok": res["ok"], "json": str(out / "model_parity.json")}))
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
