"""PTB-XL data layer on the shared subset, the bundled records and broken files made here."""
import shutil

import numpy as np
import pandas as pd
import pytest

from selfmis.train.data import (DEFAULT_TASKS, LEADS, MI_STATEMENTS, PTBXL, DataError,
                                load_split, resolve_data_root)


def test_summary_matches_the_subset_readme(shared_ptbxl):
    s = PTBXL(shared_ptbxl).summary()
    assert s["records"] == 1987 and s["patients"] == 1850
    assert s["files_100hz"] == 1987 and s["files_500hz"] == 488
    assert s["per_label"]["MI"] == 370 and s["per_label"]["NORM"] == 1051
    assert [s["per_label"][k] for k in MI_STATEMENTS] == [161, 174, 32, 26, 17, 10, 3, 3, 2]
    assert list(s["mi_per_fold"].values()) == [39, 33, 33, 38, 40, 28, 32, 23, 55, 49]


def test_min_likelihood_filters_codes(shared_ptbxl):
    s = PTBXL(shared_ptbxl, min_likelihood=100).summary(check_files=False)
    assert s["per_label"]["MI"] < 370
    assert s["per_label"]["MI"] >= 169  # records with an MI code at likelihood 100 (README)


def test_mi_superclass_comes_from_scp_statements(shared_ptbxl):
    d = PTBXL(shared_ptbxl)
    assert set(MI_STATEMENTS) < set(d.mi_codes)
    assert "INJAS" in d.mi_codes  # PTB-XL benchmark convention


def test_strat_fold_splits_are_disjoint_and_patient_disjoint(shared_ptbxl):
    d = PTBXL(shared_ptbxl)
    parts = {k: set(d.split_ids(k)) for k in ("train", "val", "test")}
    assert sum(map(len, parts.values())) == 1987
    pats = {k: set(d.db.loc[list(v), "patient_id"]) for k, v in parts.items()}
    assert not (pats["train"] & pats["test"]) and not (pats["train"] & pats["val"])
    by_patient = {k: set(d.split_ids(k, by="patient_id", seed=1)) for k in ("train", "val", "test")}
    pats = {k: set(d.db.loc[list(v), "patient_id"]) for k, v in by_patient.items()}
    assert not (pats["train"] & pats["test"]) and not (pats["val"] & pats["test"])


def test_load_split_leads_labels_and_cache(shared_ptbxl, tmp_path):
    ds = load_split(shared_ptbxl, "test", leads=("I",), cache_dir=tmp_path, progress=False)
    assert ds.X.shape == (255, 1, 1000) and ds.Y.shape == (255, len(DEFAULT_TASKS))
    assert ds.Y[:, 0].sum() == 49 and set(ds.folds) == {10}
    assert len(list(tmp_path.glob("*.npy"))) == 1
    again = load_split(shared_ptbxl, "test", leads=("I",), cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(np.asarray(again.X), ds.X)
    full = load_split(shared_ptbxl, "test", cache_dir=tmp_path, progress=False)
    np.testing.assert_allclose(np.asarray(full.X)[:, 0], ds.X[:, 0])


def test_500hz_resampled_to_100_matches_records100(shared_ptbxl, tmp_path):
    d = PTBXL(shared_ptbxl)
    ids = [8, 12]
    hi, _, _ = d.load(ids, fs=500, leads=("I", "II"), fs_out=100, cache_dir=tmp_path, progress=False)
    lo, _, _ = d.load(ids, fs=100, leads=("I", "II"), cache_dir=tmp_path, progress=False)
    assert hi.shape == lo.shape == (2, 2, 1000)
    # PTB-XL's own 100 Hz files were made with another filter: close, not equal.
    for a, b in zip(hi.reshape(4, -1), lo.reshape(4, -1)):
        assert np.corrcoef(a[50:-50], b[50:-50])[0, 1] > 0.98


def test_bundled_sample_is_a_ptbxl_folder(bundled_ptbxl, tmp_path):
    d = PTBXL(bundled_ptbxl)
    s = d.summary()
    assert s["records"] == 9 and s["files_100hz"] == 9 and s["per_label"]["MI"] == 6
    ds = load_split(bundled_ptbxl, "all", cache_dir=tmp_path, progress=False)
    assert ds.X.shape == (9, 12, 1000)


def test_resolve_data_root(monkeypatch, tmp_path, bundled_ptbxl):
    with pytest.raises(DataError, match="not a PTB-XL folder"):
        resolve_data_root(tmp_path)
    monkeypatch.setenv("SELFMIS_PTBXL", str(bundled_ptbxl))
    assert resolve_data_root() == bundled_ptbxl


# --------------------------------------------------------------------------- broken input

def _make_folder(tmp_path, bundled_ptbxl):
    """A PTB-XL-layout folder with three good records and four broken ones."""
    import wfdb

    root = tmp_path / "ptbxl"
    (root / "records100" / "00000").mkdir(parents=True)
    shutil.copy(bundled_ptbxl / "scp_statements.csv", root)
    rng = np.random.default_rng(0)
    rows = []
    for eid in range(1, 8):
        name = f"{eid:05d}_lr"
        sig = rng.normal(0, 0.3, (1000, 12))
        names = list(LEADS)
        if eid == 5:
            sig, names = sig[:, :11], names[:11]  # a lead missing
        if eid == 6:
            sig[100:110, 0] = np.nan  # invalid samples
        wfdb.wrsamp(name, fs=100, units=["mV"] * len(names), sig_name=names, p_signal=sig,
                    fmt=["16"] * len(names), adc_gain=[1000.0] * len(names),
                    baseline=[0] * len(names), write_dir=str(root / "records100" / "00000"))
        rows.append(dict(ecg_id=eid, patient_id=100 + eid, scp_codes=str({"IMI": 100.0} if eid % 2 else {"NORM": 100.0}),
                         strat_fold=10, filename_lr=f"records100/00000/{name}", filename_hr=f"records500/00000/{eid:05d}_hr"))
    dat = root / "records100" / "00000"
    (dat / "00003_lr.dat").write_bytes((dat / "00003_lr.dat").read_bytes()[:5000])  # truncated
    (dat / "00004_lr.dat").unlink()  # missing
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    return root


def test_broken_records_are_skipped_and_named(tmp_path, bundled_ptbxl, caplog):
    root = _make_folder(tmp_path, bundled_ptbxl)
    ds = load_split(root, "all", cache_dir=tmp_path / "cache", progress=False)
    assert list(ds.ecg_ids) == [1, 2, 7]
    assert set(ds.skipped) == {3, 4, 5, 6}
    assert "ecg_id 4" in ds.skipped[4] and "missing" in ds.skipped[4]
    assert "ecg_id 5" in ds.skipped[5] and "lack" in ds.skipped[5]
    assert "NaN" in ds.skipped[6]
    assert "ecg_id 3" in ds.skipped[3]
    assert ds.Y[:, DEFAULT_TASKS.index("IMI")].tolist() == [1, 0, 1]


def test_label_file_without_columns(tmp_path, bundled_ptbxl):
    root = _make_folder(tmp_path, bundled_ptbxl)
    db = pd.read_csv(root / "ptbxl_database.csv").drop(columns=["strat_fold"])
    db.to_csv(root / "ptbxl_database.csv", index=False)
    with pytest.raises(DataError, match="strat_fold"):
        PTBXL(root)


def test_header_rate_mismatch_is_named(tmp_path, bundled_ptbxl):
    root = _make_folder(tmp_path, bundled_ptbxl)
    hea = root / "records100" / "00000" / "00001_lr.hea"
    hea.write_text(hea.read_text().replace(" 12 100 1000", " 12 250 1000", 1))
    with pytest.raises(DataError, match=r"ecg_id 1 .*250"):
        PTBXL(root).read(1)
