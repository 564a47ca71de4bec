"""DistributedDataParallel on CPU (gloo, 2 processes under torchrun) for every method.

For each method, one optimiser step per stage on one global batch of 32 records: the two ranks end
with the same parameters (checked by the trainer after every epoch: ``rank_param_spread``), and the
loss and the weights equal those of one process that took the same global batch (SyncBatchNorm,
crops drawn for the global batch, contrastive negatives gathered across ranks). Plus: an uneven
shard with few labels does not hang, device selection, resume with another device string.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from selfmis.train import trainer, validation
from selfmis.train.checkpoint import load_checkpoint
from selfmis.train.distributed import DeviceError, epoch_shards, select_device

sys.path.insert(0, os.path.dirname(__file__))
from test_train_fixtures import TINY, make_tiny_ptbxl  # noqa: E402

# 32 training records (folds 2-9 of 40) in one global batch: one step per stage and epoch
ONE_STEP = dict(TINY, epochs=1, pretrain_epochs=1, teacher_epochs=1, batch_size=32, n_boot=10)
AUX = dict(aux_tasks="statements", aux_min_positives=1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_ptbxl(tmp_path_factory.mktemp("ptbxl"))


@pytest.fixture(scope="module")
def teachers(tiny, tmp_path_factory):
    """Two 12-lead teachers on alternate halves of fold 10's training folds, with the aux head."""
    root, paths = tmp_path_factory.mktemp("teachers"), []
    for name, half in (("a", [2, 4, 6, 8]), ("b", [3, 5, 7, 9])):
        trainer.train(dict(ONE_STEP, **AUX, data=str(tiny), out=str(root / name), method="twelve_lead",
                           train_folds=half))
        paths.append(str(root / name / "model.pt"))
    return paths


def torchrun(config: dict, nproc: int = 2, timeout: int = 150):
    path = os.path.join(config["out"] + ".json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(config, f)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "selfmis.train.cli", "--config", path]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def epochs_log(out) -> list:
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


CASES = {
    "scratch_aux": dict(method="scratch", **AUX),
    "twelve_lead_aux": dict(method="twelve_lead", train_folds=[2, 4, 6, 8], **AUX),
    "selfmis_crossfit": dict(method="selfmis", distill_weight=0.5, align_weight=3.0),
    "selfmis_clip_cotrain": dict(method="selfmis", teacher_init="random", cotrain=True, align_loss="infonce",
                                 schedule="two_stage"),
    "simclr": dict(method="simclr"),
    "generative": dict(method="generative"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_gloo_processes_equal_one_process(tiny, teachers, tmp_path, case):
    conf = dict(ONE_STEP, **CASES[case], data=str(tiny), progress=False)
    if case == "selfmis_crossfit":
        conf["teacher"] = ",".join(teachers)
    if case == "generative":
        conf["teacher"] = teachers[0]  # trained on folds 2, 4, 6, 8: never saw test 10 or validation 1
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    trainer.train(dict(conf, out=one, threads=1))
    torchrun(dict(conf, out=two))
    log1, log2 = epochs_log(one), epochs_log(two)
    assert [r["stage"] for r in log1] == [r["stage"] for r in log2] and log2
    for r1, r2 in zip(log1, log2):
        assert r2["world"] == 2 and r2["rank_param_spread"] < 1e-6, r2  # the ranks agree
        assert abs(r1["loss"] - r2["loss"]) < 2e-4 * max(1.0, abs(r1["loss"])), (r1, r2)
    a, b = load_checkpoint(os.path.join(one, "model.pt")), load_checkpoint(os.path.join(two, "model.pt"))
    # the reconstructor's conv biases feed a BatchNorm and its output bias a per-lead z-score: their
    # gradient is zero up to rounding, whose sign AdamW's first step turns into +-lr either way
    zero_grad = re.compile(r"recon\.(body\.\d+|out)\.bias")
    worst = max(float((a["state_dict"][k].float() - b["state_dict"][k].float()).abs().max())
                for k in a["state_dict"] if not zero_grad.fullmatch(k))
    assert worst < 5e-4, worst  # one AdamW step moves weights by ~lr = 3e-3: a wrong gradient shows
    assert json.load(open(os.path.join(two, "metrics.json")))["world_size"] == 2


def test_uneven_shards_and_unlabelled_shards_do_not_hang(tiny, tmp_path):
    """31 items over 2 ranks with 3 per rank (the tail is dropped on both), a few labels only (some
    shards hold no labelled record), two epochs: finishes well inside the timeout."""
    out = str(tmp_path / "uneven")
    torchrun(dict(TINY, data=str(tiny), out=out, method="selfmis", teacher_init="random", cotrain=True,
                  align_loss="infonce", label_fraction=0.3, batch_size=6, max_records=31), timeout=150)
    log = epochs_log(out)
    assert [r["epoch"] for r in log if r["stage"] == "joint"] == [0, 1]
    assert all(r["rank_param_spread"] < 1e-6 for r in log)


def test_epoch_shards_equal_steps_and_disjoint_rows():
    for n, b, w in ((31, 6, 2), (100, 64, 3), (5, 64, 2), (40, 8, 4)):
        shards = [epoch_shards(n, b, w, r, 0, 1) for r in range(w)]
        assert len({len(s) for s in shards}) == 1 and len(shards[0]) >= 1  # the same number of steps
        for step in range(len(shards[0])):
            rows = np.concatenate([s[step][0] for s in shards])
            assert len(set(rows.tolist())) == len(rows) and len({len(s[step][0]) for s in shards}) == 1
            assert [s[step][1][0] for s in shards] == [r * len(shards[0][step][0]) for r in range(w)]
    with pytest.raises(ValueError, match="at least 2"):
        epoch_shards(100, 3, 2, 0, 0, 0)


def test_device_selection():
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else
                                         "mps" if torch.backends.mps.is_available() else "cpu")
    for bad, msg in (("bogus", "not a device"), ("tpu", "unsupported|not a device")):
        with pytest.raises(DeviceError, match=msg):
            select_device(bad)
    if not torch.cuda.is_available():
        for spec in ("cuda", "cuda:1"):
            with pytest.raises(DeviceError, match="no CUDA"):
                select_device(spec)
    else:
        with pytest.raises(DeviceError, match="visible"):
            select_device(f"cuda:{torch.cuda.device_count()}")
    if not torch.backends.mps.is_available():
        with pytest.raises(DeviceError, match="MPS"):
            select_device("mps")


def test_cli_names_a_missing_device(tiny, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    r = subprocess.run([sys.executable, "-m", "selfmis.train.cli", "--method", "scratch", "--device", "cuda:0",
                        "--data", str(tiny), "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--device cuda:0" in r.stderr and "Traceback" not in r.stderr


def test_resume_with_another_device_string(tiny, tmp_path, monkeypatch):
    """A run stopped after epoch 1 on ``--device cpu`` continues (epoch 2 only) under ``auto``
    (CPU here) or ``cpu:0``: the device is not part of a run's identity, checkpoints load anywhere."""
    out = tmp_path / "run"
    conf = dict(TINY, data=str(tiny), out=str(out), method="scratch", epochs=3)
    real = trainer.single_lead_val_fn

    def dies_in_epoch_2(model, data, c):
        fn, calls = real(model, data, c), []

        def val():
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return fn()
        return val
    monkeypatch.setattr(validation, "single_lead_val_fn", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(dict(conf, device="cpu"))
    monkeypatch.setattr(validation, "single_lead_val_fn", real)
    blob = torch.load(out / "scratch.last.pt", map_location="cpu", weights_only=True)
    assert blob["extra"]["epoch"] == 0 and "objective" in blob["extra"]
    res = trainer.train(dict(conf, device="auto" if not torch.cuda.is_available() else "cpu:0"))
    assert [h["epoch"] for h in res["log"] if h.get("stage") == "scratch"] == [0, 1, 2]
    assert [r["epoch"] for r in epochs_log(out)] == [0, 1, 2]  # one metrics row per epoch, across the resume
    assert res["device"] == "cpu"


def test_metrics_files_and_tensorboard_option(tmp_path):
    """One row per epoch in metrics.jsonl and metrics.csv; --tensorboard writes event files where
    TensorBoard is installed and otherwise fails with a message that says what to install."""
    import csv
    import importlib.util

    from selfmis.train.runlog import RunLog

    rec = {"stage": "scratch", "epoch": 0, "loss": 0.5, "lr": 1e-3, "seconds": 1.0, "records_per_s": 10.0,
           "device": "cpu", "world": 1}
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(RuntimeError, match="pip install tensorboard"):
            RunLog(tmp_path, tensorboard=str(tmp_path / "tb"))
        log = RunLog(tmp_path)
    else:
        log = RunLog(tmp_path, tensorboard=str(tmp_path / "tb"))
    log.write(rec)
    log.write(dict(rec, epoch=1, val_mi_auroc=0.7))
    log.close()
    assert [json.loads(line)["epoch"] for line in open(tmp_path / "metrics.jsonl")] == [0, 1]
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["0", "1"] and rows[1]["val_mi_auroc"] == "0.7"
    if importlib.util.find_spec("tensorboard") is not None:
        assert list((tmp_path / "tb").rglob("events.out.tfevents*"))


def test_dataloader_workers_give_the_same_batches(tiny, tmp_path):
    """Batches cut in DataLoader workers (the CUDA default) are the ones the main process cuts:
    the generator depends on (seed, epoch, step, stage) only."""
    conf = dict(TINY, data=str(tiny), method="simclr", pretrain_epochs=1, epochs=1)
    trainer.train(dict(conf, out=str(tmp_path / "w0"), workers=0))
    trainer.train(dict(conf, out=str(tmp_path / "w2"), workers=2))
    l0, l2 = epochs_log(tmp_path / "w0"), epochs_log(tmp_path / "w2")
    assert [r["stage"] for r in l0] == ["simclr", "finetune"]
    for a, b in zip(l0, l2):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
