"""Per-epoch metrics of a run: ``metrics.jsonl`` and ``metrics.csv`` in the run folder, and
optionally TensorBoard scalars (``--tensorboard DIR``; the package is imported only then)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

__all__ = ["RunLog", "COLUMNS"]

COLUMNS = ("stage", "epoch", "loss", "val_mi_auroc", "lr", "seconds", "cpu_seconds", "records_per_s", "device", "world",
           "rank_param_spread")


class RunLog:
    """Appends one row per finished epoch (rank 0 only); a resumed run appends to the same files."""

    def __init__(self, out, tensorboard: str = ""):
        self.jsonl, self.csv = Path(out) / "metrics.jsonl", Path(out) / "metrics.csv"
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise RuntimeError(f"--tensorboard {tensorboard}: TensorBoard is not installed "
                                   f"({exc}); pip install tensorboard") from None
            self.tb = SummaryWriter(log_dir=str(Path(tensorboard) / Path(out).name))

    def write(self, rec: dict) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        new = not self.csv.is_file()
        with self.csv.open("a", newline="") as f:
            w = csv.DictWriter(f, COLUMNS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(rec)
        if self.tb is not None:
            step = rec["epoch"]
            for k in ("loss", "val_mi_auroc", "lr", "records_per_s"):
                if rec.get(k) is not None:
                    self.tb.add_scalar(f"{rec['stage']}/{k}", rec[k], step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
