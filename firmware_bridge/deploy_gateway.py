"""``selfmis deploy gateway-config``: write the ``gateway.json`` of a multi-device install.

A gateway with several wearables (and a web view, MQTT, LSL) is configured by one
``gateway.json`` (format and checks: :mod:`selfmis.edge_runtime.gateway_config`).
This writes it from command-line device specs, checked by the **same validator**
``edge-run`` uses, so a file that this writes is a file ``edge-run --config``
accepts; ``selfmis deploy bundle --gateway gateway.json`` ships it in a release
(its ``model`` then points at the release's own bundle), and ``selfmis deploy
systemd-unit --gateway`` starts ``edge-run --config ROOT/current/gateway.json``.

Device spec: ``ID=SOURCE[,KEY=VALUE...]`` where ``SOURCE`` is a serial port or
pyserial URL (``/dev/ttyUSB0``, ``socket://10.0.0.7:7000``), ``ble:ADDRESS``,
``replay:PATH`` or ``simulate:PATH``, and the keys are the per-device options of
gateway.json (``baud``, ``ascii``, ``fs``, ``lead``, ``retries``, ``restart``,
``record``, ...); values are read as JSON when they parse (``230400``, ``true``)
and as text otherwise.

Paths (``replay:``/``simulate:`` records, ``record``, ``--record-root``, ``--model``,
``--mqtt-ca``, ``--mqtt-spool``) are read as every command-line path is, relative
to the working directory, and written so that they resolve from the written
file, as ``edge-run --config`` reads them: relative to its folder when they lie
inside it (the pair moves together), absolute otherwise. The file is then
loaded back with ``edge-run``'s own loader and every path compared with the one
meant; a record that does not exist on this machine is warned about (the config
may be for another one). Example::

    selfmis deploy gateway-config -o gateway.json \\
        --device bed1=/dev/ttyUSB0 --device bed2=socket://10.0.0.7:7000,retries=10 \\
        --device strap=ble:AA:BB:CC:DD:EE:FF --record-root runs \\
        --serve 0.0.0.0:8080 --serve-token "$TOKEN" --mqtt mqtts://gw:pw@broker:8883/ward3
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from selfmis.edge_runtime.gateway_args import is_loopback, parse_bind
from selfmis.edge_runtime.gateway_config import (GATEWAY_FORMAT, GatewayConfigError, SOURCE_KEYS,
                                                 load_gateway_config, validate_gateway_config)

log = logging.getLogger("selfmis.firmware_bridge.deploy")

__all__ = ["parse_device_spec", "build_gateway_config", "write_gateway_config", "GATEWAY_CONFIG_NAME",
           "add_arguments", "from_args"]

#: the name of the gateway config inside a release (next to runtime.json)
GATEWAY_CONFIG_NAME = "gateway.json"

_PREFIXED = ("ble", "replay", "simulate")


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_device_spec(spec: str) -> dict:
    """``ID=SOURCE[,KEY=VALUE...]`` -> a gateway.json device object (see the module doc)."""
    did, eq, rest = spec.partition("=")
    if not eq or not did or not rest:
        raise GatewayConfigError(f"--device {spec!r}: expected ID=SOURCE[,KEY=VALUE...], "
                                 "e.g. bed1=/dev/ttyUSB0 or strap=ble:AA:BB:CC:DD:EE:FF")
    source, *options = rest.split(",")
    kind, colon, value = source.partition(":")
    dev = {"id": did}
    if colon and kind in _PREFIXED:
        dev[kind] = value
    else:  # a port: a path, COM3, or a pyserial URL (socket://, rfc2217://)
        dev["port"] = source
    for opt in options:
        k, eq, v = opt.partition("=")
        if not eq or not k:
            raise GatewayConfigError(f"--device {spec!r}: option {opt!r} is not KEY=VALUE")
        if k in SOURCE_KEYS or k == "id":
            raise GatewayConfigError(f"--device {spec!r}: {k} is given by ID=SOURCE")
        dev[k] = _value(v)
    return dev


def build_gateway_config(devices, serve=None, serve_token=None, serve_insecure=False, mqtt=None,
                         mqtt_ca=None, mqtt_spool=None, lsl=False, record_root=None, model=None,
                         restart=None, restart_cap_s=None, name: str = GATEWAY_CONFIG_NAME,
                         base=None) -> dict:
    """A gateway.json object from device specs (strings or dicts) and outlet options, checked by
    :func:`~selfmis.edge_runtime.gateway_config.validate_gateway_config`; raises GatewayConfigError."""
    cfg = {"format": GATEWAY_FORMAT, "format_version": 1, "model": model,
           "devices": [parse_device_spec(d) if isinstance(d, str) else dict(d) for d in devices]}
    if record_root:
        cfg["record_root"] = record_root
    if restart is not None:
        cfg["restart"] = bool(restart)
    if restart_cap_s is not None:
        cfg["restart_cap_s"] = restart_cap_s
    if serve:
        cfg["serve"] = {"bind": serve, "token": serve_token, "insecure": bool(serve_insecure)}
    if mqtt:
        cfg["mqtt"] = {"url": mqtt, "ca": mqtt_ca, "spool": mqtt_spool}
    if lsl:
        cfg["lsl"] = True
    validate_gateway_config(cfg, name, base)  # the checks edge-run makes; paths are not resolved in cfg
    if serve:  # edge-run's start-up rules for the web view, checked now rather than on the gateway
        try:
            host, _ = parse_bind(serve)
        except ValueError as exc:
            raise GatewayConfigError(f"{name}: serve.bind: {exc}") from None
        if not is_loopback(host) and not serve_token and not serve_insecure:
            raise GatewayConfigError(f"{name}: serve.bind {serve!r} is not loopback: give --serve-token "
                                     "(or --serve-insecure), or edge-run will refuse to start")
    return cfg


def write_gateway_config(cfg: dict, path) -> Path:
    """Write ``cfg`` atomically (a half-written config must never be what the service reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def add_arguments(p) -> None:
    """The ``gateway-config`` subcommand's options."""
    p.add_argument("-o", "--output", required=True, help="gateway.json to write")
    p.add_argument("--device", action="append", required=True, metavar="ID=SOURCE[,KEY=VALUE...]",
                   help="a wearable (repeatable): ID=/dev/ttyUSB0, ID=socket://HOST:PORT, ID=ble:ADDRESS, "
                        "ID=replay:PATH or ID=simulate:PATH, then per-device options such as ,baud=230400")
    p.add_argument("--model", help="bundle folder (default: the one in the release, or the shipped model)")
    p.add_argument("--record-root", metavar="DIR", help="record every device to DIR/<id>/")
    p.add_argument("--no-restart", action="store_true",
                   help="a device lost after its retries stays stopped (default: restarted with backoff)")
    p.add_argument("--restart-cap", type=float, metavar="S", help="longest wait between restarts (default 60)")
    p.add_argument("--serve", metavar="HOST:PORT", help="the live web view")
    p.add_argument("--serve-token", metavar="TOKEN")
    p.add_argument("--serve-insecure", action="store_true")
    p.add_argument("--mqtt", metavar="URL", help="mqtt[s]://[user:pass@]host:port/prefix")
    p.add_argument("--mqtt-ca", metavar="PEM")
    p.add_argument("--mqtt-spool", metavar="DIR")
    p.add_argument("--lsl", action="store_true")


_DEVICE_PATHS = ("replay", "simulate", "record")


def _is_local_path(key: str, value: str) -> bool:
    if "://" in value:
        return False
    if key == "port":  # a relative port path (rare): COM3 and URLs are names, not paths
        return not value.startswith("/") and not value.upper().startswith("COM")
    return True


def anchor_path(path: str, folder: Path) -> str:
    """``path`` (relative to the working directory) as written in a file in ``folder``: relative to
    ``folder`` when it lies inside it, absolute otherwise."""
    a = Path(os.path.abspath(path))
    try:
        return a.relative_to(folder).as_posix() or "."
    except ValueError:
        return str(a)


def _anchored(args, folder: Path) -> tuple:
    """The device specs and path options of ``args`` with every path anchored for ``folder``, and
    ``{json path: absolute path meant}`` to check the written file against."""
    meant, devices = {}, []
    for i, spec in enumerate(args.device):
        d = parse_device_spec(spec)
        for k in _DEVICE_PATHS + ("port",):
            if isinstance(d.get(k), str) and _is_local_path(k, d[k]):
                meant[f"devices[{i}].{k}"] = os.path.abspath(d[k])
                d[k] = anchor_path(d[k], folder)
        devices.append(d)
    paths = {}
    for k in ("record_root", "model", "mqtt_ca", "mqtt_spool"):
        v = getattr(args, k)
        if v:
            paths[k] = anchor_path(v, folder)
            meant[{"mqtt_ca": "mqtt.ca", "mqtt_spool": "mqtt.spool"}.get(k, k)] = os.path.abspath(v)
    return devices, paths, meant


def _check_written(out: Path, meant: dict) -> list:
    """Load ``out`` as ``edge-run --config`` does; every path must resolve to the one meant. Returns
    warnings for records this machine does not have."""
    loaded = load_gateway_config(out)
    warnings = []
    checks = []
    for where, want in meant.items():
        if where.startswith("devices["):
            i, key = int(where[8:where.index("]")]), where.rsplit(".", 1)[1]
            checks.append((where, loaded["devices"][i][key], want))
        elif where == "record_root":  # each device without its own record: ROOT/<id>
            checks += [(f"record_root ({d['id']})", d["record"], os.path.join(want, d["id"]))
                       for i, d in enumerate(loaded["devices"]) if f"devices[{i}].record" not in meant]
        elif where.startswith("mqtt."):
            checks.append((where, loaded["mqtt"][where[5:]], want))
        else:
            checks.append((where, loaded[where], want))
    for where, got, want in checks:
        if Path(got).resolve() != Path(want).resolve():
            raise GatewayConfigError(f"{out}: {where} would be read as {got}, not {want}")
    for where, want in meant.items():
        key = where.rsplit(".", 1)[-1]
        if key in ("replay", "simulate") and not any(os.path.exists(want + ext) for ext in ("", ".hea", ".dat")):
            warnings.append(f"{where}: {want} does not exist on this machine (edge-run here would exit 4)")
    return warnings


def from_args(args) -> dict:
    """Write the file the ``gateway-config`` arguments describe, load it back as ``edge-run`` would and
    check every path; returns what the command prints."""
    out = Path(args.output)
    folder = Path(os.path.abspath(out)).parent
    devices, paths, meant = _anchored(args, folder)
    cfg = build_gateway_config(devices, serve=args.serve, serve_token=args.serve_token,
                               serve_insecure=args.serve_insecure, mqtt=args.mqtt, mqtt_ca=paths.get("mqtt_ca"),
                               mqtt_spool=paths.get("mqtt_spool"), lsl=args.lsl, record_root=paths.get("record_root"),
                               model=paths.get("model"), restart=False if args.no_restart else None,
                               restart_cap_s=args.restart_cap, name=str(out), base=folder)
    write_gateway_config(cfg, out)
    try:
        warnings = _check_written(out, meant)
    except GatewayConfigError:
        out.unlink()  # never leave a file edge-run would misread
        raise
    for w in warnings:
        log.warning("%s", w)
    return {"gateway_config": str(out), "devices": [d["id"] for d in cfg["devices"]],
            "outlets": [k for k in ("serve", "mqtt", "lsl") if cfg.get(k)], "warnings": warnings}
