"""What one real-time wearable costs the gateway, before vs after a change, side by side in one run.

Two measurements, each made for both checkouts in the same run (so a change of the machine's load
hits both alike, and the figures are read as ratios):

* **live** -- :func:`.gateway_farm.run_point`: N virtual 500 Hz wearables over loopback TCP in real
  time (the device farm on one core), one ``edge-run`` pinned to the other core with ``taskset``;
  CPU % of that core (user + system time from ``/proc``) and the decision latency p50 / p99 (the
  pipeline's own ``latency_ms``: arrival of the chunk completing a beat's window -> decision
  emitted, queueing behind the other devices included). The two checkouts alternate (A B, then B A
  at the next device count or repetition). The 1-min load average at the end of each point is kept:
  on a machine shared with other jobs the CPU time is the steadier figure.
* **offline** -- the same per-frame work without the I/O loop or the clock: D devices' frames (the
  virtual device's bytes, frames of 50 samples) fed through the framed decoder, the rate check,
  the pipeline (beats, quality, the shipped model, decisions) and the JSON Lines writer as fast as
  they go; CPU seconds per second of signal per device (``time.process_time``, best of ``reps``),
  each checkout in its own interpreter. No queueing, no wall clock: what the per-device work
  itself costs.

The *before* checkout is another interpreter whose ``selfmis`` is that commit (a ``git worktree``
with its own ``make install``): ``--before-python``. Both run the same farm and the same record.

Run: ``python -m selfmis.benchmarks.gateway_cost --before-python ../before/.venv/bin/python
[--n 100,200] [--reps 2] [--rt] [--out DIR]`` (``gateway_cost.json`` and ``.md``).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


from selfmis.edge_runtime.interpreter import KERNELS, KERNELS_ENV
from selfmis.firmware_bridge.virtual_device import default_record_path

from . import gateway_farm
from .machine import host_summary

__all__ = ["run_study", "offline_cost", "summarize", "markdown", "main"]

DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gateway"
TARGET_P99_MS = 20.0

#: the offline measurement, run by each checkout's interpreter (public APIs present in both)
_OFFLINE = r"""
import io, itertools, json, sys, time
from selfmis.simulate import VirtualDevice
from selfmis.edge_runtime.sources.framed import FramedStream
from selfmis.edge_runtime.sources.rate import RateWatch
from selfmis.edge_runtime.pipeline import Pipeline
from selfmis.edge_runtime.interpreter import TFLiteModel
from selfmis.edge_runtime.output import JsonlWriter
record, seconds, n_dev, reps = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model = TFLiteModel(None)
wires = [list(itertools.takewhile(lambda w: w.t <= seconds, VirtualDevice.from_path(
    record, loop=True, device_id=f"x{d}", seed=d).chunks())) for d in range(n_dev)]
best, events = None, 0
for _ in range(reps):
    out = JsonlWriter(io.StringIO(), quiet=True)
    fr = [FramedStream() for _ in range(n_dev)]
    rw = [RateWatch(f"x{d}") for d in range(n_dev)]
    pl = [Pipeline(model) for _ in range(n_dev)]
    t0, events = time.process_time(), 0
    for i in range(max(len(w) for w in wires)):
        for d in range(n_dev):
            if i < len(wires[d]):
                w = wires[d][i]
                for x in fr[d].feed(w.data, t_arrival=1e9 + w.t, t_mono=1e3 + w.t):
                    for y in rw[d].process(x):
                        ev = pl[d].handle(y)
                        events += len(ev)
                        out.write_all(ev)
    cpu = time.process_time() - t0
    best = cpu if best is None else min(best, cpu)
print(json.dumps({"cpu_s": best, "events": events}))
"""


def _commit_of(python: str) -> str:
    """The commit of the checkout whose ``selfmis`` ``python`` imports ("" when not a git checkout)."""
    try:
        src = subprocess.run([python, "-c", "import pathlib, selfmis.protocol as p; "
                              "print(pathlib.Path(p.__file__).resolve().parent)"],
                             capture_output=True, text=True, timeout=60).stdout.strip()
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              cwd=src, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def offline_cost(python: str, record: str, seconds: float = 60.0, n_dev: int = 4, reps: int = 3,
                 kernels: str | None = None) -> dict:
    """CPU % of one core per real-time device for the per-frame work (see the module doc);
    ``kernels``: $SELFMIS_TFLITE_KERNELS for the run (None: the card's)."""
    r = subprocess.run(gateway_farm.taskset(None) + _with_kernels(kernels) + [
        python, "-c", _OFFLINE, record, str(seconds), str(n_dev), str(reps)],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode:
        raise RuntimeError(f"offline measurement failed: {r.stderr[-2000:]}")
    got = json.loads(r.stdout.strip().splitlines()[-1])
    return {"cpu_s": round(got["cpu_s"], 4), "events": got["events"],
            "cpu_pct_per_device": round(100.0 * got["cpu_s"] / (seconds * n_dev), 4)}


def _with_kernels(kernels: str | None) -> list:
    """The command prefix that runs a checkout with other interpreter kernels than its cards name."""
    return [] if kernels is None else ["env", f"{KERNELS_ENV}={kernels}"]


def _series(value) -> tuple:
    """A series of the study: an interpreter, or (interpreter, kernels)."""
    return (value, None) if isinstance(value, str) else tuple(value)


def run_study(pythons: dict, ns=(100, 200), reps: int = 2, warmup_s: float = 12.0, measure_s: float = 30.0,
              cpu: int = 1, farm_cpu: int = 0, offline=(60.0, 4, 3), log=print) -> dict:
    """Every (N, checkout) point ``reps`` times, the checkouts alternating; then the offline cost of each.

    ``pythons``: name -> interpreter, or name -> (interpreter, kernels) for a series run with
    ``$SELFMIS_TFLITE_KERNELS`` set (the same checkout with other kernels than its cards name)."""
    record = default_record_path()
    names = list(pythons)
    # the host a cloud VM lands on changes between sessions (CPU generation, clock): kept with the figures
    host = host_summary()
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{host['cpu_arch']} {host['cpu_model']}",
           "host": host,
           "cores": os.cpu_count(), "warmup_s": warmup_s, "measure_s": measure_s, "record": Path(record).name,
           "checkouts": {k: {"commit": _commit_of(_series(p)[0]), "kernels": _series(p)[1] or "the card's"}
                         for k, p in pythons.items()},
           "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "points": []}
    for rep in range(reps):
        for i, n in enumerate(ns):
            order = names if (rep + i) % 2 == 0 else names[::-1]
            for name in order:
                log(f"rep {rep + 1}/{reps}  N={n}  {name}")
                python, kernels = _series(pythons[name])
                p = gateway_farm.run_point(n, record, warmup_s, measure_s, cpu, farm_cpu, log=log,
                                           edge_run=_with_kernels(kernels) + [python, "-m", "selfmis.edge_runtime.cli"])
                res["points"].append({"checkout": name, "rep": rep + 1, **p})
    seconds, n_dev, o_reps = offline
    res["offline"] = {"seconds": seconds, "devices": n_dev, "reps": o_reps, "rows": {}}
    for name in names:
        log(f"offline: {name}")
        res["offline"]["rows"][name] = offline_cost(*_series(pythons[name])[:1], record, seconds, n_dev, o_reps,
                                                    kernels=_series(pythons[name])[1])
    res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["summary"] = summarize(res["points"], names)
    return res


def summarize(points: list, names: list) -> list:
    """Per (N, checkout): medians over repetitions of CPU %, p50, p99; the worst p99; the load averages."""
    rows = []
    for n in sorted({p["devices"] for p in points}):
        for name in names:
            ps = [p for p in points if p["devices"] == n and p["checkout"] == name]
            if ps:
                rows.append(gateway_farm.summary_row(ps, n, {"checkout": name}, per_device=True))
    return rows


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if a is not None and b else "n/a"


def _host_text(host) -> str:
    if not host:
        return ""
    flags = host.get("cpu_flags_relevant") or []
    return (f" ({host.get('cpu_mhz') or '?'} MHz, {'with' if 'avx512f' in flags else 'without'} AVX-512, "
            f"`{host.get('platform')}`)")


def earlier_rows(path) -> dict:
    """``{"file", "date", "command", "rows"}`` of a committed gateway_scale JSON: the same checkout measured
    on an earlier day (and host), to say how much of a difference is the host's."""
    d = json.loads(Path(path).read_text())
    rows = [{"devices": r["devices"], "cpu_pct": r["cpu_pct"], "p99_ms": r["decision_latency_ms"]["p99"]}
            for r in d["scale"]]
    return {"file": Path(path).name, "date": d["date"], "command": d.get("command"), "rows": rows}


#: CPU % from which a run is saturated (SCHED_FIFO's throttle caps it at 95 %): no ratio of such a run
SATURATED_PCT = 94.0
#: before this date the farm sent most frames at the same instants (the phase bug gateway_farm.ALIGNED tells of)
_PHASES_FIXED = "2026-12-07"


def _earlier_section(res: dict, before: str) -> list:
    e = res.get("earlier")
    if not e:
        return []
    by = {r["devices"]: r for r in res["summary"] if r["checkout"] == before}
    phases = (f"; its farm then sent most frames at the same instants, the phase bug fixed on {_PHASES_FIXED}"
              if e["date"] < _PHASES_FIXED else "")
    L = ["", f"## The host: {before} here and on {e['date']}", "",
         f"The same checkout, `{res['checkouts'][before]['commit']}`, measured on {e['date']} "
         f"(`{e['file']}`, `{e['command']}`{phases}) and in this run (a ratio is n/a where this run is saturated: "
         f"{SATURATED_PCT:g} % or more of the core, SCHED_FIFO's cap being 95 %):", "",
         f"| devices | CPU % on {e['date']} | CPU % here | ratio | p99 ms on {e['date']} | p99 ms here |",
         "|---|---|---|---|---|---|"]
    for then in (r for r in e["rows"] if r["devices"] in by):
        n, now = then["devices"], by[then["devices"]]
        ratio = "n/a" if now["cpu_pct"] >= SATURATED_PCT else _ratio(now["cpu_pct"], then["cpu_pct"])
        L.append(f"| {n} | {then['cpu_pct']} | {now['cpu_pct']} | {ratio} | "
                 f"{then['p99_ms']} | {now['p99_ms']} |")
    return L


def markdown(res: dict) -> str:
    names = list(res["checkouts"])
    before, afters = names[0], names[1:]
    co = res["checkouts"]
    L = [f"# Gateway cost per wearable: {before} (`{co[before]['commit']}`) vs "
         + ", ".join(f"{a} (`{co[a]['commit']}`)" for a in afters), "",
         f"Measured {res['date']} on {res['machine']}{_host_text(res.get('host'))} ({res['cores']} cores, shared "
         "with other jobs: 1-min load "
         f"average {', '.join(f'{x:g}' for x in res['loadavg_at_start'])} at the start, "
         f"{', '.join(f'{x:g}' for x in res['loadavg_at_end'])} at the end, and per run below). `edge-run` pinned "
         "to one core with `taskset`, the device farm to the other; N virtual 500 Hz wearables over loopback TCP "
         f"in real time (the bundled PTB-XL record {res['record']}, looped, frames of 50 samples, "
         + ("every device's frames at the same instants" if res.get("frame_phases") == "aligned" else
            "each device at a random phase of the frame period" if res.get("frame_phases") else
            "phases as the farm then set them: ~80 % of the frames at the same instant")
         + f"); warm-up "
         f"{res['warmup_s']:g} s, {res['measure_s']:g} s measured per run; the two checkouts alternating"
         + (f"; edge-run and the farm at SCHED_FIFO priority {res['rt_priority']}" if res.get("rt_priority") else "")
         + ".", "", f"Command: `{res['command']}`", "",
         "## Live: N real-time devices on one core", "",
         "| devices | checkout | runs | CPU % of one core | CPU % per device | latency p50 ms | p99 ms (median) | "
         "p99 worst | decisions | kept up | load avg (1 min) per run |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["summary"]:
        L.append(f"| {r['devices']} | {r['checkout']} | {r['runs']} | {r['cpu_pct']} | {r['cpu_pct_per_device']} | "
                 f"{r['p50_ms']} | {r['p99_ms']} | {r['p99_worst_ms']} | {r['decisions']} | "
                 f"{'yes' if r['kept_up'] else 'NO'} | {', '.join(f'{x:g}' for x in r['loadavg_1min'])} |")
    by = {(r["devices"], r["checkout"]): r for r in res["summary"]}
    for after in afters:
        L += ["", f"Ratios {after} / {before} (medians of the runs above):", "",
              "| devices | CPU | latency p50 | p99 |", "|---|---|---|---|"]
        for n in sorted({r["devices"] for r in res["summary"]}):
            a, b = by.get((n, after)), by.get((n, before))
            if a and b:
                L.append(f"| {n} | {_ratio(a['cpu_pct'], b['cpu_pct'])} | {_ratio(a['p50_ms'], b['p50_ms'])} | "
                         f"{_ratio(a['p99_ms'], b['p99_ms'])} |")
    for after in afters:
        met = [r for r in res["summary"] if r["checkout"] == after and r["devices"] >= 200
               and r["p99_ms"] is not None and r["p99_ms"] <= TARGET_P99_MS]
        L += ["", f"Target (issue 26): p99 <= {TARGET_P99_MS:g} ms at 200 devices on one core: "
              f"{'met' if met else 'NOT met'} here ({after})."]
    L += _earlier_section(res, before)
    off = res.get("offline")
    if off:
        rows = off["rows"]
        L += ["", f"## Offline: the per-frame work alone ({off['devices']} devices x {off['seconds']:g} s of signal, "
              f"best of {off['reps']})", "",
              "| checkout | CPU s | CPU % of one core per real-time device | events |", "|---|---|---|---|"]
        L += [f"| {k} | {v['cpu_s']} | {v['cpu_pct_per_device']} | {v['events']} |" for k, v in rows.items()]
        for after in (a for a in afters if before in rows and a in rows):
            L += ["", f"Ratio {after} / {before}: {_ratio(rows[after]['cpu_s'], rows[before]['cpu_s'])} "
                  "(the same number of events from both)."
                  if rows[after]["events"] == rows[before]["events"] else
                  f"Ratio {after} / {before}: {_ratio(rows[after]['cpu_s'], rows[before]['cpu_s'])}."]
    L += ["", "CPU % = user + system time of the gateway process per wall second (100 % = one core). Decision "
          "latency = arrival of the chunk completing a beat's window -> decision emitted (queueing behind the "
          "other devices included).", ""]
    if res.get("notes"):
        L += ["## Notes", ""] + [f"- {x}" for x in res["notes"]] + [""]
    return "\n".join(L)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.gateway_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--before-python", required=True,
                    help="interpreter whose selfmis is the baseline checkout (its own venv, `make install`)")
    ap.add_argument("--before-name", default="before")
    ap.add_argument("--after-name", default="after")
    ap.add_argument("--n", default="100,200", help="device counts (default %(default)s)")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each (N, checkout) point (default 2)")
    ap.add_argument("--warmup", type=float, default=12.0)
    ap.add_argument("--measure", type=float, default=30.0)
    ap.add_argument("--cpu", type=int, default=1, help="core for edge-run (default 1)")
    ap.add_argument("--farm-cpu", type=int, default=0, help="core for the device farm (default 0)")
    ap.add_argument("--offline", default="60,4,3", help="offline SECONDS,DEVICES,REPS (default %(default)s)")
    ap.add_argument("--rt", action="store_true", help="edge-run and the farm at real-time priority (chrt -f 10)")
    ap.add_argument("--aligned", action="store_true",
                    help="every device's frames at the same instants (the worst case; default: random phases)")
    ap.add_argument("--after-kernels", default="",
                    help="also run the after checkout with these interpreter kernels (comma-separated: default, "
                         "builtin, reference), each its own series (default: none)")
    ap.add_argument("--earlier", help="a committed gateway_scale JSON of the before checkout from an earlier day: "
                                      "shown beside this run's figures (how much of a change is the host's)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--name", default="gateway_cost", help="file name of the JSON and Markdown (default %(default)s)")
    args = ap.parse_args(argv)
    gateway_farm.RT_PRIORITY = 10 if args.rt else None
    gateway_farm.ALIGNED = args.aligned
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    secs, n_dev, o_reps = args.offline.split(",")
    series = {args.before_name: args.before_python, args.after_name: sys.executable}
    for k in (x for x in args.after_kernels.split(",") if x):
        if k not in KERNELS:
            ap.error(f"--after-kernels: unknown kernels {k!r} (one of {', '.join(KERNELS)})")
        series[f"{args.after_name} ({k} kernels)"] = (sys.executable, k)
    res = run_study(series,
                    tuple(int(x) for x in args.n.split(",") if x), args.reps, args.warmup, args.measure,
                    args.cpu, args.farm_cpu, (float(secs), int(n_dev), int(o_reps)), log)
    if args.earlier:
        res["earlier"] = earlier_rows(args.earlier)
    res["rt_priority"] = gateway_farm.RT_PRIORITY
    res["frame_phases"] = "aligned" if args.aligned else "random"
    shown = [("--before-python", "BEFORE/.venv/bin/python") if a == args.before_python else (a, a)
             for a in (argv if argv is not None else sys.argv[1:])]
    res["command"] = "python -m selfmis.benchmarks.gateway_cost " + " ".join(b for _, b in shown)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(res, indent=1))
    (out / f"{args.name}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
