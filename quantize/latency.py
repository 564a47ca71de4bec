"""Quick per-window latency (batch 1, one thread) to choose an architecture.

Not the formal benchmark (that is ``selfmis bench``): median of a few hundred
calls after a warm-up, on whatever machine this runs on.
"""
from __future__ import annotations

import time

import numpy as np

from selfmis.edge_runtime.interpreter import interpreter_backend

__all__ = ["torch_latency_ms", "tflite_latency_ms"]


def _median_ms(fn, n: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def torch_latency_ms(model, window: int = 500, n: int = 300, warmup: int = 30) -> float:
    """Eager fp32, batch 1, ``torch.set_num_threads(1)``."""
    import torch

    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.randn(1, 1, window)
    model = model.eval()
    try:
        with torch.no_grad():
            return _median_ms(lambda: model(x), n, warmup)
    finally:
        torch.set_num_threads(prev)


def tflite_latency_ms(tflite_path, n: int = 2000, warmup: int = 100, use_xnnpack: bool = True) -> float:
    """``set_tensor`` + ``invoke`` of one window, one thread (what the gateway pays per window)."""
    Interpreter, Resolver, _ = interpreter_backend()
    kwargs = {"model_path": str(tflite_path), "num_threads": 1}
    if not use_xnnpack:
        kwargs["experimental_op_resolver_type"] = Resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(**kwargs)
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    x = np.zeros(d["shape"], d["dtype"])
    idx = d["index"]

    def call():
        interp.set_tensor(idx, x)
        interp.invoke()

    return _median_ms(call, n, warmup)
