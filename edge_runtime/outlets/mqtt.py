"""``--mqtt``: decisions, link and quality changes, heart rate and Home Assistant discovery over MQTT (paho-mqtt).

Topics under ``PREFIX`` (the URL path, default ``selfmis``):

* ``PREFIX/status`` -- ``online`` / ``offline``, retained; ``offline`` is also the
  last will, so a gateway killed with ``kill -9`` or unplugged goes offline;
* ``PREFIX/<device>/availability`` -- ``online`` while the device streams, retained;
* ``PREFIX/<device>/decision`` -- the decisions that **change the alarms**
  (:class:`~..decision.StateChanges`: a label's alarm going on or off, e.g. the
  MI ``onset`` and its ``cleared``), as JSON with ``onset`` and ``cleared`` (the
  labels that changed) added (QoS 1, in order, store-and-forward: see below),
  with ``seq`` (per gateway, increasing) so a subscriber can drop the duplicates
  QoS 1 allows, and ``emitted`` (Unix time the pipeline emitted it: a subscriber
  sees how late a spooled decision arrives). The per-beat decisions in between
  (``state: ongoing`` / ``off``) are not published: an alarm is one message, not
  one a beat; the JSON Lines keep every decision;
* ``PREFIX/<device>/state`` -- retained JSON ``{"hr", "mi", "mi_probability",
  "labels", "since", "link", "quality", "rate", "t", "beats", "decisions"}`` (``labels``:
  the labels on; ``mi``: true whenever any MI-class alarm is on -- MI or one of
  its subtypes, :func:`..labels.is_mi_class`; ``since``: signal time of the last change;
  ``quality``: the signal's (lead-off, noise...); ``rate``: the time base's, ``checking``,
  ``ok`` or ``mismatch`` -- decisions are held unless it is ``ok``;
  ``mi_probability``: the latest rolling value): on every alarm, link or quality
  change and every ``hr_every_s`` (5 s); the Home Assistant entities read it, so
  the MI binary sensor turns on at the onset and off when it clears;
* ``PREFIX/<device>/link``, ``PREFIX/<device>/quality`` -- the link and quality events (QoS 0).

Home Assistant MQTT discovery (``homeassistant/<component>/<node>/<object>/config``,
retained), as Home Assistant documents it today
(https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery): per device a
heart-rate sensor, an MI binary sensor, an MI probability sensor and a link
state sensor (its icon the link's kind: serial port, network, Bluetooth),
grouped as one device with an ``origin``, each with ``unique_id`` and
``default_entity_id`` (``sensor.selfmis_bed1_heart_rate``: the replacement of
``object_id``, deprecated in Home Assistant 2025.10 and removed in 2026.4),
available while both the gateway and the device are online -- a Home Assistant
user sees the wearable with no YAML. ``tests/test_service_mqtt.py`` checks every
payload against the documented keys and types.

Store and forward: decisions are appended to a :class:`~.spool.Spool` on disk
and published one at a time, each waiting for its PUBACK, so they arrive in
order; while the broker is unreachable they wait there (bounded, oldest dropped
with a count) and flow again when it returns; nothing here ever blocks a
pipeline (events reach the publisher thread through a bounded in-memory queue).
Link/quality/state messages are not spooled: they describe the present.

A login the broker refuses (wrong user or password, not authorised) stops
``edge-run`` at start with exit code 6 and a message naming the broker and user;
a broker that is merely unreachable at start is waited for (spooling meanwhile).
An outage is logged twice, whatever its length: once when the broker goes away,
once when it is back (with how many spooled decisions were then delivered); a
normal shutdown logs neither. The password may come from the URL, a file
(``--mqtt-password-file``) or ``$SELFMIS_MQTT_PASSWORD``; it is never logged.
"""
from __future__ import annotations

import logging
import os
import queue
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import unquote, urlsplit

from selfmis import __version__

from ..decision import StateChanges
from ..labels import is_mi_class
from ..output import to_json
from . import link_kind
from .spool import Spool

__all__ = ["MqttOutlet", "MqttError", "parse_mqtt_url"]

log = logging.getLogger("selfmis.edge_runtime")


class MqttError(RuntimeError):
    """The outlet cannot start (bad URL, login refused); the message says which and why."""


def parse_mqtt_url(url: str) -> dict:
    """``mqtt[s]://[user:pass@]host[:port][/prefix]`` -> dict(tls, host, port, user, password, prefix)."""
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts"):
        raise MqttError(f"--mqtt {url!r}: expected mqtt://[user:pass@]host:port/prefix (or mqtts://)")
    if not u.hostname:
        raise MqttError(f"--mqtt {url!r}: no host")
    try:
        port = u.port or (8883 if u.scheme == "mqtts" else 1883)
    except ValueError:
        raise MqttError(f"--mqtt {url!r}: bad port") from None
    prefix = u.path.strip("/") or "selfmis"
    if any(c in prefix for c in "#+"):
        raise MqttError(f"--mqtt {url!r}: the topic prefix may not contain # or +")
    return {"tls": u.scheme == "mqtts", "host": u.hostname, "port": port,
            "user": unquote(u.username) if u.username else None,
            "password": unquote(u.password) if u.password else None, "prefix": prefix}


def _default_spool(client_id: str) -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "selfmis" / "mqtt-spool" / client_id


class MqttOutlet:
    """A gateway sink publishing to one broker (see the module doc)."""

    def __init__(self, url: str, ca: str | None = None, cert: str | None = None, key: str | None = None,
                 insecure: bool = False, spool: str | None = None, spool_max: int = 10000,
                 discovery: bool = True, discovery_prefix: str = "homeassistant", hr_every_s: float = 5.0,
                 model=None, connect_timeout_s: float = 5.0, queue_size: int = 10000,
                 password: str | None = None):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise MqttError("paho-mqtt is not installed: pip install 'selfmis-edge[mqtt]'") from None
        self.mqtt = mqtt
        self.cfg = parse_mqtt_url(url)
        if password and not self.cfg["password"]:  # from a file or the environment, not argv
            self.cfg["password"] = password
        self.prefix = self.cfg["prefix"]
        self.discovery, self.discovery_prefix = discovery, discovery_prefix
        self.hr_every_s = float(hr_every_s)
        self.model_name = getattr(getattr(model, "card", None), "name", "SelfMIS model")
        self.client_id = f"selfmis-{self.prefix.replace('/', '-')}"[:60]
        self.spool = Spool(spool or _default_spool(self.client_id), spool_max)
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.dropped_events = 0
        self.published = 0
        self._states: dict[str, dict] = {}
        self._changes = StateChanges()
        self._announced: set = set()
        self._kinds: dict[str, str] = {}
        self._closing = False
        self._outage_t: float | None = None   # monotonic time the broker went away (None: not away)
        self._back: float | None = None       # outage length, to log once the spool is delivered
        self._delivered_after_outage = 0
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._thread: threading.Thread | None = None

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{self.client_id}-{uuid.uuid4().hex[:6]}")
        if self.cfg["user"]:
            c.username_pw_set(self.cfg["user"], self.cfg["password"])
        if self.cfg["tls"]:
            ctx = ssl.create_default_context(cafile=ca)
            if cert:
                ctx.load_cert_chain(cert, key)
            if insecure:
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            c.tls_set_context(ctx)
        c.will_set(f"{self.prefix}/status", "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=10)
        c.on_connect, c.on_disconnect = self._on_connect, self._on_disconnect
        self.client = c
        where = f"{self.cfg['host']}:{self.cfg['port']}"
        try:
            c.connect_async(self.cfg["host"], self.cfg["port"], keepalive=30)
        except (OSError, ValueError) as exc:
            raise MqttError(f"MQTT broker {where}: {exc}") from None
        c.loop_start()
        t_end = time.monotonic() + connect_timeout_s
        while time.monotonic() < t_end and not self._connected.is_set() and self._refused is None:
            time.sleep(0.02)
        if self._refused is not None:
            c.loop_stop()
            c.disconnect()
            user = f" for user {self.cfg['user']!r}" if self.cfg["user"] else " (no user given)"
            raise MqttError(f"MQTT broker {where} refused the login{user}: {self._refused} "
                            "(check the user and password in --mqtt)")
        if not self._connected.is_set():
            log.warning("MQTT broker %s not reachable yet; decisions are kept in %s until it is",
                        where, self.spool.folder)

    @classmethod
    def from_config(cls, cfg: dict, model=None) -> "MqttOutlet":
        kw = {k: v for k, v in cfg.items() if v is not None and k != "url"}
        return cls(cfg["url"], model=model, **kw)

    # ---------------------------------------------------------------- paho callbacks (paho's thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            text = str(reason_code)
            if any(s in text.lower() for s in ("password", "authori", "not authorized", "bad user")):
                self._refused = text
                client.disconnect()
            else:
                log.warning("MQTT broker refused the connection: %s", text)
            return
        try:  # paho leaves Nagle on: a decision written right after a state message would wait for the
            # broker's delayed ACK (~40 ms on Linux; measured p50 47 ms decision-to-subscriber before this)
            client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except (AttributeError, OSError):
            pass
        client.publish(f"{self.prefix}/status", "online", qos=1, retain=True)
        self._announced.clear()  # re-announce (a broker restarted without persistence forgets retained)
        if self._outage_t is not None:  # said by the publisher once the spool is delivered
            self._back, self._outage_t, self._delivered_after_outage = time.monotonic() - self._outage_t, None, 0
        else:
            log.info("MQTT connected to %s:%d", self.cfg["host"], self.cfg["port"])
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        if self._connected.is_set() and not self._closing:
            log.warning("MQTT broker %s:%d went away (%s); spooling decisions until it is back",
                        self.cfg["host"], self.cfg["port"], reason_code)
            self._outage_t = time.monotonic()
        self._connected.clear()

    # ---------------------------------------------------------------- gateway sink (processing thread)

    def start(self, gateway) -> None:
        for d in gateway.devices:
            self._states[d.id] = self._new_state()
            self._kinds[d.id] = link_kind(d.spec.options)
        self._thread = threading.Thread(target=self._publisher, name="mqtt-publish", daemon=True)
        self._thread.start()

    def on_event(self, did: str, event: dict) -> None:
        kind = event.get("type")
        if kind not in ("decision", "link", "quality", "beat", "error", "summary"):
            return
        try:
            self.queue.put_nowait((did, event, time.time()))
        except queue.Full:  # the broker is slow and the queue is full: never block the pipeline
            self.dropped_events += 1

    def close(self) -> None:
        """Deliver what can be delivered within a few seconds, then say offline and disconnect."""
        t_end = time.monotonic() + 5.0
        while time.monotonic() < t_end and (not self.queue.empty() or (len(self.spool) and self._connected.is_set())):
            time.sleep(0.05)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self._closing = True  # our own disconnect below is no outage
        if self._connected.is_set():
            for did in self._states:
                self.client.publish(f"{self.prefix}/{did}/availability", "offline", qos=1, retain=True)
            self.client.publish(f"{self.prefix}/status", "offline", qos=1, retain=True).wait_for_publish(2.0)
        self.client.disconnect()
        self.client.loop_stop()
        if len(self.spool):
            log.warning("MQTT: %d decision(s) not delivered; kept in %s for the next start",
                        len(self.spool), self.spool.folder)
        self.spool.close()

    # ---------------------------------------------------------------- publisher thread

    def _pub(self, topic: str, payload, qos: int = 0, retain: bool = False):
        if not isinstance(payload, str):
            payload = to_json(payload)  # NaN-free JSON
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def _publisher(self) -> None:
        last_state = 0.0
        while not self._stop.is_set():
            try:
                did, e, t_wall = self.queue.get(timeout=0.05)
            except queue.Empty:
                did = None
            if did is not None:
                self._take(did, e, t_wall)
                while True:  # everything already queued, before publishing
                    try:
                        self._take(*self.queue.get_nowait())
                    except queue.Empty:
                        break
            if not self._connected.is_set():
                continue
            if self.discovery:
                for d in list(self._states):
                    if d not in self._announced:
                        self._announce(d)
            self._forward()
            if self._back is not None and not len(self.spool):
                log.warning("MQTT broker %s:%d back after %.0f s; %d spooled decision(s) delivered",
                            self.cfg["host"], self.cfg["port"], self._back, self._delivered_after_outage)
                self._back = None
            now = time.monotonic()
            if now - last_state >= self.hr_every_s:
                last_state = now
                for d in self._states:
                    self._publish_state(d)

    def _forward(self) -> None:
        """Publish the spooled decisions, oldest first, one PUBACK at a time (order survives reconnects)."""
        while len(self.spool) and self._connected.is_set() and not self._stop.is_set():
            m = self.spool.peek()
            try:
                info = self._pub(m["topic"], m["payload"], qos=1)
                info.wait_for_publish(timeout=3.0)
            except (RuntimeError, ValueError, OSError):  # not connected / queue full: retry later
                return
            if not info.is_published():
                return
            self.spool.ack(m)
            self.published += 1
            self._delivered_after_outage += 1

    def _take(self, did: str, e: dict, t_wall: float) -> None:
        st = self._states.get(did)
        if st is None:
            st = self._states[did] = self._new_state()
        kind = e["type"]
        st["t"] = e.get("t", st["t"])
        if kind == "beat":
            st["beats"] += 1
            if e.get("hr") is not None:
                st["hr"] = e["hr"]
            return
        if kind == "decision":
            st["decisions"] += 1
            st["mi_probability"] = (e.get("probabilities") or {}).get("MI")
            st["labels"] = e.get("labels", [])
            st["mi"] = any(is_mi_class(l) for l in st["labels"])  # MI or any of its subtypes
            change = self._changes.change(did, e)
            if change is None:  # the same alarms as the last beat: the periodic state message says it
                return
            st["since"] = e.get("t")
            payload = {k: v for k, v in e.items() if k != "type"}
            # seq: the spool's own, so it stays increasing across restarts of the gateway
            self.spool.append(f"{self.prefix}/{did}/decision",
                              to_json({**payload, **change, "seq": self.spool.seq, "emitted": round(t_wall, 4)}))
        elif kind == "link":
            new = {"connected": "connected", "reconnected": "connected", "reconnecting": "reconnecting",
                   "restarting": "reconnecting",
                   "disconnected": "reconnecting", "lost": "lost", "end": "ended"}.get(e.get("kind"))
            rate = {"rate_unverified": "checking", "rate_ok": "ok", "rate_locked": "ok",
                    "rate_mismatch": "mismatch"}.get(e.get("kind"))
            if new:
                st["link"] = new
            if rate:  # the time base is its own state: neither the link nor the signal quality
                st["rate"] = rate
            if self._connected.is_set():
                self._pub(f"{self.prefix}/{did}/link", e)
                if new in ("connected", "lost", "ended"):
                    self._pub(f"{self.prefix}/{did}/availability", "online" if new == "connected" else "offline",
                              qos=1, retain=True)
        elif kind == "quality":
            reasons = list(e.get("reasons") or [])
            if not ("declared_hz" in e or "measured_hz" in e or any(r.startswith("rate_") for r in reasons)):
                st["quality"] = "ok" if e.get("ok") else ",".join(reasons)  # the signal's, never the rate's
            if self._connected.is_set():
                self._pub(f"{self.prefix}/{did}/quality", e)
        elif kind == "error":
            st["link"] = "lost"
        elif kind == "summary":
            return
        if self._connected.is_set():
            self._publish_state(did)

    @staticmethod
    def _new_state() -> dict:
        return {"hr": None, "mi": None, "mi_probability": None, "labels": [], "since": None, "link": "starting",
                "quality": None, "rate": None, "t": 0.0, "beats": 0, "decisions": 0}

    def _publish_state(self, did: str) -> None:
        self._pub(f"{self.prefix}/{did}/state", self._states[did], qos=0, retain=True)

    #: the link sensor's icon per kind of link (Material Design Icons names, as Home Assistant uses)
    LINK_ICONS = {"serial": "mdi:serial-port", "ascii": "mdi:serial-port", "tcp": "mdi:lan-connect",
                  "ble": "mdi:bluetooth-connect", "replay": "mdi:file-chart", "simulate": "mdi:flask-outline"}

    def discovery_messages(self, did: str) -> list:
        """``(topic, payload)`` of Home Assistant MQTT discovery for one device: four entities of one
        device, with only the keys Home Assistant documents (see the module doc)."""
        base = f"{self.prefix}/{did}"
        uid = f"selfmis_{did}".replace("-", "_")
        device = {"identifiers": [uid], "name": f"SelfMIS {did}", "manufacturer": "SelfMIS Edge",
                  "model": self.model_name, "sw_version": __version__}
        common = {"state_topic": f"{base}/state", "device": device,
                  "origin": {"name": "SelfMIS Edge", "sw_version": __version__},
                  "availability": [{"topic": f"{self.prefix}/status"}, {"topic": f"{base}/availability"}],
                  "availability_mode": "all"}
        icon = self.LINK_ICONS.get(self._kinds.get(did, ""), "mdi:connection")
        entities = [
            ("sensor", "heart_rate", {"name": "Heart rate", "unit_of_measurement": "bpm",
                                      "state_class": "measurement", "icon": "mdi:heart-pulse",
                                      "value_template": "{{ value_json.hr }}"}),
            ("binary_sensor", "mi", {"name": "MI detected", "device_class": "problem",
                                     "value_template": "{{ 'ON' if value_json.mi else 'OFF' }}"}),
            ("sensor", "mi_probability", {"name": "MI probability", "state_class": "measurement",
                                          "icon": "mdi:heart-flash",
                                          "value_template": "{{ value_json.mi_probability }}"}),
            ("sensor", "link", {"name": "Link", "icon": icon, "value_template": "{{ value_json.link }}"}),
        ]
        return [(f"{self.discovery_prefix}/{comp}/{uid}/{obj}/config",
                 {**common, **cfg, "unique_id": f"{uid}_{obj}", "default_entity_id": f"{comp}.{uid}_{obj}"})
                for comp, obj, cfg in entities]

    def _announce(self, did: str) -> None:
        """Home Assistant MQTT discovery, retained."""
        for topic, payload in self.discovery_messages(did):
            self._pub(topic, payload, qos=1, retain=True)
        self._announced.add(did)
