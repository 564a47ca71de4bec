"""Lines per second of the live ASCII decoder when a sketch reports lead-off on every line.

An AD8232 sketch prints ``!`` instead of a value while an electrode is off (SparkFun's does), so a
long lead-off is one ``!`` line per sample. :meth:`selfmis.ascii_sketch.AsciiLineDecoder.feed_runs`
(what the live ASCII source calls) takes runs of bare integers and runs of lead-off lines in
C-level splits and matches. Timed side by side on the same bytes (4 KiB reads, best of
``--repeat``): that live path; the same path with the lead-off run match switched off (the code
before it: every lead-off line went through the per-line parser after a regex search of its own);
and :meth:`~selfmis.ascii_sketch.AsciiLineDecoder.feed`, the plain one-call-per-line decoder.

    python -m selfmis.benchmarks.ascii_lines [--lines 200000] [--out benchmarks/results/hostile]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from selfmis.ascii_sketch import AsciiLineDecoder
from selfmis.provenance import git_commit

__all__ = ["cases", "lines_per_s", "markdown", "main"]


def cases(n: int, seed: int = 0) -> dict:
    """``name -> bytes`` of ``n`` lines each: ADC counts, lead-off lines, and mixes of both."""
    vals = np.random.default_rng(seed).integers(200, 800, n)
    return {
        "ADC counts, one per line": b"".join(b"%d\n" % v for v in vals),
        "lead-off on every line (!)": b"!\n" * n,
        "lead-off on every line (LO, CRLF)": b"LO\r\n" * n,
        "5-s lead-off runs, 10% of lines (250 Hz)": b"".join(
            (b"!\n" if (i // 1250) % 10 == 0 else b"%d\n" % v) for i, v in enumerate(vals)),
        "lead-off every other line (hostile toggle)": b"512\n!\n" * (n // 2),
    }


def lines_per_s(data: bytes, n: int, method: str, repeat: int, run_match: bool = True) -> float:
    """Lines per second of ``AsciiLineDecoder.<method>`` (``run_match=False``: no lead-off run match)."""
    return _best(data, n, method, repeat, run_match)


def _best(data: bytes, n: int, method: str, repeat: int, run_match: bool) -> float:
    best = float("inf")
    for _ in range(repeat):
        dec = AsciiLineDecoder(lead_off_runs=run_match)
        feed = getattr(dec, method)
        t = time.perf_counter()
        for i in range(0, len(data), 4096):
            feed(data[i:i + 4096])
        best = min(best, time.perf_counter() - t)
    return n / best


def markdown(res: dict) -> str:
    """ascii_lines.md, from ascii_lines.json alone."""
    lines = ["# Live ASCII decoder: lines per second with lead-off on every line", "",
             f"commit `{res['commit']}`, command `{res['command']}`", "", res["data"] + ".", "",
             "| input | live path (feed_runs), k lines/s | before: no lead-off run match, k lines/s | "
             "speed-up | feed (one call per line), k lines/s | live path / ADC-count lines |",
             "|---|---:|---:|---:|---:|---:|"]
    normal = res["cases"][0]["feed_runs_lines_per_s"]
    for r in res["cases"]:
        live, before = r["feed_runs_lines_per_s"], r["no_run_match_lines_per_s"]
        lines.append(f"| {r['case']} | {live / 1e3:.0f} | {before / 1e3:.0f} | {live / before:.1f} x | "
                     f"{r['feed_lines_per_s'] / 1e3:.0f} | {live / normal:.2f} |")
    lines += ["", "A real sketch prints at most a few thousand lines a second per device; these are the "
              "decoder's own costs (one core, shared machine: compare the columns, measured side by side)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000, help="lines per case (default 200000)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs (default 3)")
    ap.add_argument("--out", default="benchmarks/results/hostile", help="folder for ascii_lines.json/.md")
    args = ap.parse_args(argv)
    rows = []
    for name, data in cases(args.lines).items():
        rows.append({"case": name, "bytes": len(data),
                     "feed_runs_lines_per_s": round(lines_per_s(data, args.lines, "feed_runs", args.repeat)),
                     "no_run_match_lines_per_s": round(lines_per_s(data, args.lines, "feed_runs", args.repeat,
                                                                   run_match=False)),
                     "feed_lines_per_s": round(lines_per_s(data, args.lines, "feed", args.repeat))})
        print(json.dumps(rows[-1]), file=sys.stderr)
    cmd = "python -m selfmis.benchmarks.ascii_lines " + " ".join(argv if argv is not None else sys.argv[1:])
    res = {"benchmark": "ascii_lines", "commit": git_commit() or "unknown", "command": cmd.strip(),
           "data": f"synthetic sketch output, {args.lines} lines per case (ADC counts drawn uniformly from "
                   "200-799, seed 0), fed in 4 KiB reads to a fresh AsciiLineDecoder, best of "
                   f"{args.repeat}", "cases": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ascii_lines.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "ascii_lines.md").write_text(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
