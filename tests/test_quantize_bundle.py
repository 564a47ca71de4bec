"""The shipped default bundle (edge_runtime/models/default) and the evaluator hook over bundles."""
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")

from selfmis.bundle import load_bundle
from selfmis.edge_runtime.models import default_bundle_dir  # noqa: E402
from selfmis.edge_runtime.interpreter import TFLiteModel  # noqa: E402
from selfmis.preprocess import PreprocessSpec  # noqa: E402
from selfmis.quantize import evaluate_bundle, tflite_predict  # noqa: E402

TASKS = ["MI", "IMI", "ASMI", "ILMI", "AMI", "ALMI", "LMI", "IPLMI", "IPMI", "PMI", "NORM"]


@pytest.fixture(scope="module")
def card():
    return load_bundle(default_bundle_dir()).card


def test_shipped_bundle_is_full_integer_and_small(card):
    assert card.file_size <= 64 * 1024
    assert card.input.dtype == "int8" and card.output.dtype == "int8"
    assert card.input.layout in ("NWC", "NCW")
    want = [1, 500, 1] if card.input.layout == "NWC" else [1, 1, 500]
    assert card.input.shape == want and card.output.shape == [1, len(TASKS)]
    assert card.labels == TASKS and card.lead == "I" and card.output_kind == "logits"
    assert PreprocessSpec.from_dict(card.preprocessing) == PreprocessSpec()


def test_shipped_card_documents_provenance(card):
    for key in ("data", "split", "fs", "lead", "seed", "auroc"):
        assert key in card.metrics, key
    assert card.metrics["auroc"]["MI"]["auroc"] > 0.5
    assert card.thresholds and all(0.0 < p < 1.0 for p in card.thresholds.values())
    for pkg in ("torch", "onnx", "onnx2tf", "tensorflow"):
        assert card.versions.get(pkg), pkg
    assert card.training.get("teacher") and card.training.get("folds")
    assert 1_000 < card.params < 100_000


def test_shipped_bundle_runs_on_real_windows(bundled_ptbxl):
    from selfmis.quantize.windows import load_lead1, windows_of

    w = windows_of(load_lead1(range(1, 11), bundled_ptbxl))
    model = TFLiteModel(default_bundle_dir())
    logits = model.predict_logits(w.X)
    assert logits.shape == (len(w.X), len(TASKS)) and np.isfinite(logits).all()
    # the evaluator's (N, 1, W) convention gives the same numbers
    assert np.array_equal(tflite_predict(default_bundle_dir())(w.X[:, None, :]), logits)


def test_evaluate_bundle_scores_like_the_evaluator(bundled_ptbxl):
    res = evaluate_bundle(default_bundle_dir(), data=bundled_ptbxl, split="all", n_boot=20)
    assert res["n_records"] == 9 and set(TASKS) <= set(res["tasks"])
    assert res["record_scores"].shape == (9, len(TASKS))
