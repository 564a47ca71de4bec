"""``selfmis demo``: a virtual wearable streams a real PTB-XL MI record, the runtime listens.

1. picks an MI record (PTB-XL ecg_id 271, anteroseptal MI, 500 Hz, test fold) from the shared
   subset if present, else the copy bundled in ``sample_data/ptbxl``;
2. starts the firmware bridge's :class:`VirtualDevice` writing the SelfMIS
   binary protocol into a pseudo-terminal, at real-time speed (``--speed``);
3. runs the edge runtime on that port with the default model (``--model``),
   exactly as ``edge-run --port /dev/pts/N`` would;
4. prints beats and decisions as they come, and a summary at the end.

Takes ~15 s (the record is 10 s). ``--json`` prints the raw JSON Lines instead.
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

from selfmis.edge_runtime import cli
from selfmis.edge_runtime.output import JsonlWriter
from selfmis.sample_data import BUNDLED_PTBXL

from .virtual_device import VirtualDevice, FdWriter, open_pty

__all__ = ["main", "find_demo_record"]

# a checkout sits next to ../shared/data/ptbxl-subset; $SELFMIS_PTBXL points elsewhere
SHARED_PTBXL = Path(os.environ.get(
    "SELFMIS_PTBXL", Path(__file__).resolve().parents[2] / "shared" / "data" / "ptbxl-subset"))
#: PTB-XL records with an MI label, all from the test fold (strat_fold 10); 271 (ASMI) has 500 Hz
MI_RECORDS = (271, 1853, 1737, 947, 723, 1391)


def find_demo_record() -> str | None:
    """Path (no extension) of an MI record: shared subset first, then the bundled sample."""
    for root in (SHARED_PTBXL, BUNDLED_PTBXL):
        for eid in MI_RECORDS:
            for sub, suf in (("records500", "hr"), ("records100", "lr")):
                p = root / sub / f"{(eid // 1000) * 1000:05d}" / f"{eid:05d}_{suf}"
                if Path(str(p) + ".hea").is_file():
                    return str(p)
    for root in (BUNDLED_PTBXL, SHARED_PTBXL):  # any record at all
        for sub in ("records500", "records100"):
            heas = sorted((root / sub).glob("*/*.hea"))
            if heas:
                return str(heas[0].with_suffix(""))
    return None


def ptbxl_statements(record) -> str | None:
    """The cardiologists' SCP statements of a PTB-XL record, e.g. 'ASMI 100, LVH 100', or None."""
    import ast
    import csv
    import re

    path = Path(record)
    m = re.match(r"(\d+)_(lr|hr)$", path.name)
    root = path.parents[2] if len(path.parents) > 2 else path.parent
    if not m or not (root / "ptbxl_database.csv").is_file():
        return None
    with open(root / "ptbxl_database.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row.get("ecg_id") == str(int(m.group(1))):
                codes = ast.literal_eval(row["scp_codes"])
                return ", ".join(f"{c} {v:g}" for c, v in codes.items() if v > 0) or None
    return None


def _top(probs: dict, k: int = 3) -> str:
    """The k most probable labels, e.g. 'MI 0.78  IMI 0.75  ASMI 0.64'."""
    best = sorted(probs.items(), key=lambda kv: -kv[1])[:k]
    return "  ".join(f"{lab} {p:.2f}" for lab, p in best)


class _Printer:
    """Human-readable lines for a newcomer (the JSON stays available with --json)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def write(self, e: dict) -> None:
        kind, w = e.get("type"), self.stream.write
        if kind == "beat":
            hr = f"HR {e['hr']:5.1f} bpm" if e.get("hr") else "HR   ...  "
            p = "   " + _top(e["p"]) if "p" in e else ""
            w(f"{e['t']:7.2f} s  beat     {hr}{p}\n")
        elif kind == "decision":
            probs = _top(e["probabilities"])
            verdict = ", ".join(e["labels"]) if e["labels"] else "no MI alarm"
            state = f" [{e['state']}, {e.get('operating_point', '')}]" if e.get("state") else ""
            w(f"{e['t']:7.2f} s  DECISION {verdict}{state}   (median of {e['n_beats']} beats: {probs}; "
              f"{e['latency_ms']:.1f} ms after the window completed)\n")
        elif kind == "quality":
            w(f"{e['t']:7.2f} s  quality  {'ok' if e['ok'] else 'BAD: ' + ', '.join(e['reasons'])}\n")
        elif kind == "link":
            if e.get("kind") not in ("hello",):
                w(f"{e['t']:7.2f} s  link     {e['kind']}\n")
        elif kind == "summary":
            lat = e["latency_ms"]
            w(f"\nsummary: {e['beats']} beats, {e['decisions']} decisions, "
              f"latency p50 {lat['p50']} ms / p99 {lat['p99']} ms, drops {e['drops']}, "
              f"CRC errors {e['crc_errors']}\n")
            if e.get("last_decision"):
                d = e["last_decision"]
                w(f"final decision: {', '.join(d['labels']) or 'no MI alarm'} "
                  f"({_top(d['probabilities'], 5)})\n")
        self.stream.flush()

    def write_all(self, events):
        for e in events:
            self.write(e)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="selfmis demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", help="WFDB record to stream (default: a PTB-XL MI record)")
    ap.add_argument("--model", help="model bundle (default: the shipped one)")
    ap.add_argument("--speed", type=float, default=1.0, help="1 = real time (default), 5 = five times faster")
    ap.add_argument("--json", action="store_true", help="print the raw JSON Lines")
    ap.add_argument("--ascii", action="store_true", help="ASCII line protocol instead of binary frames")
    ap.add_argument("--seconds", type=float, default=45.0,
                    help="stream this long, looping the record (default 45 s: an MI alarm needs the "
                         "probability above threshold for 30 s before its onset)")
    args = ap.parse_args(argv)
    if args.speed <= 0:
        ap.error("--speed must be positive")

    record = args.record or find_demo_record()
    if record is None:
        print("selfmis demo: no PTB-XL record found (neither the shared subset nor the bundled "
              "sample); pass --record", file=sys.stderr)
        return cli.EXIT_SOURCE
    probe = VirtualDevice.from_path(record, lead="I")
    passes = max(1, int(-(-args.seconds // probe.duration_s)))  # whole passes covering --seconds
    dev = VirtualDevice(probe.signal_mv, probe.fs, lead="I", ascii=args.ascii, passes=passes)
    duration = dev.duration_s * passes
    master, slave, tty = open_pty()
    print(f"virtual wearable on {tty}: {Path(record).name}, lead I, {dev.fs:g} Hz, {duration:.0f} s, "
          f"{'ASCII' if args.ascii else 'binary protocol'}, speed x{args.speed:g}", file=sys.stderr)
    truth = ptbxl_statements(record)
    if truth:
        print(f"PTB-XL statements of this record (likelihood %): {truth}", file=sys.stderr)
    done = threading.Event()
    holder = {}

    def stream():
        # start once the runtime has opened the port: pyserial flushes input on open,
        # which would swallow the first HELLO and samples
        t0 = time.monotonic()
        while time.monotonic() - t0 < 5.0 and getattr(holder.get("source"), "_ser", None) is None:
            time.sleep(0.01)
        try:
            dev.stream_to(FdWriter(master), speed=args.speed)
        finally:
            done.set()
            time.sleep(0.5 / args.speed + 0.2)  # let the reader drain the last frames
            src = holder.get("source")
            if src is not None:
                src.stop()

    th = threading.Thread(target=stream, name="virtual-device", daemon=True)
    argv_run = ["--port", tty] + (["--ascii", "--fs", f"{dev.fs:g}"] if args.ascii else [])
    if args.speed != 1.0:  # faster than real time on purpose: the arrival-rate check would refuse it
        argv_run += ["--trust-rate"]
    if args.model:
        argv_run += ["--model", args.model]
    run_args = cli.build_parser().parse_args(argv_run + ["--quiet"] * 0)
    cli.setup_logging(quiet=not args.json, verbose=False)
    out = JsonlWriter(sys.stdout) if args.json else _Printer()
    th.start()
    try:
        code = cli.run(run_args, out, on_source=lambda s: holder.__setitem__("source", s))
    finally:
        for fd in (master, slave):
            try:
                os.close(fd)
            except OSError:
                pass
    return code


if __name__ == "__main__":
    sys.exit(main())
