"""``selfmis data``: ``summary`` (counts of a PTB-XL folder, a completeness check) and ``synth``
(a synthetic PTB-XL of any size in the official layout, for loader/memory/throughput tests)."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .data import DEFAULT_TASKS, PTBXL, DataError


def _print_table(s: dict, out) -> None:
    print(f"PTB-XL at {s['root']}", file=out)
    print(f"records   {s['records']}", file=out)
    print(f"patients  {s['patients']}", file=out)
    if "files_100hz" in s:
        print(f"files     {s['files_100hz']} at 100 Hz, {s['files_500hz']} at 500 Hz"
              f"{'' if s['files_100hz'] == s['records'] else '  (INCOMPLETE at 100 Hz)'}", file=out)
    print(f"min likelihood of scp_codes: {s['min_likelihood']:g}", file=out)
    print("\nfold     " + " ".join(f"{f:>5}" for f in s["per_fold"]), file=out)
    print("records  " + " ".join(f"{n:>5}" for n in s["per_fold"].values()), file=out)
    print("with MI  " + " ".join(f"{n:>5}" for n in s["mi_per_fold"].values()), file=out)
    print("\nlabel    records", file=out)
    for k, v in s["per_label"].items():
        print(f"{k:<8} {v:>7}", file=out)
    print("\nall MI-class statements (scp_statements.csv diagnostic_class == MI):", file=out)
    print("  " + ", ".join(f"{k} {v}" for k, v in s["mi_statements_all"].items()), file=out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="selfmis data", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sm = sub.add_parser("summary", help="records, patients, per-fold and per-label counts")
    sm.add_argument("--data", help="PTB-XL folder (default: $SELFMIS_PTBXL, ../shared/data/ptbxl-subset, bundled sample)")
    sm.add_argument("--min-likelihood", type=float, default=0.0,
                    help="count a scp_code only at or above this likelihood (0-100)")
    sm.add_argument("--json", action="store_true", help="print JSON instead of a table")
    sm.add_argument("--no-check-files", action="store_true", help="skip checking that every .dat exists")
    sy = sub.add_parser("synth", help="write a synthetic PTB-XL (official layout; not real ECGs)")
    sy.add_argument("--records", type=int, default=21799, help="records (default: PTB-XL's 21,799)")
    sy.add_argument("--out", required=True, help="folder to write")
    sy.add_argument("--source", help="real PTB-XL folder whose metadata rows are resampled (default: as summary)")
    sy.add_argument("--seed", type=int, default=0)
    sy.add_argument("--rates", type=int, nargs="+", default=[100, 500], choices=[100, 500])
    sy.add_argument("--records-500", type=int, default=None, help="write only the first N records at 500 Hz")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.cmd == "synth":
        from .synth import synthesize
        try:
            res = synthesize(args.out, args.records, args.source, args.seed, tuple(args.rates), args.records_500)
        except DataError as exc:
            print(f"selfmis data: {exc}", file=sys.stderr)
            return 1
        json.dump(res, sys.stdout, indent=2)
        print()
        return 0
    try:
        s = PTBXL(args.data, min_likelihood=args.min_likelihood).summary(
            DEFAULT_TASKS, check_files=not args.no_check_files)
    except DataError as exc:
        print(f"selfmis data: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(s, sys.stdout, indent=2)
        print()
    else:
        _print_table(s, sys.stdout)
    return 0
