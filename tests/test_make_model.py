"""`make model` end to end: the Makefile's own recipe (train the SelfMIS teacher, then quantize it)
on a tiny synthetic PTB-XL folder and a tiny budget, redirected away from the shipped bundle.

Cost (2-core shared machine): about 65 s wall, 40 s CPU for the `make model` test; the others < 10 s.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from selfmis.exit_codes import ExitCode

sys.path.insert(0, os.path.dirname(__file__))
from test_train_fixtures import make_tiny_ptbxl  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent  # the environment running the tests runs `make model` too
SHIPPED = REPO / "edge_runtime" / "models" / "default"

TRAIN_ARGS = ("--widths 8 8 8 8 --epochs 1 --pretrain-epochs 1 --teacher-epochs 1 --batch-size 8 --n-boot 20 "
              "--progress false --threads 1")
QUANTIZE_ARGS = ("--epochs 1 --batch 32 --n-calib 32 --n-boot 10 --stem-channels 4 --blocks 8:2,8:2 --kernel 5 "
                 "--no-progress --threads 1")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shipped_state() -> dict:
    return {p.name: _sha(p) for p in sorted(SHIPPED.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_ptbxl(tmp_path_factory.mktemp("ptbxl"))


def _quantize(*args):
    return subprocess.run([str(VENV / "bin" / "selfmis"), "quantize", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)


@pytest.mark.slow
@pytest.mark.convert
def test_make_model_builds_a_selfmis_teacher_bundle(tiny, tmp_path):
    assert shutil.which("make"), "make is needed to run the Makefile's recipe"
    assert (VENV / "bin" / "selfmis").is_file(), f"run the tests from the project's virtualenv ({VENV})"
    before = _shipped_state()
    teacher, bundle = tmp_path / "teacher", tmp_path / "bundle"
    cmd = ["make", "--no-print-directory", "-o", f"{VENV}/.selfmis-linked", "model", f"VENV={VENV}",
           f"DATA={tiny}", f"TEACHER_RUN={teacher}", f"MODEL_OUT={bundle}", f"MODEL_RESULTS={tmp_path / 'results'}",
           f"MODEL_WORK={tmp_path / 'work'}", f"TRAIN_ARGS={TRAIN_ARGS}", f"QUANTIZE_ARGS={QUANTIZE_ARGS}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "NOT SelfMIS" not in r.stdout + r.stderr
    assert _shipped_state() == before, "make model with MODEL_OUT set must not touch the shipped bundle"

    card = json.loads((bundle / "card.json").read_text())
    tr = card["training"]
    assert tr["teacher_kind"] == "selfmis" and "of the SelfMIS Lead-I teacher" in card["description"]
    assert tr["teacher_sha256"] == _sha(teacher / "model.pt")  # the checkpoint the trainer wrote
    assert tr["teacher_config"]["method"] == "selfmis"
    tp = json.loads((teacher / "provenance.json").read_text())  # selfmis train's own provenance, in the card too
    assert tp["data"]["name"] == tiny.name and tp["data"]["n_records"] == 40 and tp["command"].startswith("selfmis train")
    assert tr["teacher_provenance"]["data"] == tp["data"]
    prov = tr["provenance"]
    assert prov["data"]["name"] == tiny.name and prov["data"]["n_records"] == 40
    assert len(prov["data"]["records_sha256"]) == 64 and prov["command"].startswith("selfmis quantize")
    assert prov["libraries"]["torch"] and prov["machine"]["logical_cpus"]
    text = (bundle / "card.json").read_text()
    assert str(tmp_path) not in text and str(tiny) not in text, "a card must not hold an absolute path"
    table = json.loads((tmp_path / "results" / "quantize_results.json").read_text())
    assert table["teacher_kind"] == "selfmis" and table["provenance"]["data"] == prov["data"]


def test_quantize_refuses_a_missing_teacher(tmp_path):
    r = _quantize("--teacher", tmp_path / "nothing", "--out", tmp_path / "b", "--work", tmp_path / "w")
    assert r.returncode == ExitCode.MODEL, r.stderr[-2000:]
    assert str(tmp_path / "nothing") in r.stderr and "--standin" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "b").exists() and "stand-in" not in r.stdout


def test_quantize_refuses_an_unreadable_teacher_file_or_folder(tmp_path):
    bad = tmp_path / "run"
    bad.mkdir()
    r = _quantize("--teacher", bad, "--out", tmp_path / "b", "--work", tmp_path / "w")
    assert r.returncode == ExitCode.MODEL and "model.pt" in r.stderr, r.stderr[-2000:]
    (bad / "model.pt").write_bytes(b"not a checkpoint")
    r = _quantize("--teacher", bad, "--out", tmp_path / "b", "--work", tmp_path / "w")
    assert r.returncode == ExitCode.MODEL and "not a loadable checkpoint" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (tmp_path / "b").exists()


def test_quantize_standin_is_explicit_and_exclusive(tmp_path):
    r = _quantize("--standin", "--teacher", tmp_path / "t", "--out", tmp_path / "b")
    assert r.returncode == ExitCode.USAGE and "--standin" in r.stderr


def test_train_out_is_a_run_folder(tmp_path):
    from selfmis.train.cli import main
    assert main(["--method", "scratch", "--out", str(tmp_path / "teacher.pt")]) == ExitCode.USAGE
    assert not (tmp_path / "teacher.pt").exists()


def test_checkpoint_folder_or_file_load_the_same(tmp_path):
    import torch

    from selfmis.train.checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
    from selfmis.train.models import ResNet1d

    save_checkpoint(tmp_path / "run" / "model.pt", ResNet1d(1, [8, 8, 8, 8]), {"method": "x"})
    assert resolve_checkpoint(tmp_path / "run") == resolve_checkpoint(tmp_path / "run" / "model.pt")
    a, b = load_checkpoint(tmp_path / "run"), load_checkpoint(tmp_path / "run" / "model.pt")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    with pytest.raises(FileNotFoundError, match="folder without model.pt"):
        resolve_checkpoint(tmp_path)
