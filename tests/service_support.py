"""Helpers for the gateway-as-a-service tests: virtual devices on TCP, edge-run as a process, free ports."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from test_edge_support import quiet_env

EDGE_RUN = [sys.executable, "-m", "selfmis.edge_runtime.cli"]
SIM = [sys.executable, "-m", "selfmis.firmware_bridge.virtual_device"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sim_tcp(args, tmp_path) -> tuple:
    """``selfmis-sim ... --tcp 0``: returns (process, 'socket://127.0.0.1:PORT')."""
    proc = subprocess.Popen(SIM + list(args) + ["--tcp", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=quiet_env(tmp_path))
    url = proc.stdout.readline().strip()
    if not url.startswith("socket://"):
        proc.kill()
        raise AssertionError(f"selfmis-sim did not start: {proc.communicate()[1]}")
    return proc, url


def start_edge(args, tmp_path, **kw) -> subprocess.Popen:
    return subprocess.Popen(EDGE_RUN + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=quiet_env(tmp_path), **kw)


def events(text: str) -> list:
    return [json.loads(l) for l in text.splitlines() if l.strip()]


def of(ev, kind, device=None):
    return [e for e in ev if e.get("type") == kind and (device is None or e.get("device") == device)]


def wait_for(pred, timeout: float, what: str, step: float = 0.1):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def kill(proc) -> None:
    if proc.poll() is None:
        proc.kill()
    try:
        proc.communicate(timeout=10)
    except Exception:
        pass
