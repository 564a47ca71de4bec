"""``edge-run``: stream an ECG lead from a device or a file through a model bundle.

Exit codes: 0 ok, 2 usage, 3 model/bundle error, 4 source not found or not
permitted, 5 device lost after the reconnect retries. JSON Lines on stdout
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

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_USAGE", "EXIT_MODEL", "EXIT_SOURCE", "EXIT_LOST"]

EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_SOURCE, EXIT_LOST = 0, 2, 3, 4, 5

log = logging.getLogger("selfmis.edge_runtime")

EPILOG = """\
sources (exactly one):
  --port /dev/ttyUSB0            SelfMIS framed binary protocol (HELLO gives rate/gain)
  --port /dev/ttyACM0 --ascii --fs 250   one integer per line (AD8232 sketches)
  --ble AA:BB:..                 Polar H10 (PMD ECG, 130 Hz) or SelfMIS GATT firmware
  --replay REC [--fast]          WFDB record, CSV, or an --record directory
  --simulate REC                 in-process virtual device streaming a record

examples:
  edge-run --simulate core/sample_data/ptbxl/records500/00000/00271_hr --fast
  edge-run --port /dev/ttyUSB0 --record runs/2024-06-01
  edge-run --replay runs/2024-06-01 --fast --plot run.png

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
    src.add_argument("--fs", type=float, help="sample rate of an ASCII stream or a CSV file (Hz)")
    src.add_argument("--uv-per-lsb", type=float, default=1.0,
                     help="ASCII/no-HELLO gain in microvolts per count (default 1.0)")
    src.add_argument("--ble", metavar="ADDRESS", help="BLE device address (Polar H10 or SelfMIS firmware)")
    src.add_argument("--ble-scan", action="store_true", help="list nearby BLE devices and exit")
    src.add_argument("--replay", metavar="FILE", help="WFDB record, CSV, or a --record directory")
    src.add_argument("--fast", action="store_true", help="replay/simulate as fast as possible")
    src.add_argument("--speed", type=float, default=1.0, help="replay/simulate speed factor (default 1)")
    src.add_argument("--simulate", metavar="RECORD", help="stream RECORD from an in-process virtual device")
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
    o = p.add_argument_group("output")
    o.add_argument("--record", metavar="DIR", help="append every raw sample received to DIR")
    o.add_argument("--plot", metavar="FILE.png", help="after the run, plot ECG, beats and scores")
    o.add_argument("--quiet", action="store_true", help="no beat lines, warnings only on stderr")
    o.add_argument("--verbose", action="store_true", help="debug logs on stderr")
    o.add_argument("--max-seconds", type=float, help="stop after this many seconds of signal")
    src.add_argument("--retries", type=int, default=6,
                     help="reconnect attempts (backoff 0.5, 1, 2, 4, 8 s...) before giving up (default 6)")
    src.add_argument("--connect-timeout", type=float, default=15.0,
                     help="seconds to wait for a BLE device to answer (default 15)")
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
    from .sources.base import SourceError
    from .sources.ble import scan
    try:
        devices = scan()
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
    from .sources.base import Backoff
    if args.port:
        from .sources.serial import SerialSource
        return SerialSource(args.port, args.baud, ascii=args.ascii, fs=args.fs, lead=lead,
                            uv_per_lsb=args.uv_per_lsb, backoff=Backoff(args.retries))
    if args.ble:
        from .sources.ble import BleSource
        return BleSource(args.ble, lead=lead, backoff=Backoff(args.retries),
                         connect_timeout_s=args.connect_timeout)
    if args.replay:
        from .sources.replay import ReplaySource
        return ReplaySource(args.replay, lead=lead, fast=args.fast, fs=args.fs, speed=args.speed)
    from .sources.simulated import SimulatedSource
    return SimulatedSource(args.simulate, lead=lead, speed=0.0 if args.fast else args.speed)


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.config:  # the file fills in defaults, then the command line is read again
            from selfmis.runtime_config import ConfigError, cli_defaults, load_runtime_config
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
    from .output import JsonlWriter
    sources = [a for a in ("port", "ble", "replay", "simulate") if getattr(args, a)]
    out = JsonlWriter(sys.stdout, quiet=args.quiet, flush=not args.fast)
    if args.ble_scan:
        return _ble_scan(out)
    if len(sources) != 1:
        return _usage(parser, "give exactly one source: --port, --ble, --replay or --simulate"
                      + (f" (got {', '.join('--' + s for s in sources)})" if sources else ""))
    if args.ascii and not args.port:
        return _usage(parser, "--ascii applies to --port only")
    if args.every_k_beats < 1 or args.threads < 1 or args.decision_beats < 1 or args.retries < 0:
        return _usage(parser, "--every-k-beats, --threads and --decision-beats must be >= 1")
    if args.fast and not (args.replay or args.simulate):
        return _usage(parser, "--fast applies to --replay and --simulate")
    return run(args, out)


def load_model(path, threads: int):
    from selfmis.bundle import BundleError
    from .models import default_bundle_dir, resolve_bundle
    from .interpreter import TFLiteModel
    try:
        return TFLiteModel(resolve_bundle(path), num_threads=threads)
    except BundleError as exc:
        if path is None and not (default_bundle_dir() / "card.json").exists():
            raise BundleError(f"no default model shipped in {default_bundle_dir()} yet; "
                              "pass --model BUNDLE_DIR") from None
        raise
    except ImportError as exc:
        raise BundleError(str(exc)) from None


def run(args, out, on_source=None) -> int:
    """Run the parsed ``args``; ``on_source(source)`` is called once the source exists
    (the demo uses it to stop the stream when its virtual device is done)."""
    from selfmis.bundle import BundleError
    from .sources.base import DeviceLost, SourceError, SourceNotFound
    t0 = time.perf_counter()
    try:
        model = load_model(args.model, args.threads)
    except (BundleError, OSError) as exc:
        log.error("model: %s", exc)
        return EXIT_MODEL
    lead = args.lead or model.card.lead or "I"
    try:
        source = make_source(args, lead)
    except SourceNotFound as exc:
        log.error("%s", exc)
        return EXIT_SOURCE
    if on_source is not None:
        on_source(source)
    from .pipeline import Pipeline
    pipe = Pipeline(model, every_k_beats=args.every_k_beats, n_beats=args.decision_beats,
                    keep_signal=bool(args.plot))
    recorder = None
    if args.record:
        from .recording import Recorder, RecordingError
        try:
            recorder = Recorder(args.record, {**source.describe(), "model": model.card.name,
                                              "argv": sys.argv[1:]})
        except (RecordingError, OSError) as exc:
            log.error("--record: %s", exc)
            source.close()
            return EXIT_USAGE
    log.info("model %s (%s, %d labels), source %s", model.card.name, model.backend,
             len(model.card.labels), source.name)
    code = EXIT_OK
    t_run = time.perf_counter()
    try:
        with source:
            for item in source:
                if recorder is not None:
                    recorder.write(item)
                out.write_all(pipe.handle(item))
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
        if recorder is not None:
            recorder.close()
    out.write_all(pipe.flush())  # the last beats still inside the resampler's delay
    summary = pipe.summary(source.stats, wall_s=time.perf_counter() - t_run)
    summary["source"] = source.name
    summary["model"] = model.card.name
    summary["startup_s"] = round(t_run - t0, 3)
    if recorder is not None:
        summary["recorded"] = str(args.record)
    out.write(summary)
    if args.plot:
        try:
            from .plot import plot_run
            plot_run(args.plot, pipe, title=f"{source.name} - {model.card.name}")
            log.info("plot written to %s", args.plot)
        except Exception as exc:  # a plot must never turn a good run into a failure
            log.error("--plot: %s", exc)
    return code


if __name__ == "__main__":
    sys.exit(main())
