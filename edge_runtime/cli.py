"""``edge-run``: stream an ECG lead from a device or a file through a model bundle.

Exit codes: :class:`selfmis.exit_codes.ExitCode` (0 ok, 2 usage, 3 model/bundle
error, 4 source not found or not permitted, 5 device lost after the reconnect
retries, 6 an outlet could not start). JSON Lines on stdout
(:mod:`.output`), logs on stderr.

One device or many, with or without outlets, run the same way: :func:`main`
parses and checks the options, :mod:`.runtime` builds one :class:`~.gateway.Gateway`.
pyserial, bleak, the interpreter, matplotlib, the web server and the outlets load
when (and only if) they are needed.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from selfmis.exit_codes import ExitCode
from selfmis.limits import gain_arg, rate_arg
from selfmis.runtime_config import ConfigError, cli_defaults, load_runtime_config

from . import gateway_args, runtime
from .gateway_args import SOURCE_KEYS
from .gateway_config import GatewayConfigError, load_gateway_config
from .output import OUTPUT_BOUND, JsonlWriter
from .runtime import UsageError, make_source
from .sources import ble
from .sources.base import SourceError

__all__ = ["main", "run", "build_parser", "setup_logging", "make_source", "EXIT_OK", "EXIT_USAGE", "EXIT_MODEL",
           "EXIT_SOURCE", "EXIT_LOST", "EXIT_OUTLET"]

# Kept as names for callers of the public API; the values are :class:`selfmis.exit_codes.ExitCode`.
EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_SOURCE, EXIT_LOST, EXIT_OUTLET = (
    ExitCode.OK, ExitCode.USAGE, ExitCode.MODEL, ExitCode.SOURCE, ExitCode.LOST, ExitCode.OUTLET)

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

exit codes (selfmis.exit_codes.ExitCode): 0 ok, 2 usage, 3 model/bundle error,
4 source not found/permission, 5 device lost after retries, 6 an outlet could not start.
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
    o.add_argument("--output-bound", type=float, default=OUTPUT_BOUND, metavar="X",
                   help="live devices: beat and decision lines on stdout stay within X times the device "
                        "bytes read (beats held back first; an alarm change always passes; counted in the "
                        f"summary's lines_held_back); 0: every line (default {OUTPUT_BOUND:g})")
    o.add_argument("--max-seconds", type=float, help="stop after this many seconds of signal")
    src.add_argument("--retries", type=int, default=6,
                     help="reconnect attempts (backoff 0.5, 1, 2, 4, 8 s...) before giving up (default 6)")
    src.add_argument("--wait-for-device", nargs="?", type=float, const=float("inf"), metavar="SECONDS",
                     help="--port: if the port is absent at start, wait for it to appear (for SECONDS; "
                          "default forever) with a log line instead of exiting 4 (what the systemd unit does)")
    src.add_argument("--connect-timeout", type=float, default=15.0,
                     help="seconds to wait for a BLE device to answer (default 15)")
    gateway_args.add_arguments(p)  # several devices, --serve, --mqtt, --lsl: see runtime
    p.epilog += "\n" + gateway_args.EPILOG
    return p


def setup_logging(quiet: bool, verbose: bool) -> None:
    """Logs on stderr as ``edge-run: LEVEL: message`` (``--quiet``: warnings only; ``--verbose``: debug)."""
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
        return exc.exit_code
    except Exception as exc:  # no adapter, BlueZ not running, permission
        log.error("BLE scan failed: %s", exc)
        return EXIT_SOURCE
    for d in devices:
        out.write({"type": "device", **d})
    return EXIT_OK


def _parse(parser, rest, sources):
    """``(args, gateway config or None)``: the options, with ``--config`` filled in (a runtime.json
    from ``selfmis deploy`` gives defaults and perhaps the source; a gateway.json the devices).
    Raises SystemExit (``--help``, argparse's usage errors) or UsageError."""
    args = parser.parse_args(rest)
    if not args.config:
        return args, None
    try:
        if gateway_args.is_gateway_config(args.config):
            cfg = load_gateway_config(args.config)
            for k in ("decision_beats", "every_k_beats", "threads", "max_seconds"):
                if k in cfg and getattr(args, k) == parser.get_default(k):
                    setattr(args, k, cfg[k])
            if cfg.get("model") and not args.model:
                args.model = cfg["model"]
            return args, cfg
        d = cli_defaults(load_runtime_config(args.config), include_source=not sources)
    except (ConfigError, GatewayConfigError) as exc:
        raise UsageError(str(exc)) from None
    sources.extend((k, d.pop(k)) for k in SOURCE_KEYS if d.get(k) is not None)
    parser.set_defaults(**d)  # the file fills in defaults, then the command line is read again
    return parser.parse_args(rest), None


def main(argv=None) -> int:
    """``edge-run ARGV``: run one device or many until they end; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default ``sys.argv[1:]``); see ``edge-run --help``.

    Returns
    -------
    int
        An :class:`~selfmis.exit_codes.ExitCode`: 0 ok, 2 usage, 3 model, 4 source not found,
        5 device lost, 6 outlet. JSON Lines go to stdout, logs to stderr.

    Example
    -------
    >>> main(["--replay", "core/sample_data/ptbxl/records100/00000/00057_lr", "--fast"])  # doctest: +SKIP
    0
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    sources, ids, rest = gateway_args.split_sources(argv)
    tagged = gateway_args.wanted(argv)  # the gateway format: lines name their device
    parser = build_parser()
    try:
        args, cfg = _parse(parser, rest, sources)
    except SystemExit as exc:  # --help (0) or a usage error (2)
        return int(exc.code or 0)
    except UsageError as exc:
        print(f"edge-run: {exc}", file=sys.stderr)
        return exc.exit_code
    setup_logging(args.quiet, args.verbose)
    if args.ble_scan:
        return _ble_scan(JsonlWriter(sys.stdout))
    try:
        specs = runtime.device_specs(args, cfg, sources, ids)
        runtime.check_options(args, cfg, specs, tagged)
    except UsageError as exc:
        return _usage(parser, str(exc))
    fast = all(s.options.get("fast") for s in specs)
    out = JsonlWriter(sys.stdout, quiet=args.quiet, flush=not fast, bound=args.output_bound or None)
    return runtime.run(args, out, specs, cfg, tagged)


def run(args, out, on_source=None) -> int:
    """Run already parsed ``args`` (``build_parser().parse_args(...)``: one source) as :func:`main` would.

    Parameters
    ----------
    args : argparse.Namespace
        From :func:`build_parser`.
    out : :class:`~.output.JsonlWriter`
        Where the JSON Lines go.
    on_source : callable, optional
        Called with the source once it exists (the demo stops the stream with it when its
        virtual device is done).

    Returns
    -------
    int
        The exit code (:class:`~selfmis.exit_codes.ExitCode`).
    """
    sources = [(k, getattr(args, k)) for k in SOURCE_KEYS if getattr(args, k, None)]
    tagged = bool(args.serve or args.mqtt or args.lsl)
    try:
        specs = runtime.device_specs(args, None, sources, [])
        runtime.check_options(args, None, specs, tagged)
    except UsageError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return runtime.run(args, out, specs, None, tagged, on_source=on_source)


if __name__ == "__main__":
    sys.exit(main())
