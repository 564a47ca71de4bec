"""Replay records through ``edge-run`` and dump every event plus the raw int8 model outputs.

Runs unchanged on the workstation and inside an emulated Raspberry Pi image (from the
installed wheel: it needs only numpy, LiteRT and ``selfmis.edge_runtime``), so the two
dumps can be compared event by event (:mod:`selfmis.benchmarks.pi_compare`).

Each record is replayed with the real command-line entry point (``edge-run --replay REC
--fast --model BUNDLE ...``, in this process so the interpreter is loaded once per bundle
and per record as the CLI does). The raw int8 output tensor of every ``invoke()`` is
captured at the runtime's interpreter wrapper (:class:`TFLiteModel`), before
dequantisation, so differences can be counted in LSB.

Output (JSON Lines on stdout): one ``platform`` line (machine, Python, package versions,
import time, kernels), then one ``record`` line per (bundle, record): ``events`` (the
JSON Lines edge-run wrote), ``int8`` (one list of ints per invoke), ``exit``.

Run: ``python -m selfmis.benchmarks.pi_probe --bundle default --bundle micro REC...``
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import sys
import time

__all__ = ["main", "probe_record", "platform_info"]

T_START = time.perf_counter()
import numpy as np  # noqa: E402  (timed: part of the gateway's import cost)

from selfmis.edge_runtime import cli as edge_cli  # noqa: E402
from selfmis.edge_runtime import interpreter as edge_interp  # noqa: E402

IMPORT_S = time.perf_counter() - T_START


def _version(dist: str):
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def platform_info(kernels: str) -> dict:
    """Where this dump was made: the facts two dumps must share (or differ in) to compare."""
    return {"type": "platform", "machine": platform.machine(), "python": platform.python_version(),
            "system": platform.platform(terse=True),
            "versions": {d: _version(d) for d in ("selfmis-edge", "numpy", "ai-edge-litert",
                                                  "tflite-runtime", "pyserial", "bleak")},
            "backend": edge_interp.interpreter_backend()[2], "kernels": kernels,
            "import_s": round(IMPORT_S, 3)}


class _Int8Tap:
    """Collect the raw output tensor of every invoke (the wrapper's public ``raw_output_hooks``)."""

    def __init__(self):
        self.rows = []

    def _tap(self, y) -> None:
        self.rows.append(np.asarray(y).reshape(-1).astype(int).tolist())

    def __enter__(self):
        edge_interp.TFLiteModel.raw_output_hooks.append(self._tap)
        return self

    def __exit__(self, *exc):
        edge_interp.TFLiteModel.raw_output_hooks.remove(self._tap)
        return False


def probe_record(record: str, bundle: str, extra=()) -> dict:
    """``edge-run --replay record --fast --model bundle *extra`` in-process: events and int8 rows."""
    argv = ["--replay", record, "--fast", "--model", bundle, *extra]
    buf = io.StringIO()
    t0 = time.perf_counter()
    with _Int8Tap() as tap, contextlib.redirect_stdout(buf):
        code = edge_cli.main(argv)
    events = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]
    return {"type": "record", "record": record, "bundle": bundle, "argv": argv, "exit": int(code),
            "events": events, "int8": tap.rows, "seconds": round(time.perf_counter() - t0, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="pi_probe", description=__doc__.splitlines()[0])
    p.add_argument("records", nargs="+", help="records to replay (WFDB paths without extension)")
    p.add_argument("--bundle", action="append", help="bundle name or folder (repeatable; default: default)")
    p.add_argument("--edge-args", default="--persist-s 0",
                   help="more edge-run options (default: %(default)s: alarm states follow every "
                        "threshold crossing, the strictest comparison)")
    p.add_argument("--kernels", default=os.environ.get("SELFMIS_TFLITE_KERNELS", "default"),
                   help="interpreter kernels (SELFMIS_TFLITE_KERNELS): default or reference")
    args = p.parse_args(argv)
    os.environ["SELFMIS_TFLITE_KERNELS"] = args.kernels
    out = sys.stdout
    out.write(json.dumps(platform_info(args.kernels)) + "\n")
    extra = args.edge_args.split()
    for bundle in args.bundle or ["default"]:
        for i, rec in enumerate(args.records):
            row = probe_record(rec, bundle, extra)
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
            out.flush()
            print(f"pi_probe: {bundle} {i + 1}/{len(args.records)} {os.path.basename(rec)} "
                  f"{row['seconds']} s", file=sys.stderr, flush=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    out.write(json.dumps({"type": "end", "peak_rss_kib": peak,
                          "total_s": round(time.perf_counter() - T_START, 3)}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
