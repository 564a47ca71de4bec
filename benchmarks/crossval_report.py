"""Pooled cross-validation report (filled in below)."""
from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "crossval"


def write_crossval_report(files, out, n_boot=1000, seed=0):
    raise NotImplementedError
