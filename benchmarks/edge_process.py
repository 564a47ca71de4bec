"""The benchmarks' process plumbing: one-lead WFDB records to replay, and ``edge-run`` (or any
command) in a fresh process with its wall time, CPU time and peak RSS from the kernel.

Used by :mod:`.streaming`, :mod:`.live_paths` and :mod:`.import_cost`.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from selfmis.sample_data import BUNDLED_PTBXL

__all__ = ["write_wfdb16", "tile_record", "default_record", "EDGE_RUN", "model_args", "child_env", "taskset",
           "run_measured", "parse_jsonl", "standin_bundle"]


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


def child_env() -> dict:
    """The environment of a measured child: unbuffered output, TensorFlow's logging quiet."""
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
            p = subprocess.Popen(full, stdout=out, stderr=err, stdin=stdin or subprocess.DEVNULL, env=child_env())
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
