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


def count_instructions(elf, samples: np.ndarray, work, timeout: float = 3600) -> dict:
    """Instructions executed under QEMU (one trace line per instruction with -singlestep),
    split by the markers: in pushes (the whole chain), in scored beats (window -> decision),
    in the model. The trace streams through a FIFO into trace_count (it is gigabytes)."""
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    np.asarray(samples, "<f4").tofile(work / "input.f32")
    counter = work / "trace_count"
    _run(["gcc", "-O2", "-o", counter, MCU / "qemu" / "trace_count.c"])
    sym = symbols(elf)
    fifo = work / "trace.fifo"
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    q = subprocess.Popen(qemu_cmd(elf, str(fifo)), cwd=work, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    with open(fifo, "rb") as f:  # opens once QEMU has opened its log for writing
        cnt = subprocess.run([str(counter), *[f"{sym[m]:x}" for m in MARKS]], stdin=f,
                             capture_output=True, text=True, timeout=timeout)
    q.wait(timeout=60)
    out = cnt.stdout
    fifo.unlink()
    total, push, score, model, n_push, n_score, n_model = map(int, out.split())
    return {"total": total, "chain": push, "scored_beats": score, "model": model, "pushes": n_push,
            "n_scored": n_score, "n_model": n_model}


def memory(elf) -> dict:
    """text/data/bss of the image (arm-none-eabi-size) and per input object from the map."""
    f = _run(["arm-none-eabi-size", "-A", elf]).stdout
    sec = {l.split()[0]: int(l.split()[1]) for l in f.splitlines()[2:] if len(l.split()) >= 2 and l.split()[1].isdigit()}
    return {"text": sec.get(".text", 0) + sec.get(".ARM.exidx", 0), "data": sec.get(".data", 0),
            "bss": sec.get(".bss", 0)}
