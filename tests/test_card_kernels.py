"""A card records the LiteRT kernels its thresholds were validated with, and the runtime runs them (issue 23).

XNNPACK's int8 kernels round differently on x86 and arm64 (benchmarks/results/pi/: one ``micro``
decision of 448 flipped on an emulated Pi); LiteRT's reference kernels give the same int8 outputs on
every CPU. The shipped cards were validated with the reference kernels, so a Pi decides as validated.
"""
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from selfmis.bundle import KERNEL_MODES, BundleError, load_bundle
from selfmis.edge_runtime import interpreter
from selfmis.edge_runtime.interpreter import KERNELS, KERNELS_ENV, TFLiteModel
from selfmis.edge_runtime.models import default_bundle_dir

SHIPPED = default_bundle_dir().parent
REPO = Path(__file__).resolve().parents[1]
REC = "core/sample_data/ptbxl/records500/00000/00271_hr"


def _bundle(tmp_path, **card):
    """A copy of the shipped default bundle with ``card`` fields set (None: removed)."""
    d = tmp_path / "b"
    shutil.copytree(default_bundle_dir(), d)
    raw = json.loads((d / "card.json").read_text())
    for k, v in card.items():
        raw.pop(k, None) if v is None else raw.__setitem__(k, v)
    (d / "card.json").write_text(json.dumps(raw))
    interpreter._warned.clear()
    return d


@pytest.mark.parametrize("name", ["default", "micro"])
def test_shipped_cards_were_validated_with_the_reference_kernels_and_run_them(name, monkeypatch):
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    card = load_bundle(SHIPPED / name).card
    assert card.kernels == "reference" and card.metrics["interpreter"]["kernels"] == "reference"
    m = TFLiteModel(SHIPPED / name)
    assert (m.kernels, m.kernels_from) == ("reference", "the card")
    assert tuple(KERNELS) == KERNEL_MODES


def test_other_kernels_than_the_cards_run_only_when_asked_and_warn_once(tmp_path, monkeypatch, caplog):
    d = _bundle(tmp_path, kernels="reference")
    monkeypatch.setenv(KERNELS_ENV, "default")
    with caplog.at_level(logging.WARNING, logger="selfmis.edge_runtime"):
        a, b = TFLiteModel(d), TFLiteModel(d)
    assert a.kernels == b.kernels == "default" and a.kernels_from == KERNELS_ENV
    warned = [r.getMessage() for r in caplog.records if "validated with reference kernels" in r.getMessage()]
    assert len(warned) == 1, caplog.text  # a 100-device gateway says it once
    assert str(d) in warned[0] and "default kernels run (from SELFMIS_TFLITE_KERNELS)" in warned[0]
    assert f"unset {KERNELS_ENV}" in warned[0]
    caplog.clear()
    monkeypatch.delenv(KERNELS_ENV)
    with caplog.at_level(logging.WARNING, logger="selfmis.edge_runtime"):
        assert TFLiteModel(d).kernels == "reference"
        assert TFLiteModel(d, kernels="reference").kernels == "reference"
    assert not caplog.records  # the card's kernels: nothing to say


def test_an_older_card_without_kernels_runs_the_default_ones_silently(tmp_path, monkeypatch, caplog):
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    d = _bundle(tmp_path, kernels=None)
    assert load_bundle(d).card.kernels == ""
    with caplog.at_level(logging.WARNING, logger="selfmis.edge_runtime"):
        m = TFLiteModel(d)
    assert (m.kernels, m.kernels_from) == ("default", "the default") and not caplog.records
    assert TFLiteModel(d, use_xnnpack=False).kernels == "builtin"


def test_a_card_naming_unknown_kernels_is_refused(tmp_path):
    d = _bundle(tmp_path, kernels="fastest")
    with pytest.raises(BundleError, match=r"card.json: kernels: must be one of \('default', 'builtin', 'reference'\)"):
        load_bundle(d)


def test_reference_and_default_kernels_are_both_real_and_close(tmp_path, monkeypatch):
    """The card's choice changes the interpreter, not the model: outputs within a few LSB of XNNPACK's."""
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    w = np.random.default_rng(1).standard_normal((8, 500)).astype(np.float32)
    ref = TFLiteModel(default_bundle_dir()).predict_logits(w)
    fast = TFLiteModel(default_bundle_dir(), kernels="default").predict_logits(w)
    scale = load_bundle(default_bundle_dir()).card.output.scale
    assert np.abs(ref - fast).max() <= 3 * scale + 1e-6


def test_edge_run_says_which_kernels_run_and_where_from(monkeypatch):
    monkeypatch.delenv(KERNELS_ENV, raising=False)
    r = subprocess.run([sys.executable, "-m", "selfmis.edge_runtime.cli", "--replay", REC, "--fast",
                        "--max-seconds", "6"], capture_output=True, text=True, timeout=120,
                       cwd=str(REPO))
    assert r.returncode == 0, r.stderr
    assert "reference kernels from the card" in r.stderr
    r = subprocess.run([sys.executable, "-m", "selfmis.edge_runtime.cli", "--replay", REC, "--fast",
                        "--max-seconds", "6"], capture_output=True, text=True, timeout=120,
                       cwd=str(REPO), env={**os.environ, KERNELS_ENV: "default"})
    assert r.returncode == 0 and "WARNING" in r.stderr and "validated with reference kernels" in r.stderr
