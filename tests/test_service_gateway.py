"""Several wearables in one edge-run: gateway.json validation, device ids, isolation of a failing or flooding device."""
from __future__ import annotations

import json
import socket
import subprocess
import threading
import time

import numpy as np
import pytest

from service_support import EDGE_RUN, SIM, events, free_port, kill, of, start_edge, start_sim_tcp, wait_for
from test_edge_support import run_cli, quiet_env, record_path, model_bundle

from selfmis.edge_runtime import cli, gateway_args
from selfmis.edge_runtime.gateway_config import GatewayConfigError, load_gateway_config, validate_gateway_config

MI_500 = record_path(271, hr=True)
needs_data = pytest.mark.skipif(MI_500 is None, reason="no PTB-XL records available")


@pytest.fixture(scope="module")
def bundle():
    return model_bundle()


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("cfg, message", [
    ({"devices": []}, "devices: give at least one device"),
    ({"devices": [{"id": "a", "port": "/dev/x", "baud": "fast"}]}, "devices[0].baud: expected an integer"),
    ({"devices": [{"id": "a", "port": "/dev/x", "ascii": 1}]}, "devices[0].ascii: expected true/false"),
    ({"devices": [{"id": "a", "port": "/dev/x", "colour": 1}]}, "devices[0].colour: unknown key"),
    ({"devices": [{"id": "a", "port": "/dev/x", "ble": "AA"}]}, "give exactly one of port, ble, replay, simulate (got port, ble)"),
    ({"devices": [{"port": "/dev/x"}]}, "devices[0].id: missing"),
    ({"devices": [{"id": "bed 1", "port": "/dev/x"}]}, "is not a valid id"),
    ({"devices": [{"id": "a", "port": "/dev/x"}, {"id": "a", "port": "/dev/y"}]}, "already used by devices[0]"),
    ({"devices": [{"id": "a", "port": "/dev/x", "baud": 0}]}, "devices[0].baud: value 0 is out of range"),
    ({"devices": [{"id": "a", "port": "/dev/x"}], "mqtt": {"url": "http://x"}}, "must start with mqtt://"),
    ({"devices": [{"id": "a", "port": "/dev/x"}], "serve": {"token": "t"}}, "serve.bind: missing"),
    ({"format": "selfmis-runtime-config", "devices": [{"id": "a", "port": "/dev/x"}]}, "format: expected"),
])
def test_config_errors_name_file_and_path(cfg, message):
    with pytest.raises(GatewayConfigError) as e:
        validate_gateway_config(cfg, "gw.json")
    assert str(e.value).startswith("gw.json: ") and message in str(e.value)


def test_config_paths_and_record_root(tmp_path):
    p = tmp_path / "gw.json"
    p.write_text(json.dumps({"record_root": "runs", "serve": "127.0.0.1:0",
                             "devices": [{"id": "a", "simulate": "rec/x"},
                                         {"id": "b", "port": "socket://127.0.0.1:9", "record": "here"}]}))
    cfg = load_gateway_config(p)
    a, b = cfg["devices"]
    assert a["simulate"] == str(tmp_path / "rec" / "x") and a["record"] == str(tmp_path / "runs" / "a")
    assert b["port"] == "socket://127.0.0.1:9" and b["record"] == str(tmp_path / "here")
    assert cfg["serve"] == {"bind": "127.0.0.1:0"}


def test_bad_json_names_line_and_exits_2(tmp_path, capsys):
    p = tmp_path / "gateway.json"
    p.write_text('{"devices": [\n  {"id": "a", "port": "/dev/x",}\n]}')
    assert cli.main(["--config", str(p)]) == 2
    err = capsys.readouterr().err
    assert str(p) in err and "line 2" in err


def test_mode_selection_keeps_the_single_device_path():
    assert not gateway_args.wanted(["--simulate", "x", "--fast"])
    assert gateway_args.wanted(["--simulate", "x", "--simulate", "y"])
    assert gateway_args.wanted(["--port=/dev/a", "--serve", ":8080"])
    srcs, ids, rest = gateway_args.split_sources(["--simulate", "x", "--device-id=a", "--port=/dev/b", "--fast"])
    assert srcs == [("simulate", "x"), ("port", "/dev/b")] and ids == ["a"] and rest == ["--fast"]


# ---------------------------------------------------------------- several devices

@needs_data
def test_two_devices_each_event_names_its_device_and_matches_a_lone_run(bundle, capsys, tmp_path):
    code, alone = run_cli(["--simulate", MI_500, "--fast", "--model", bundle], capsys)
    assert code == 0
    code, ev = run_cli(["--simulate", MI_500, "--device-id", "bed1", "--simulate", MI_500, "--device-id", "bed2",
                        "--fast", "--model", bundle, "--record", str(tmp_path / "rec")], capsys)
    assert code == 0
    assert all(e["device"] in ("bed1", "bed2") for e in ev)
    ref = [(d["t"], d["probabilities"]) for d in of(alone, "decision")]
    assert ref
    for dev in ("bed1", "bed2"):
        assert [(d["t"], d["probabilities"]) for d in of(ev, "decision", dev)] == ref
        assert of(ev, "summary", dev)[0]["decisions"] == len(ref)
        meta = json.loads((tmp_path / "rec" / dev / "recording.json").read_text())
        assert meta["device"] == dev


@needs_data
def test_gateway_json_runs_its_devices(bundle, tmp_path):
    cfg = tmp_path / "gateway.json"
    cfg.write_text(json.dumps({"format": "selfmis-gateway-config", "format_version": 1, "model": bundle,
                               "devices": [{"id": "left", "simulate": MI_500, "fast": True},
                                           {"id": "right", "replay": MI_500, "fast": True}]}))
    r = subprocess.run(EDGE_RUN + ["--config", str(cfg), "--quiet"], capture_output=True, text=True,
                       env=quiet_env(tmp_path), timeout=120)
    assert r.returncode == 0, r.stderr
    ev = events(r.stdout)
    assert {e["device"] for e in of(ev, "summary")} == {"left", "right"}
    assert of(ev, "decision", "left") and of(ev, "decision", "right")


def _garbage_server(port_holder, stop, seconds=3.0):
    """A 'device' that floods its link with random bytes as fast as TCP takes them."""
    srv = socket.create_server(("127.0.0.1", 0))
    port_holder.append(srv.getsockname()[1])
    conn, _ = srv.accept()
    rng = np.random.default_rng(0)
    blob = rng.integers(0, 256, 1 << 16, dtype=np.uint8).tobytes()
    t_end = time.monotonic() + seconds
    try:
        while time.monotonic() < t_end and not stop.is_set():
            conn.sendall(blob)
    except OSError:
        pass
    conn.close()
    srv.close()


@needs_data
def test_a_flooding_then_vanishing_device_leaves_the_others_alone(bundle, tmp_path):
    """Device 'noise' floods garbage then disappears (lost, exit 5 with --no-restart); 'good' streams
    in real time through its own TCP virtual device (both read by the one I/O thread) and gets
    exactly the decisions of a lone run."""
    port, stop = [], threading.Event()
    t = threading.Thread(target=_garbage_server, args=(port, stop), daemon=True)
    t.start()
    while not port:
        time.sleep(0.01)
    sim, url = start_sim_tcp([MI_500, "--speed", "1"], tmp_path)  # real time: a faster stream is a rate mismatch
    try:
        r = subprocess.run(EDGE_RUN + ["--port", f"socket://127.0.0.1:{port[0]}", "--device-id", "noise",
                                       "--port", url, "--device-id", "good", "--retries", "0",
                                       "--no-restart", "--model", bundle], capture_output=True, text=True,
                           env=quiet_env(tmp_path), timeout=120)
    finally:
        stop.set()
        kill(sim)
    ev = events(r.stdout)
    assert r.returncode == 5, r.stderr  # the worst device's code
    noise = of(ev, "summary", "noise")[0]
    assert noise["decisions"] == 0, noise
    assert of(ev, "error", "noise"), ("the lost device is reported", noise)
    good = of(ev, "summary", "good")[0]
    lone = subprocess.run(EDGE_RUN + ["--replay", MI_500, "--fast", "--model", bundle, "--quiet"],
                          capture_output=True, text=True, env=quiet_env(tmp_path), timeout=60)
    ref = of(events(lone.stdout), "decision")
    got = of(ev, "decision", "good")
    assert len(got) == len(ref) == good["decisions"] and good["crc_errors"] == 0, r.stderr
    for a, b in zip(got, ref):
        assert a["labels"] == b["labels"]
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in a["probabilities"]) < 1e-3


@needs_data
def test_a_lost_device_is_restarted_with_backoff_until_it_is_back(bundle, tmp_path):
    """A TCP device dies (its retries run out), stays away for a few restart attempts, comes back on the
    same port: the gateway says so on stderr and in link events, and its decisions resume; the other
    device streams on throughout."""
    port = free_port()
    sim_a, url_a = start_sim_tcp([MI_500, "--speed", "1", "--loop"], tmp_path)
    sim_b = subprocess.Popen(SIM + [MI_500, "--speed", "1", "--loop", "--tcp", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=quiet_env(tmp_path))
    assert sim_b.stdout.readline().startswith("socket://")
    gw = start_edge(["--port", url_a, "--device-id", "steady", "--port", f"socket://127.0.0.1:{port}",
                     "--device-id", "flaky", "--retries", "0", "--restart-cap", "2", "--model", bundle],
                    tmp_path)
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(gw.stdout), daemon=True)
    reader.start()
    try:
        wait_for(lambda: of(events("".join(lines)), "decision", "flaky"), 60, "flaky's first decision")
        kill(sim_b)  # gone: reconnect fails (retries 0), then restarts at 1, 2, 2 ... s
        wait_for(lambda: len([e for e in of(events("".join(lines)), "link", "flaky")
                              if e["kind"] == "restarting"]) >= 3, 30, "three restart attempts")
        n_before = len(of(events("".join(lines)), "decision", "flaky"))
        sim_b = subprocess.Popen(SIM + [MI_500, "--speed", "1", "--loop", "--tcp", str(port)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=quiet_env(tmp_path))
        wait_for(lambda: len(of(events("".join(lines)), "decision", "flaky")) > n_before + 3, 60,
                 "flaky's decisions after it came back")
    finally:
        gw.terminate()
        try:
            gw.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill(gw)
        reader.join(5)
        err = gw.stderr.read()
        kill(sim_a)
        kill(sim_b)
    ev = events("".join(lines))
    restarts = [e for e in of(ev, "link", "flaky") if e["kind"] == "restarting"]
    assert [e["delay_s"] for e in restarts[:3]] == [1.0, 2.0, 2.0], restarts  # doubling, capped
    assert "restarting it in 1 s" in err and "the gateway keeps retrying" in err, err
    assert gw.returncode == 0, err  # stopped by SIGTERM, nothing failed for good
    flaky = of(ev, "summary", "flaky")[0]
    assert flaky["restarts"] >= 3 and flaky["decisions"] > 0
    steady = of(ev, "summary", "steady")[0]
    assert "restarts" not in steady and steady["decisions"] > 0
    assert not of(ev, "error")


def test_sigterm_stops_many_tcp_devices_at_once(bundle, tmp_path):
    """20 TCP devices in the one selector: SIGTERM ends the gateway within a few seconds with every
    device's summary (closing a socket:// port must not cost pyserial's 0.3 s each, in series)."""
    servers, conns = [], []
    for _ in range(20):
        srv = socket.create_server(("127.0.0.1", 0))
        servers.append(srv)
        threading.Thread(target=lambda s=srv: conns.append(s.accept()[0]), daemon=True).start()
    args = []
    for i, srv in enumerate(servers):
        args += ["--port", f"socket://127.0.0.1:{srv.getsockname()[1]}", "--device-id", f"d{i:02d}"]
    gw = start_edge(args + ["--model", bundle, "--retries", "0"], tmp_path)
    try:
        wait_for(lambda: len(conns) == 20, 20, "20 connections")
        time.sleep(0.5)
        t0 = time.monotonic()
        gw.terminate()
        out, err = gw.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        kill(gw)
        for c in conns + servers:
            c.close()
    assert gw.returncode == 0, err
    assert len(of(events(out), "summary")) == 20
    assert took < 3.0, took
