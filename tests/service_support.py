"""Helpers for the gateway-as-a-service tests: virtual devices on TCP, edge-run as a process, free ports."""
from __future__ import annotations

import json
import os
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
    """``edge-run ARGS`` with stdout and stderr as pipes unless ``stdout=``/``stderr=`` are given.

    A caller that does not read stdout while the gateway runs must pass a file: once 64 KiB of
    JSON Lines fill an unread pipe, the gateway's next write blocks, and with it every device
    (what a browser then shows as all devices going silent at once)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(EDGE_RUN + list(args), text=True, env=quiet_env(tmp_path), **kw)


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


# ---------------------------------------------------------------- a real mosquitto broker

class Broker:
    """mosquitto on a free loopback port with its own config, password file and (optionally) TLS.

    ``persistence`` keeps sessions and queued QoS 1 messages across a stop/start, as a
    production broker would be configured."""

    def __init__(self, folder, users=None, tls: bool = False):
        import shutil
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.exe, self.folder = exe, folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        lines = [f"listener {self.port} 127.0.0.1", "persistence true", f"persistence_location {folder}/",
                 "autosave_interval 1"]
        if os.geteuid() == 0:  # as root mosquitto drops to user 'mosquitto', who cannot read a 0700 tmp dir
            lines.append("user root")
        if users:
            pw = folder / "passwd"
            pw.write_text("")
            for user, password in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), user, password], check=True,
                               capture_output=True)
            lines += [f"password_file {pw}", "allow_anonymous false"]
        else:
            lines += ["allow_anonymous true"]
        self.tls_port = None
        if tls:
            self.ca, cert, key = make_test_ca(folder)
            self.tls_port = free_port()
            lines += [f"listener {self.tls_port} 127.0.0.1", f"cafile {self.ca}", f"certfile {cert}",
                      f"keyfile {key}"]
            if users:
                lines += [f"password_file {folder / 'passwd'}", "allow_anonymous false"]
            else:
                lines += ["allow_anonymous true"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("per_listener_settings true\n" + "\n".join(lines) + "\n" if users and tls
                             else "\n".join(lines) + "\n")
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.proc.stdout.read()}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0
        wait_for(up, 10, "mosquitto to listen")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def make_test_ca(folder):
    """A throw-away CA and a server certificate for 127.0.0.1, made with openssl."""
    ca_key, ca, key, csr, cert = (str(folder / n) for n in ("ca.key", "ca.pem", "server.key", "server.csr",
                                                           "server.pem"))
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
        "-subj", "/CN=selfmis test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "2",
        "-extfile", str(ext))
    return ca, cert, key


class Subscriber:
    """A paho client collecting (topic, payload, retain) with a persistent QoS 1 session."""

    def __init__(self, port, topic="#", user=None, password=None, client_id="selfmis-test-sub"):
        import paho.mqtt.client as mqtt
        self.messages = []
        self.lock = __import__("threading").Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        if user:
            c.username_pw_set(user, password)
        c.reconnect_delay_set(min_delay=1, max_delay=2)
        c.on_connect = lambda cl, u, f, rc, p=None: cl.subscribe(topic, qos=1)
        c.on_message = self._on_message
        c.connect("127.0.0.1", port, keepalive=10)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, msg.payload.decode(errors="replace"), bool(msg.retain)))

    def on(self, topic):
        with self.lock:
            return [(p, r) for t, p, r in self.messages if t == topic]

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()
