"""``selfmis bundle``: check a model bundle, or re-seal an older card (record its model's sha256).

    selfmis bundle check DIR     load DIR as the runtime would (schema, sha256): exit 0 or 3
    selfmis bundle reseal DIR    write the model file's sha256 and size into DIR/card.json

Exit codes: :class:`selfmis.exit_codes.ExitCode` (0 ok, 2 usage, 3 the bundle is refused).
"""
from __future__ import annotations

import argparse
import sys

from .bundle import BundleError, load_bundle, reseal_bundle
from .exit_codes import ExitCode

__all__ = ["main"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="selfmis bundle", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("check", "reseal"))
    ap.add_argument("directory", help="the bundle folder (card.json + model.tflite)")
    try:
        args = ap.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        b = reseal_bundle(args.directory) if args.action == "reseal" else load_bundle(args.directory)
    except BundleError as exc:
        print(f"selfmis bundle: {exc}", file=sys.stderr)
        return int(ExitCode.MODEL)
    print(f"{b.directory}: {b.card.name}, {len(b.card.labels)} labels, sha256 {b.card.sha256[:16]}... "
          f"{'re-sealed' if args.action == 'reseal' else 'ok'}")
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
