"""Wearables per core, and what each outlet costs: ``edge-run`` in gateway mode, measured as deployed.

Setup per point (:mod:`.gateway_farm`): a *device farm* process (pinned to another core)
plays N virtual 500 Hz wearables (:class:`~selfmis.firmware_bridge.virtual_device.VirtualDevice`,
the bundled PTB-XL MI record looped, frames of 50 samples at 10 frames/s, each
device started at a random phase) over N loopback TCP sockets in real time; one
``edge-run`` process, pinned to **one core** with ``taskset``, reads them all
(``--port socket://...`` N times). After a warm-up, for ``measure_s`` seconds:

* CPU % of the gateway process (utime + stime from ``/proc``, 100 % = one core),
* peak RSS (``VmHWM``),
* decision latency p50 / p99: the pipeline's own ``latency_ms`` (arrival of the
  chunk that completed a beat's window -> decision emitted; queueing behind other
  devices included), over decisions emitted in the measuring window,
* whether it kept up: signal seconds processed per device vs wall seconds.

Outlet costs (:mod:`.gateway_outlets`): the same with N devices and each outlet on, one at a
time, side by side with it off in the same run: ``--serve`` with one headless
Chromium viewer (sample-to-page latency p95 measured in the page), ``--mqtt`` to
a local mosquitto with one subscriber (decision-to-subscriber latency p99 from
the payload's ``emitted``), ``--lsl`` with one inlet pulling the ECG.

Run: ``python -m selfmis.benchmarks.gateway_scale [--n 1,10,50,100,200] [--out DIR]``
(results: ``gateway_scale.json`` and ``.md``). Needs 2 cores; numbers from a
shared machine carry its load (reported as ``loadavg``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from selfmis.edge_runtime.interpreter import TFLiteModel
from selfmis.firmware_bridge.virtual_device import default_record_path

from . import gateway_farm
from .gateway_farm import cpu_model, run_point
from .gateway_outlets import outlet_costs

__all__ = ["main", "run_all", "markdown", "inference_share"]

_HERE = Path(__file__).resolve().parent
DEFAULT_OUT = _HERE / "results" / "gateway"


# ---------------------------------------------------------------- report

def inference_share(record_bundle=None) -> dict:
    """Per-window inference time of the shared model: why batching across devices does not pay."""
    m = TFLiteModel(record_bundle)
    x = np.random.default_rng(0).standard_normal((200, m.window)).astype(np.float32)
    m.predict_proba(x[:5])
    t = time.perf_counter()
    m.predict_proba(x)
    ms = (time.perf_counter() - t) / len(x) * 1e3
    return {"ms_per_window": round(ms, 4),
            "cpu_pct_100_devices_at_75_bpm": round(100 * 1.25 * ms / 1e3 * 100, 2)}


def markdown(res: dict) -> str:
    L = ["# Gateway: wearables per core and outlet costs", "",
         f"Measured {res['date']} on {res['machine']} ({res['cores']} cores, shared with other jobs: load average "
         "in each row). `edge-run` pinned to one core, the device farm to another; virtual 500 Hz devices over "
         "loopback TCP in real time (the bundled PTB-XL record 00271, looped, random phase). Decision latency = "
         "arrival of the chunk completing a beat's window -> decision emitted (queueing included). The gateway "
         "reads every device from one selector thread (`edge_runtime/gateway_io.py`).", "",
         f"Command: `{res['command']}`" + (f" (edge-run and the farm at SCHED_FIFO priority {res['rt_priority']}: "
                                            "the machine's other jobs cannot take their cores)" if res.get("rt_priority")
                                            else " (normal priority: other jobs on the machine compete for the core)"),
         "",
         "## Wearables per core", "",
         "| devices | CPU % of one core | CPU % per device | RSS peak MB | decisions | latency p50 ms | p99 ms | max ms | load avg |",
         "|---|---|---|---|---|---|---|---|---|"]
    for r in res["scale"]:
        d = r["decision_latency_ms"]
        L.append(f"| {r['devices']} | {r['cpu_pct']} | {r['cpu_pct_per_device']} | {r['rss_peak_mb']} | "
                 f"{r['decisions']} | {d['p50']} | {d['p99']} | {d['max']} | {r['loadavg'][0]} |")
    ok = [r["devices"] for r in res["scale"] if r["decision_latency_ms"]["p99"] is not None
          and r["decision_latency_ms"]["p99"] <= 20 and r["cpu_pct"] < 95]
    L += ["", f"Target >= 100 devices with p99 <= 20 ms on one core: "
          f"{'met' if ok and max(ok) >= 100 else 'NOT met'} (largest N meeting it here: {max(ok) if ok else 'none'}).",
          "", f"Inference of the shared model: {res['inference']['ms_per_window']} ms per window, i.e. "
          f"{res['inference']['cpu_pct_100_devices_at_75_bpm']} % of a core for 100 devices at 75 bpm: "
          "batching across devices would save almost nothing (and the XNNPACK graph cannot be resized to a batch).",
          ""]
    if res.get("outlets"):
        n = res["outlets"]["off"].get("devices")
        L += [f"## Outlet costs ({n} devices, one at a time, side by side with off)", "",
              "| outlet | CPU % | ratio vs off | RSS peak MB | decision p99 ms | outlet latency |", "|---|---|---|---|---|---|"]
        for k, r in res["outlets"].items():
            if "skipped" in r:
                L.append(f"| {k} | skipped: {r['skipped']} | | | | |")
                continue
            extra = ""
            if "sample_to_page_ms" in r:
                extra = (f"sample-to-page p95 {r['sample_to_page_ms']['p95']} ms (p50 {r['sample_to_page_ms']['p50']}), "
                         f"{r['page_messages_per_s']} msg/s")
            if "decision_to_subscriber_ms" in r:
                extra = (f"alarm-change-to-subscriber p99 {r['decision_to_subscriber_ms']['p99']} ms "
                         f"(n={r['decision_to_subscriber_ms']['n']})")
            if "lsl_samples_per_s" in r:
                extra = f"inlet got {r['lsl_samples_per_s']} samples/s of d000"
            L.append(f"| {k} | {r['cpu_pct']} | {r.get('cpu_ratio_vs_off', '')} | {r['rss_peak_mb']} | "
                     f"{r['decision_latency_ms']['p99']} | {extra} |")
        L += ["", "Outlet rows: the devices play the MI record then a NORM one, looped (alarm onset at ~6 s, "
              "cleared at ~16 s of every 20-s pass; `--persist-beats 1`), off included: MQTT publishes alarm "
              "changes (onset/cleared), not every beat's decision, so its latency is per alarm change.", "",
              "Targets: decision-to-subscriber p99 <= 50 ms on loopback; sample-to-page p95 <= 250 ms.",
              "mosquitto and the subscriber process run at the gateway's priority"
              + (" (SCHED_FIFO)" if res.get("rt_priority") else "") + "; the headless Chromium viewer at normal "
              "priority (its latency includes this machine's load). Sample-to-page: Unix time in the page when a "
              "tick is drawn minus the arrival time of the newest chunk it carries (ticks every 100 ms).", ""]
    return "\n".join(L)


def run_all(ns=(1, 10, 50, 100, 200), warmup_s: float = 12.0, measure_s: float = 30.0, outlets_n: int = 10,
            cpu: int = 0, farm_cpu: int = 1, record: str | None = None, out=None, command: str = "",
            log=print, outlets=("serve", "mqtt", "lsl")) -> dict:
    """The wearables-per-core curve and the outlet costs; written to ``out`` as gateway_scale.json/.md."""
    record = record or default_record_path()
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if ncpu < 2:
        cpu = farm_cpu = None
    res = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": os.uname().machine + " " + cpu_model(),
           "cores": ncpu, "command": command, "warmup_s": warmup_s, "measure_s": measure_s,
           "record": Path(record).name, "rt_priority": gateway_farm.RT_PRIORITY, "loadavg_at_start": os.getloadavg(),
           "inference": inference_share(), "scale": []}
    for n in ns:
        log(f"wearables per core: N={n} ...")
        res["scale"].append(run_point(n, record, warmup_s, measure_s, cpu, farm_cpu, log=log))
    if outlets_n:
        log(f"outlet costs with {outlets_n} devices ...")
        res["outlets"] = outlet_costs(outlets_n, record, warmup_s, measure_s, cpu, farm_cpu, log=log,
                                       which=outlets)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "gateway_scale.json").write_text(json.dumps(res, indent=1))
        (out / "gateway_scale.md").write_text(markdown(res))
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.gateway_scale", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", default="1,10,50,100,200", help="device counts (default %(default)s)")
    ap.add_argument("--warmup", type=float, default=12.0, help="seconds before measuring (default 12)")
    ap.add_argument("--measure", type=float, default=30.0, help="seconds measured per point (default 30)")
    ap.add_argument("--outlets-n", type=int, default=10, help="devices for the outlet costs (0: skip)")
    ap.add_argument("--outlets", default="serve,mqtt,lsl", help="outlets to cost (default %(default)s)")
    ap.add_argument("--cpu", type=int, default=0, help="core for edge-run (default 0)")
    ap.add_argument("--farm-cpu", type=int, default=1, help="core for the device farm (default 1)")
    ap.add_argument("--record", help="record the devices play (default: the bundled 500 Hz PTB-XL record)")
    ap.add_argument("--rt", action="store_true",
                    help="run edge-run and the device farm at real-time priority (chrt -f 10): a quiet core on a busy machine")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args(argv)
    gateway_farm.RT_PRIORITY = 10 if args.rt else None
    record = args.record or default_record_path()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    res = run_all([int(x) for x in args.n.split(",") if x], args.warmup, args.measure, args.outlets_n, args.cpu,
                  args.farm_cpu, record, args.out,
                  "python -m selfmis.benchmarks.gateway_scale " + " ".join(argv or sys.argv[1:]), log,
                  tuple(x for x in args.outlets.split(",") if x))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
