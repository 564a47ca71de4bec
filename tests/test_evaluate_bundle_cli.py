"""``selfmis evaluate --model BUNDLE``: the shipped int8 model scored like a checkpoint."""
import json
import subprocess
import sys


def evaluate_shipped_bundle(data, split, tmp_path) -> dict:
    """``selfmis evaluate --model`` on the shipped bundle, as a user runs it; its JSON result."""
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "selfmis.cli", "evaluate", "--model",
                        "edge_runtime/models/default", "--data", str(data), "--split", split,
                        "--n-boot", "50", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())


def test_evaluate_shipped_bundle_on_bundled_records(bundled_ptbxl, tmp_path):
    res = evaluate_shipped_bundle(bundled_ptbxl, "all", tmp_path)
    assert res["n_records"] == 9 and res["lead"] == "I"
    # 6 MI and 3 other records: too few negatives to score; said, not printed as a number
    assert res["tasks"]["MI"]["n_positives"] == 6 and "auroc" not in res["tasks"]["MI"]
    assert "too few" in res["tasks"]["MI"]["status"]


def test_evaluate_reproduces_the_cards_test_metric(shared_ptbxl, tmp_path):
    from selfmis.bundle import load_bundle

    card = load_bundle("edge_runtime/models/default").card
    res = evaluate_shipped_bundle(shared_ptbxl, "test", tmp_path)
    assert res["n_records"] == 255
    assert abs(res["tasks"]["MI"]["auroc"] - card.metrics["auroc"]["MI"]["auroc"]) < 1e-3


def test_evaluate_needs_exactly_one_model():
    r = subprocess.run([sys.executable, "-m", "selfmis.cli", "evaluate"], capture_output=True, text=True)
    assert r.returncode == 2 and "--checkpoint" in r.stderr
