"""Per-window inference latency of one model in several runtimes, measured side by side.

Every runner is loaded once (load time and first inference recorded), then all
runners are timed in interleaved rounds: round r runs a block of ``block``
inferences of runner 1, then runner 2, ... in an order that rotates every round.
A burst of background load (other processes on a shared machine) then hits
every runner alike, so *ratios* between runtimes stay meaningful even when the
absolute times are noisy.

Timed: set the input + run + read the output, with the input already in the
runtime's dtype (int8 quantisation of the input is ~1 us and belongs to the
pipeline, which the streaming benchmark measures).
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from selfmis.edge_runtime.interpreter import interpreter_backend

from .stats import summarize

__all__ = ["Runner", "load_runner", "time_interleaved", "RUNTIMES"]

RUNTIMES = ("torch", "onnxruntime", "tflite")


@dataclass
class Runner:
    id: str                  # e.g. "tflite-int8/xnnpack/1t"
    runtime: str             # torch | onnxruntime | tflite
    model: str               # "student", "teacher", ...
    precision: str           # fp32 | int8
    threads: int
    xnnpack: bool | None     # tflite only
    source: str              # "real: <path>" or "stand-in: ..."
    fn: Callable = None      # one inference, no arguments
    set_threads: Callable = None  # called before each timed block (torch's global pool)
    load_s: float = 0.0
    first_s: float = 0.0
    output: np.ndarray = None
    extra: dict = field(default_factory=dict)


def _torch_runner(model, x, threads):
    import torch

    xt = torch.from_numpy(np.ascontiguousarray(x.reshape(1, 1, -1)))

    def set_threads():
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)

    def fn():
        with torch.inference_mode():
            return model(xt)

    return fn, set_threads


def _ort_runner(path, x, threads):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    feed = {inp.name: np.ascontiguousarray(x.reshape(shape).astype(np.float32))}

    def fn():
        return sess.run(None, feed)[0]

    return fn


def tflite_interpreter(path, threads, xnnpack):
    Interpreter, Resolver, backend = interpreter_backend()
    kwargs = {"model_path": str(path), "num_threads": threads}
    if not xnnpack:
        if Resolver is None:
            raise RuntimeError(f"{backend} cannot disable XNNPACK")
        kwargs["experimental_op_resolver_type"] = Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(**kwargs)
    interp.allocate_tensors()
    return interp


def tflite_runner(interp, x):
    d_in = interp.get_input_details()[0]
    outs = interp.get_output_details()
    d_out = max(outs, key=lambda d: int(np.prod(d["shape"])) if len(d["shape"]) else 0) if len(outs) > 1 else outs[0]
    arr = x.reshape(d_in["shape"]).astype(np.float32)
    if np.dtype(d_in["dtype"]) != np.float32:
        scale, zp = d_in["quantization"]
        info = np.iinfo(d_in["dtype"])
        arr = np.clip(np.round(arr / scale + zp), info.min, info.max).astype(d_in["dtype"])
    i_idx, o_idx = d_in["index"], d_out["index"]
    invoke, set_tensor, get_tensor = interp.invoke, interp.set_tensor, interp.get_tensor

    def fn():
        set_tensor(i_idx, arr)
        invoke()
        return get_tensor(o_idx)

    return fn


def load_runner(spec: dict, x: np.ndarray) -> Runner:
    """Load one runtime for one model and run the first inference.

    ``spec``: id, runtime, model, precision, threads, xnnpack, source, and
    ``loader`` (torch: a callable returning the eval-mode module) or ``path``.
    """
    r = Runner(id=spec["id"], runtime=spec["runtime"], model=spec["model"], precision=spec["precision"],
               threads=int(spec["threads"]), xnnpack=spec.get("xnnpack"), source=spec.get("source", ""))
    gc.collect()
    t0 = time.perf_counter()
    if r.runtime == "torch":
        import torch

        torch.set_num_threads(r.threads)
        model = spec["loader"]()
        r.fn, r.set_threads = _torch_runner(model, x, r.threads)
    elif r.runtime == "onnxruntime":
        r.fn = _ort_runner(spec["path"], x, r.threads)
    elif r.runtime == "tflite":
        interp = tflite_interpreter(spec["path"], r.threads, bool(r.xnnpack))
        r.fn = tflite_runner(interp, x)
    else:
        raise ValueError(f"unknown runtime {r.runtime!r}")
    t1 = time.perf_counter()
    out = r.fn()
    t2 = time.perf_counter()
    r.load_s, r.first_s = t1 - t0, t2 - t1
    r.output = np.asarray(out.detach().numpy() if hasattr(out, "detach") else out)
    return r


def time_interleaved(runners: list, budget_s: float, block: int = 20, min_runs: int = 50,
                     max_runs: int = 5000, warmup: int = 10) -> dict:
    """{runner id: list of per-inference seconds}, rounds of ``block`` per runner, rotating order.

    Stops when the wall budget is spent and every runner has ``min_runs``, or when
    every runner has ``max_runs``.
    """
    blocks = {}
    for r in runners:
        if r.set_threads:
            r.set_threads()
        t0 = time.perf_counter()
        for _ in range(warmup):
            r.fn()
        est = (time.perf_counter() - t0) / max(1, warmup)
        # about the same wall time per block for every runner (~5 ms), so a slow
        # model does not starve the fast ones of samples
        blocks[r.id] = max(1, min(block * 5, int(0.005 / max(est, 1e-6))))
    samples = {r.id: [] for r in runners}
    rounds_of = {r.id: [] for r in runners}  # round index of every sample (for bootstrap over rounds)
    deadline = time.perf_counter() + budget_s
    rnd = 0
    pc = time.perf_counter
    gc_was = gc.isenabled()
    gc.disable()
    try:
        while True:
            order = runners[rnd % len(runners):] + runners[:rnd % len(runners)]
            for r in order:
                if len(samples[r.id]) >= max_runs:
                    continue
                if r.set_threads:
                    r.set_threads()
                fn, acc = r.fn, samples[r.id]
                for _ in range(blocks[r.id]):
                    t0 = pc()
                    fn()
                    acc.append(pc() - t0)
                rounds_of[r.id].extend([rnd] * blocks[r.id])
            rnd += 1
            done_min = all(len(v) >= min_runs for v in samples.values())
            if (done_min and pc() > deadline) or all(len(v) >= max_runs for v in samples.values()):
                break
    finally:
        if gc_was:
            gc.enable()
    time_interleaved.last_rounds = rounds_of
    return samples


def _weighted_median_setup(x, rounds):
    order = np.argsort(x, kind="stable")
    return np.asarray(x, float)[order], np.asarray(rounds, int)[order]


def _weighted_median(s, i, counts):
    """Median of the sorted samples ``s`` whose rounds ``i`` are weighted by ``counts`` (i = -1: not used)."""
    w = np.where(i >= 0, counts[np.clip(i, 0, None)], 0)
    cw = np.cumsum(w)
    return s[np.searchsorted(cw, cw[-1] / 2.0)]


def bootstrap_ratio(a, a_rounds, b, b_rounds, n_boot: int = 500, seed: int = 0, alpha: float = 0.05):
    """(median(a) / median(b), [lo, hi]): one estimator for the point and its interval.

    The estimator is the ratio of the medians over the interleaved rounds both runtimes share; the
    point is that estimator on the rounds as measured (each round once) and the percentile CI is the
    same estimator on rounds resampled with replacement. Samples of one round were taken back to
    back, so background load is shared within a round: resampling rounds (not single samples)
    keeps that correlation in the interval. With fewer than 5 shared rounds: the plain ratio of
    medians and no interval.
    """
    a_s, a_r = _weighted_median_setup(a, a_rounds)
    b_s, b_r = _weighted_median_setup(b, b_rounds)
    common = np.intersect1d(np.unique(a_r), np.unique(b_r))
    if len(common) < 5:
        return float(np.median(a) / np.median(b)), None
    idx = {r: i for i, r in enumerate(common)}
    a_i = np.array([idx.get(r, -1) for r in a_r])
    b_i = np.array([idx.get(r, -1) for r in b_r])
    ones = np.ones(len(common), int)
    point = float(_weighted_median(a_s, a_i, ones) / _weighted_median(b_s, b_i, ones))
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, len(common), len(common)), minlength=len(common))
        vals.append(_weighted_median(a_s, a_i, counts) / _weighted_median(b_s, b_i, counts))
    lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2])
    return point, [float(lo), float(hi)]


def summarize_runner(r: Runner, secs: list, macs: int | None) -> dict:
    s = summarize(secs, scale=1e3)  # ms
    achieved = (macs / (s["p50"] / 1e3)) if (macs and s.get("p50")) else None
    return {"id": r.id, "runtime": r.runtime, "model": r.model, "precision": r.precision,
            "threads": r.threads, "xnnpack": r.xnnpack, "source": r.source,
            "load_ms": r.load_s * 1e3, "first_inference_ms": r.first_s * 1e3,
            "steady_ms": s, "macs": macs, "achieved_macs_per_s_at_p50": achieved, **r.extra}
