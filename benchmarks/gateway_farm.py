"""The device farm and one measured gateway process: what every gateway benchmark point is made of.

Setup per point (:func:`run_point`): a *device farm* process (:func:`farm`, pinned to another
core) plays N virtual 500 Hz wearables (:class:`~selfmis.firmware_bridge.virtual_device.VirtualDevice`,
a record looped, frames of 50 samples at 10 frames/s, each device started at a random point of
the record and at a random phase of the 100-ms frame period, as wearables switched on at different
moments are; :data:`ALIGNED` sends every device's frames at the same instants instead, the worst case)
over N loopback TCP sockets in real time; one ``edge-run`` process, pinned to **one core** with
``taskset``, reads them all (``--port socket://...`` N times). After a warm-up, for
``measure_s`` seconds: CPU % of the gateway process (utime + stime from ``/proc``, 100 % = one
core), peak RSS (``VmHWM``), decision latency p50 / p99 (the pipeline's own ``latency_ms``:
arrival of the chunk that completed a beat's window -> decision emitted; queueing behind other
devices included) and whether it kept up (signal seconds per device).

Used by :mod:`.gateway_scale` (wearables per core), :mod:`.gateway_outlets` (what each outlet
costs), :mod:`.io_loop` and :mod:`.gateway_cost` (side-by-side studies).
The farm process itself: ``python -m selfmis.benchmarks.gateway_farm N RECORD``.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from selfmis import protocol as P
from selfmis.simulate import VirtualDevice

from .machine import cpu_info

__all__ = ["farm", "start_farm", "run_point", "taskset", "pct", "cpu_model", "EDGE_RUN", "RT_PRIORITY", "ALIGNED",
           "summary_row"]

#: the gateway as deployed: ``edge-run`` of this interpreter (a study of another checkout passes its own)
EDGE_RUN = [sys.executable, "-m", "selfmis.edge_runtime.cli"]
CLK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the device farm (its own process)

#: True: every device's frames leave at the same instants (all phases equal), the burstiest load;
#: False (default): each device at its own random phase of the frame period. (Before 2026-12-07
#: the farm meant to randomise the phase but only picked a random frame of the record: every device
#: connected in the same 5-ms tick got the same phase, ~80 of 100 frames arrived at once.)
ALIGNED = False


def farm(n: int, record: str, seed: int = 0, aligned: bool = False) -> None:
    """Serve ``n`` looped virtual devices on loopback TCP; print one URL per line, then stream
    (``aligned``: every device's frames at the same instants; else at random phases)."""
    rng = random.Random(seed)
    servers, devices = [], []
    for i in range(n):
        srv = socket.create_server(("127.0.0.1", 0))
        servers.append(srv)
        print(f"socket://127.0.0.1:{srv.getsockname()[1]}", flush=True)
    conns = [None] * n

    def accept(i):
        c, _ = servers[i].accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conns[i] = c

    for i in range(n):
        threading.Thread(target=accept, args=(i,), daemon=True).start()
        devices.append(VirtualDevice.from_path(record, loop=True, device_id=f"farm-{i:03d}", seed=i))
    iters = [None] * n
    nxt = [None] * n
    t0 = [0.0] * n
    start = time.monotonic()  # the common grid of aligned phases
    while True:
        now = time.monotonic()
        for i in range(n):
            if conns[i] is None:
                continue
            if iters[i] is None:  # just connected: start at a random phase of the record
                iters[i] = devices[i].chunks()
                skip = rng.uniform(0, 9.5)
                nxt[i] = next(iters[i])
                while nxt[i].t < skip:
                    nxt[i] = next(iters[i])
                # frames leave at t0 + t, t a multiple of the frame period: t0 sets the phase
                period = devices[i].samples_per_frame / devices[i].fs
                t0[i] = now - nxt[i].t
                t0[i] += -((t0[i] - start) % period) if aligned else rng.uniform(0.0, period)
                conns[i].sendall(_hello_bytes(devices[i]))  # the one at t=0 was skipped
            try:
                while nxt[i].t <= now - t0[i]:
                    conns[i].sendall(nxt[i].data)
                    nxt[i] = next(iters[i])
            except OSError:
                conns[i] = None  # the gateway went away
        if all(c is None for c in conns) and all(it is not None for it in iters):
            return
        time.sleep(0.005)


def _hello_bytes(dev) -> bytes:
    return P.encode_hello(dev.hello())


# ---------------------------------------------------------------- measuring one gateway process

#: ``chrt -f 10`` for the gateway and the farm when set (``--rt``): on a machine shared with other
#: jobs this is the way to give the gateway "one core"; the kernel's RT throttling still leaves 5 %.
RT_PRIORITY = None


def taskset(cpu) -> list:
    """The command prefix that pins a process to ``cpu`` (and gives it RT_PRIORITY when set)."""
    pre = ["chrt", "-f", str(RT_PRIORITY)] if RT_PRIORITY and shutil.which("chrt") else []
    if cpu is None or not shutil.which("taskset"):
        return pre
    return pre + ["taskset", "-c", str(cpu)]


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK


def _hwm_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(a, q):
    """The ``q``-th percentile of ``a`` rounded to 0.01 (None when empty)."""
    return round(float(np.percentile(a, q)), 2) if len(a) else None


def start_farm(n: int, record: str, cpu) -> tuple:
    env = dict(os.environ)
    p = subprocess.Popen(taskset(cpu) + [sys.executable, "-m", "selfmis.benchmarks.gateway_farm", str(n), record]
                         + (["aligned"] if ALIGNED else []),
                         stdout=subprocess.PIPE, text=True, env=env)
    urls = [p.stdout.readline().strip() for _ in range(n)]
    if not all(u.startswith("socket://") for u in urls):
        p.kill()
        raise RuntimeError("the device farm did not start")
    return p, urls


def run_point(n: int, record: str, warmup_s: float, measure_s: float, cpu=0, farm_cpu=1, extra_args=(),
              during=None, log=print, edge_run=None) -> dict:
    """One gateway with ``n`` farm devices; ``during(t_measure_start)`` runs while measuring
    (a browser, a subscriber) and may return a dict merged into the result; ``edge_run``: the
    command that starts the gateway (default :data:`EDGE_RUN`)."""
    farm_p, urls = start_farm(n, record, farm_cpu)
    out = tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=False)
    err = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    args = []
    for i, u in enumerate(urls):
        args += ["--port", u, "--device-id", f"d{i:03d}"]
    gw = subprocess.Popen(taskset(cpu) + list(edge_run or EDGE_RUN) + args + ["--quiet", "--retries", "0"] + list(extra_args),
                          stdout=out, stderr=err, text=True)
    extra = {}
    try:
        time.sleep(warmup_s)
        if gw.poll() is not None:
            raise RuntimeError(f"edge-run exited early: {Path(err.name).read_text()[-2000:]}")
        c0, w0 = _cpu_s(gw.pid), time.monotonic()
        if during is not None:
            extra = during(measure_s) or {}
        else:
            time.sleep(measure_s)
        c1, w1 = _cpu_s(gw.pid), time.monotonic()
        hwm = _hwm_mb(gw.pid)
        load = os.getloadavg()
    finally:
        if gw.poll() is None:
            gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(30)
        except subprocess.TimeoutExpired:
            gw.kill()
        farm_p.kill()
        farm_p.wait()
    ev = [json.loads(l) for l in Path(out.name).read_text().splitlines() if l.strip()]
    os.unlink(out.name)
    log_tail = Path(err.name).read_text()[-1500:]
    os.unlink(err.name)
    sums = [e for e in ev if e.get("type") == "summary"]
    dec = [e for e in ev if e.get("type") == "decision" and e.get("latency_ms") is not None]
    # decisions emitted inside the measuring window: t (signal) of a device maps to wall roughly from its start;
    # all devices start within the warm-up, so skip decisions whose t < warm-up and keep the rest
    lat = np.asarray([e["latency_ms"] for e in dec if e["t"] >= warmup_s - 2], np.float64)
    wall = w1 - w0
    cpu_pct = 100.0 * (c1 - c0) / wall
    signal_s = [s["signal_s"] for s in sums]
    res = {"devices": n, "cpu_pct": round(cpu_pct, 1), "cpu_pct_per_device": round(cpu_pct / n, 3),
           "rss_peak_mb": round(hwm, 1), "decisions": int(len(lat)),
           "decision_latency_ms": {"p50": pct(lat, 50), "p99": pct(lat, 99), "max": pct(lat, 100)},
           "signal_s_per_device": {"min": min(signal_s) if signal_s else None,
                                   "max": max(signal_s) if signal_s else None},
           "measure_s": round(wall, 1), "loadavg": [round(x, 2) for x in load],
           "summaries": len(sums), **extra}
    if len(sums) != n:
        res["warning"] = f"{len(sums)} summaries for {n} devices; stderr tail: {log_tail}"
    log(f"  N={n}: cpu {res['cpu_pct']}%  rss {res['rss_peak_mb']} MB  decisions {res['decisions']}  "
        f"p50 {res['decision_latency_ms']['p50']} ms  p99 {res['decision_latency_ms']['p99']} ms")
    return res


def cpu_model() -> str:
    """The CPU's model name (:func:`.machine.cpu_info`'s, the one reading of /proc/cpuinfo)."""
    return cpu_info().get("model") or ""


def main(argv=None) -> int:
    """The farm process: ``N RECORD [aligned]``; prints one URL per device, then streams until the
    gateway leaves."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        farm(int(argv[0]), argv[1], aligned=argv[2:3] == ["aligned"])
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())


def summary_row(ps: list, n: int, key: dict, per_device: bool = False) -> dict:
    """One (N, variant) line of a study's summary from its repeated :func:`run_point` results:
    medians of CPU % (and per device), p50 and p99, the worst p99, decisions, kept up, load averages."""
    p50 = [p["decision_latency_ms"]["p50"] for p in ps if p["decision_latency_ms"]["p50"] is not None]
    p99 = [p["decision_latency_ms"]["p99"] for p in ps if p["decision_latency_ms"]["p99"] is not None]
    row = {"devices": n, **key, "runs": len(ps), "cpu_pct": round(float(np.median([p["cpu_pct"] for p in ps])), 1)}
    if per_device:
        row["cpu_pct_per_device"] = round(float(np.median([p["cpu_pct_per_device"] for p in ps])), 3)
    row.update({"p50_ms": round(float(np.median(p50)), 2) if p50 else None,
                "p99_ms": round(float(np.median(p99)), 2) if p99 else None,
                "p99_worst_ms": max(p99) if p99 else None,
                "decisions": int(sum(p["decisions"] for p in ps)),
                "kept_up": all(p.get("summaries") == n for p in ps),
                "loadavg_1min": [p["loadavg"][0] for p in ps]})
    return row
