"""``edge-run`` in gateway mode: several devices, the web view and the outlets (see :mod:`.gateway`).

Reached from :func:`.cli.main` when :func:`.gateway_args.wanted` says so. The
per-source options of ``edge-run`` (``--baud``, ``--fs``, ``--fast``, ...) apply
to every device given on the command line; ``gateway.json`` sets them per device.
Exit codes as ``edge-run`` (0, 2 usage, 3 model, 4 source not found, 5 lost) plus
6 (:data:`~.gateway_config.EXIT_OUTLET`): an outlet could not start.
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import signal
import sys
import threading
from pathlib import Path

from selfmis.bundle import BundleError
from selfmis.runtime_config import ConfigError, cli_defaults, load_runtime_config

from .gateway import Device, DeviceSpec, Gateway
from .gateway_args import split_sources
from .gateway_config import EXIT_OUTLET, GatewayConfigError, device_id_ok, is_gateway_config, load_gateway_config
from .output import JsonlWriter
from .pipeline import Pipeline
from .recording import Recorder, RecordingError

__all__ = ["main", "derive_id", "parse_bind", "OutletError"]

log = logging.getLogger("selfmis.edge_runtime")

_SHARED = ("baud", "ascii", "fs", "uv_per_lsb", "retries", "connect_timeout", "fast", "speed", "lead",
           "wait_for_device", "loop")


class OutletError(RuntimeError):
    """An outlet that cannot start (login refused, port in use); ``edge-run`` exits 6."""


def derive_id(kind: str, value: str, taken: set) -> str:
    """A readable, valid, unique id from a source: ``ttyUSB0``, ``pts-1``, ``00271_hr``, ``127-0-0-1-7000``
    (a bare number, as in ``/dev/pts/1``, keeps its folder: "1" would name nothing)."""
    base = value.rstrip("/").split("://", 1)[-1]
    if kind != "ble" and "/" in base:
        p = Path(base)
        base = f"{p.parent.name}-{p.name}" if p.name.isdigit() and p.parent.name else p.name
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-_")[:56] or kind
    if not base[0].isalnum():
        base = f"{kind}-{base}"
    cand, n = base, 2
    while cand in taken:
        cand, n = f"{base}-{n}", n + 1
    return cand


def parse_bind(text: str):
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); default host 127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port_n = int(port)
    except ValueError:
        raise ValueError(f"--serve {text!r}: expected HOST:PORT") from None
    if not 0 <= port_n <= 65535:
        raise ValueError(f"--serve {text!r}: port out of range")
    return host, port_n


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _device_specs(args, cfg, cli_sources, cli_ids, parser):
    specs, taken = [], set()
    for d in (cfg or {}).get("devices", []):
        specs.append(DeviceSpec(d["id"], {k: v for k, v in d.items() if k != "id"}))
        taken.add(d["id"])
    if len(cli_ids) > len(cli_sources):
        raise ValueError(f"{len(cli_ids)} --device-id for {len(cli_sources)} source option(s)")
    shared = {k: getattr(args, k) for k in _SHARED if getattr(args, k, None) not in (None, False)}
    new = []
    for i, (kind, value) in enumerate(cli_sources):
        did = cli_ids[i] if i < len(cli_ids) else derive_id(kind, value, taken)
        if not device_id_ok(did):
            raise ValueError(f"--device-id {did!r}: letters, digits, - and _ only (at most 64)")
        if did in taken:
            raise ValueError(f"device id {did!r} is used twice")
        taken.add(did)
        new.append(DeviceSpec(did, {**shared, kind: value}))
    if args.record:
        for s in new:  # one device: --record DIR as before; several: DIR/<id>
            s.options["record"] = args.record if len(new) + len(specs) == 1 else os.path.join(args.record, s.id)
    return specs + new


def _source_namespace(options: dict, defaults: argparse.Namespace) -> argparse.Namespace:
    ns = argparse.Namespace(**vars(defaults))
    for k in ("port", "ble", "replay", "simulate"):
        setattr(ns, k, None)
    ns.ascii, ns.fast = False, False
    for k, v in options.items():
        setattr(ns, k, v)
    return ns


def _make_source(cli, ns, lead: str):
    """``edge-run``'s source for these options. A serial/TCP read returns as soon as bytes arrive;
    its timeout only sets how often an idle reader wakes to check for stop(): with N devices,
    N x 50 empty wake-ups a second cost more CPU than their pipelines, so 0.2 s here."""
    source = cli.make_source(ns, lead)
    if getattr(source, "read_timeout_s", None) is not None:
        source.read_timeout_s = max(source.read_timeout_s, 0.2)
    return source


def _outlets(args, cfg, model):
    """The sinks the options ask for; raises OutletError / ValueError."""
    sinks = []
    serve = (cfg or {}).get("serve")
    if args.serve:
        serve = {"bind": args.serve, "token": args.serve_token, "insecure": args.serve_insecure}
    if serve:
        host, port = parse_bind(serve["bind"])
        token = serve.get("token")
        if not is_loopback(host) and not token and not serve.get("insecure"):
            raise ValueError(f"--serve {serve['bind']}: binding a non-loopback address needs --serve-token "
                             "TOKEN (viewers open ...?token=TOKEN) or an explicit --serve-insecure")
        from .serve import WebView  # only now: edge-run without --serve imports none of the server
        try:
            sinks.append(WebView(host, port, token=token))
        except OSError as exc:
            raise OutletError(f"--serve {host}:{port}: cannot listen ({exc.strerror or exc})") from None
    mqtt = (cfg or {}).get("mqtt")
    if args.mqtt:
        mqtt = {"url": args.mqtt, "ca": args.mqtt_ca, "cert": args.mqtt_cert, "key": args.mqtt_key,
                "spool": args.mqtt_spool}
    if mqtt:
        from .outlets.mqtt import MqttError, MqttOutlet
        try:
            sinks.append(MqttOutlet.from_config(mqtt, model=model))
        except MqttError as exc:
            raise OutletError(str(exc)) from None
    if args.lsl or (cfg or {}).get("lsl"):
        from .outlets.lsl import LslOutlet
        try:
            sinks.append(LslOutlet())
        except ImportError as exc:
            raise OutletError(str(exc)) from None
    return sinks


def main(argv, cli) -> int:
    """``cli`` is :mod:`.cli` itself, handed over by its ``main`` (parser, model loading, sources,
    exit codes are defined there once; taking it as an argument keeps the imports one-way)."""
    argv = list(argv)
    cli_sources, cli_ids, rest = split_sources(argv)
    parser = cli.build_parser()
    try:
        args = parser.parse_args(rest)
    except SystemExit as exc:
        return int(exc.code or 0)
    cfg = None
    if args.config:
        try:
            if is_gateway_config(args.config):
                cfg = load_gateway_config(args.config)
            else:  # a runtime.json from `selfmis deploy`: bundle, lead, one source
                try:
                    d = cli_defaults(load_runtime_config(args.config), include_source=not cli_sources)
                except ConfigError as exc:
                    raise GatewayConfigError(str(exc)) from None
                for k in ("port", "ble", "replay", "simulate"):
                    if d.get(k) is not None:
                        cli_sources.append((k, d.pop(k)))
                parser.set_defaults(**d)
                args = parser.parse_args(rest)
        except GatewayConfigError as exc:
            print(f"edge-run: {exc}", file=sys.stderr)
            return cli.EXIT_USAGE
    cli._setup_logging(args.quiet, args.verbose)
    if cfg:
        for k in ("decision_beats", "every_k_beats", "threads", "max_seconds"):
            if k in cfg and getattr(args, k) == parser.get_default(k):
                setattr(args, k, cfg[k])
        if cfg.get("model") and not args.model:
            args.model = cfg["model"]
    if args.loop is None:  # a simulated device feeding an outlet is a demo: it keeps running
        args.loop = bool(args.serve or args.mqtt or args.lsl
                         or any((cfg or {}).get(k) for k in ("serve", "mqtt", "lsl")))
    try:
        specs = _device_specs(args, cfg, cli_sources, cli_ids, parser)
    except ValueError as exc:
        return cli._usage(parser, str(exc))
    if not specs:
        return cli._usage(parser, "give a source (--port, --ble, --replay, --simulate) or --config gateway.json")
    for s in specs:
        if s.options.get("ascii") and "port" not in s.options:
            return cli._usage(parser, f"device {s.id}: ascii applies to a serial port only")
        if s.options.get("fast") and not ("replay" in s.options or "simulate" in s.options):
            return cli._usage(parser, f"device {s.id}: fast applies to replay and simulate only")
    if args.restart_cap <= 0:
        return cli._usage(parser, "--restart-cap must be > 0 seconds")
    if args.every_k_beats < 1 or args.threads < 1 or args.decision_beats < 1:
        return cli._usage(parser, "--every-k-beats, --threads and --decision-beats must be >= 1")
    if (args.persist_s or 0) < 0 or (args.hysteresis or 0) < 0 or (args.persist_beats is not None
                                                                    and args.persist_beats < 1):
        return cli._usage(parser, "--persist-s and --hysteresis must be >= 0, --persist-beats >= 1")

    try:
        model = cli.load_model(args.model, args.threads)
    except (BundleError, OSError) as exc:
        log.error("model: %s", exc)
        return cli.EXIT_MODEL
    try:
        decision = cli.decision_options(args, model.card)
    except BundleError as exc:
        log.error("--operating-point: %s", exc)
        return cli.EXIT_USAGE
    fast = all(s.options.get("fast") for s in specs)
    out = JsonlWriter(sys.stdout, quiet=args.quiet, flush=not fast)
    devices = []

    def close_all():
        for d in devices:
            d.source.close()
            if d.recorder is not None:
                d.recorder.close()

    for s in specs:
        ns = _source_namespace(s.options, args)
        lead = ns.lead or model.card.lead or "I"
        try:
            source = _make_source(cli, ns, lead)
        except Exception as exc:  # SourceNotFound and friends: name the device
            log.error("device %s: %s", s.id, exc)
            close_all()
            return cli.EXIT_SOURCE
        recorder = None
        if s.options.get("record"):
            try:
                recorder = Recorder(s.options["record"], {**source.describe(), "device": s.id,
                                                          "model": model.card.name, "argv": sys.argv[1:]})
            except (RecordingError, OSError) as exc:
                log.error("device %s: record: %s", s.id, exc)
                source.close()
                close_all()
                return cli.EXIT_USAGE
        pipe = Pipeline(model, every_k_beats=args.every_k_beats, n_beats=args.decision_beats,
                        decision_kwargs=decision)
        restart = s.options.get("restart", (cfg or {}).get("restart", True)) and not args.no_restart
        cap = s.options.get("restart_cap_s", (cfg or {}).get("restart_cap_s", args.restart_cap))
        devices.append(Device(s, source, pipe, recorder, restart=restart, restart_cap_s=cap))
    try:
        sinks = _outlets(args, cfg, model)
    except ValueError as exc:
        close_all()
        return cli._usage(parser, str(exc))
    except OutletError as exc:
        log.error("%s", exc)
        close_all()
        return EXIT_OUTLET
    gw = Gateway(devices, out, sinks, model=model, max_seconds=args.max_seconds)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: gw.stop())
    log.info("gateway: %d device(s) (%s), model %s%s", len(devices), ", ".join(d.id for d in devices),
             model.card.name, "".join(f", {type(s).__name__}" for s in sinks))
    return gw.run()
