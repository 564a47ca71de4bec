"""End to end on a tiny synthetic PTB-XL folder: training, checkpoints, resume, evaluate CLI, DDP."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from selfmis.train import trainer, validation
from selfmis.train.checkpoint import CheckpointError, load_model, load_weights_into, save_checkpoint
from selfmis.train.crops import record_windows, self_cut
from selfmis.train.data import DEFAULT_TASKS
from selfmis.train.models import ResNet1d
from selfmis.preprocess import preprocess_window

sys.path.insert(0, os.path.dirname(__file__))
from test_train_fixtures import TINY, make_tiny_ptbxl  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_ptbxl(tmp_path_factory.mktemp("ptbxl"), corrupt=7)


def cfg(tiny, out, **kw):
    return dict(TINY, data=str(tiny), out=str(out), **kw)


def test_self_cut_lengths_positions_and_same_record():
    rng = np.random.default_rng(0)
    X = np.random.default_rng(1).normal(size=(16, 1, 1000)).astype(np.float32)
    lengths = set()
    for _ in range(50):
        crops, starts, L = self_cut(X, rng, 2.5, 10.0)
        lengths.add(L)
        assert 250 <= L <= 1000 and crops.shape == (16, 1, L)
        assert (starts >= 0).all() and (starts + L <= 1000).all()
        i = int(rng.integers(16))  # crop i is record i's own samples, preprocessed on the crop
        np.testing.assert_allclose(crops[i], preprocess_window(X[i, :, starts[i]:starts[i] + L]), atol=1e-5)
    assert min(lengths) < 400 and max(lengths) > 850  # the whole range is used
    w = record_windows(X)
    assert w.shape == (16, 6, 1, 500)


def test_model_any_window_length():
    m = ResNet1d(1, [8, 8, 8, 8]).eval()
    for W in (250, 500, 1000, 777):
        assert m(torch.randn(2, 1, W)).shape == (2, len(DEFAULT_TASKS))
        assert m.embed(torch.randn(2, 1, W)).shape == (2, 8)


def test_checkpoint_roundtrip_and_wrong_architecture(tmp_path):
    m = ResNet1d(1, [8, 8, 8, 8], proj_dim=8).eval()
    p = save_checkpoint(tmp_path / "m.pt", m, {"method": "x"}, {"thresholds": {"MI": 0.1}})
    m2, c = load_model(p)
    x = torch.randn(3, 1, 500)
    torch.testing.assert_close(m(x), m2(x))
    assert c["method"] == "x" and c["_extra"]["thresholds"]["MI"] == 0.1
    with pytest.raises(CheckpointError, match="architecture differs"):
        load_weights_into(ResNet1d(1, [16, 16, 16, 16]), p)
    with pytest.raises(CheckpointError, match="expected 'GenerativeLead1'"):
        load_model(p, expect="GenerativeLead1")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "junk.pt")


def test_tiny_selfmis_end_to_end_skips_corrupt_records(tiny, tmp_path):
    res = trainer.train(cfg(tiny, tmp_path / "run", method="selfmis", align_target="featmap", distill_weight=0.5))
    assert 7 in res["skipped_at_load"]  # truncated file: skipped and counted by the data layer
    assert (tmp_path / "run" / "model.pt").is_file() and "MI" in res["test"]
    model, c = load_model(tmp_path / "run" / "model.pt")
    assert model(torch.randn(2, 1, 500)).shape == (2, len(DEFAULT_TASKS))
    assert set(c["_extra"]["thresholds"]) >= {"MI", "MI_vs_NORM"}
    assert np.isfinite(res["frechet_single_vs_12lead"])


def test_nan_record_mid_epoch_is_skipped_and_counted(tiny, tmp_path, monkeypatch):
    real = trainer.load_data

    def with_nan(c):
        d = real(c)
        d["train"]["X"][3, 0, 500:] = np.nan  # a corrupt record found while training
        return d
    monkeypatch.setattr(trainer, "load_data", with_nan)
    res = trainer.train(cfg(tiny, tmp_path / "run", method="scratch"))
    assert len(res["skipped_in_training"]) == 1


@pytest.mark.parametrize("method", ["simclr", "generative", "random", "twelve_lead"])
def test_baselines_run(tiny, tmp_path, method):
    res = trainer.train(cfg(tiny, tmp_path / method, method=method, epochs=1))
    model, c = load_model(tmp_path / method / "model.pt")
    leads = 12 if method == "twelve_lead" else 1
    assert model(torch.randn(2, leads, 500)).shape == (2, len(DEFAULT_TASKS))
    assert "MI" in res["test"]


def test_resume_continues_from_last_epoch(tiny, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = trainer.single_lead_val_fn

    def failing_val(model, data, c):
        fn, calls = real(model, data, c), []

        def val():
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt  # the session dies during epoch 2
            return fn()
        return val
    monkeypatch.setattr(validation, "single_lead_val_fn", failing_val)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(cfg(tiny, out, method="scratch"))
    assert (out / "scratch.last.pt").is_file() and not (out / "model.pt").exists()
    monkeypatch.setattr(validation, "single_lead_val_fn", real)
    res = trainer.train(cfg(tiny, out, method="scratch"))
    epochs = [h["epoch"] for h in res["log"] if h.get("stage") == "scratch"]
    assert epochs == [0, 1]  # epoch 0 came from the interrupted run's state


def test_evaluate_cli_split_all(tiny, tmp_path):
    trainer.train(cfg(tiny, tmp_path / "run", method="scratch", epochs=1))
    from selfmis.quantize.evaluate_cli import main
    out = tmp_path / "eval.json"
    assert main(["--checkpoint", str(tmp_path / "run" / "model.pt"), "--data", str(tiny), "--split", "all",
                 "--json", str(out), "--n-boot", "20"]) == 0
    r = json.loads(out.read_text())
    assert r["n_records"] == 39 and r["skipped_records"] == 1
    assert r["tasks"]["MI"]["n_positives"] == 19 and "auroc" in r["tasks"]["MI"]
    assert "too few" in r["tasks"]["ASMI"]["status"]


def test_train_cli_config_file_and_overrides(tiny, tmp_path):
    from selfmis.train.cli import main
    conf = tmp_path / "c.json"
    conf.write_text(json.dumps(cfg(tiny, tmp_path / "run", method="random", epochs=5)))
    assert main(["--config", str(conf), "--seed", "3"]) == 0
    c = json.loads((tmp_path / "run" / "config.json").read_text())
    assert c["seed"] == 3 and c["method"] == "random" and c["widths"] == [8, 8, 8, 8]


def test_ddp_two_gloo_processes(tiny, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "selfmis.train.cli", "--method", "scratch", "--data", str(tiny), "--out", str(out),
           "--widths", "8", "8", "8", "8", "--epochs", "2", "--batch-size", "8", "--progress", "false",
           "--n-boot", "20"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and (out / "model.pt").is_file()


def test_resume_ignores_a_run_of_another_configuration(tiny, tmp_path):
    out = tmp_path / "run"
    trainer.train(cfg(tiny, out, method="scratch", epochs=1))
    res = trainer.train(cfg(tiny, out, method="scratch", epochs=2, lr=1e-3))
    assert [h["epoch"] for h in res["log"] if h.get("stage") == "scratch"] == [0, 1]  # retrained


def test_crossfit_teachers_teach_only_records_they_did_not_train_on(tiny, tmp_path):
    """Two 12-lead teachers on disjoint halves of the training folds; each record of the student's
    training set gets its targets from the teacher that did not see it, and a teacher that saw
    the test fold is refused."""
    paths = []
    for name, half in (("a", [2, 4, 6, 8]), ("b", [3, 5, 7, 9])):
        trainer.train(cfg(tiny, tmp_path / name, method="twelve_lead", test_fold=10, train_folds=half))
        paths.append(str(tmp_path / name / "model.pt"))
    c = trainer.resolve_config(cfg(tiny, tmp_path / "s", method="selfmis", teacher=",".join(paths)))
    teachers, assign = trainer.crossfit_assignment(paths, np.array([2, 3, 4, 9, 8]), c)
    assert len(teachers) == 2 and assign.tolist() == [1, 0, 1, 0, 1]
    r = trainer.train(cfg(tiny, tmp_path / "s", method="selfmis", teacher=",".join(paths), distill_weight=1.0))
    assert (tmp_path / "s" / "model.pt").is_file() and r["test"]["MI"]["n"] == 4
    assert [h["epoch"] for h in r["log"] if h.get("stage") == "joint"] == [0, 1]
    # the same teachers for a run whose test fold is 2: teacher a trained on it
    with pytest.raises(ValueError, match="fold"):
        trainer.train(cfg(tiny, tmp_path / "bad", method="selfmis", test_fold=2, teacher=",".join(paths)))


def test_aux_statements_teacher_and_scratch_control(tiny, tmp_path):
    """``aux_tasks="statements"``: the extra SCP statements come from scp_statements.csv, are learnt
    through a head that is not saved, and the saved model keeps the standard outputs."""
    data = trainer.load_data(trainer.resolve_config(cfg(tiny, tmp_path / "x", method="scratch",
                                                        aux_tasks="statements", aux_min_positives=1)))
    assert data["aux_codes"] and not set(data["aux_codes"]) & set(DEFAULT_TASKS)
    assert data["train"]["Yaux"].shape == (len(data["train"]["ids"]), len(data["aux_codes"]))
    r = trainer.train(cfg(tiny, tmp_path / "s", method="scratch", aux_tasks="statements", aux_min_positives=1))
    m, _ = load_model(tmp_path / "s" / "model.pt")
    assert m.head.out_features == len(DEFAULT_TASKS) and r["test"]["MI"]["n"] == 4
    with pytest.raises(ValueError, match="aux_tasks"):
        trainer.resolve_config(cfg(tiny, tmp_path / "y", method="selfmis", aux_tasks="statements"))


def test_label_fraction_same_nested_subset_and_selfmis_aligns_all(tiny, tmp_path):
    ids = np.arange(1, 2001)
    quarter, half = trainer.labeled_records(ids, 0.25), trainer.labeled_records(ids, 0.5)
    assert 0.2 < quarter.mean() < 0.3 and not (quarter & ~half).any()  # nested
    np.testing.assert_array_equal(quarter, trainer.labeled_records(ids[::-1], 0.25)[::-1])  # per record
    r = trainer.train(cfg(tiny, tmp_path / "s", method="scratch", label_fraction=0.5))
    assert r["n_train"] == r["n_train_labeled"] < 32
    r = trainer.train(cfg(tiny, tmp_path / "j", method="selfmis", label_fraction=0.5))
    assert r["n_train"] > r["n_train_labeled"] == int(trainer.labeled_records(
        trainer.load_data(trainer.resolve_config(cfg(tiny, tmp_path / "x")))["train"]["ids"], 0.5).sum())


def test_self_supervised_teacher_is_cotrained_without_labels(tiny, tmp_path):
    r = trainer.train(cfg(tiny, tmp_path / "c", method="selfmis", teacher_init="random", cotrain=True,
                          align_loss="infonce", schedule="two_stage"))
    assert [h["stage"] for h in r["log"] if "epoch" in h][:1] == ["align"] and "frechet_single_vs_12lead" in r
    with pytest.raises(ValueError, match="cotrain"):
        trainer.resolve_config(cfg(tiny, tmp_path / "x", method="selfmis", teacher_init="random"))
