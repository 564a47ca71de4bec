"""Parity of the on-device chain (C) with the gateway (Python), record by record.

Both sides get the same Lead I samples, one sample per push, the way a wearable's ADC
delivers them: the C chain through ``firmware_bridge/mcu/run/smx_replay.c`` (host gcc, or
the Cortex-M4F build under QEMU), the gateway through :class:`~selfmis.edge_runtime.pipeline.Pipeline`
fed one-sample chunks followed by its end-of-stream flush (what ``edge-run --replay`` does
at the end of a file). Compared, without tolerances:

* beats: the R peak's sample index at the model rate (each difference is named);
* windows: the int8 model input of every beat both sides scored (samples that differ);
* model outputs (int8), decisions (probabilities at the 6 decimals the gateway reports,
  alarm state of the primary label, the set of active labels, beats in the median).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfmis.readers import open_lead
from ..edge_runtime.pipeline import Pipeline
from ..edge_runtime.stream import Chunk
from ..edge_runtime.interpreter import TFLiteModel
from ..firmware_bridge.c_chain import CHAIN_DIR, ChainConfig, generate
from ..firmware_bridge.c_model import export_plain_c
from ..quantize.micro import MicroModel

__all__ = ["MCU_DIR", "read_lead_i", "build_host", "run_c", "parse_events", "python_reference",
           "compare", "RecordParity", "model_dir_for", "reference_model"]

MCU_DIR = CHAIN_DIR.parent
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-ffp-contract=off", "-fno-math-errno"]


def read_lead_i(path) -> tuple:
    """(float32 mV samples, fs) of Lead I, read as ``edge-run --replay`` reads it."""
    s = open_lead(str(path), "I", chunk_s=60.0)
    return np.concatenate(list(s.chunks)).astype(np.float32), float(s.fs)


def build_host(bundle, cfg: ChainConfig, out_dir, model_dir, cc: str = "gcc") -> Path:
    """Generate the parameters for ``bundle`` at ``cfg.fs_in`` and compile the replay program."""
    out = Path(out_dir)
    generate(bundle, cfg, out)
    srcs = sorted((MCU_DIR / "chain").glob("*.c")) + sorted(Path(model_dir).glob("*.c")) + [
        MCU_DIR / "run" / "smx_replay.c", MCU_DIR / "run" / "smx_mark_host.c", out / "smx_chain_params.c"]
    exe = out / "smx_replay"
    cmd = [cc, *CFLAGS, "-I", str(MCU_DIR / "chain"), "-I", str(out), "-I", str(model_dir),
           *map(str, srcs), "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"host build failed: {' '.join(cmd)}\n{r.stderr}")
    return exe


def _d(h: str) -> float:
    return float(np.frombuffer(bytes.fromhex(h)[::-1], dtype="<f8")[0])


def parse_events(text: str) -> dict:
    """smx_replay's lines -> {"beats": [r], "windows": {r: (int8 window, int8 out)}, "decisions": {r: dict}}."""
    out = {"beats": [], "windows": {}, "decisions": {}, "quality": [], "summary": None, "error": None}
    for line in text.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "B":
            out["beats"].append(int(f[1]))
        elif f[0] == "W":
            out["windows"][int(f[1])] = (np.frombuffer(bytes.fromhex(f[2]), np.int8),
                                         np.frombuffer(bytes.fromhex(f[3]), np.int8))
        elif f[0] == "D":
            out["decisions"][int(f[1])] = {"t": _d(f[2]), "state": int(f[3]), "active": int(f[4]),
                                           "n_beats": int(f[5]), "p": [_d(h) for h in f[6:]]}
        elif f[0] == "Q":
            out["quality"].append((int(f[1]), int(f[2])))
        elif f[0] == "S":
            out["summary"] = [int(v) for v in f[1:]]
        elif f[0] == "E":
            out["error"] = line
    return out


def run_c(exe, samples: np.ndarray, windows: bool = True) -> tuple:
    """(parsed events, raw text) of the C chain on ``samples``."""
    with tempfile.TemporaryDirectory() as tmp:
        inp = os.path.join(tmp, "input.f32")
        np.asarray(samples, "<f4").tofile(inp)
        r = subprocess.run([str(exe), *(["-w"] if windows else []), inp], capture_output=True, text=True)
    ev = parse_events(r.stdout)
    if r.returncode != 0 or ev["error"] or ev["summary"] is None:
        raise RuntimeError(f"{exe}: exit {r.returncode}: {ev['error'] or r.stderr[-500:]}")
    return ev, r.stdout


class _Capture:
    """Wraps a model: records the int8 input and output of every window it scores."""

    def __init__(self, model):
        self.model, self.card, self.log = model, model.card, []

    def predict_proba(self, windows):
        for w in np.asarray(windows, np.float32):
            if hasattr(self.model, "predict_q"):
                self.log.append(self.model.predict_q(w))
                continue
            self.log.append(self.model.predict_int8(w))  # the interpreter's own quantised input and output
        return self.model.predict_proba(windows)


def python_reference(samples: np.ndarray, fs: float, model, cfg: ChainConfig) -> dict:
    """The gateway's events for ``samples`` pushed one at a time, then its end-of-stream flush."""
    cap = _Capture(model)
    dk = {"operating_point": cfg.operating_point, "persist_s": cfg.persist_s,
          "persist_beats": cfg.persist_beats, "hysteresis": cfg.hysteresis}
    pipe = Pipeline(cap, every_k_beats=cfg.every_k, n_beats=cfg.n_beats, min_beats=cfg.min_beats,
                    decision_kwargs=dk, max_gap_s=cfg.max_gap_s,
                    batch_windows=False)  # one window per call: each beat's log entry is its own
    out = {"beats": [], "windows": {}, "decisions": {}}
    seen = [0]

    def beat(r, ev):  # the pipeline's public per-beat hook
        if any(e["type"] == "beat" for e in ev):
            out["beats"].append(int(r))
        if len(cap.log) > seen[0]:
            out["windows"][int(r)] = cap.log[-1]
        seen[0] = len(cap.log)
        for e in ev:
            if e["type"] == "decision":
                out["decisions"][int(r)] = e

    pipe.on_beat = beat
    x = np.asarray(samples, np.float32)
    for i in range(len(x)):
        pipe.handle(Chunk(x[i:i + 1], fs))
    pipe.flush()
    return out


@dataclass
class RecordParity:
    record: str
    beats_py: int = 0
    beats_c: int = 0
    beat_diffs: list = field(default_factory=list)     # ("only_py"|"only_c", r)
    windows: int = 0
    windows_differing: int = 0
    window_samples_differing: int = 0
    window_max_lsb: int = 0
    outputs_differing: int = 0
    output_max_lsb: int = 0
    decisions_py: int = 0
    decisions_c: int = 0
    decision_diffs: list = field(default_factory=list)  # (r, what): state, active labels or n_beats differ
    probability_diffs: int = 0                            # decisions whose probabilities (6 decimals) differ
    states: dict = field(default_factory=dict)          # state name -> count (C side)

    @property
    def identical(self) -> bool:
        return not (self.beat_diffs or self.windows_differing or self.outputs_differing or self.decision_diffs
                    or self.probability_diffs)


_STATES = {0: "off", 1: "onset", 2: "ongoing", 3: "cleared"}


def compare(name: str, py: dict, c: dict, labels: list) -> RecordParity:
    rp = RecordParity(name, len(py["beats"]), len(c["beats"]))
    sp, sc = set(py["beats"]), set(c["beats"])
    rp.beat_diffs = [("only_py", r) for r in sorted(sp - sc)] + [("only_c", r) for r in sorted(sc - sp)]
    for r in sorted(set(py["windows"]) & set(c["windows"])):
        (qp, op), (qc, oc) = py["windows"][r], c["windows"][r]
        rp.windows += 1
        d = np.abs(qp.astype(int) - qc.astype(int))
        if d.any():
            rp.windows_differing += 1
            rp.window_samples_differing += int((d > 0).sum())
            rp.window_max_lsb = max(rp.window_max_lsb, int(d.max()))
        do = np.abs(op.reshape(-1)[:len(oc)].astype(int) - oc.astype(int))
        if do.any():
            rp.outputs_differing += 1
            rp.output_max_lsb = max(rp.output_max_lsb, int(do.max()))
    rp.decisions_py, rp.decisions_c = len(py["decisions"]), len(c["decisions"])
    for r in sorted(set(py["decisions"]) | set(c["decisions"])):
        e, d = py["decisions"].get(r), c["decisions"].get(r)
        if e is None or d is None:
            rp.decision_diffs.append((r, "only_c" if e is None else "only_py"))
            continue
        rp.states[_STATES[d["state"]]] = rp.states.get(_STATES[d["state"]], 0) + 1
        active = [l for j, l in enumerate(labels) if d["active"] >> j & 1]
        why = []
        if e.get("state") != _STATES[d["state"]]:
            why.append(f"state {e.get('state')} vs {_STATES[d['state']]}")
        if list(e["labels"]) != active:
            why.append(f"labels {e['labels']} vs {active}")
        if e["n_beats"] != d["n_beats"]:
            why.append(f"n_beats {e['n_beats']} vs {d['n_beats']}")
        pc = [round(v, 6) for v in d["p"]]
        pp = [e["probabilities"][l] for l in labels]
        if pp != pc:
            rp.probability_diffs += 1
        if why:
            rp.decision_diffs.append((r, "; ".join(why)))
    return rp


def model_dir_for(bundle, work) -> Path:
    """Folder in ``work`` with the bundle's model as plain C (``selfmis deploy export-c --engine
    plain``: smx_model.h/.c and the int8 kernels), written once per bundle."""
    out = Path(work) / f"model-{bundle.card.sha256[:12]}"
    if not (out / "smx_model.c").is_file():
        export_plain_c(bundle.model_path, out)
    return out


class MicroGateway:
    """The gateway's model contract (``card``, ``predict_proba``) on TFLite Micro: the reference
    kernels the plain C engine equals bit for bit (benchmarks/results/wearable/model_parity.*)."""

    def __init__(self, bundle):
        self.micro = MicroModel(bundle)
        self.card = self.micro.card

    def predict_q(self, w):
        q = self.micro.quantize(np.asarray(w, np.float32).reshape(1, -1))
        return q.reshape(-1), self.micro.predict_raw(np.asarray(w, np.float32)[None]).reshape(-1)

    def predict_proba(self, windows):
        return self.card.probabilities(self.micro.predict_logits(np.asarray(windows, np.float32)))


def reference_model(bundle, engine: str = "litert"):
    """What the gateway scores windows with: ``litert`` -- the bundle in LiteRT (XNNPACK), as
    `edge-run` runs it; ``tflm`` -- TFLite Micro's reference kernels."""
    return TFLiteModel(bundle) if engine == "litert" else MicroGateway(bundle)
