"""From ``edge-run``'s parsed options to one running :class:`~.gateway.Gateway`: one device or many.

``edge-run --replay REC`` and ``edge-run --config gateway.json --serve :8080`` take
the same path: :func:`device_specs` turns the options into devices,
:func:`check_options` validates them once, :func:`run` loads the model, builds
every device (source, pipeline, recorder) and outlet, and runs them through one
:class:`~.gateway.Gateway`. Every failure is a :class:`~selfmis.exit_codes.CodedError`
(or a source error, which carries its code too): the exit status is decided where
the fault is understood.

The *gateway format* (several devices, ``--device-id``, an outlet, a gateway.json;
:func:`.gateway_args.wanted`) tags every JSON line with ``"device"`` and restarts a
device lost after its retries; one plain device keeps ``edge-run``'s historical
output, line for line, and exits 5 when its device is lost.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

from selfmis.bundle import BundleError
from selfmis.exit_codes import CodedError, ExitCode

from .gateway import Device, DeviceSpec, Gateway
from .gateway_args import SOURCE_KEYS, SecretError, is_loopback, parse_bind, read_secret, redact_argv
from .gateway_config import device_id_ok
from .interpreter import TFLiteModel
from .models import default_bundle_dir, resolve_bundle
from .pipeline import Pipeline
from .plot import plot_run
from .recording import Recorder, RecordingError
from .sources import ble
from .sources.base import Backoff
from .sources.replay import ReplaySource
from .sources.serial import SerialSource
from .sources.simulated import SimulatedSource

__all__ = ["UsageError", "ModelError", "OutletError", "derive_id", "device_specs", "check_options",
           "make_source", "load_model", "decision_options", "run"]

log = logging.getLogger("selfmis.edge_runtime")

#: per-source options that the command line gives every device it names
SHARED = ("baud", "ascii", "fs", "uv_per_lsb", "retries", "connect_timeout", "fast", "speed", "lead",
          "wait_for_device", "loop")


class UsageError(CodedError):
    """Bad options (exit 2)."""

    exit_code = ExitCode.USAGE


class ModelError(CodedError):
    """The model bundle cannot be loaded (exit 3)."""

    exit_code = ExitCode.MODEL


class OutletError(CodedError):
    """An outlet that cannot start: login refused, port in use, pylsl missing (exit 6)."""

    exit_code = ExitCode.OUTLET


# ---------------------------------------------------------------------- devices and options

def derive_id(kind: str, value: str, taken: set) -> str:
    """A readable, valid, unique id from a source: ``ttyUSB0``, ``pts-1``, ``00271_hr``, ``127-0-0-1-7000``
    (a bare number, as in ``/dev/pts/1``, keeps its folder: "1" would name nothing).

    Parameters
    ----------
    kind : str
        The source option: ``port``, ``ble``, ``replay`` or ``simulate``.
    value : str
        Its value (a port, an address, a path).
    taken : set
        Ids already used; the result is not among them (a ``-2``, ``-3``... suffix).

    Example
    -------
    >>> derive_id("port", "socket://127.0.0.1:7000", set())
    '127-0-0-1-7000'
    """
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


def device_specs(args, cfg, sources, ids) -> list:
    """The devices to run: a gateway.json's, then the command line's.

    Parameters
    ----------
    args : argparse.Namespace
        ``edge-run``'s options (the per-source ones in :data:`SHARED` go to every device named
        on the command line; ``--record DIR`` records one device into DIR, several into DIR/<id>).
    cfg : dict or None
        A validated gateway.json (:func:`.gateway_config.load_gateway_config`).
    sources : list of (str, str)
        The source options in command-line order, e.g. ``[("port", "/dev/ttyUSB0")]``.
    ids : list of str
        The ``--device-id`` values, in order.

    Returns
    -------
    list of :class:`~.gateway.DeviceSpec`

    Raises
    ------
    UsageError
        More ids than sources, an invalid id, or an id used twice.
    """
    specs, taken = [], set()
    for d in (cfg or {}).get("devices", []):
        specs.append(DeviceSpec(d["id"], {k: v for k, v in d.items() if k != "id"}))
        taken.add(d["id"])
    if len(ids) > len(sources):
        raise UsageError(f"{len(ids)} --device-id for {len(sources)} source option(s)")
    shared = {k: getattr(args, k) for k in SHARED if getattr(args, k, None) not in (None, False)}
    new = []
    for i, (kind, value) in enumerate(sources):
        did = ids[i] if i < len(ids) else derive_id(kind, value, taken)
        if not device_id_ok(did):
            raise UsageError(f"--device-id {did!r}: letters, digits, - and _ only (at most 64)")
        if did in taken:
            raise UsageError(f"device id {did!r} is used twice")
        taken.add(did)
        new.append(DeviceSpec(did, {**shared, kind: value}))
    if args.record:
        for s in new:
            s.options["record"] = args.record if len(new) + len(specs) == 1 else os.path.join(args.record, s.id)
    return specs + new


def source_options(options: dict, args) -> argparse.Namespace:
    """``args`` with one device's source options laid over it (no other device's source)."""
    ns = argparse.Namespace(**vars(args))
    for k in SOURCE_KEYS:
        setattr(ns, k, None)
    ns.ascii, ns.fast = False, False
    for k, v in options.items():
        setattr(ns, k, v)
    return ns


def _check_source(ns) -> None:
    if ns.ascii and not ns.port:
        raise UsageError("--ascii applies to --port only")
    if (ns.column is not None or ns.label) and not ns.ascii:
        raise UsageError("--column and --label apply to --ascii streams")
    if ns.column is not None and ns.label:
        raise UsageError("give --column or --label, not both")
    if ns.trust_rate and ns.ascii and not ns.fs:
        raise UsageError("--trust-rate needs --fs for an ASCII stream (nothing else declares its rate)")
    if ns.format and not ns.replay:
        raise UsageError("--format applies to --replay only")
    if ns.units and not (ns.replay or ns.ascii):
        raise UsageError("--units applies to --replay and --ascii streams")
    if ns.fast and not (ns.replay or ns.simulate):
        raise UsageError("--fast applies to --replay and --simulate")


def _serve_section(args, cfg):
    """The web view's options, with the token read from ``token_file`` or ``$SELFMIS_SERVE_TOKEN``
    when it is not given (a token in argv is visible in ``ps``)."""
    if args.serve:
        serve = {"bind": args.serve, "token": args.serve_token, "insecure": args.serve_insecure,
                 "token_file": args.serve_token_file}
    else:
        serve = (cfg or {}).get("serve")
    if not serve:
        return serve
    try:
        token = read_secret(serve.get("token"), serve.get("token_file"), "SELFMIS_SERVE_TOKEN", "serve token")
    except SecretError as exc:
        raise UsageError(str(exc)) from None
    return {**serve, "token": token}


def _mqtt_section(args, cfg):
    """The MQTT options, with a password from ``password_file``/``--mqtt-password-file`` or
    ``$SELFMIS_MQTT_PASSWORD`` (used when the URL has none)."""
    mqtt = (cfg or {}).get("mqtt")
    if args.mqtt:
        mqtt = {"url": args.mqtt, "ca": args.mqtt_ca, "cert": args.mqtt_cert, "key": args.mqtt_key,
                "spool": args.mqtt_spool}
    if not mqtt:
        return mqtt
    mqtt = dict(mqtt)
    try:
        mqtt["password"] = read_secret(None, mqtt.pop("password_file", None) or args.mqtt_password_file,
                                       "SELFMIS_MQTT_PASSWORD", "MQTT password")
    except SecretError as exc:
        raise UsageError(str(exc)) from None
    return mqtt


def check_options(args, cfg, specs, tagged: bool) -> None:
    """Every check of ``edge-run``'s options, for one device or many (the only place they live).

    Raises
    ------
    UsageError
        The first problem found; a device's problem names the device when ``tagged``.
    """
    if not specs:
        raise UsageError("give a source: --port, --ble, --replay or --simulate (or --config gateway.json)")
    if args.every_k_beats < 1 or args.threads < 1 or args.decision_beats < 1:
        raise UsageError("--every-k-beats, --threads and --decision-beats must be >= 1")
    if args.retries < 0:
        raise UsageError("--retries must be >= 0")
    if not getattr(args, "output_bound", 0) >= 0:  # NaN too
        raise UsageError("--output-bound must be >= 0 (0: every line)")
    if (args.persist_s or 0) < 0 or (args.hysteresis or 0) < 0 or (args.persist_beats is not None
                                                                    and args.persist_beats < 1):
        raise UsageError("--persist-s and --hysteresis must be >= 0, --persist-beats >= 1")
    if args.restart_cap <= 0:
        raise UsageError("--restart-cap must be > 0 seconds")
    if args.loop and not any("simulate" in s.options for s in specs):
        raise UsageError("--loop applies to --simulate")
    serve = _serve_section(args, cfg)
    if serve:
        try:
            host, _ = parse_bind(serve["bind"])
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if not is_loopback(host) and not serve.get("token") and not serve.get("insecure"):
            raise UsageError(f"--serve {serve['bind']}: binding a non-loopback address needs --serve-token "
                             "TOKEN (viewers open ...?token=TOKEN) or an explicit --serve-insecure")
    for s in specs:
        try:
            _check_source(source_options(s.options, args))
        except UsageError as exc:
            raise UsageError(f"device {s.id}: {exc}" if tagged else str(exc)) from None


# ---------------------------------------------------------------------- building blocks

def make_source(args, lead: str):
    """The :class:`~.sources.base.Source` that ``args`` (one device's options) ask for.

    A serial/TCP read returns as soon as bytes arrive; its timeout only sets how often an
    idle reader wakes to look at stop(): with N devices, N x 50 empty wake-ups a second cost
    more CPU than their pipelines, so at least 0.2 s here.

    Raises
    ------
    SourceNotFound
        The port, file or device is not there (exit 4).
    """
    if args.port:
        return SerialSource(args.port, args.baud, ascii=args.ascii, fs=args.fs, lead=lead,
                            uv_per_lsb=1.0 if args.uv_per_lsb is None else args.uv_per_lsb,
                            backoff=Backoff(args.retries), wait_for_device_s=args.wait_for_device,
                            column=args.column, label=args.label, check_rate=not args.trust_rate,
                            units=args.units, read_timeout_s=0.2)
    if args.ble:
        return ble.BleSource(args.ble, lead=lead, backoff=Backoff(args.retries),
                             connect_timeout_s=args.connect_timeout, check_rate=not args.trust_rate)
    if args.replay:
        return ReplaySource(args.replay, lead=lead, fast=args.fast, fs=args.fs, speed=args.speed,
                            format=args.format, units=args.units, uv_per_lsb=args.uv_per_lsb)
    return SimulatedSource(args.simulate, lead=lead, speed=0.0 if args.fast else args.speed,
                           loop=bool(getattr(args, "loop", False)))


class _native_stderr_silenced:
    """Point file descriptor 2 at /dev/null while native code prints INFO lines (unless ``--verbose``)."""

    def __init__(self, active: bool):
        self.active, self.saved = active, None

    def __enter__(self):
        if self.active:
            sys.stderr.flush()
            self.saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        return False


def load_model(path, threads: int) -> TFLiteModel:
    """The bundle at ``path`` (None: the shipped default; ``default``/``micro``: a shipped one).

    Raises
    ------
    ModelError
        No such bundle, a bundle that does not validate, or no interpreter installed (exit 3).
    """
    try:
        # LiteRT's native "INFO: Created TensorFlow Lite XNNPACK delegate" line: only with --verbose
        with _native_stderr_silenced(not logging.getLogger("selfmis").isEnabledFor(logging.DEBUG)):
            model = TFLiteModel(resolve_bundle(path), num_threads=threads, warn=False)
        model.warn_kernels()  # not inside the silenced block: other kernels than the card's are said aloud
        return model
    except BundleError as exc:
        if path is None and not (default_bundle_dir() / "card.json").exists():
            raise ModelError(f"model: no default model shipped in {default_bundle_dir()} yet; "
                             "pass --model BUNDLE_DIR") from None
        raise ModelError(f"model: {exc}") from None
    except (ImportError, OSError) as exc:
        raise ModelError(f"model: {exc}") from None


def decision_options(args, card) -> dict:
    """The decision keywords of every pipeline: the card's operating point named by
    ``--operating-point`` and the persistence options.

    Raises
    ------
    UsageError
        The card has no operating point of that name.
    """
    try:
        op, _ = card.operating_point(args.operating_point)
    except BundleError as exc:
        raise UsageError(f"--operating-point: {exc}") from None
    return {"operating_point": op, **{k: getattr(args, k) for k in ("persist_s", "persist_beats", "hysteresis")
                                      if getattr(args, k) is not None}}


def outlets(args, cfg, model) -> list:
    """The sinks the options ask for (web view, MQTT, LSL), each imported only when asked for.

    Raises
    ------
    OutletError
        One cannot start (exit 6).
    """
    sinks = []
    serve = _serve_section(args, cfg)
    if serve:
        host, port = parse_bind(serve["bind"])
        from .serve import WebView  # only now: edge-run without --serve imports none of the server
        try:
            sinks.append(WebView(host, port, token=serve.get("token")))
        except OSError as exc:
            raise OutletError(f"--serve {host}:{port}: cannot listen ({exc.strerror or exc})") from None
    mqtt = _mqtt_section(args, cfg)
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


def _device(spec, args, cfg, model, decision, tagged: bool) -> Device:
    """One device: its source, pipeline and recorder (raises what :func:`make_source` raises,
    or UsageError for a recording that cannot be written)."""
    ns = source_options(spec.options, args)
    source = make_source(ns, ns.lead or model.card.lead or "I")
    recorder = None
    if spec.options.get("record"):
        try:
            recorder = Recorder(spec.options["record"], {**source.describe(), "device": spec.id,
                                                         "model": model.card.name,
                                                         "argv": redact_argv(sys.argv[1:])})
        except (RecordingError, OSError) as exc:
            source.close()
            raise UsageError(f"device {spec.id}: --record: {exc}" if tagged else f"--record: {exc}") from None
    pipe = Pipeline(model, every_k_beats=args.every_k_beats, n_beats=args.decision_beats,
                    keep_signal=bool(args.plot), decision_kwargs=decision)
    restart = spec.options.get("restart", (cfg or {}).get("restart", tagged)) and not args.no_restart
    cap = spec.options.get("restart_cap_s", (cfg or {}).get("restart_cap_s", args.restart_cap))
    return Device(spec, source, pipe, recorder, restart=restart, restart_cap_s=cap)


def _plot(args, devices, model) -> None:
    for d in devices:
        path = Path(args.plot)
        if len(devices) > 1:
            path = path.with_name(f"{path.stem}-{d.id}{path.suffix}")
        try:
            plot_run(str(path), d.pipeline, title=f"{d.source.name} - {model.card.name}")
            log.info("plot written to %s", path)
        except Exception as exc:  # a plot must never turn a good run into a failure
            log.error("--plot: %s", exc)


# ---------------------------------------------------------------------- the run

def run(args, out, specs, cfg=None, tagged: bool = False, on_source=None) -> int:
    """Run the devices ``specs`` (checked by :func:`check_options`) until they end.

    Parameters
    ----------
    args : argparse.Namespace
        ``edge-run``'s options.
    out : :class:`~.output.JsonlWriter`
        Where the JSON Lines go.
    specs : list of :class:`~.gateway.DeviceSpec`
        From :func:`device_specs`.
    cfg : dict, optional
        The gateway.json the devices came from (outlets, restart policy).
    tagged : bool
        The gateway format: every line names its ``"device"``; a lost device is restarted.
    on_source : callable, optional
        Called with each source once it exists (the demo stops its virtual device with it).

    Returns
    -------
    int
        :class:`~selfmis.exit_codes.ExitCode`: 0, or the worst device's code (4 not found,
        5 lost), or the code of what stopped the start (2, 3, 4, 6).
    """
    t0 = time.perf_counter()
    devices: list = []
    if args.loop is None:  # a simulated device feeding an outlet is a demo: it keeps running
        args = argparse.Namespace(**vars(args))
        args.loop = bool(args.serve or args.mqtt or args.lsl
                         or any((cfg or {}).get(k) for k in ("serve", "mqtt", "lsl")))
    try:
        model = load_model(args.model, args.threads)
        decision = decision_options(args, model.card)
        for s in specs:
            try:
                devices.append(_device(s, args, cfg, model, decision, tagged))
            except UsageError:
                raise
            except Exception as exc:  # SourceNotFound and friends: name the device
                raise CodedError(f"device {s.id}: {exc}" if tagged else str(exc),
                                 getattr(exc, "exit_code", ExitCode.SOURCE)) from None
            if on_source is not None:
                on_source(devices[-1].source)
        sinks = outlets(args, cfg, model)
    except CodedError as exc:
        log.error("%s", exc)
        for d in devices:
            d.close()
        return exc.exit_code
    gw = Gateway(devices, out, sinks, model=model, max_seconds=args.max_seconds, tagged=tagged, t0=t0)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: gw.stop())
    log.info("model %s (%s, %s kernels from %s, %d labels), operating point %s, %s%s", model.card.name,
             model.backend, model.kernels, model.kernels_from, len(model.card.labels), decision["operating_point"],
             f"source {devices[0].source.name}" if len(devices) == 1 and not tagged else
             f"{len(devices)} device(s) ({', '.join(d.id for d in devices)})",
             "".join(f", {type(s).__name__}" for s in sinks))
    code = gw.run()
    if args.plot:
        _plot(args, devices, model)
    return code
