"""``edge-run``: stream an ECG lead from a device or a file through a model bundle.

Exit codes: :class:`selfmis.exit_codes.ExitCode` (0 ok, 2 usage, 3 model/bundle
error, 4 source not found or not permitted, 5 device lost after the reconnect
retries, 6 an outlet could not start). JSON Lines on stdout
(:mod:`.output`), logs on stderr.

Only the standard library is imported at module level: ``edge-run --help``
and start-up stay well under 0.3 s; numpy, the interpreter, pyserial, bleak
and matplotlib load when (and only if) they are needed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from selfmis.bundle import BundleError
from selfmis.exit_codes import ExitCode
from selfmis.limits import gain_arg, rate_arg
from selfmis.runtime_config import ConfigError, cli_defaults, load_runtime_config

from . import gateway_args
from .interpreter import TFLiteModel
from .models import default_bundle_dir, resolve_bundle
from .output import JsonlWriter
from .pipeline import Pipeline
from .plot import plot_run
from .recording import Recorder, RecordingError
from .sources.base import Backoff, DeviceLost, SourceError, SourceNotFound
from .sources import ble
from .sources.replay import ReplaySource
from .sources.serial import SerialSource
from .sources.simulated import SimulatedSource

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_USAGE", "EXIT_MODEL", "EXIT_SOURCE", "EXIT_LOST"]

# Kept as names for callers of the public API; the values are :class:`selfmis.exit_codes.ExitCode`.
EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_SOURCE, EXIT_LOST = (ExitCode.OK, ExitCode.USAGE, ExitCode.MODEL,
                                                          ExitCode.SOURCE, ExitCode.LOST)

log = logging.getLogger("selfmis.edge_runtime")

EPILOG = """\
sources (exactly one):
  --port /dev/ttyUSB0            SelfMIS framed binary protocol (HELLO gives rate/gain)
  --port /dev/ttyACM0 --ascii    text lines from a sketch (AD8232 println, Serial Plotter
                                 columns / label:value, '!' lead-off); the rate is measured
  --port socket://192.168.1.50:3333     the same over TCP (an ESP32 on Wi-Fi)
  --ble AA:BB:..                 Polar H10 (PMD ECG, 130 Hz) or SelfMIS GATT firmware
  --replay FILE [--fast]         WFDB record, EDF/BDF, CSV/TSV/semicolon text, Polar Sensor
                                 Logger export, or an --record directory (format from content)
  --simulate REC                 in-process virtual device streaming a record

examples:
  edge-run --simulate core/sample_data/ptbxl/records500/00000/00271_hr --fast
  edge-run --port /dev/ttyUSB0 --record runs/2024-06-01
  edge-run --replay runs/2024-06-01 --fast --plot run.png
  edge-run --replay s0010_re --lead i --fast                 # PTB Diagnostic, 1 kHz, .dat + .xyz
  edge-run --replay holter.edf --lead "ECG I" --fast
  edge-run --replay adc.csv --fs 250 --units counts --uv-per-lsb 3.22

exit codes: 0 ok, 2 usage, 3 model/bundle error, 4 source not found/permission,
5 device lost after retries.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-run", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Single-lead MI detection on a live or replayed ECG stream "
                    "(JSON Lines on stdout, logs on stderr).")
    src = p.add_argument_group("source")
    src.add_argument("--port", help="serial port (or pyserial URL)")
    src.add_argument("--baud", type=int, default=115200, help="serial baud rate (default 115200)")
    src.add_argument("--ascii", action="store_true", help="ASCII one-sample-per-line instead of binary frames")
    src.add_argument("--fs", type=rate_arg,
                     help="sample rate of an ASCII stream or a CSV file (Hz); overrides a header. Live streams "
                          "are checked against their arrival rate: a wrong --fs withholds decisions")
    src.add_argument("--column", type=int, metavar="N",
                     help="ASCII lines with several values (Arduino Serial Plotter): the ECG is value N (0-based)")
    src.add_argument("--label", metavar="NAME",
                     help="ASCII 'label:value' lines: the ECG is the value labelled NAME (e.g. ecg)")
    src.add_argument("--trust-rate", action="store_true",
                     help="do not check the declared rate against arrival times (a stream sent faster than "
                          "real time, e.g. `selfmis sim --fast`); needs a declared rate")
    src.add_argument("--uv-per-lsb", type=gain_arg, default=None,
                     help="microvolts per ADC count: ASCII/no-HELLO gain (default 1.0), and a "
                          "--replay text file with --units counts (required there)")
    src.add_argument("--ble", metavar="ADDRESS", help="BLE device address (Polar H10 or SelfMIS firmware)")
    src.add_argument("--ble-scan", action="store_true", help="list nearby BLE devices and exit")
    src.add_argument("--replay", metavar="FILE",
                     help="WFDB record, EDF/BDF, CSV/TSV/semicolon text, Polar Sensor Logger export, "
                          "or a --record directory")
    src.add_argument("--format", choices=("recording", "wfdb", "edf", "csv", "tsv", "semicolon",
                                          "polar", "text"),
                     help="--replay file format where the content cannot tell (default: detected)")
    src.add_argument("--units", choices=("mV", "uV", "counts"),
                     help="units of the values of a --replay text file (default: as its header says, else "
                          "mV; counts need --uv-per-lsb) or of an --ascii stream (default: decimals are mV, "
                          "whole numbers ADC counts)")
    src.add_argument("--fast", action="store_true", help="replay/simulate as fast as possible")
    src.add_argument("--speed", type=float, default=1.0, help="replay/simulate speed factor (default 1)")
    src.add_argument("--simulate", metavar="RECORD", help="stream RECORD from an in-process virtual device")
    src.add_argument("--loop", action=argparse.BooleanOptionalAction, default=None,
                     help="--simulate: start the record again at its end, forever (default: on with --serve, "
                          "--mqtt or --lsl, so a demo keeps running; off otherwise)")
    src.add_argument("--lead", default=None, help="lead to use (default: the model card's, usually I)")
    m = p.add_argument_group("model and decision")
    m.add_argument("--model", metavar="BUNDLE",
                   help="model bundle directory, or the name of a shipped one: default (gateways, the "
                        "default) or micro (the smallest-arena model, as a microcontroller would run it)")
    m.add_argument("--config", metavar="RUNTIME_JSON",
                   help="runtime.json from `selfmis deploy` (bundle, lead, source); options given here win")
    m.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    m.add_argument("--every-k-beats", type=int, default=1, help="score every k-th beat (default 1)")
    m.add_argument("--decision-beats", type=int, default=8,
                   help="beats in the rolling median decision (default 8)")
    m.add_argument("--operating-point", metavar="NAME",
                   help="the card's operating point: screening, balanced, alarm (default: the card's)")
    m.add_argument("--persist-s", type=float, default=None,
                   help="an alarm goes on/off only after the median stays across its threshold this long "
                        "(seconds of signal; default 30)")
    m.add_argument("--persist-beats", type=int, default=None,
                   help="the same span counted in decisions instead of seconds")
    m.add_argument("--hysteresis", type=float, default=None,
                   help="an alarm clears below its threshold minus this many logit units (default 0.5)")
    o = p.add_argument_group("output")
    o.add_argument("--record", metavar="DIR", help="append every raw sample received to DIR")
    o.add_argument("--plot", metavar="FILE.png", help="after the run, plot ECG, beats and scores")
    o.add_argument("--quiet", action="store_true", help="no beat lines, warnings only on stderr")
    o.add_argument("--verbose", action="store_true", help="debug logs on stderr")
    o.add_argument("--max-seconds", type=float, help="stop after this many seconds of signal")
    src.add_argument("--retries", type=int, default=6,
                     help="reconnect attempts (backoff 0.5, 1, 2, 4, 8 s...) before giving up (default 6)")
    src.add_argument("--wait-for-device", nargs="?", type=float, const=float("inf"), metavar="SECONDS",
                     help="--port: if the port is absent at start, wait for it to appear (for SECONDS; "
                          "default forever) with a log line instead of exiting 4 (what the systemd unit does)")
    src.add_argument("--connect-timeout", type=float, default=15.0,
                     help="seconds to wait for a BLE device to answer (default 15)")
    gateway_args.add_arguments(p)  # several devices, --serve, --mqtt, --lsl: see gateway_cli
    p.epilog += "\n" + gateway_args.EPILOG
    return p


def _setup_logging(quiet: bool, verbose: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("edge-run: %(levelname)s: %(message)s"))
    root = logging.getLogger("selfmis")
    root.handlers[:] = [h]
    root.setLevel(level)
    root.propagate = False


def _usage(parser, msg: str) -> int:
    parser.print_usage(sys.stderr)
    print(f"edge-run: error: {msg}", file=sys.stderr)
    return EXIT_USAGE


def _ble_scan(out) -> int:
    try:
        devices = ble.scan()
    except SourceError as exc:
        log.error("%s", exc)
        return EXIT_SOURCE
    except Exception as exc:  # no adapter, BlueZ not running, permission
        log.error("BLE scan failed: %s", exc)
        return EXIT_SOURCE
    for d in devices:
        out.write({"type": "device", **d})
    return EXIT_OK


def make_source(args, lead: str):
    """The :class:`~.sources.base.Source` the arguments ask for (may raise SourceNotFound)."""
    if args.port:
        return SerialSource(args.port, args.baud, ascii=args.ascii, fs=args.fs, lead=lead,
                            uv_per_lsb=1.0 if args.uv_per_lsb is None else args.uv_per_lsb,
                            backoff=Backoff(args.retries), wait_for_device_s=args.wait_for_device,
                            column=args.column, label=args.label, check_rate=not args.trust_rate,
                            units=args.units)
    if args.ble:
        return ble.BleSource(args.ble, lead=lead, backoff=Backoff(args.retries),
                         connect_timeout_s=args.connect_timeout, check_rate=not args.trust_rate)
    if args.replay:
        return ReplaySource(args.replay, lead=lead, fast=args.fast, fs=args.fs, speed=args.speed,
                            format=args.format, units=args.units, uv_per_lsb=args.uv_per_lsb)
    return SimulatedSource(args.simulate, lead=lead, speed=0.0 if args.fast else args.speed,
                           loop=bool(getattr(args, "loop", False)))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if gateway_args.wanted(argv):  # several devices or an outlet: loaded only then
        from .gateway_cli import main as gateway_main
        return gateway_main(argv, sys.modules[__name__])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.config:  # the file fills in defaults, then the command line is read again
            try:
                given = any(getattr(args, a) for a in ("port", "ble", "replay", "simulate"))
                parser.set_defaults(**cli_defaults(load_runtime_config(args.config),
                                                   include_source=not given))
            except ConfigError as exc:
                print(f"edge-run: {exc}", file=sys.stderr)
                return EXIT_USAGE
            args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    _setup_logging(args.quiet, args.verbose)
    sources = [a for a in ("port", "ble", "replay", "simulate") if getattr(args, a)]
    out = JsonlWriter(sys.stdout, quiet=args.quiet, flush=not args.fast)
    if args.ble_scan:
        return _ble_scan(out)
    if len(sources) != 1:
        return _usage(parser, "give exactly one source: --port, --ble, --replay or --simulate"
                      + (f" (got {', '.join('--' + s for s in sources)})" if sources else ""))
    if args.ascii and not args.port:
        return _usage(parser, "--ascii applies to --port only")
    if (args.column is not None or args.label) and not args.ascii:
        return _usage(parser, "--column and --label apply to --ascii streams")
    if args.column is not None and args.label:
        return _usage(parser, "give --column or --label, not both")
    if args.trust_rate and args.ascii and not args.fs:
        return _usage(parser, "--trust-rate needs --fs for an ASCII stream (nothing else declares its rate)")
    if args.every_k_beats < 1 or args.threads < 1 or args.decision_beats < 1 or args.retries < 0:
        return _usage(parser, "--every-k-beats, --threads and --decision-beats must be >= 1")
    if args.format and not args.replay:
        return _usage(parser, "--format applies to --replay only")
    if args.units and not (args.replay or args.ascii):
        return _usage(parser, "--units applies to --replay and --ascii streams")
    if (args.persist_s or 0) < 0 or (args.hysteresis or 0) < 0 or (args.persist_beats is not None
                                                                    and args.persist_beats < 1):
        return _usage(parser, "--persist-s and --hysteresis must be >= 0, --persist-beats >= 1")
    if args.fast and not (args.replay or args.simulate):
        return _usage(parser, "--fast applies to --replay and --simulate")
    if args.loop and not args.simulate:
        return _usage(parser, "--loop applies to --simulate")
    return run(args, out)


class _native_stderr_silenced:
    """Point file descriptor 2 at /dev/null while native code prints INFO lines (unless ``--verbose``)."""

    def __init__(self, active: bool):
        self.active, self.saved = active, None

    def __enter__(self):
        if self.active:
            import os
            sys.stderr.flush()
            self.saved = os.dup(2)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            import os
            os.dup2(self.saved, 2)
            os.close(self.saved)
        return False


def decision_options(args, card) -> dict:
    """The decision keywords of every pipeline (one device or many): the card's operating point named by
    ``--operating-point`` (BundleError when the card has none of that name) and the persistence options."""
    op, _ = card.operating_point(args.operating_point)
    return {"operating_point": op, **{k: getattr(args, k) for k in ("persist_s", "persist_beats", "hysteresis")
                                      if getattr(args, k) is not None}}


def load_model(path, threads: int):
    try:
        # LiteRT's native "INFO: Created TensorFlow Lite XNNPACK delegate" line: only with --verbose
        with _native_stderr_silenced(not logging.getLogger("selfmis").isEnabledFor(logging.DEBUG)):
            return TFLiteModel(resolve_bundle(path), num_threads=threads)
    except BundleError:
        if path is None and not (default_bundle_dir() / "card.json").exists():
            raise BundleError(f"no default model shipped in {default_bundle_dir()} yet; "
                              "pass --model BUNDLE_DIR") from None
        raise
    except ImportError as exc:
        raise BundleError(str(exc)) from None


def run(args, out, on_source=None) -> int:
    """Run the parsed ``args``; ``on_source(source)`` is called once the source exists
    (the demo uses it to stop the stream when its virtual device is done)."""
    t0 = time.perf_counter()
    try:
        model = load_model(args.model, args.threads)
    except (BundleError, OSError) as exc:
        log.error("model: %s", exc)
        return EXIT_MODEL
    try:
        decision = decision_options(args, model.card)
    except BundleError as exc:
        log.error("--operating-point: %s", exc)
        return EXIT_USAGE
    lead = args.lead or model.card.lead or "I"
    try:
        source = make_source(args, lead)
    except SourceNotFound as exc:
        log.error("%s", exc)
        return EXIT_SOURCE
    if on_source is not None:
        on_source(source)
    pipe = Pipeline(model, every_k_beats=args.every_k_beats, n_beats=args.decision_beats,
                    keep_signal=bool(args.plot), decision_kwargs=decision)
    recorder = None
    if args.record:
        try:
            recorder = Recorder(args.record, {**source.describe(), "model": model.card.name,
                                              "argv": sys.argv[1:]})
        except (RecordingError, OSError) as exc:
            log.error("--record: %s", exc)
            source.close()
            return EXIT_USAGE
    log.info("model %s (%s, %d labels), operating point %s, source %s", model.card.name, model.backend,
             len(model.card.labels), decision["operating_point"], source.name)
    code = EXIT_OK
    t_run = time.perf_counter()
    timer = None
    if args.max_seconds and source.realtime:
        # a stream that yields no sample never advances signal time: stop by the wall clock too
        import threading
        timer = threading.Timer(args.max_seconds + 5.0, source.stop)
        timer.daemon = True
        timer.start()
    try:
        with source:
            for item in source:
                if recorder is not None:
                    recorder.write(item)
                events = pipe.handle(item)
                if recorder is not None:  # beats and decisions go into the recording too
                    recorder.write_outputs(events, pipe._timeline_s)
                    events += recorder.take_events()  # a failed write: the `recording` event, once
                out.write_all(events)
                if args.max_seconds and pipe._signal_s >= args.max_seconds:
                    break
    except KeyboardInterrupt:
        log.info("interrupted")
    except DeviceLost as exc:
        log.error("%s", exc)
        code = EXIT_LOST
    except SourceNotFound as exc:
        log.error("%s", exc)
        code = EXIT_SOURCE
    except SourceError as exc:
        log.error("%s", exc)
        code = EXIT_LOST
    finally:
        if timer is not None:
            timer.cancel()
        tail = pipe.flush()  # the last beats still inside the resampler's delay
        if recorder is not None:
            recorder.write_outputs(tail, pipe._timeline_s)
            recorder.close()  # never raises: a failed last flush becomes the `recording` event
            tail += recorder.take_events()
    out.write_all(tail)
    summary = pipe.summary(source.stats, wall_s=time.perf_counter() - t_run)
    summary["source"] = source.name
    if source.rate_summary() is not None:
        summary["rate"] = {**(summary.get("rate") or {}), **source.rate_summary()}
    if source.signal_summary() is not None:
        summary["signal"] = source.signal_summary()
    summary["model"] = model.card.name
    summary["startup_s"] = round(t_run - t0, 3)
    if recorder is not None:
        summary["recorded"] = str(args.record)
        if recorder.failed:
            summary["recording_stopped"] = recorder.failed
    out.write(summary)
    if args.plot:
        try:
            plot_run(args.plot, pipe, title=f"{source.name} - {model.card.name}")
            log.info("plot written to %s", args.plot)
        except Exception as exc:  # a plot must never turn a good run into a failure
            log.error("--plot: %s", exc)
    return code


if __name__ == "__main__":
    sys.exit(main())
