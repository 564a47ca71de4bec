"""Wearables per core, and what each outlet costs: ``edge-run`` in gateway mode, measured as deployed.

Setup per point: a *device farm* process (``--farm N``, pinned to another core)
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

Outlet costs (``outlets``): the same with N devices and each outlet on, one at a
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
from selfmis.edge_runtime.interpreter import TFLiteModel
from selfmis.firmware_bridge.virtual_device import default_record_path
from selfmis.simulate import VirtualDevice

__all__ = ["main", "run_point", "farm"]

_HERE = Path(__file__).resolve().parent
DEFAULT_OUT = _HERE / "results" / "gateway"
EDGE_RUN = [sys.executable, "-m", "selfmis.edge_runtime.cli"]
CLK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the device farm (its own process)

def farm(n: int, record: str, seed: int = 0) -> None:
    """Serve ``n`` looped virtual devices on loopback TCP; print one URL per line, then stream."""
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
                t0[i] = now - nxt[i].t
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


def _taskset(cpu) -> list:
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


def _pct(a, q):
    return round(float(np.percentile(a, q)), 2) if len(a) else None


def start_farm(n: int, record: str, cpu) -> tuple:
    env = dict(os.environ)
    p = subprocess.Popen(_taskset(cpu) + [sys.executable, "-m", "selfmis.benchmarks.gateway_scale", "--farm", str(n),
                                          "--record", record], stdout=subprocess.PIPE, text=True, env=env)
    urls = [p.stdout.readline().strip() for _ in range(n)]
    if not all(u.startswith("socket://") for u in urls):
        p.kill()
        raise RuntimeError("the device farm did not start")
    return p, urls


def run_point(n: int, record: str, warmup_s: float, measure_s: float, cpu=0, farm_cpu=1, extra_args=(),
              during=None, log=print) -> dict:
    """One gateway with ``n`` farm devices; ``during(t_measure_start)`` runs while measuring
    (a browser, a subscriber) and may return a dict merged into the result."""
    farm_p, urls = start_farm(n, record, farm_cpu)
    out = tempfile.NamedTemporaryFile("w+", suffix=".jsonl", delete=False)
    err = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)
    args = []
    for i, u in enumerate(urls):
        args += ["--port", u, "--device-id", f"d{i:03d}"]
    gw = subprocess.Popen(_taskset(cpu) + EDGE_RUN + args + ["--quiet", "--retries", "0"] + list(extra_args),
                          stdout=out, stderr=err, text=True)
    extra = {}
    try:
        time.sleep(warmup_s)
        if gw.poll() is not None:
            raise RuntimeError(f"edge-run exited early: {Path(err.name).read_text()[-2000:]}")
        c0, w0, tm0 = _cpu_s(gw.pid), time.monotonic(), time.time()
        if during is not None:
            extra = during(measure_s) or {}
        else:
            time.sleep(measure_s)
        c1, w1, tm1 = _cpu_s(gw.pid), time.monotonic(), time.time()
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
           "decision_latency_ms": {"p50": _pct(lat, 50), "p99": _pct(lat, 99), "max": _pct(lat, 100)},
           "signal_s_per_device": {"min": min(signal_s) if signal_s else None,
                                   "max": max(signal_s) if signal_s else None},
           "measure_s": round(wall, 1), "loadavg": [round(x, 2) for x in load],
           "summaries": len(sums), **extra}
    if len(sums) != n:
        res["warning"] = f"{len(sums)} summaries for {n} devices; stderr tail: {log_tail}"
    log(f"  N={n}: cpu {res['cpu_pct']}%  rss {res['rss_peak_mb']} MB  decisions {res['decisions']}  "
        f"p50 {res['decision_latency_ms']['p50']} ms  p99 {res['decision_latency_ms']['p99']} ms")
    return res


# ---------------------------------------------------------------- outlets

def _mosquitto(folder: Path) -> tuple:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        return None, None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + ("user root\n" if os.geteuid() == 0 else ""))
    p = subprocess.Popen(_taskset(None) + [exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return p, port
        time.sleep(0.05)
    p.kill()
    return None, None


def alarm_record(folder: Path) -> str:
    """A 20-s 500 Hz CSV whose alarm goes on and off: lead I of the bundled MI record (00271) then of the
    bundled NORM record 00057 (100 Hz, linearly interpolated to 500 Hz). Looped with ``--persist-beats 1``
    the MI alarm sets on at ~6 s and clears at ~16 s of every pass, so the outlets, which carry alarm
    changes rather than every beat's decision, have something to carry."""
    from selfmis.readers import read_record
    mi_path = Path(default_record_path())
    mi = np.asarray(read_record(str(mi_path)).lead("I"), np.float64)
    norm = read_record(str(mi_path.parents[2] / "records100" / "00000" / "00057_lr"))
    x = np.asarray(norm.lead("I"), np.float64)
    up = np.interp(np.arange(len(x) * 500 // int(norm.fs)) / 500.0, np.arange(len(x)) / norm.fs, x)
    y = np.concatenate([mi, up])
    path = folder / "mi_then_norm.csv"
    np.savetxt(path, np.c_[np.arange(len(y)) / 500.0, y], fmt="%.4f", delimiter=",", header="time_s,I_mV",
               comments="")
    return str(path)


#: what every outlet row runs with (see :func:`alarm_record`)
OUTLET_ARGS = ["--persist-beats", "1"]


def outlet_costs(n: int, record: str, warmup_s: float, measure_s: float, cpu, farm_cpu, log=print,
                 which=("serve", "mqtt", "lsl")) -> dict:
    """Each outlet on, one at a time, side by side with none; the devices play :func:`alarm_record`
    (``record`` is not used: the rows must have alarm changes to publish)."""
    tmp = Path(tempfile.mkdtemp(prefix="selfmis-gw-bench-"))
    record = alarm_record(tmp)
    rows = {"off": run_point(n, record, warmup_s, measure_s, cpu, farm_cpu, extra_args=OUTLET_ARGS, log=log)}
    # --serve with one real viewer
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
        have_pw = True
    except ImportError:
        have_pw = False
    if "serve" not in which:
        pass
    elif chromium and have_pw:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]

        def viewer(seconds):
            from playwright.sync_api import sync_playwright
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"] +
                                      ([f"--renderer-process-limit=1"]))
                page = b.new_page(viewport={"width": 1000, "height": 800})
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_timeout(int(seconds * 1000))
                lat = page.evaluate("window.selfmis.latencies")
                msgs = page.evaluate("window.selfmis.messages")
                b.close()
            lat = np.asarray(lat) * 1e3
            return {"sample_to_page_ms": {"p50": _pct(lat, 50), "p95": _pct(lat, 95), "n": int(len(lat))},
                    "page_messages_per_s": round(msgs / seconds, 1)}
        rows["serve"] = run_point(n, record, warmup_s, measure_s, cpu, farm_cpu,
                                  extra_args=OUTLET_ARGS + ["--serve", f"127.0.0.1:{port}"], during=viewer, log=log)
    else:
        rows["serve"] = {"skipped": "chromium or playwright not installed"}
    # --mqtt with one subscriber
    broker, bport = _mosquitto(tmp)
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        mqtt = None
    if "mqtt" not in which:
        if broker is not None:
            broker.kill()
    elif broker is not None and mqtt is not None:
        # the subscriber is its own process, at the same priority as the broker and the gateway
        sub = subprocess.Popen(_taskset(None) + [sys.executable, "-c", _SUBSCRIBER, str(bport)],
                               stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        sub.stdout.readline()  # "ready"

        def collect(seconds):
            sub.stdin.write("start\n")
            sub.stdin.flush()
            time.sleep(seconds)
            sub.stdin.write("stop\n")
            sub.stdin.flush()
            a = np.asarray(json.loads(sub.stdout.readline()))
            return {"decision_to_subscriber_ms": {"p50": _pct(a, 50), "p99": _pct(a, 99), "n": int(len(a))}}
        rows["mqtt"] = run_point(n, record, warmup_s, measure_s, cpu, farm_cpu,
                                 extra_args=OUTLET_ARGS + ["--mqtt", f"mqtt://127.0.0.1:{bport}/bench",
                                                           "--mqtt-spool", str(tmp / "spool")], during=collect, log=log)
        sub.kill()
        sub.wait()
        broker.kill()
        broker.wait()
    else:
        rows["mqtt"] = {"skipped": "mosquitto or paho-mqtt not installed"}
    # --lsl with one inlet on the first device
    try:
        import pylsl
    except ImportError:
        pylsl = None
    if "lsl" not in which:
        pass
    elif pylsl is not None:
        def inlet(seconds):
            s = pylsl.resolve_byprop("source_id", "d000", timeout=10)
            if not s:
                return {"lsl_samples_per_s": 0}
            i = pylsl.StreamInlet(s[0])
            i.open_stream(timeout=5)
            got, t_end = 0, time.monotonic() + seconds
            while time.monotonic() < t_end:
                x, _ = i.pull_chunk(timeout=0.2)
                got += len(x)
            return {"lsl_samples_per_s": round(got / seconds, 1)}
        rows["lsl"] = run_point(n, record, warmup_s, measure_s, cpu, farm_cpu, extra_args=OUTLET_ARGS + ["--lsl"],
                                during=inlet, log=log)
    else:
        rows["lsl"] = {"skipped": "pylsl not installed"}
    shutil.rmtree(tmp, ignore_errors=True)
    off = rows["off"]["cpu_pct"]
    for k, r in rows.items():
        if "cpu_pct" in r and off:
            r["cpu_ratio_vs_off"] = round(r["cpu_pct"] / off, 2)
    return rows


_SUBSCRIBER = """
import json, sys, threading, time
import paho.mqtt.client as mqtt
lat, on = [], [False]
def on_msg(c, u, m):
    t = time.time()
    if on[0]:
        lat.append((t - json.loads(m.payload)["emitted"]) * 1e3)
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sub")
c.on_message = on_msg
c.on_connect = lambda c, u, f, rc, p=None: c.subscribe("bench/+/decision", qos=1)
c.connect("127.0.0.1", int(sys.argv[1]))
c.loop_start()
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() == "start":
        on[0] = True
    elif line.strip() == "stop":
        on[0] = False
        print(json.dumps(lat), flush=True)
"""


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
           "record": Path(record).name, "rt_priority": RT_PRIORITY, "loadavg_at_start": os.getloadavg(),
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
    ap.add_argument("--farm", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    global RT_PRIORITY
    RT_PRIORITY = 10 if args.rt else None
    record = args.record or default_record_path()
    if args.farm:
        try:
            farm(args.farm, record)
        except (KeyboardInterrupt, BrokenPipeError):
            pass
        return 0
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    res = run_all([int(x) for x in args.n.split(",") if x], args.warmup, args.measure, args.outlets_n, args.cpu,
                  args.farm_cpu, record, args.out,
                  "python -m selfmis.benchmarks.gateway_scale " + " ".join(argv or sys.argv[1:]), log,
                  tuple(x for x in args.outlets.split(",") if x))
    print(markdown(res))
    return 0


def cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    sys.exit(main())
