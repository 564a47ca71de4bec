"""MQTT outlet against a real mosquitto (Debian's, started per test on a free loopback port)."""
from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from service_support import Broker, Subscriber, events, kill, of, start_edge, start_sim_tcp, wait_for, EDGE_RUN, SIM
from test_edge_support import quiet_env, record_path, model_bundle

MI_500 = record_path(271, hr=True)
NORM_500 = record_path(1, hr=True)
pytestmark = [
    pytest.mark.skipif(MI_500 is None or NORM_500 is None, reason="no PTB-XL records available"),
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


def mi_then_norm(tmp_path) -> str:
    """Lead I of the MI record (00271) then of a NORM record (00001), 500 Hz, as one CSV: with
    --persist-beats 1 the MI alarm goes on at ~6 s and clears at ~16 s (looped: again every 20 s)."""
    from selfmis.readers import read_record
    x = np.concatenate([read_record(MI_500).lead("I"), read_record(NORM_500).lead("I")])
    path = tmp_path / "mi_then_norm.csv"
    np.savetxt(path, np.c_[np.arange(len(x)) / 500.0, x], fmt="%.4f", delimiter=",", header="time_s,I_mV",
               comments="")
    return str(path)


def alarm_changes(decisions):
    """The decisions whose set of active labels differs from the one before (worked out here, not
    with the outlet's own rule), as (t, labels, onset, cleared)."""
    out, before = [], []
    for d in decisions:
        if sorted(d["labels"]) != sorted(before):
            out.append((d["t"], d["labels"], [l for l in d["labels"] if l not in before],
                        [l for l in before if l not in d["labels"]]))
        before = d["labels"]
    return out


def test_onset_and_clear_in_order_not_every_beat_with_discovery(broker, bundle, tmp_path):
    """A subscriber gets the MI onset and its clearing, in order, and nothing for the beats in
    between; Home Assistant's MI binary sensor (the state topic) follows onset and cleared."""
    sub = Subscriber(broker.port, user="viewer", password="viewer-pass")
    try:
        r = subprocess.run(EDGE_RUN + ["--replay", mi_then_norm(tmp_path), "--fs", "500", "--units", "mV", "--fast",
                                       "--device-id", "bed1", "--model", bundle,
                                       "--persist-beats", "1",  # a 20-s record: no 30-s persistence
                                       "--quiet", "--mqtt-spool", str(tmp_path / "spool"), "--mqtt",
                                       f"mqtt://gw:gw-pass@127.0.0.1:{broker.port}/selfmis"],
                           capture_output=True, text=True, env=quiet_env(tmp_path), timeout=60)
        assert r.returncode == 0, r.stderr
        sent = of(events(r.stdout), "decision")
        want = alarm_changes(sent)
        assert any("MI" in on for _, _, on, _ in want) and any("MI" in off for _, _, _, off in want), want
        got = wait_for(lambda: len(_decisions(sub, "bed1")) >= len(want) and _decisions(sub, "bed1"), 10,
                       "the alarm changes")
        assert [(d["t"], d["labels"], d["onset"], d["cleared"]) for d in got] == want
        assert len(got) * 4 < len(sent), "ongoing decisions are not published"
        # an ongoing alarm is published only when its labels change (a subtype added or cleared)
        assert all(d["onset"] or d["cleared"] for d in got if d.get("state") == "ongoing"), got
        assert [d["seq"] for d in got] == sorted(d["seq"] for d in got)
        # the state topic (what Home Assistant's entities read): MI off -> on at the onset -> off when cleared
        mi = [json.loads(p)["mi"] for p, _ in sub.on("selfmis/bed1/state")]
        flips = [v for i, v in enumerate(mi) if v is not None and (i == 0 or v != mi[i - 1])]
        assert flips[-2:] == [True, False], mi
        state = json.loads(sub.on("selfmis/bed1/state")[-1][0])
        assert state["mi"] is False and state["hr"] > 30 and state["since"] > 10
        late = Subscriber(broker.port, topic="homeassistant/#", user="viewer", password="viewer-pass",
                          client_id="late-home-assistant")  # discovery is retained: a later HA sees it
        try:
            hr = wait_for(lambda: late.on("homeassistant/sensor/selfmis_bed1/heart_rate/config"), 5, "discovery")
        finally:
            late.close()
        assert hr[-1][1] and json.loads(hr[-1][0])["state_topic"] == "selfmis/bed1/state"
        mi = json.loads(sub.on("homeassistant/binary_sensor/selfmis_bed1/mi/config")[-1][0])
        assert mi["device"]["identifiers"] == ["selfmis_bed1"] and "availability" in mi
        assert mi["default_entity_id"] == "binary_sensor.selfmis_bed1_mi" and "object_id" not in mi
        assert mi["value_template"] == "{{ 'ON' if value_json.mi else 'OFF' }}"
        assert sub.on("homeassistant/sensor/selfmis_bed1/mi_probability/config")
        assert sub.on("homeassistant/sensor/selfmis_bed1/link/config")
        assert [p for p, _ in sub.on("selfmis/status")][-1] == "offline"  # a clean stop says so too
        assert "went away" not in r.stderr, r.stderr  # ... and is not logged as an outage
    finally:
        sub.close()


def test_onset_of_the_mi_record(broker, bundle, tmp_path):
    """The replayed MI record: one message, its MI onset, though a decision is made every beat."""
    sub = Subscriber(broker.port, topic="selfmis/+/decision", user="viewer", password="viewer-pass")
    try:
        r = subprocess.run(EDGE_RUN + ["--replay", MI_500, "--fast", "--device-id", "bed1", "--model", bundle,
                                       "--persist-beats", "1", "--quiet", "--mqtt-spool", str(tmp_path / "spool"),
                                       "--mqtt", f"mqtt://gw:gw-pass@127.0.0.1:{broker.port}/selfmis"],
                           capture_output=True, text=True, env=quiet_env(tmp_path), timeout=60)
        assert r.returncode == 0, r.stderr
        sent = of(events(r.stdout), "decision")
        got = wait_for(lambda: _decisions(sub, "bed1"), 10, "the onset")
        time.sleep(0.5)  # anything more would have arrived by now
        got = _decisions(sub, "bed1")
        assert len(sent) >= 5 and len(got) == 1, got
        onset = [d for d in sent if d["state"] == "onset"][0]
        assert got[0]["state"] == "onset" and "MI" in got[0]["onset"] and got[0]["t"] == onset["t"]
    finally:
        sub.close()


def test_broker_down_for_10_s_loses_no_alarm_change(tmp_path, bundle):
    broker = Broker(tmp_path / "broker", users=USERS)
    sub = Subscriber(broker.port, topic="selfmis/+/decision", user="viewer", password="viewer-pass")
    sim, url = start_sim_tcp([mi_then_norm(tmp_path), "--loop", "--speed", "1"], tmp_path)  # faster: rate mismatch
    edge = start_edge(["--port", url, "--device-id", "bed1", "--model", bundle, "--quiet", "--max-seconds", "50",
                       "--persist-beats", "1", "--mqtt-spool", str(tmp_path / "spool"),
                       "--mqtt", f"mqtt://gw:gw-pass@127.0.0.1:{broker.port}/selfmis"], tmp_path)
    try:
        wait_for(lambda: len(_decisions(sub, "bed1")) >= 1, 30, "the first onset")
        broker.stop()  # the clear (~16 s) and what follows happen while it is away
        time.sleep(10)
        broker.start()
        out, err = edge.communicate(timeout=120)
        assert edge.returncode == 0, err
        want = alarm_changes(of(events(out), "decision"))
        assert len(want) >= 4, want
        got = wait_for(lambda: len(_decisions(sub, "bed1")) >= len(want) and _decisions(sub, "bed1"), 20,
                       f"{len(want)} alarm changes")
        assert [(d["t"], d["labels"], d["onset"], d["cleared"]) for d in got] == want
        # the outage is told once each way, with how many spooled decisions were delivered
        assert err.count("went away") == 1 and "spooling" in err, err
        back = re.findall(r"back after \d+ s; (\d+) spooled decision\(s\) delivered", err)
        assert len(back) == 1 and int(back[0]) >= 1, err
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
        want = alarm_changes(of(events(r.stdout), "decision"))
        assert want
        got = wait_for(lambda: len(_decisions(sub, "bed1")) >= len(want) and _decisions(sub, "bed1"), 10,
                       "alarm changes over TLS")
        assert [d["t"] for d in got] == [t for t, *_ in want]
        # without the CA the certificate is refused: nothing is delivered, the decisions wait in the spool
        r2 = subprocess.run(EDGE_RUN + ["--replay", MI_500, "--fast", "--device-id", "bed2", "--model", bundle,
                                        "--persist-beats", "1", "--quiet", "--mqtt-spool", str(tmp_path / "spool2"),
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


# ---------------------------------------------------------------- Home Assistant discovery, as documented

# The keys and value types of an MQTT discovery payload for the two components we publish, written from
# Home Assistant's documentation of the MQTT integration: https://www.home-assistant.io/integrations/sensor.mqtt/
# and https://www.home-assistant.io/integrations/binary_sensor.mqtt/ ("Configuration Variables"), the
# discovery section of https://www.home-assistant.io/integrations/mqtt/ (``origin``: name, sw_version,
# support_url), and the 2025.10 change that replaced ``object_id`` by ``default_entity_id`` ("<domain>.<id>";
# object_id deprecated, removed in 2026.4). Full key names only (abbreviations are optional).
_STR, _INT, _BOOL, _LIST, _MAP = str, int, bool, list, dict
HA_COMMON = {
    "availability": _LIST, "availability_mode": _STR, "availability_template": _STR, "availability_topic": _STR,
    "default_entity_id": _STR, "device": _MAP, "enabled_by_default": _BOOL, "encoding": _STR,
    "entity_category": _STR, "entity_picture": _STR, "expire_after": _INT, "force_update": _BOOL, "icon": _STR,
    "json_attributes_template": _STR, "json_attributes_topic": _STR, "name": (str, type(None)), "origin": _MAP,
    "payload_available": _STR, "payload_not_available": _STR, "platform": _STR, "qos": _INT,
    "state_topic": _STR, "unique_id": _STR, "value_template": _STR,
}
HA_KEYS = {
    "sensor": {**HA_COMMON, "device_class": _STR, "last_reset_value_template": _STR, "options": _LIST,
               "state_class": _STR, "suggested_display_precision": _INT, "unit_of_measurement": _STR},
    "binary_sensor": {**HA_COMMON, "device_class": _STR, "off_delay": _INT, "payload_off": _STR,
                      "payload_on": _STR},
}
HA_REQUIRED = {"state_topic", "unique_id", "default_entity_id", "device", "name"}  # state_topic: HA; rest: ours
HA_DEPRECATED = {"object_id"}
HA_DEVICE = {"configuration_url": _STR, "connections": _LIST, "hw_version": _STR, "identifiers": _LIST,
             "manufacturer": _STR, "model": _STR, "model_id": _STR, "name": _STR, "serial_number": _STR,
             "suggested_area": _STR, "sw_version": _STR, "via_device": _STR}
HA_ORIGIN = {"name": _STR, "sw_version": _STR, "support_url": _STR}
HA_AVAILABILITY = {"topic": _STR, "payload_available": _STR, "payload_not_available": _STR,
                   "value_template": _STR}
HA_STATE_CLASSES = {"measurement", "measurement_angle", "total", "total_increasing"}
HA_BINARY_DEVICE_CLASSES = {"battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door",
                            "garage_door", "gas", "heat", "light", "lock", "moisture", "motion", "moving",
                            "occupancy", "opening", "plug", "power", "presence", "problem", "running", "safety",
                            "smoke", "sound", "tamper", "update", "vibration", "window"}


def check_discovery(topic: str, payload: dict) -> None:
    """One discovery message against the documented schema (raises AssertionError naming the key)."""
    prefix, component, node, obj, config = topic.split("/")
    assert prefix == "homeassistant" and config == "config" and component in HA_KEYS, topic
    spec = HA_KEYS[component]
    for key, value in payload.items():
        assert key not in HA_DEPRECATED, f"{topic}: deprecated key {key}"
        assert key in spec, f"{topic}: {key} is not a documented {component} key"
        assert isinstance(value, spec[key]) and not (isinstance(value, bool) and spec[key] is not _BOOL), \
            f"{topic}: {key} should be {spec[key]}, is {value!r}"
    assert HA_REQUIRED <= set(payload), f"{topic}: missing {HA_REQUIRED - set(payload)}"
    domain, _, entity = payload["default_entity_id"].partition(".")
    assert domain == component and re.fullmatch(r"[a-z0-9_]+", entity), payload["default_entity_id"]
    assert set(payload["device"]) <= set(HA_DEVICE) and payload["device"]["identifiers"], payload["device"]
    assert all(isinstance(v, HA_DEVICE[k]) for k, v in payload["device"].items())
    assert set(payload.get("origin", {})) <= set(HA_ORIGIN) and "name" in payload.get("origin", {"name": 1})
    for a in payload.get("availability", []):
        assert set(a) <= set(HA_AVAILABILITY) and "topic" in a, a
    assert payload.get("availability_mode", "latest") in ("all", "any", "latest")
    assert re.fullmatch(r"mdi:[a-z0-9-]+", payload.get("icon", "mdi:x")), payload.get("icon")
    if "state_class" in payload:
        assert payload["state_class"] in HA_STATE_CLASSES
    if component == "binary_sensor" and "device_class" in payload:
        assert payload["device_class"] in HA_BINARY_DEVICE_CLASSES


def test_discovery_checker_rejects_what_home_assistant_would():
    good = ("homeassistant/sensor/selfmis_a/link/config",
            {"name": "Link", "state_topic": "s/a/state", "unique_id": "selfmis_a_link",
             "default_entity_id": "sensor.selfmis_a_link", "device": {"identifiers": ["selfmis_a"]}})
    check_discovery(*good)
    for bad in ({"object_id": "selfmis_a_link"}, {"default_entity_id": "selfmis_a_link"},
                {"default_entity_id": "binary_sensor.selfmis_a_link"}, {"icon": "bluetooth"},
                {"qos": "1"}, {"colour": "red"}, {"state_class": "gauge"}):
        with pytest.raises(AssertionError):
            check_discovery(good[0], {**good[1], **bad})


def test_every_discovery_payload_is_documented_home_assistant(broker, bundle, tmp_path):
    """A real run with a serial (pty) and a TCP device: every retained discovery message matches the
    documented schema; the link sensor's icon is the link's kind; the MI binary sensor reads the state's
    ``mi``, which is on whenever any MI-class alarm is (MI or a subtype)."""
    from selfmis.edge_runtime.labels import is_mi_class
    sim_tcp, url = start_sim_tcp([MI_500, "--loop", "--speed", "1"], tmp_path)
    sim_pty = subprocess.Popen(SIM + [MI_500, "--loop", "--speed", "1", "--pty"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=quiet_env(tmp_path))
    pty = sim_pty.stdout.readline().strip()
    sub = Subscriber(broker.port, topic="#", user="viewer", password="viewer-pass")
    edge = start_edge(["--port", url, "--device-id", "net", "--port", pty, "--device-id", "usb", "--model", bundle,
                       "--quiet", "--persist-beats", "1", "--max-seconds", "12", "--mqtt-spool", str(tmp_path / "sp"),
                       "--mqtt", f"mqtt://gw:gw-pass@127.0.0.1:{broker.port}/selfmis"], tmp_path)
    try:
        out, err = edge.communicate(timeout=90)
        assert edge.returncode == 0, err
        disc = [(t, json.loads(p)) for t, p, _ in sub.messages if t.startswith("homeassistant/")]
        assert len({t for t, _ in disc}) == 8, sorted({t for t, _ in disc})  # 4 entities x 2 devices
        for t, p in disc:
            check_discovery(t, p)
        icons = {t: p.get("icon") for t, p in disc if t.endswith("/link/config")}
        assert icons == {"homeassistant/sensor/selfmis_net/link/config": "mdi:lan-connect",
                         "homeassistant/sensor/selfmis_usb/link/config": "mdi:serial-port"}, icons
        states = [json.loads(p) for t, p, _ in sub.messages if t == "selfmis/net/state"]
        assert any(s["mi"] for s in states), "the MI record raises an MI-class alarm"
        assert states[-1]["rate"] == "ok" and states[-1]["quality"] == "ok", states[-1]
        assert not [s for s in states if s["rate"] != "ok" and s["quality"] not in (None, "ok")
                    and "rate" in s["quality"]], "the rate is never reported as the quality"
        for s in states:
            if s["decisions"]:  # before the first decision mi is null: not known yet
                assert s["mi"] == any(is_mi_class(l) for l in s["labels"]), s
        assert "went away" not in err and "back after" not in err, err  # a normal stop is no outage
    finally:
        sub.close()
        kill(edge)
        kill(sim_tcp)
        kill(sim_pty)


def test_ble_link_icon_and_password_from_a_file(broker, tmp_path):
    """The BLE icon (no BLE radio in CI: the outlet is asked for its messages) and a password read from
    a file, with the user in the URL only: the login works and the password is never logged."""
    from selfmis.edge_runtime.outlets.mqtt import MqttOutlet
    o = MqttOutlet(f"mqtt://gw@127.0.0.1:{broker.port}/selfmis", password="gw-pass", spool=str(tmp_path / "sp"))
    try:
        assert o._connected.wait(5), "logged in with the password given apart from the URL"
        o._kinds["strap"] = "ble"
        msgs = dict(o.discovery_messages("strap"))
        assert msgs["homeassistant/sensor/selfmis_strap/link/config"]["icon"] == "mdi:bluetooth-connect"
        for t, p in msgs.items():
            check_discovery(t, p)
    finally:
        o._stop.set()
        o.client.disconnect()
        o.client.loop_stop()
    secret = tmp_path / "mqtt.pass"
    secret.write_text("gw-pass\n")
    for extra, env in ((["--mqtt-password-file", str(secret)], {}), ([], {"SELFMIS_MQTT_PASSWORD": "gw-pass"})):
        r = subprocess.run(EDGE_RUN + ["--simulate", MI_500, "--fast", "--no-loop", "--verbose",
                                       "--mqtt-spool", str(tmp_path / "sp2"), *extra,
                                       "--mqtt", f"mqtt://gw@127.0.0.1:{broker.port}/selfmis"],
                           capture_output=True, text=True, env={**quiet_env(tmp_path), **env}, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "MQTT connected" in r.stderr and "gw-pass" not in r.stderr + r.stdout
    r = subprocess.run(EDGE_RUN + ["--simulate", MI_500, "--fast", "--mqtt-password-file", str(tmp_path / "none"),
                                   "--mqtt", f"mqtt://gw@127.0.0.1:{broker.port}/selfmis"],
                       capture_output=True, text=True, env=quiet_env(tmp_path), timeout=60)
    assert r.returncode == 2 and "MQTT password: cannot read" in r.stderr, r.stderr


def test_secrets_are_redacted_from_what_is_written_down():
    from selfmis.edge_runtime.gateway_args import redact_argv
    assert redact_argv(["--port", "/dev/x", "--serve-token", "t0k", "--serve-token=t0k",
                        "--mqtt", "mqtts://gw:pa:ss@broker:8883/ward", "--mqtt=mqtt://gw:pw@b/x"]) == \
        ["--port", "/dev/x", "--serve-token", "***", "--serve-token=***",
         "--mqtt", "mqtts://gw:***@broker:8883/ward", "--mqtt=mqtt://gw:***@b/x"]
