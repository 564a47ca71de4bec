"""MQTT outlet against a real mosquitto (Debian's, started per test on a free loopback port)."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time

import pytest

from service_support import Broker, Subscriber, events, kill, of, start_edge, start_sim_tcp, wait_for, EDGE_RUN
from test_edge_support import quiet_env, record_path, model_bundle

MI_500 = record_path(271, hr=True)
pytestmark = [
    pytest.mark.skipif(MI_500 is None, reason="no PTB-XL records available"),
    pytest.mark.skipif(shutil.which("mosquitto") is None and not __import__("os").path.exists("/usr/sbin/mosquitto"),
                       reason="mosquitto not installed (.ci/run installs it)"),
]
pytest.importorskip("paho.mqtt.client")
USERS = {"gw": "gw-pass", "viewer": "viewer-pass"}


@pytest.fixture(scope="module")
def bundle():
    return model_bundle()


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker", users=USERS)
    yield b
    b.stop()


def _decisions(sub, device):
    """The decisions received, duplicates (QoS 1 allows them) removed by seq, in arrival order."""
    seen, out = set(), []
    for p, _ in sub.on(f"selfmis/{device}/decision"):
        m = json.loads(p)
        if m["seq"] not in seen:
            seen.add(m["seq"])
            out.append(m)
    return out


def test_every_decision_in_order_with_discovery_and_availability(broker, bundle, tmp_path):
    sub = Subscriber(broker.port, user="viewer", password="viewer-pass")
    try:
        r = subprocess.run(EDGE_RUN + ["--replay", MI_500, "--fast", "--device-id", "bed1", "--model", bundle,
                                       "--persist-beats", "1",  # a 10-s record: no 30-s persistence
                                       "--quiet", "--mqtt-spool", str(tmp_path / "spool"), "--mqtt",
                                       f"mqtt://gw:gw-pass@127.0.0.1:{broker.port}/selfmis"],
                           capture_output=True, text=True, env=quiet_env(tmp_path), timeout=60)
        assert r.returncode == 0, r.stderr
        sent = of(events(r.stdout), "decision")
        assert sent
        got = wait_for(lambda: len(_decisions(sub, "bed1")) >= len(sent) and _decisions(sub, "bed1"), 10,
                       "every decision")
        assert [(d["t"], d["probabilities"], d["labels"]) for d in got] == \
               [(d["t"], d["probabilities"], d["labels"]) for d in sent]
        assert [d["seq"] for d in got] == sorted(d["seq"] for d in got)
        late = Subscriber(broker.port, topic="homeassistant/#", user="viewer", password="viewer-pass",
                          client_id="late-home-assistant")  # discovery is retained: a later HA sees it
        try:
            hr = wait_for(lambda: late.on("homeassistant/sensor/selfmis_bed1/heart_rate/config"), 5, "discovery")
        finally:
            late.close()
        assert hr[-1][1] and json.loads(hr[-1][0])["state_topic"] == "selfmis/bed1/state"
        mi = json.loads(sub.on("homeassistant/binary_sensor/selfmis_bed1/mi/config")[-1][0])
        assert mi["device"]["identifiers"] == ["selfmis_bed1"] and "availability" in mi
        assert sub.on("homeassistant/sensor/selfmis_bed1/mi_probability/config")
        assert sub.on("homeassistant/sensor/selfmis_bed1/link/config")
        state = json.loads(sub.on("selfmis/bed1/state")[-1][0])
        assert state["mi"] is True and state["hr"] > 30
        assert [p for p, _ in sub.on("selfmis/status")][-1] == "offline"  # a clean stop says so too
    finally:
        sub.close()


def test_broker_down_for_10_s_loses_no_decision(tmp_path, bundle):
    broker = Broker(tmp_path / "broker", users=USERS)
    sub = Subscriber(broker.port, topic="selfmis/+/decision", user="viewer", password="viewer-pass")
    sim, url = start_sim_tcp([MI_500, "--loop", "--speed", "1"], tmp_path)  # faster would be a rate mismatch
    edge = start_edge(["--port", url, "--device-id", "bed1", "--model", bundle, "--quiet", "--max-seconds", "32",
                       "--mqtt-spool", str(tmp_path / "spool"),
                       "--mqtt", f"mqtt://gw:gw-pass@127.0.0.1:{broker.port}/selfmis"], tmp_path)
    try:
        wait_for(lambda: len(_decisions(sub, "bed1")) >= 3, 30, "the first decisions")
        broker.stop()
        time.sleep(10)
        broker.start()
        out, err = edge.communicate(timeout=120)
        assert edge.returncode == 0, err
        sent = of(events(out), "decision")
        assert len(sent) > 15
        got = wait_for(lambda: len(_decisions(sub, "bed1")) >= len(sent) and _decisions(sub, "bed1"), 20,
                       f"{len(sent)} decisions")
        assert [(d["t"], d["labels"]) for d in got] == [(d["t"], d["labels"]) for d in sent]
        assert "spooling" in err
    finally:
        sub.close()
        kill(sim)
        kill(edge)
        broker.stop()


def test_kill_9_publishes_the_last_will(broker, bundle, tmp_path):
    sub = Subscriber(broker.port, topic="selfmis/status", user="viewer", password="viewer-pass")
    edge = start_edge(["--simulate", MI_500, "--speed", "0.5", "--model", bundle, "--quiet",
                       "--mqtt-spool", str(tmp_path / "spool"),
                       "--mqtt", f"mqtt://gw:gw-pass@127.0.0.1:{broker.port}/selfmis"], tmp_path)
    try:
        wait_for(lambda: [p for p, _ in sub.on("selfmis/status")][-1:] == ["online"], 20, "online")
        edge.send_signal(signal.SIGKILL)
        edge.wait(10)
        wait_for(lambda: [p for p, _ in sub.on("selfmis/status")][-1:] == ["offline"], 10, "the last will")
    finally:
        sub.close()
        kill(edge)


def test_wrong_password_exits_6_with_a_clear_message(broker, bundle, tmp_path):
    r = subprocess.run(EDGE_RUN + ["--simulate", MI_500, "--fast", "--model", bundle, "--mqtt-spool",
                                   str(tmp_path / "spool"),
                                   "--mqtt", f"mqtt://gw:wrong@127.0.0.1:{broker.port}/selfmis"],
                       capture_output=True, text=True, env=quiet_env(tmp_path), timeout=60)
    assert r.returncode == 6, r.stderr
    assert f"127.0.0.1:{broker.port} refused the login for user 'gw'" in r.stderr
    assert r.stdout == ""


def test_tls_with_a_self_signed_ca(tmp_path, bundle):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    broker = Broker(tmp_path / "broker", tls=True)
    sub = Subscriber(broker.port, topic="selfmis/+/decision")  # plain listener of the same broker
    try:
        r = subprocess.run(EDGE_RUN + ["--replay", MI_500, "--fast", "--device-id", "bed1", "--model", bundle,
                                       "--persist-beats", "1",  # a 10-s record: no 30-s persistence
                                       "--quiet", "--mqtt-spool", str(tmp_path / "spool"),
                                       "--mqtt", f"mqtts://127.0.0.1:{broker.tls_port}/selfmis",
                                       "--mqtt-ca", str(broker.ca)],
                           capture_output=True, text=True, env=quiet_env(tmp_path), timeout=60)
        assert r.returncode == 0, r.stderr
        sent = of(events(r.stdout), "decision")
        got = wait_for(lambda: len(_decisions(sub, "bed1")) >= len(sent) and _decisions(sub, "bed1"), 10,
                       "decisions over TLS")
        assert [d["t"] for d in got] == [d["t"] for d in sent]
        # without the CA the certificate is refused: nothing is delivered, the decisions wait in the spool
        r2 = subprocess.run(EDGE_RUN + ["--replay", MI_500, "--fast", "--device-id", "bed2", "--model", bundle,
                                        "--quiet", "--mqtt-spool", str(tmp_path / "spool2"),
                                        "--mqtt", f"mqtts://127.0.0.1:{broker.tls_port}/selfmis"],
                            capture_output=True, text=True, env=quiet_env(tmp_path), timeout=60)
        assert "not delivered" in r2.stderr and not _decisions(sub, "bed2")
    finally:
        sub.close()
        broker.stop()


# ---------------------------------------------------------------- the spool itself

def test_spool_is_bounded_ordered_and_survives_a_restart(tmp_path):
    from selfmis.edge_runtime.outlets.spool import Spool
    s = Spool(tmp_path, max_items=5)
    for i in range(8):
        s.append("t", f"m{i}")
    assert [m["payload"] for m in s.pending] == ["m3", "m4", "m5", "m6", "m7"] and s.dropped == 3
    s.ack(s.peek())
    s.close()
    with open(tmp_path / "spool.jsonl", "a") as f:
        f.write('{"seq": 99, "topic": "t", "pay')  # a power cut mid-append
    s2 = Spool(tmp_path, max_items=5)
    assert [m["payload"] for m in s2.pending] == ["m4", "m5", "m6", "m7"]
    assert s2.append("t", "m8")["seq"] == 8
