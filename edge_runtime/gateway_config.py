"""``gateway.json``: several wearables, and the outlets, for one ``edge-run`` process.

Standard library only (``edge-run`` reads it before it imports numpy). Example::

    {
      "format": "selfmis-gateway-config", "format_version": 1,
      "model": null,                      # bundle folder; null = the shipped model
      "decision_beats": 8, "every_k_beats": 1,
      "record_root": "runs",             # optional: each device records to runs/<id>/
      "devices": [
        {"id": "bed-1",   "port": "/dev/ttyUSB0", "baud": 115200},
        {"id": "strap-2", "ble": "AA:BB:CC:DD:EE:FF"},
        {"id": "lab",     "port": "socket://127.0.0.1:7000", "record": "runs/lab-today"},
        {"id": "demo",    "simulate": "core/sample_data/ptbxl/records500/00000/00271_hr", "speed": 1}
      ],
      "serve": {"bind": "127.0.0.1:8080", "token": null, "insecure": false},  # or "token_file": "..."
      "mqtt": {"url": "mqtt://user:pass@127.0.0.1:1883/selfmis", "ca": null, "cert": null, "key": null,
               "spool": "/var/lib/selfmis/mqtt-spool", "spool_max": 10000, "discovery": true},
               # the password may instead be in "password_file" (or $SELFMIS_MQTT_PASSWORD)
      "lsl": false
    }

(``#`` comments are for this docstring only; JSON has none.) Each device has an
``id`` (letters, digits, ``-`` and ``_``, at most 64: it is used in MQTT topics,
URLs and file names) and exactly one source key: ``port`` (serial device or
pyserial URL such as ``socket://host:port``), ``ble``, ``replay`` or
``simulate``. Per-device options: ``baud``, ``ascii``, ``fs``, ``uv_per_lsb``,
``lead``, ``retries``, ``connect_timeout``, ``fast``, ``speed``, ``record``,
``loop`` (a ``simulate`` device starts again at the record's end; default true when
the config has ``serve``, ``mqtt`` or ``lsl``, as ``--loop``),
``wait_for_device`` (seconds to wait for an absent port, as ``--wait-for-device``),
``restart`` (default true: a device lost after its ``retries`` is restarted with
capped exponential backoff, as long as the gateway runs; false: it stays
stopped, as ``--no-restart``) and ``restart_cap_s`` (the longest wait between
restarts, default 60); ``restart`` and ``restart_cap_s`` may also be given at
the top level for every device.
Relative paths are relative to the config file. Every error names the file and
the JSON path of the offending value (``gateway.json: devices[2].baud: ...``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from selfmis.limits import FS_MAX_HZ, FS_MIN_HZ, UV_PER_LSB_RANGE
from selfmis.runtime_config import parse_config_json

from .gateway_args import GATEWAY_FORMAT, is_gateway_config

__all__ = ["GATEWAY_FORMAT", "GatewayConfigError", "load_gateway_config", "validate_gateway_config",
           "is_gateway_config", "device_id_ok", "SOURCE_KEYS"]

GATEWAY_VERSION = 1
SOURCE_KEYS = ("port", "ble", "replay", "simulate")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

# key -> (accepted types, check or None); bool is kept apart from int on purpose
_NUM = (int, float)
_DEVICE_KEYS = {
    "id": (str, None), "port": (str, None), "ble": (str, None), "replay": (str, None),
    "simulate": (str, None), "baud": (int, lambda v: v > 0), "ascii": (bool, None),
    "fs": (_NUM, lambda v: FS_MIN_HZ <= v <= FS_MAX_HZ),
    "uv_per_lsb": (_NUM, lambda v: UV_PER_LSB_RANGE[0] <= v <= UV_PER_LSB_RANGE[1]), "lead": (str, None),
    "retries": (int, lambda v: v >= 0), "connect_timeout": (_NUM, lambda v: v > 0),
    "fast": (bool, None), "speed": (_NUM, lambda v: v > 0), "record": (str, None),
    "wait_for_device": (_NUM, lambda v: v > 0), "restart": (bool, None), "loop": (bool, None),
    "restart_cap_s": (_NUM, lambda v: v > 0),
}
_TOP_KEYS = {
    "format": (str, None), "format_version": (int, None), "model": ((str, type(None)), None),
    "threads": (int, lambda v: v >= 1), "decision_beats": (int, lambda v: v >= 1),
    "every_k_beats": (int, lambda v: v >= 1), "record_root": (str, None), "devices": (list, None),
    "serve": ((dict, str, type(None)), None), "mqtt": ((dict, str, type(None)), None),
    "lsl": (bool, None), "max_seconds": (_NUM, lambda v: v > 0), "restart": (bool, None),
    "restart_cap_s": (_NUM, lambda v: v > 0),
}
_SERVE_KEYS = {"bind": (str, None), "token": ((str, type(None)), None),
               "token_file": ((str, type(None)), None), "insecure": (bool, None)}
_MQTT_KEYS = {"url": (str, None), "ca": ((str, type(None)), None), "cert": ((str, type(None)), None),
              "key": ((str, type(None)), None), "insecure": (bool, None),
              "password_file": ((str, type(None)), None),
              "spool": ((str, type(None)), None), "spool_max": (int, lambda v: v >= 1),
              "discovery": (bool, None), "discovery_prefix": (str, None),
              "hr_every_s": (_NUM, lambda v: v > 0)}


class GatewayConfigError(ValueError):
    """A gateway config that cannot be used; the message names the file and the JSON path."""


def device_id_ok(s: str) -> bool:
    return bool(_ID.match(s))


def _type_name(t) -> str:
    ts = t if isinstance(t, tuple) else (t,)
    names = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
             dict: "an object", type(None): "null"}
    return " or ".join(dict.fromkeys(names[x] for x in ts))


def _outlet_section(cfg: dict, name: str, main_key: str, spec: dict, form: str, err):
    """An outlet section (``serve``, ``mqtt``): a string is shorthand for its main key; keys are checked
    and the main key is required. None when the section is absent."""
    section = cfg.get(name)
    if isinstance(section, str):
        section = {main_key: section}
    if section is None:
        return None
    _check(section, spec, f"{name}.", err)
    if main_key not in section:
        err(f"{name}.{main_key}: missing ({form})")
    return section


def _check(obj: dict, spec: dict, where: str, err) -> None:
    for key, value in obj.items():
        if key not in spec:
            err(f"{where}{key}: unknown key (known: {', '.join(sorted(spec))})")
        types, ok = spec[key]
        tt = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in tt:  # JSON true is not the integer 1 here
            err(f"{where}{key}: expected {_type_name(types)}, got {json.dumps(value)}")
        if not isinstance(value, tt):
            err(f"{where}{key}: expected {_type_name(types)}, got {json.dumps(value)[:60]}")
        if ok is not None and value is not None and not ok(value):
            err(f"{where}{key}: value {json.dumps(value)} is out of range")


def validate_gateway_config(cfg, name: str = "gateway.json", base: Path | None = None) -> dict:
    """Check ``cfg`` (parsed JSON) and return it normalised: paths resolved against ``base``,
    ``serve``/``mqtt`` given as strings turned into objects. Raises :class:`GatewayConfigError`."""
    def err(msg):
        raise GatewayConfigError(f"{name}: {msg}")

    if not isinstance(cfg, dict):
        err("the top level must be a JSON object")
    if cfg.get("format", GATEWAY_FORMAT) != GATEWAY_FORMAT:
        err(f"format: expected {GATEWAY_FORMAT!r}, got {cfg.get('format')!r}")
    _check(cfg, _TOP_KEYS, "", err)
    if int(cfg.get("format_version", 1)) > GATEWAY_VERSION:
        err(f"format_version {cfg['format_version']} is newer than this runtime ({GATEWAY_VERSION})")
    devices = cfg.get("devices")
    if not devices:
        err("devices: give at least one device")
    base = Path(base) if base is not None else Path.cwd()

    def path(p):
        return p if "://" in p else str((base / p).resolve())

    out = {k: v for k, v in cfg.items() if k != "devices"}
    out["devices"], seen = [], {}
    for i, dev in enumerate(devices):
        where = f"devices[{i}]."
        if not isinstance(dev, dict):
            err(f"devices[{i}]: expected an object, got {json.dumps(dev)[:60]}")
        _check(dev, _DEVICE_KEYS, where, err)
        if "id" not in dev:
            err(f"{where}id: missing (every device needs an id)")
        if not device_id_ok(dev["id"]):
            err(f"{where}id: {dev['id']!r} is not a valid id (letters, digits, - and _, at most 64, "
                "starting with a letter or digit)")
        if dev["id"] in seen:
            err(f"{where}id: {dev['id']!r} is already used by devices[{seen[dev['id']]}]")
        seen[dev["id"]] = i
        given = [k for k in SOURCE_KEYS if k in dev]
        if len(given) != 1:
            err(f"devices[{i}] ({dev['id']}): give exactly one of {', '.join(SOURCE_KEYS)}"
                + (f" (got {', '.join(given)})" if given else ""))
        d = dict(dev)
        for k in ("replay", "simulate", "record"):
            if k in d:
                d[k] = path(d[k])
        if d.get("port") and not d["port"].startswith("/") and "://" not in d["port"] \
                and not d["port"].upper().startswith("COM"):
            d["port"] = path(d["port"])
        if "record" not in d and cfg.get("record_root"):
            d["record"] = str((base / cfg["record_root"] / d["id"]).resolve())
        out["devices"].append(d)
    if out.get("model"):
        out["model"] = path(out["model"])
    serve = _outlet_section(cfg, "serve", "bind", _SERVE_KEYS, "HOST:PORT", err)
    if serve is not None:
        out["serve"] = dict(serve)
        if serve.get("token_file"):
            out["serve"]["token_file"] = path(serve["token_file"])
    mqtt = _outlet_section(cfg, "mqtt", "url", _MQTT_KEYS, "mqtt://[user:pass@]host:port/prefix", err)
    if mqtt is not None:
        if not re.match(r"^mqtts?://", mqtt["url"]):
            err(f"mqtt.url: {mqtt['url']!r} must start with mqtt:// or mqtts://")
        mqtt = dict(mqtt)
        for k in ("ca", "cert", "key", "spool", "password_file"):
            if mqtt.get(k):
                mqtt[k] = path(mqtt[k])
        out["mqtt"] = mqtt
    return out


def load_gateway_config(path) -> dict:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GatewayConfigError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    cfg = parse_config_json(text, str(path), GatewayConfigError)  # size and depth capped (no RecursionError)
    return validate_gateway_config(cfg, str(path), path.resolve().parent)
