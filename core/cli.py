"""``selfmis``: one command for the whole toolkit.

Each subcommand lives in its own package and is imported only when used, so
``selfmis --help`` and the gateway-side commands never pay for torch or
TensorFlow.
"""
from __future__ import annotations

import importlib
import sys

# subcommand -> (module, function, one-line help)
COMMANDS = {
    "data": ("selfmis.train.data_cli", "main", "inspect a PTB-XL folder (data summary)"),
    "train": ("selfmis.train.cli", "main", "train SelfMIS and the baselines"),
    "evaluate": ("selfmis.quantize.evaluate_cli", "main", "score a checkpoint or a TFLite bundle on PTB-XL"),
    "quantize": ("selfmis.quantize.cli", "main", "distil, int8-quantize and convert to TFLite"),
    "calibrate": ("selfmis.quantize.calibrate_cli", "main", "fit calibration + operating points into a bundle's card"),
    "bundle": ("selfmis.bundle_cli", "main", "check a model bundle, or re-seal an older card (sha256)"),
    "deploy": ("selfmis.firmware_bridge.deploy", "main", "pack/push a model bundle to a gateway"),
    "recording": ("selfmis.edge_runtime.recording_cli", "main", "summarise/export an edge-run --record directory (EDF+, WFDB, CSV)"),
    "sim": ("selfmis.firmware_bridge.virtual_device", "main", "virtual ECG wearable (serial protocol)"),
    "demo": ("selfmis.firmware_bridge.demo", "main", "stream a real MI record through edge-run"),
    "bench": ("selfmis.benchmarks.run", "main", "latency, throughput, memory, energy, accuracy"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: selfmis <command> [options]   (selfmis <command> --help)", "", "commands:"]
    lines += [f"  {name:<{width}}  {helptext}" for name, (_, _, helptext) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> int:
    """``selfmis COMMAND ARGV``: dispatch to a command's own ``main``; returns the exit code.

    Parameters
    ----------
    argv : list of str, optional
        The command and its arguments (default ``sys.argv[1:]``); ``selfmis --help`` lists them.

    Returns
    -------
    int
        :class:`~selfmis.exit_codes.ExitCode` of the command (2 for an unknown command).

    Example
    -------
    >>> main(["--version"])  # doctest: +SKIP
    0
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from selfmis import __version__
        print(__version__)
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"selfmis: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    try:
        entry = getattr(importlib.import_module(module), func)
    except ImportError as exc:
        print(f"selfmis {name}: not available in this installation ({exc}); "
              "install the matching extra, e.g. pip install 'selfmis-edge[train,convert]'",
              file=sys.stderr)
        return 2
    rc = entry(rest)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
