"""One frozen wearable must not stall the others (the report: every device on the live page turned grey
when one stopped).

20 real-time devices in one ``edge-run --serve``: 10 over loopback TCP, 10 over pseudo-terminals, fed
in real time by the bundled MI record (a thread per device, as a wearable's firmware would). After
every device has decided, one TCP device and one pty device *freeze*: they stop sending without
closing (the connection and the pty stay open, as with a hung firmware or a wearable out of radio
range behind a serial bridge). For the next 14 s (past the 10-s idle timeout, so the frozen devices'
disconnect and reconnect run in the one I/O loop too):

* the 18 others keep deciding: decision lines keep arriving on stdout for each of them, with no
  gap of the whole gateway's output longer than 2 s;
* the live page greys only the frozen two: in every Server-Sent-Events tick, the others' ``silent_s``
  (what the page greys at, ``STALE_S``) stays under it; the frozen ones reach it within 3 s;
* the frozen devices are reported ``disconnected`` after the idle timeout, nothing else fails.

About 45 s of wall time (mostly the 20 devices' first decisions and the 14 s frozen).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import urllib.request

import pytest

from service_support import events, free_port, kill, of, start_edge, wait_for
from test_edge_support import model_bundle, record_path

from selfmis.edge_runtime.serve.state import STALE_S
from selfmis.firmware_bridge.virtual_device import FdWriter, open_pty
from selfmis.simulate import VirtualDevice

MI_500 = record_path(271, hr=True)
N_TCP = N_PTY = 10
FROZEN = ("t00", "p00")
FROZEN_S = 14.0


class _Device:
    """A wearable streaming in real time to ``sink``; ``freeze`` makes it stop sending (nothing closed)."""

    def __init__(self, did: str, seed: int):
        self.id = did
        self.dev = VirtualDevice.from_path(MI_500, loop=True, device_id=did, seed=seed)
        self.frozen = threading.Event()
        self.stop = threading.Event()

    def run(self, sink) -> None:
        def write(data):
            if self.frozen.is_set():
                self.stop.wait()  # hung: holds the link open, sends nothing
                raise OSError("test over")
            sink.write(data)
        try:
            self.dev.stream_to(write, speed=1.0, stop=self.stop)
        except OSError:  # the gateway went away, or the test is over
            pass


def _serve_tcp(d: _Device, srv: socket.socket, conns: list) -> None:
    conn, _ = srv.accept()
    conns.append(conn)
    d.run(FdWriter(conn.fileno()))


def _sse(url: str, ticks: list, stop: threading.Event) -> None:
    """Every tick of the page's event stream: (local time, {device: silent_s})."""
    with urllib.request.urlopen(url, timeout=10) as r:
        for raw in r:
            if stop.is_set():
                return
            line = raw.decode().strip()
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                if msg.get("type") == "tick":
                    ticks.append((time.monotonic(), {k: v["status"].get("silent_s")
                                                     for k, v in msg["devices"].items()}))


@pytest.mark.skipif(MI_500 is None, reason="no PTB-XL records available")
def test_a_frozen_device_does_not_stall_the_others(tmp_path):
    bundle = model_bundle()
    devices, args, closers, conns = [], [], [], []
    for i in range(N_TCP):
        d = _Device(f"t{i:02d}", seed=i)
        srv = socket.create_server(("127.0.0.1", 0))
        closers.append(srv.close)
        threading.Thread(target=_serve_tcp, args=(d, srv, conns), daemon=True).start()
        devices.append(d)
        args += ["--port", f"socket://127.0.0.1:{srv.getsockname()[1]}", "--device-id", d.id]
    for i in range(N_PTY):
        d = _Device(f"p{i:02d}", seed=100 + i)
        master, slave, path = open_pty()
        closers += [lambda m=master: os.close(m), lambda s=slave: os.close(s)]
        threading.Thread(target=d.run, args=(FdWriter(master),), daemon=True).start()
        devices.append(d)
        args += ["--port", path, "--device-id", d.id]
    port = free_port()
    gw = start_edge(args + ["--model", bundle, "--retries", "3", "--serve", f"127.0.0.1:{port}"], tmp_path)
    lines: list = []  # (arrival time, line)

    def read_stdout():
        for line in gw.stdout:
            lines.append((time.monotonic(), line))
    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    ticks: list = []
    sse_stop = threading.Event()
    try:
        def decided():
            ev = events("".join(l for _, l in lines))
            return {e["device"] for e in of(ev, "decision")} >= {d.id for d in devices}
        wait_for(decided, 90, "a decision from each of the 20 devices")
        threading.Thread(target=_sse, args=(f"http://127.0.0.1:{port}/api/events", ticks, sse_stop),
                         daemon=True).start()
        wait_for(lambda: ticks, 20, "the page's first tick")
        t_freeze = time.monotonic()
        for d in devices:
            if d.id in FROZEN:
                d.frozen.set()
        time.sleep(FROZEN_S)
        t_end = time.monotonic()
    finally:
        sse_stop.set()
        for d in devices:
            d.stop.set()
        gw.send_signal(signal.SIGTERM)
        try:
            gw.wait(timeout=30)
        except Exception:
            kill(gw)
        reader.join(10)
        err = gw.stderr.read()
        for c in conns:
            c.close()
        for close in closers:
            try:
                close()
            except OSError:
                pass
    others = [d.id for d in devices if d.id not in FROZEN]
    # 1. the others kept deciding, each of them, and the gateway's output never paused
    after = [(t, json.loads(l)) for t, l in lines if t_freeze <= t <= t_end and l.strip()]
    dec = [(t, e["device"]) for t, e in after if e.get("type") == "decision"]
    for did in others:
        n = sum(1 for _, x in dec if x == did)
        assert n >= 6, (did, n, err[-3000:])  # ~1 beat/s for 14 s
    times = [t_freeze] + [t for t, x in dec if x in others] + [t_end]
    gap = max(b - a for a, b in zip(times, times[1:]))
    assert gap < 2.0, f"the gateway's decisions paused for {gap:.1f} s while a device was frozen"
    # 2. the page greys the frozen devices only
    late = [s for t, s in ticks if t >= t_freeze]
    assert len(late) >= 10 * FROZEN_S * 0.5, len(late)  # ticks every 100 ms kept coming
    worst = {did: max((s.get(did) or 0.0) for s in late) for did in others}
    assert max(worst.values()) < STALE_S, f"devices shown as silent while one was frozen: {worst}"
    for did in FROZEN:
        greyed = [t for t, s in ticks if t >= t_freeze and (s.get(did) or 0.0) >= STALE_S]
        assert greyed and greyed[0] - t_freeze < STALE_S + 1.0, (did, greyed[:1])
    # 3. the frozen devices were found out by the idle timeout; nothing else failed
    ev = events("".join(l for _, l in lines))
    for did in FROZEN:
        kinds = [e["kind"] for e in of(ev, "link", did)]
        assert "disconnected" in kinds, (did, kinds)
    assert not of(ev, "error"), of(ev, "error")
    assert {e["device"] for e in of(ev, "summary")} == {d.id for d in devices}
    assert gw.returncode == 0, err[-3000:]
