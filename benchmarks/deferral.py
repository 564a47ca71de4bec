"""Algorithmic decision delay of the pipeline, on a simulated clock (machine-independent).

Chunks of ``frame_s`` (the virtual device sends 100 ms frames) are fed to
:class:`selfmis.edge_runtime.pipeline.Pipeline` with a fake clock that stands still
while the pipeline computes and jumps to each chunk's end when it "arrives". The
``latency_ms`` the pipeline reports is then only the *waiting for later chunks*:
0 when a decision is emitted on the chunk that completed its window, one frame
when the detector needs one more chunk, and so on. Compute time is measured
elsewhere (replay, virtual device); this isolates the part no faster CPU removes.
"""
from __future__ import annotations

import numpy as np

from selfmis.edge_runtime.pipeline import Pipeline
from selfmis.edge_runtime.sources.base import Chunk

from .stats import summarize

__all__ = ["simulate_deferral"]


def simulate_deferral(model, x, fs: float, frame_s: float = 0.1, detector_kwargs=None) -> dict:
    clock = [0.0]

    pipe = Pipeline(model, detector_kwargs=detector_kwargs, clock=lambda: clock[0])  # the public clock hook
    frame = max(1, int(round(frame_s * fs)))
    lat = []
    for i in range(0, len(x), frame):
        t_end = min(i + frame, len(x)) / fs
        clock[0] = t_end
        c = Chunk(np.asarray(x[i:i + frame], np.float32), fs, t_end, t_mono=t_end)
        for e in pipe.handle(c):
            if e.get("type") == "decision" and e.get("latency_ms") is not None:
                lat.append(float(e["latency_ms"]))
    frame_ms = frame * 1e3 / fs
    deferred = [v for v in lat if v > 0.5 * frame_ms]
    return {"decisions": len(lat), "frame_ms": frame_ms,
            "deferred_share": (len(deferred) / len(lat)) if lat else None,
            "wait_ms": summarize(lat) if lat else {"n": 0}}
