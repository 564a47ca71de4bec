"""The gateway's device loop decided by measurement: the selector loop vs asyncio, side by side.

Both loops drove the same sources (the steps generators of :mod:`selfmis.edge_runtime.sources`)
from the gateway's processing thread: a hand-written selector loop (``selectors`` + a timer
heap + a helper pool) and one task per device on an asyncio event loop (``add_reader`` on each
non-blocking descriptor, ``call_later`` timeouts, ``run_in_executor`` opens), chosen per run
by ``SELFMIS_IO_LOOP``. The selector loop won (``results/gateway/io_loop.md``) and the asyncio
one was deleted; to repeat the comparison, check out commit 7076fee (both loops, this script as
run) and apply 16a9103's change to its ``gateway_aio.py`` (unregister on readiness). Today the
script measures the loops given by ``--loops`` (default: selector, the one left). Each point is :func:`.gateway_farm.run_point`: N virtual 500 Hz
wearables over loopback TCP in real time (the device farm on the other core), one ``edge-run``
pinned to one core with ``taskset``; decision latency p50/p99 from the pipeline's own
``latency_ms``, CPU % of one core from ``/proc`` (user + system time of the gateway process:
on a machine shared with other jobs the CPU time is the steadier figure; latency carries the
load, reported per point). The loops are interleaved (A B B A ... per device count, repeated),
so a change of load hits both alike.

Run: ``python -m selfmis.benchmarks.io_loop [--n 100,200] [--reps 2] [--out DIR]``
(``io_loop.json`` and ``io_loop.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


from selfmis.firmware_bridge.virtual_device import default_record_path

from . import gateway_farm

__all__ = ["run_study", "markdown", "main"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gateway"
LOOPS = ("selector", "asyncio")  # the study's pair (7076fee); today only "selector" exists


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def run_study(ns=(100, 200), reps: int = 2, warmup_s: float = 12.0, measure_s: float = 30.0, cpu: int = 0,
              farm_cpu: int = 1, log=print, loops=LOOPS) -> dict:
    """Every (N, loop) point ``reps`` times, the loops alternating; returns the JSON-ready result."""
    record = default_record_path()
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": _commit(),
           "machine": os.uname().machine + " " + gateway_farm.cpu_model(),
           "cores": os.cpu_count(), "warmup_s": warmup_s, "measure_s": measure_s, "record": Path(record).name,
           "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "points": []}
    for rep in range(reps):
        for n in ns:
            order = loops if (rep + ns.index(n)) % 2 == 0 else loops[::-1]
            for loop in order:
                log(f"rep {rep + 1}/{reps}  N={n}  loop={loop}")
                os.environ["SELFMIS_IO_LOOP"] = loop
                try:
                    p = gateway_farm.run_point(n, record, warmup_s, measure_s, cpu, farm_cpu, log=log)
                finally:
                    os.environ.pop("SELFMIS_IO_LOOP", None)
                res["points"].append({"loop": loop, "rep": rep + 1, **p})
    res["summary"] = summarize(res["points"])
    return res


def summarize(points: list) -> list:
    """Per (N, loop): the median over repetitions of CPU %, p50 and p99, and the worst p99."""
    rows = []
    for n in sorted({p["devices"] for p in points}):
        for loop in LOOPS:
            ps = [p for p in points if p["devices"] == n and p["loop"] == loop]
            if ps:
                rows.append(gateway_farm.summary_row(ps, n, {"loop": loop}))
    return rows


def markdown(res: dict) -> str:
    L = ["# Gateway I/O loop: selector vs asyncio, side by side", "",
         f"Measured {res['date']} at commit `{res['commit']}` on {res['machine']} ({res['cores']} cores, shared "
         "with other jobs: the 1-min load average of each run is listed). `edge-run` pinned to one core with "
         "`taskset`, the device farm to the other; N virtual 500 Hz wearables over loopback TCP in real time "
         f"(the bundled PTB-XL record {res['record']}, looped); warm-up {res['warmup_s']:g} s, "
         f"{res['measure_s']:g} s measured per run; the loops interleaved"
         + (f"; edge-run and the farm at SCHED_FIFO priority {res['rt_priority']} (the machine's other jobs "
            "would otherwise starve the gateway: at load ~15 it got 14 % of a core and fell seconds behind)"
            if res.get("rt_priority") else "") + ".", "",
         f"Command: `{res['command']}`", "",
         "| devices | loop | runs | CPU % of one core (median) | latency p50 ms | p99 ms (median) | p99 worst | "
         "decisions | load avg (1 min) per run |", "|---|---|---|---|---|---|---|---|---|"]
    for r in res["summary"]:
        L.append(f"| {r['devices']} | {r['loop']} | {r['runs']} | {r['cpu_pct']} | {r['p50_ms']} | {r['p99_ms']} | "
                 f"{r['p99_worst_ms']} | {r['decisions']} | {', '.join(f'{x:g}' for x in r['loadavg_1min'])} |")
    L += ["", "CPU % = user + system time of the gateway process per wall second (100 % = one core). "
          "Decision latency = arrival of the chunk completing a beat's window -> decision emitted (queueing "
          "behind the other devices included).", ""]
    if res.get("decision"):
        L += ["## Decision", "", res["decision"], ""]
    first = res.get("superseded_first_run")
    if first:  # kept in the JSON, so the report says what was measured before and why it does not count
        L += ["## The first run (superseded)", "",
              f"At commit `{first['commit']}`, {first['date']}: `{first['command']}`. Superseded: "
              f"{first['why_superseded']}", "",
              "| devices | loop | runs | CPU % | p50 ms | p99 ms (median) | p99 worst |", "|---|---|---|---|---|---|---|"]
        L += [f"| {r['devices']} | {r['loop']} | {r['runs']} | {r['cpu_pct']} | {r['p50_ms']} | {r['p99_ms']} | "
              f"{r['p99_worst_ms']} |" for r in first["summary"]]
        L += [""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.io_loop", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="100,200", help="device counts (default %(default)s)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each (N, loop) point (default 2)")
    ap.add_argument("--loops", default="selector", help="loops to measure (the study: selector,asyncio at 7076fee)")
    ap.add_argument("--warmup", type=float, default=12.0)
    ap.add_argument("--measure", type=float, default=30.0)
    ap.add_argument("--cpu", type=int, default=0)
    ap.add_argument("--farm-cpu", type=int, default=1)
    ap.add_argument("--rt", action="store_true",
                    help="edge-run and the farm at real-time priority (chrt -f 10), as gateway_scale --rt: on a "
                         "machine whose other jobs would starve the gateway, the only way to measure its latency")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    gateway_farm.RT_PRIORITY = 10 if args.rt else None
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    res = run_study(tuple(int(x) for x in args.n.split(",") if x), args.reps, args.warmup, args.measure,
                    args.cpu, args.farm_cpu, log, tuple(args.loops.split(",")))
    res["rt_priority"] = gateway_farm.RT_PRIORITY
    res["command"] = "python -m selfmis.benchmarks.io_loop " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "io_loop.json").write_text(json.dumps(res, indent=1))
    (out / "io_loop.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
