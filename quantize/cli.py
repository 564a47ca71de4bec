"""``selfmis quantize``: distil, export, convert to int8 TFLite, validate, write the bundle and the table.

Rebuild the shipped model from scratch (what ``make model`` runs)::

    selfmis train --method selfmis --out artifacts/selfmis_lead1
    selfmis quantize --teacher artifacts/selfmis_lead1 --out edge_runtime/models/default \\
        --results benchmarks/results/quantize

``--teacher`` is a training run's folder (holding ``model.pt``) or the checkpoint file.
A missing or unreadable teacher ends the command with exit code 3 (``MODEL``); a
stand-in teacher (NOT SelfMIS, for building and testing the chain) is trained only
when asked for with ``--standin``. Exit codes: :class:`selfmis.exit_codes.ExitCode`.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from selfmis.exit_codes import CodedError, ExitCode

from .distill import DistillConfig
from .export_onnx import ExportError
from .pipeline import PipelineOptions, run_pipeline
from .student import StudentConfig

__all__ = ["main", "build_parser"]


def _blocks(text: str) -> list:
    """'24:2,32:2,48:2' -> [[24, 2], [32, 2], [48, 2]]"""
    try:
        return [[int(c), int(s)] for c, s in (b.split(":") for b in text.split(","))]
    except ValueError:
        raise argparse.ArgumentTypeError(f"blocks must look like 24:2,32:2,48:1 (channels:stride), got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    s, d = StudentConfig(), DistillConfig()
    p = argparse.ArgumentParser(prog="selfmis quantize", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", type=Path, default=None,
                   help="SelfMIS Lead-I checkpoint: a training run's folder or its model.pt "
                        "(default: artifacts/selfmis_lead1, the folder `make model` trains)")
    p.add_argument("--standin", action="store_true",
                   help="train a quick stand-in teacher (NOT SelfMIS) instead of loading --teacher")
    p.add_argument("--out", type=Path, default=Path("edge_runtime/models/default"), help="bundle directory")
    p.add_argument("--work", type=Path, default=Path("artifacts/quantize"), help="intermediate files")
    p.add_argument("--results", type=Path, default=None,
                   help="write the table (JSON + Markdown) here (default: WORK/results)")
    p.add_argument("--data", default=None, help="PTB-XL folder (default: $SELFMIS_PTBXL or the shared subset)")
    g = p.add_argument_group("student")
    g.add_argument("--stem-channels", type=int, default=s.stem_channels)
    g.add_argument("--blocks", type=_blocks, default=s.blocks, help="channels:stride,... of the separable blocks")
    g.add_argument("--kernel", type=int, default=s.kernel)
    g.add_argument("--dropout", type=float, default=s.dropout)
    g = p.add_argument_group("distillation")
    g.add_argument("--epochs", type=int, default=d.epochs)
    g.add_argument("--batch", type=int, default=d.batch)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--temperature", type=float, default=d.temperature)
    g.add_argument("--w-label", type=float, default=d.w_label)
    g.add_argument("--w-logit", type=float, default=d.w_logit)
    g.add_argument("--w-embed", type=float, default=d.w_embed)
    g = p.add_argument_group("conversion")
    g.add_argument("--n-calib", type=int, default=400, help="calibration windows from the training folds")
    g.add_argument("--keep-ncw", action="store_true", help="keep the (1, 1, W) input layout")
    g.add_argument("--quant-type", choices=["per-channel", "per-tensor"], default="per-channel")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--standin-epochs", type=int, default=12)
    p.add_argument("--last-epoch", action="store_true", help="keep the last epoch (default: best validation MI AUROC)")
    p.add_argument("--strict", action="store_true", help="fail when int8 loses > 0.005 MI AUROC (PTQ budget)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads for distillation (default 0: torch's default, all cores)")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)

    if a.standin and a.teacher is not None:
        print("selfmis quantize: --standin trains a stand-in teacher; do not also pass --teacher", file=sys.stderr)
        return ExitCode.USAGE
    teacher = None if a.standin else (a.teacher or Path("artifacts/selfmis_lead1"))
    opts = PipelineOptions(
        out=a.out, teacher=teacher, standin=a.standin, work=a.work, data=a.data, results=a.results,
        student=StudentConfig(stem_channels=a.stem_channels, blocks=a.blocks, kernel=a.kernel, dropout=a.dropout),
        distill=DistillConfig(epochs=a.epochs, batch=a.batch, lr=a.lr, temperature=a.temperature,
                              w_label=a.w_label, w_logit=a.w_logit, w_embed=a.w_embed, seed=a.seed),
        n_calib=a.n_calib, keep_ncw=a.keep_ncw, quant_type=a.quant_type, n_boot=a.n_boot, seed=a.seed,
        standin_epochs=a.standin_epochs, progress=not a.no_progress, strict=a.strict,
        select_on_val=not a.last_epoch, threads=a.threads)
    opts.command = "selfmis quantize " + " ".join(shlex.quote(x) for x in argv)
    try:
        report = run_pipeline(opts)
    except CodedError as exc:  # the teacher is missing or unreadable (MODEL)
        print(f"selfmis quantize: {exc}", file=sys.stderr)
        return exc.exit_code
    except ExportError as exc:  # includes ValidationError: a conversion that does not match its source
        print(f"selfmis quantize: FAILED: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    print(json.dumps({"bundle": report["bundle"], "targets": report["targets"], "sizes_bytes": report["sizes_bytes"],
                      "latency_ms": report["latency_ms"]}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
