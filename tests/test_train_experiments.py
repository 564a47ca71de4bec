"""The accuracy-report pipeline (train/experiments) on a fixture of synthetic run folders.

The run folders are what the trainer writes (``metrics.json``, ``scores.npz``); their scores are
drawn so that the true ordering of the methods is known, and the tests check that the statistics
find it (and find no difference where there is none)."""
import json
import subprocess
import sys
import zlib

import numpy as np
import pytest

from selfmis.train.evaluate import auroc
from selfmis.train.experiments import grid, make_report, paired_bootstrap_diff, run_dir
from selfmis.train.experiments.grid import ABLATION_SPLITS, ABLATIONS, CV_FOLDS, MAIN_SPLITS, scarce_jobs
from selfmis.train.experiments.stats import ablation_results, paired_cv

N_REC, N_TASKS = 60, 5  # records per test fold; MI, IMI, 2 more statements, NORM (last column)
#: signal strength per run name: the score is strength * label + N(0, 1) noise
STRENGTH = {"twelve_lead": 3.0, "joint_w3": 1.6, "scratch": 0.8, "simclr": 0.6, "generative": 0.5, "random": 0.0,
            "twostage_ft": 1.2, "crossfit_w3": 1.6}


def _write_run(d, fold, seed, name, strength, val_auroc):
    rng = np.random.default_rng(1000 * fold + seed)  # labels: the same records for every method
    Y = np.zeros((N_REC, N_TASKS), np.float32)
    Y[:, 0] = rng.random(N_REC) < 0.3
    Y[:, 1] = Y[:, 0] * (rng.random(N_REC) < 0.5)
    Y[:, -1] = (Y[:, 0] == 0) & (rng.random(N_REC) < 0.6)
    noise = np.random.default_rng(zlib.crc32(f"{fold}/{seed}/{name}".encode())).normal(size=Y.shape)
    S = (strength * Y + noise).astype(np.float32)
    emb12 = rng.normal(size=(N_REC, 4))
    d.mkdir(parents=True, exist_ok=True)
    np.savez(d / "scores.npz", Y_test=Y, test=S, emb_single=emb12 + 0.1 * noise[:, :4], emb_twelve=emb12)
    (d / "metrics.json").write_text(json.dumps({"val": {"MI": {"auroc": val_auroc}}, "frechet_single_vs_12lead": 0.5}))


def make_runs(root, names=STRENGTH, splits=MAIN_SPLITS + [(10, 1)] + [(k, 1) for k in range(1, 10)]):
    """Finished runs of ``names`` on ``splits`` (fold 10 seeds 0-2 and the CV with seeds 0 and 1)."""
    for fold, seed in sorted(set(splits)):
        for name in names:
            _write_run(run_dir(root, fold, seed, name), fold, seed, name, STRENGTH[name],
                       0.5 + 0.1 * STRENGTH[name] + 0.01 * fold)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    make_runs(root)
    out = root / "results"
    ab = {"splits": ABLATION_SPLITS, "val": {}, "chosen": "joint_w3", "main_variants": ["twostage_ft"],
          "main_budget": {"splits": [], "val": {}}}
    rep = make_report(root, out, "joint_w3", ab, "test", n_boot=200)
    return root, out, rep


def test_run_dir_is_the_one_layout(tmp_path):
    assert run_dir(tmp_path, 3, 1, "scratch") == tmp_path / "f03_s1" / "scratch"
    assert run_dir(tmp_path, 10, 0) == tmp_path / "f10_s0"
    jobs = grid(tmp_path, MAIN_SPLITS, {"crossfit_w3": ABLATIONS["crossfit_w3"]})
    jobs += scarce_jobs(tmp_path, 0.25, [0])
    for j in jobs:
        assert j.out == run_dir(tmp_path, j.fold, j.seed, j.out.name)
    crossfit = next(j for j in jobs if j.out.name == "crossfit_w3")
    assert [n.out.name for n in crossfit.needs] == ["twelve_half_a", "twelve_half_b"]
    assert "--teacher" in crossfit.cmd({}) and "--crossfit" not in crossfit.cmd({})


def test_paired_bootstrap_diff_sign_and_null():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(float)
    good, bad = 2 * y + rng.normal(size=300), 0.3 * y + rng.normal(size=300)
    d, (lo, hi) = paired_bootstrap_diff(y, good, bad, n_boot=300)
    assert d == pytest.approx(auroc(y, good) - auroc(y, bad)) and 0 < lo < d < hi
    d2, (lo2, hi2) = paired_bootstrap_diff(y, bad, good, n_boot=300)
    assert d2 == pytest.approx(-d) and hi2 < 0
    assert paired_bootstrap_diff(y, good, good.copy(), n_boot=100) == (0.0, [0.0, 0.0])


def test_report_finds_the_known_ordering(report):
    root, out, rep = report
    m = rep["methods"]
    assert set(m) == {"twelve_lead", "selfmis", "scratch", "simclr", "generative", "random", "twostage_ft"}
    mi = {k: v["MI"]["cv_pooled_auroc"] for k, v in m.items()}
    assert mi["twelve_lead"] > mi["selfmis"] > mi["scratch"] > mi["random"]
    assert abs(mi["random"] - 0.5) < 0.06
    lo, hi = m["scratch"]["MI"]["cv_pooled_ci"]
    assert lo < mi["scratch"] < hi
    assert len(m["selfmis"]["MI"]["fold10_auroc_seeds"]) == 3 and m["selfmis"]["MI"]["cv_folds"] == list(CV_FOLDS)
    c = rep["selfmis_minus_scratch"]["MI"]
    assert c["cv_pooled_diff_ci"][0] > 0 and len(c["cv_fold_diffs"]) == 10
    # the CV repeated with seed 1, and the study rows whose runs exist
    assert rep["cv_two_seeds"]["MI"]["diff"]["seeds"] == [0, 1]
    cf = rep["studies"]["cross-fitted teachers"]
    assert cf[0]["seeds"] == [0, 1] and cf[0]["MI"]["pooled_diff"] > 0 and not cf[1]["seeds"]
    same = cf[2]  # crossfit_w3 vs joint_w3: same strength, independent noise -> a CI around 0
    assert same["MI"]["pooled_diff_ci"][0] < 0 < same["MI"]["pooled_diff_ci"][1]
    assert rep["variants"]["selfmis"]["MI"]["cv_pooled_diff"] > 0


def test_report_files(report):
    root, out, rep = report
    assert json.loads((out / "report.json").read_text())["selfmis_variant"] == "joint_w3"
    md = (out / "README.md").read_text()
    assert "SelfMIS beats Lead I from scratch" in md
    row = next(line for line in md.splitlines() if line.startswith("| selfmis |"))
    assert f"{rep['methods']['selfmis']['MI']['fold10_mean']:.3f}" in row
    for png in ("roc_MI.png", "roc_IMI.png", "studies.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_ablation_results_marks_missing_splits(tmp_path):
    make_runs(tmp_path, names=["scratch"], splits=[(10, 0)])
    val = ablation_results(tmp_path, ["scratch", "joint_cos"])
    assert list(val) == ["scratch"] and val["scratch"]["scores"][1] is None
    assert not paired_cv(tmp_path, "scratch", "random")["seeds"]


def test_phase_report_command(tmp_path):
    """The documented command, in the real interpreter, on run folders."""
    make_runs(tmp_path / "exp", names=["twelve_lead", "scratch", "joint_w3"], splits=MAIN_SPLITS)
    make_runs(tmp_path / "ablate", names=["scratch", "joint_w3"], splits=ABLATION_SPLITS)
    p = subprocess.run([sys.executable, "-m", "selfmis.train.experiments", "--phase", "report",
                        "--root", str(tmp_path / "exp"), "--ablate-root", str(tmp_path / "ablate"),
                        "--results", str(tmp_path / "res"), "--extra-variants"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert "SelfMIS variant for the main grid: joint_w3" in p.stdout
    rep = json.loads((tmp_path / "res" / "report.json").read_text())
    assert rep["ablation"]["val"]["joint_w3"]["scores"][0] == pytest.approx(0.5 + 0.16 + 0.1)
    assert "selfmis" in rep["methods"] and "## SelfMIS ablations" in (tmp_path / "res" / "README.md").read_text()
