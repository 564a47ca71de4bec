"""``selfmis train``: one method on one split, from a config file plus command-line overrides.

    selfmis train --method selfmis --test-fold 10 --seed 0 --out runs/selfmis-f10-s0
    selfmis train --config cfg.json --epochs 5          # a file, then overrides
    selfmis train --method scratch --device cuda:1 --amp off
    torchrun --nproc_per_node 2 -m selfmis.train.cli --method scratch ...   # DDP (nccl on CUDA, gloo on CPU)

--out is the run folder: the checkpoint is OUT/model.pt, and every command that loads a
checkpoint (``--teacher`` here, ``selfmis quantize --teacher``, ``selfmis evaluate``) takes
the run folder or the file. Exit codes (:class:`selfmis.exit_codes.ExitCode`): 2 bad
arguments or device, 3 a teacher checkpoint that is missing or unreadable, 4 unreadable data.

Devices: --device auto (CUDA, else MPS, else CPU) | cpu | cuda | cuda:N | mps; bf16 autocast on
CUDA unless --amp off; --threads 0 = the available cores. Per-epoch metrics go to
OUT/metrics.jsonl and OUT/metrics.csv (and TensorBoard with --tensorboard DIR).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from selfmis.exit_codes import ExitCode
from selfmis.provenance import data_summary, provenance
from selfmis.train.checkpoint import CHECKPOINT_NAME, CheckpointError
from selfmis.train.data import DataError, resolve_data_root
from selfmis.train.distributed import DeviceError
from selfmis.train.trainer import DEFAULTS, METHODS, train

__all__ = ["main", "build_parser", "load_config_file"]


def load_config_file(path) -> dict:
    p = Path(path)
    if p.suffix == ".toml":
        import tomllib
        return tomllib.loads(p.read_text())
    return json.loads(p.read_text())


def _bool(s):
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {s}")


def build_parser():
    p = argparse.ArgumentParser(prog="selfmis train", description=__doc__.split("\n\n")[0])
    p.add_argument("method_pos", nargs="?", choices=METHODS, help="method (same as --method)")
    p.add_argument("--config", help="JSON or TOML file with any of the keys below")
    for key, default in DEFAULTS.items():
        flag = "--" + key.replace("_", "-")
        if key == "val_fold":  # default None: derived from the test fold
            p.add_argument(flag, type=int, default=None,
                           help="validation fold (default: test fold %% 10 + 1, so fold 10 -> 1)")
        elif key == "train_folds":
            p.add_argument(flag, type=int, nargs="+", default=None,
                           help="training folds (default: all but test and validation); "
                                "PTB-XL benchmark convention: --val-fold 9 --train-folds 1 2 3 4 5 6 7 8")
        elif isinstance(default, bool):
            p.add_argument(flag, type=_bool, default=None)
        elif isinstance(default, list):
            p.add_argument(flag, type=type(default[0]), nargs="+", default=None)
        elif isinstance(default, (int, float)) and not isinstance(default, bool):
            p.add_argument(flag, type=type(default), default=None)
        else:
            p.add_argument(flag, default=None)
    return p


def _write_provenance(cfg: dict, argv) -> None:
    """OUT/provenance.json: commit, command, data (name, records, hash of the record list), machine, libraries."""
    import pandas as pd

    root = resolve_data_root(cfg.get("data"))
    ids = pd.read_csv(root / "ptbxl_database.csv", index_col=0).index
    data = data_summary(root.name, ids, fs=100.0, folds={"train": cfg.get("train_folds"), "val": cfg.get("val_fold"),
                                                          "test": cfg.get("test_fold")})
    out = Path(cfg["out"]) / "provenance.json"
    out.write_text(json.dumps(provenance(["selfmis", "train", *argv], data), indent=1) + "\n")


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    cfg = load_config_file(a.config) if a.config else {}
    for key in DEFAULTS:
        v = getattr(a, key)
        if v is not None:
            cfg[key] = v
    if a.method_pos:
        cfg["method"] = a.method_pos
    for k in ("max_records",):
        if isinstance(cfg.get(k), str):
            cfg[k] = int(cfg[k])
    if str(cfg.get("out", "")).endswith(".pt"):
        print(f"selfmis train: --out is the run folder (the checkpoint is written as OUT/{CHECKPOINT_NAME}); "
              f"got a file name {cfg['out']!r}: use --out {cfg['out'][:-3]}", file=sys.stderr)
        return ExitCode.USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        res = train(cfg)
    except DeviceError as exc:
        print(f"selfmis train: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except (CheckpointError, FileNotFoundError) as exc:  # the 12-lead teacher (--teacher) or a resumed run
        print(f"selfmis train: {exc}", file=sys.stderr)
        return ExitCode.MODEL
    except DataError as exc:
        print(f"selfmis train: {exc}", file=sys.stderr)
        return ExitCode.SOURCE
    if "test" in res:  # rank 0
        _write_provenance(res["config"], sys.argv[1:] if argv is None else argv)
        t = res["test"]["MI"]
        v = res["val"]["MI"]
        print(f"{res['method']}: val MI AUROC {v.get('auroc', float('nan')):.3f}  "
              f"test MI AUROC {t.get('auroc', float('nan')):.3f} {t.get('auroc_ci')}  "
              f"({res['seconds']:.0f} s) -> {Path(res['config']['out']) / CHECKPOINT_NAME}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
