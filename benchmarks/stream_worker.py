"""Fallback driver of the streaming pipeline, used only while ``edge-run`` is not installed.

``python -m selfmis.benchmarks.stream_worker --replay FILE --fast --bundle DIR``
runs :class:`selfmis.edge_runtime.pipeline.Pipeline` on a
:class:`selfmis.edge_runtime.sources.replay.ReplaySource` with the bundle's
:class:`TFLiteModel` and writes the same JSON Lines (beat / decision / summary)
as ``edge-run``. Results measured through it are labelled as such.
"""
from __future__ import annotations

import argparse
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--replay", required=True)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--bundle")
    ap.add_argument("--lead", default="I")
    args = ap.parse_args(argv)
    from selfmis.edge_runtime.interpreter import TFLiteModel
    from selfmis.edge_runtime.output import JsonlWriter
    from selfmis.edge_runtime.pipeline import Pipeline
    from selfmis.edge_runtime.sources.replay import ReplaySource

    model = TFLiteModel(args.bundle, num_threads=1)
    pipe = Pipeline(model)
    out = JsonlWriter(sys.stdout)
    src = ReplaySource(args.replay, lead=args.lead, fast=args.fast)
    t0 = time.perf_counter()
    for item in src:
        out.write_all(pipe.handle(item))
    out.write(pipe.summary(src.stats, wall_s=time.perf_counter() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
