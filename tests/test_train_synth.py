"""``selfmis data synth`` writes PTB-XL's layout (read back by wfdb and our data layer), and the loader
streams records into its cache (same arrays as the in-memory path, skipped records dropped)."""
import json

import numpy as np
import pytest

from selfmis.train.data import LEADS, PTBXL, load_split
from selfmis.train.data_cli import main as data_main


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "ptbxl"
    assert data_main(["synth", "--records", "60", "--records-500", "12", "--out", str(out)]) == 0
    return out


def test_layout_labels_patients_folds(synth):
    import wfdb

    db = PTBXL(synth)
    s = db.summary()
    assert s["records"] == 60 and s["files_100hz"] == 60 and s["files_500hz"] == 12
    assert 10 <= s["per_label"]["MI"] <= 20  # PTB-XL's MI share (25%) of 60
    pats = db.db.groupby("patient_id").strat_fold.nunique()
    assert (pats == 1).all() and s["patients"] < 60  # a patient's records share one fold
    assert set(db.db.strat_fold) == set(range(1, 11))
    for fs, col, n in ((100, "filename_lr", 1000), (500, "filename_hr", 5000)):
        sig, meta = wfdb.rdsamp(str(synth / db.db[col].iloc[0]))
        assert sig.shape == (n, 12) and meta["fs"] == fs and meta["sig_name"] == list(LEADS)
        # Einthoven: III = II - I (to the 1 uV quantisation)
        np.testing.assert_allclose(sig[:, 2], sig[:, 1] - sig[:, 0], atol=2e-3)
    x = db.read(db.db.index[0], 100)
    assert x.shape == (12, 1000) and 0.3 < np.abs(x[1]).max() < 5  # mV-scale beats


def test_streamed_cache_equals_memory_and_drops_bad_records(synth, tmp_path):
    db = PTBXL(synth)
    ids = db.split_ids("all")
    bad = ids[5]
    dat = (synth / db.db.at[bad, "filename_lr"]).with_suffix(".dat")
    keep = dat.read_bytes()
    try:
        dat.write_bytes(keep[:100])
        cold = load_split(synth, split="all", cache_dir=tmp_path / "c", progress=False)
        warm = load_split(synth, split="all", cache_dir=tmp_path / "c", progress=False)
        blocked = tmp_path / "a-file"  # a cache folder that cannot be made (root ignores chmod)
        blocked.write_text("")
        mem = load_split(synth, split="all", cache_dir=blocked, progress=False)
    finally:
        dat.write_bytes(keep)
    assert bad in cold.skipped and len(cold) == 59 and cold.X.shape == (59, 12, 1000)
    assert isinstance(warm.X, np.memmap) and not isinstance(mem.X, np.memmap)
    np.testing.assert_array_equal(np.asarray(warm.X), mem.X)
    np.testing.assert_array_equal(np.asarray(cold.X), mem.X)
    meta = json.loads(next((tmp_path / "c").glob("*.json")).read_text())
    assert str(bad) in meta["skipped"]
