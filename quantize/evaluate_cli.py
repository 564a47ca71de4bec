"""``selfmis evaluate``: score a torch checkpoint or a TFLite bundle on PTB-XL.

Both are scored the same way (:func:`selfmis.train.evaluate.score_records`: 5 s windows every
1 s, mean logit per record, AUROC/AUPRC with bootstrap CIs). The command lives on the quantize
side because a bundle needs the TFLite predictor; checkpoints need only the trainer's evaluator.
"""
from __future__ import annotations

import argparse
import json
import sys

from selfmis.train.evaluate import evaluate_checkpoint, format_task

from .bundle_eval import evaluate_bundle
from .micro import MicroUnavailable


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="selfmis evaluate", description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="a torch checkpoint from selfmis train: the run folder or its model.pt")
    what.add_argument("--model", metavar="BUNDLE",
                      help="a TFLite bundle (model.tflite + card.json), run through the gateway's interpreter")
    p.add_argument("--data", default=None, help="PTB-XL folder (default: $SELFMIS_PTBXL or the shared subset)")
    p.add_argument("--split", default="test", choices=["test", "val", "all", "train"])
    p.add_argument("--folds", type=int, nargs="*", default=None, help="override the test folds")
    p.add_argument("--fs", type=int, default=100, choices=[100, 500], help="which records folder to read")
    p.add_argument("--interpreter", choices=["litert", "micro"], default="litert",
                   help="with --model: LiteRT as on the gateway (default), or TFLite Micro's reference kernels "
                        "as on a microcontroller (pip install 'selfmis-edge[micro]')")
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the full result here")
    a = p.parse_args(argv)
    folds = a.folds
    if a.split == "all" and folds is None:
        folds = list(range(1, 11))
    if a.model:  # the deployed model, scored exactly as the edge runtime runs it
        try:
            res = evaluate_bundle(a.model, a.data, a.split, folds, fs=a.fs, n_boot=a.n_boot, seed=a.seed,
                                  interpreter=a.interpreter)
        except MicroUnavailable as exc:
            print(f"selfmis evaluate: {exc}", file=sys.stderr)
            return 2
        res.pop("record_scores", None)
        print(f"{res['name']} (TFLite bundle on {a.interpreter}, lead {res['lead']}) on {res['n_records']} records "
              f"[{a.split}], {res['skipped_records']} skipped")
    else:
        res = evaluate_checkpoint(a.checkpoint, a.data, a.split, folds, None, a.fs, a.n_boot, a.seed)
        print(f"{res['method']} ({res['input']}, lead {res['lead']}) on {res['n_records']} records "
              f"[{a.split}], {res['skipped_records']} skipped")
    for t, r in res["tasks"].items():
        print(f"  {t:11s} {format_task(r)}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
