"""``selfmis recording``: look into and export a ``edge-run --record`` directory.

    selfmis recording info DIR [--json]
    selfmis recording export DIR --to edf|wfdb|csv [-o OUT]

Exit codes: 0 ok, 2 usage, 4 not a readable recording / cannot export. Data on
stdout, logs on stderr. Gateway-side: numpy, plus pyedflib only for EDF.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone

from selfmis.exit_codes import ExitCode

from .recording import RecordingError
from .recording_export import FORMATS, export
from .recording_timeline import scan

__all__ = ["main", "info"]

EXIT_OK, EXIT_USAGE, EXIT_RECORDING = ExitCode.OK, ExitCode.USAGE, ExitCode.SOURCE

EPILOG = """\
examples:
  edge-run --port /dev/ttyUSB0 --record runs/2024-06-01
  selfmis recording info runs/2024-06-01
  selfmis recording export runs/2024-06-01 --to edf -o holter.edf
  selfmis recording export runs/2024-06-01 --to wfdb -o out/holter   # holter.hea/.dat/.atr
  selfmis recording export runs/2024-06-01 --to csv -o holter.csv    # + holter.events.csv
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="selfmis recording", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Summarise or export a recording made by edge-run --record.")
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("info", help="duration, rate, gaps, lead-off, decisions, device")
    i.add_argument("dir", metavar="DIR")
    i.add_argument("--json", action="store_true", help="one JSON object instead of text")
    e = sub.add_parser("export", help="write EDF+, WFDB or CSV with beats and decisions")
    e.add_argument("dir", metavar="DIR")
    e.add_argument("--to", required=True, choices=FORMATS, help="output format")
    e.add_argument("-o", "--out", metavar="OUT",
                   help="output path (default DIR/export/<name>); WFDB: the record name")
    return p


def info(directory) -> dict:
    tl = scan(directory)
    fs = tl.fs or None
    secs = lambda spans: round(sum(b - a for a, b in spans) / tl.fs, 3) if tl.fs else 0.0
    positive = {}
    for _, labels, _ in tl.decisions:
        for l in labels:
            positive[l] = positive.get(l, 0) + 1
    last = tl.decisions[-1] if tl.decisions else None
    start = (datetime.fromtimestamp(tl.t0, timezone.utc).isoformat(timespec="seconds")
             if tl.t0 else None)
    return {"type": "recording", "path": str(tl.path), "format_version": tl.meta.get("format_version"),
            "start": start, "duration_s": round(tl.duration_s, 3), "fs": fs, "samples": tl.n_samples,
            "lead": tl.meta.get("lead"), "device": tl.device(), "model": tl.meta.get("model"),
            "counts": tl.counts_scale is not None,
            "gaps": {"count": len(tl.gaps), "seconds": secs(tl.gaps)},
            "lead_off": {"count": len(tl.lead_off), "seconds": secs(tl.lead_off)},
            "beats": len(tl.beats) if tl.has_outputs else None,
            "decisions": {"count": len(tl.decisions), "positive": positive,
                          "last": None if last is None else
                          {"t": round(last[0] / tl.fs, 3), "labels": last[1]}}
            if tl.has_outputs else None,
            "quality_changes": len(tl.quality) if tl.has_outputs else None,
            "link_events": _count(k for _, k, _ in tl.links)}


def _count(kinds) -> dict:
    out = {}
    for k in kinds:
        out[k] = out.get(k, 0) + 1
    return out


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _text(d: dict) -> str:
    dev = ", ".join(f"{k}={v}" for k, v in d["device"].items()) or "unknown"
    lines = [f"recording   {d['path']}",
             f"start       {d['start'] or 'unknown'} (UTC, host clock)",
             f"duration    {_hms(d['duration_s'])} ({d['duration_s']} s, {d['samples']} samples)",
             f"rate        {d['fs']:g} Hz, lead {d['lead']}" if d["fs"] else "rate        (no samples)",
             f"device      {dev}",
             f"samples as  {'device counts' if d['counts'] else 'float mV'}",
             f"gaps        {d['gaps']['count']} ({d['gaps']['seconds']} s)",
             f"lead-off    {d['lead_off']['count']} ({d['lead_off']['seconds']} s)"]
    if d["decisions"] is None:
        lines.append("beats       not recorded (format 1 recording: replay it to get them)")
    else:
        dec = d["decisions"]
        pos = ", ".join(f"{k} {v}" for k, v in dec["positive"].items()) or "none positive"
        lines.append(f"beats       {d['beats']}")
        lines.append(f"decisions   {dec['count']} ({pos})")
        if dec["last"]:
            lines.append(f"last        t={dec['last']['t']} s: {','.join(dec['last']['labels']) or 'none'}")
    if d["link_events"]:
        lines.append("link        " + ", ".join(f"{k} {v}" for k, v in d["link_events"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    """``selfmis recording {info,export,...} ARGV``; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``recording`` (default ``sys.argv[1:]``).

    Returns
    -------
    int
        :class:`~selfmis.exit_codes.ExitCode`: 0 ok, 2 usage, 4 a recording that cannot be read.

    Example
    -------
    >>> main(["info", "runs/2024-06-01", "--json"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        if args.cmd == "info":
            d = info(args.dir)
            print(json.dumps(d) if args.json else _text(d))
            return EXIT_OK
        t0 = time.perf_counter()
        res = export(args.dir, args.to, args.out)
        res["seconds"] = round(time.perf_counter() - t0, 2)
        for f in res["files"]:
            print(f)
        print(f"selfmis recording: exported {res['duration_s']} s at {res['fs']:g} Hz, "
              f"{res['beats']} beats, {res['decisions']} decisions, {res['gaps']} gaps, "
              f"{res['lead_off']} lead-off stretches in {res['seconds']} s", file=sys.stderr)
        return EXIT_OK
    except (RecordingError, OSError) as exc:
        print(f"selfmis recording: {exc}", file=sys.stderr)
        return EXIT_RECORDING


if __name__ == "__main__":
    sys.exit(main())
