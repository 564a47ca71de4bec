"""What each outlet costs the gateway: ``--serve``, ``--mqtt``, ``--lsl``, one at a time, beside none.

The same farm point (:func:`.gateway_farm.run_point`) with N devices and each outlet on, side
by side with it off in the same run: ``--serve`` with one headless Chromium viewer
(sample-to-page latency p95 measured in the page), ``--mqtt`` to a local mosquitto with one
subscriber (alarm-change-to-subscriber latency p99 from the payload's ``emitted``), ``--lsl``
with one inlet pulling the ECG. The devices play :func:`alarm_record`, so the outlets, which
carry alarm changes rather than every beat's decision, have something to carry.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from selfmis.firmware_bridge.virtual_device import default_record_path

from .gateway_farm import pct, run_point, taskset

__all__ = ["outlet_costs", "alarm_record", "OUTLET_ARGS"]

#: what every outlet row runs with (see :func:`alarm_record`)
OUTLET_ARGS = ["--persist-beats", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mosquitto(folder: Path) -> tuple:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not os.path.exists(exe):
        return None, None
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n" + ("user root\n" if os.geteuid() == 0 else ""))
    p = subprocess.Popen(taskset(None) + [exe, "-c", str(conf)], stdout=subprocess.DEVNULL,
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


def _serve_row(point) -> dict:
    """``--serve`` with one real viewer (headless Chromium through playwright)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if not (chromium and sync_playwright):
        return {"skipped": "chromium or playwright not installed"}
    port = _free_port()

    def viewer(seconds):
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium,
                                  args=["--no-sandbox", "--disable-gpu", "--renderer-process-limit=1"])
            page = b.new_page(viewport={"width": 1000, "height": 800})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_timeout(int(seconds * 1000))
            lat = page.evaluate("window.selfmis.latencies")
            msgs = page.evaluate("window.selfmis.messages")
            b.close()
        lat = np.asarray(lat) * 1e3
        return {"sample_to_page_ms": {"p50": pct(lat, 50), "p95": pct(lat, 95), "n": int(len(lat))},
                "page_messages_per_s": round(msgs / seconds, 1)}
    return point(["--serve", f"127.0.0.1:{port}"], viewer)


def _mqtt_row(point, tmp: Path) -> dict:
    """``--mqtt`` to a local mosquitto with one subscriber process (at the gateway's priority)."""
    broker, bport = _mosquitto(tmp)
    try:
        import paho.mqtt.client  # noqa: F401  (the subscriber process imports it)
    except ImportError:
        if broker is not None:
            broker.kill()
        return {"skipped": "mosquitto or paho-mqtt not installed"}
    if broker is None:
        return {"skipped": "mosquitto or paho-mqtt not installed"}
    sub = subprocess.Popen(taskset(None) + [sys.executable, "-c", _SUBSCRIBER, str(bport)],
                           stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
    sub.stdout.readline()  # "ready"

    def collect(seconds):
        sub.stdin.write("start\n")
        sub.stdin.flush()
        time.sleep(seconds)
        sub.stdin.write("stop\n")
        sub.stdin.flush()
        a = np.asarray(json.loads(sub.stdout.readline()))
        return {"decision_to_subscriber_ms": {"p50": pct(a, 50), "p99": pct(a, 99), "n": int(len(a))}}
    try:
        return point(["--mqtt", f"mqtt://127.0.0.1:{bport}/bench", "--mqtt-spool", str(tmp / "spool")], collect)
    finally:
        for p in (sub, broker):
            p.kill()
            p.wait()


def _lsl_row(point) -> dict:
    """``--lsl`` with one inlet on the first device."""
    try:
        import pylsl
    except ImportError:
        return {"skipped": "pylsl not installed"}

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
    return point(["--lsl"], inlet)


def outlet_costs(n: int, record: str, warmup_s: float, measure_s: float, cpu, farm_cpu, log=print,
                 which=("serve", "mqtt", "lsl")) -> dict:
    """Each outlet on, one at a time, side by side with none; the devices play :func:`alarm_record`
    (``record`` is not used: the rows must have alarm changes to publish)."""
    tmp = Path(tempfile.mkdtemp(prefix="selfmis-gw-bench-"))
    record = alarm_record(tmp)

    def point(extra=(), during=None):
        return run_point(n, record, warmup_s, measure_s, cpu, farm_cpu, extra_args=OUTLET_ARGS + list(extra),
                         during=during, log=log)
    try:
        rows = {"off": point()}
        if "serve" in which:
            rows["serve"] = _serve_row(point)
        if "mqtt" in which:
            rows["mqtt"] = _mqtt_row(point, tmp)
        if "lsl" in which:
            rows["lsl"] = _lsl_row(point)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    off = rows["off"]["cpu_pct"]
    for r in rows.values():
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
