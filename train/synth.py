"""A synthetic PTB-XL of any size, in the official layout, to prove full-size readiness without
the download (``selfmis data synth --records 21799 --out DIR``).

Layout as PTB-XL 1.0.3: ``ptbxl_database.csv`` (every column of the real table), the official
``scp_statements.csv`` (copied from the real folder), ``records100/NN000/NNNNN_lr`` and
``records500/NN000/NNNNN_hr`` WFDB records (format 16, 1000 counts/mV, 12 leads I..V6, 10 s).

Metadata: rows of the real table we have (the subset) resampled, MI records drawn to PTB-XL's
MI share (5,486 of 21,837 records in the MI superclass, Wagner et al., Sci Data 7:154, 2020),
the statement mix within MI and non-MI as in the subset; about 1.155 records per patient
(21,799 records / 18,869 patients), all records of a patient in one ``strat_fold``, folds
balanced for MI.

Signals: :func:`selfmis.simulate.synthetic_ecg` (the project's one cheap ECG generator; NOT
neurokit2's ECGSYN, which is slow and can hang) for a per-record heart rate, mixed into 12 leads
through a per-record heart axis (limb leads obey Einthoven/Goldberger exactly), with a Q wave and
ST change in the leads of the infarct territory of MI records. The 100 Hz record is the 500 Hz one
averaged over 5 samples, as PTB-XL's are downsampled from 500 Hz. Not real ECGs: for loaders,
memory and throughput, never for accuracy.
"""
from __future__ import annotations

import ast
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from selfmis.simulate import synthetic_ecg
from selfmis.train.data import LEADS, PTBXL, resolve_data_root

log = logging.getLogger(__name__)

__all__ = ["synthesize", "write_wfdb", "PTBXL_MI_SHARE", "RECORDS_PER_PATIENT"]

PTBXL_MI_SHARE = 5486 / 21837           # Wagner et al. 2020, superclass MI (v1.0.1 table)
RECORDS_PER_PATIENT = 21799 / 18869     # PTB-XL 1.0.3
TERRITORY = {  # leads with Q waves / ST change per MI statement (inferior, anterior, lateral, posterior)
    "IMI": ("II", "III", "AVF"), "ILMI": ("II", "III", "AVF", "I", "AVL", "V5", "V6"),
    "IPMI": ("II", "III", "AVF", "V1", "V2"), "IPLMI": ("II", "III", "AVF", "V5", "V6"),
    "ASMI": ("V1", "V2", "V3"), "AMI": ("V2", "V3", "V4"), "ALMI": ("I", "AVL", "V4", "V5", "V6"),
    "LMI": ("I", "AVL", "V5", "V6"), "PMI": ("V1", "V2"),
}


def write_wfdb(path: Path, counts: np.ndarray, fs: int) -> None:
    """One WFDB record as PTB-XL stores it: ``counts`` (samples, 12) int16 at 1000 counts/mV,
    format 16 (little-endian, interleaved), header with first value and 16-bit checksum per lead."""
    name = path.name
    counts = np.ascontiguousarray(counts, dtype="<i2")
    path.with_suffix(".dat").write_bytes(counts.tobytes())
    sums = counts.astype(np.int64).sum(0) % 65536
    lines = [f"{name} {counts.shape[1]} {fs} {counts.shape[0]}"]
    lines += [f"{name}.dat 16 1000.0(0)/mV 16 0 {int(counts[0, j])} {int(sums[j])} 0 {lead}"
              for j, lead in enumerate(LEADS)]
    path.with_suffix(".hea").write_text("\n".join(lines) + "\n")


# lead directions in the frontal plane (deg) and chest-lead weights on three dipole components
_LIMB_DEG = {"I": 0.0, "II": 60.0}
_CHEST = np.array([[-0.6, 0.3, 0.5], [-0.3, 0.6, 0.7], [0.1, 0.8, 0.5],
                   [0.5, 0.8, 0.2], [0.8, 0.5, 0.0], [0.9, 0.3, -0.1]])


def beat_bank(fs: int = 500, seconds: float = 10.0) -> dict:
    """One noise-free :func:`synthetic_ecg` per whole heart rate 50..100 bpm (made once: the
    per-record variety comes from the axis, the lead gains, the noise and the wander)."""
    return {b: synthetic_ecg(b, seconds, fs=fs, seed=0, noise_mv=0.0).astype(np.float64) for b in range(50, 101)}


def record_signal(rng: np.random.Generator, bank: dict, codes: dict, fs: int = 500, seconds: float = 10.0):
    """(samples, 12) float32 mV of one synthetic record."""
    bpm = int(rng.integers(50, 101))
    base = bank[bpm]
    n = len(base)
    # three dipole components: the beat, a delayed copy (a second axis), its slope (a third)
    lag = int(0.02 * fs)
    comps = np.stack([base, np.roll(base, lag), np.gradient(base) * fs * 0.01])
    axis = np.deg2rad(rng.normal(45, 25))
    X = np.zeros((n, 12))
    for lead, deg in _LIMB_DEG.items():
        w = np.cos(np.deg2rad(deg) - axis)
        X[:, LEADS.index(lead)] = w * comps[0] + 0.2 * np.sin(np.deg2rad(deg) - axis) * comps[1]
    chest = _CHEST * rng.uniform(0.7, 1.3, size=(6, 1))
    X[:, 6:] = (chest @ comps).T * 1.2
    # MI: a pathological Q wave and ST/T change in every beat, in the leads of the territory
    mi_leads = {l for c in codes if c in TERRITORY for l in TERRITORY[c]}
    if mi_leads:
        t = np.arange(n) / fs
        r = np.arange(0.4, seconds, 60.0 / bpm)
        dt = t[:, None] - r[None, :]
        q = -0.25 * np.exp(-0.5 * ((dt + 0.035) / 0.012) ** 2).sum(1)
        st = rng.choice([-1, 1]) * 0.15 * np.exp(-0.5 * ((dt - 0.16) / 0.06) ** 2).sum(1)
        for l in mi_leads & {"I", "II", *(f"V{k}" for k in range(1, 7))}:
            X[:, LEADS.index(l)] += q + st
    # electrode noise and baseline wander on the measured leads (I, II, V1-V6) ...
    measured = [0, 1] + list(range(6, 12))
    X[:, measured] += rng.normal(0, 0.015, size=(n, 8))
    X[:, measured] += 0.05 * np.sin(2 * np.pi * rng.uniform(0.15, 0.4) * np.arange(n)[:, None] / fs
                                    + rng.uniform(0, 6.3, 8))
    # ... and, by Einthoven and Goldberger, the other limb leads follow from I and II exactly
    I, II = X[:, 0].copy(), X[:, 1].copy()
    X[:, 2], X[:, 3], X[:, 4], X[:, 5] = II - I, -(I + II) / 2, I - II / 2, II - I / 2
    return X.astype(np.float32)


def _metadata(n: int, source: PTBXL, rng: np.random.Generator):
    """PTB-XL-like rows: resampled real rows, MI to PTB-XL's share, patients and folds."""
    db = source.db
    mi_codes = set(source.mi_codes)
    is_mi = np.array([bool(set(c) & mi_codes) for c in db["scp_codes"]])
    n_mi = int(round(n * PTBXL_MI_SHARE))
    rows = np.concatenate([rng.choice(np.flatnonzero(is_mi), n_mi),
                           rng.choice(np.flatnonzero(~is_mi), n - n_mi)])
    rng.shuffle(rows)
    meta = db.iloc[rows].copy().reset_index(drop=True)
    meta.index = np.arange(1, n + 1)
    meta.index.name = "ecg_id"
    # patients: each has >= 1 record, the rest go to random patients (a few have many)
    n_pat = max(1, int(round(n / RECORDS_PER_PATIENT)))
    owner = np.concatenate([np.arange(n_pat), rng.integers(0, n_pat, n - n_pat)])
    rng.shuffle(owner)
    meta["patient_id"] = (owner + 1).astype(float)  # PTB-XL stores patient_id as a float
    # folds per patient, MI patients dealt round-robin first so every fold gets its share
    pat_mi = np.zeros(n_pat, bool)
    np.logical_or.at(pat_mi, owner, is_mi[rows])
    order = np.concatenate([rng.permutation(np.flatnonzero(pat_mi)), rng.permutation(np.flatnonzero(~pat_mi))])
    fold_of = np.empty(n_pat, int)
    fold_of[order] = np.arange(n_pat) % 10 + 1
    meta["strat_fold"] = fold_of[owner]
    ids = meta.index.to_numpy()
    meta["filename_lr"] = [f"records100/{(e // 1000) * 1000:05d}/{e:05d}_lr" for e in ids]
    meta["filename_hr"] = [f"records500/{(e // 1000) * 1000:05d}/{e:05d}_hr" for e in ids]
    meta["scp_codes"] = [str(c) for c in meta["scp_codes"]]
    return meta


def synthesize(out, records: int = 21799, source=None, seed: int = 0, rates=(100, 500),
               records_500: int | None = None, progress: bool = True) -> dict:
    """Write a synthetic PTB-XL folder; returns counts and timings. ``records_500``: write only
    the first N records at 500 Hz (a partial ``records500/``, as the real subset has)."""
    from tqdm.auto import tqdm

    t0 = time.time()
    out = Path(out)
    src = PTBXL(resolve_data_root(source))
    rng = np.random.default_rng(seed)
    meta = _metadata(records, src, rng)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(src.root / "scp_statements.csv", out / "scp_statements.csv")
    meta.to_csv(out / "ptbxl_database.csv")
    n500 = records if records_500 is None else min(records, records_500)
    written = {100: 0, 500: 0}
    bank = beat_bank()
    for i, (eid, row) in enumerate(tqdm(meta.iterrows(), total=records, desc="synthesizing", disable=not progress)):
        codes = ast.literal_eval(row["scp_codes"])
        x = record_signal(np.random.default_rng([seed, int(eid)]), bank, codes)
        counts500 = np.clip(np.rint(x * 1000), -32768, 32767).astype(np.int16)
        for fs, col in ((500, "filename_hr"), (100, "filename_lr")):
            if fs not in rates or (fs == 500 and i >= n500):
                continue
            c = counts500 if fs == 500 else \
                np.rint(counts500.reshape(-1, 5, 12).mean(1)).astype(np.int16)  # 500 -> 100 Hz
            p = out / row[col]
            p.parent.mkdir(parents=True, exist_ok=True)
            write_wfdb(p, c, fs)
            written[fs] += 1
    (out / "README.md").write_text(
        f"# Synthetic PTB-XL ({records} records)\n\nWritten by `selfmis data synth` (seed {seed}); NOT real ECGs: "
        "for loader, memory and throughput benchmarks only. See `selfmis.train.synth`.\n")
    return {"records": records, "patients": int(meta.patient_id.nunique()), "files_100hz": written[100],
            "files_500hz": written[500], "mi_records": int(sum(bool(set(ast.literal_eval(c)) & set(src.mi_codes))
                                                              for c in meta.scp_codes)),
            "seconds": time.time() - t0, "out": str(out)}
