"""A tiny synthetic PTB-XL folder (official layout) for the training tests."""
from pathlib import Path

import numpy as np

from selfmis.train.data import LEADS, MI_STATEMENTS

TINY = dict(widths=[8, 8, 8, 8], epochs=2, pretrain_epochs=1, teacher_epochs=1, batch_size=8,
            n_boot=20, progress=False, threads=1)


def make_tiny_ptbxl(root: Path, n_per_fold: int = 4, corrupt: int | None = None) -> Path:
    """``n_per_fold`` records in each of the 10 folds; MI records carry a marker wave.

    ``corrupt``: ecg_id whose signal file is truncated (the data layer must skip it).
    """
    import pandas as pd
    import wfdb

    root = Path(root)
    rng = np.random.default_rng(0)
    rows, t = [], np.arange(1000) / 100
    for i in range(10 * n_per_fold):
        eid, fold, mi = i + 1, i % 10 + 1, (i // 10) % 2 == 0
        sub = root / "records100" / "00000"
        sub.mkdir(parents=True, exist_ok=True)
        beats = np.sin(2 * np.pi * 1.2 * t) ** 15  # spiky "R waves"
        sig = np.stack([beats * (1 + 0.1 * k) + 0.05 * rng.normal(size=1000) for k in range(12)], 1)
        if mi:
            sig -= 0.3 * (np.sin(2 * np.pi * 1.2 * t + 0.8) ** 8)[:, None]  # a "Q wave"/ST change
        name = f"{eid:05d}_lr"
        wfdb.wrsamp(name, fs=100, units=["mV"] * 12, sig_name=list(LEADS), p_signal=sig,
                    fmt=["16"] * 12, write_dir=str(sub))
        codes = {"IMI": 100.0} if mi else {"NORM": 100.0}
        if i % 3 == 0:
            codes["AFIB"] = 0.0  # a rhythm statement (likelihood 0, as PTB-XL writes them)
        rows.append(dict(ecg_id=eid, patient_id=1000 + eid, scp_codes=str(codes), strat_fold=fold,
                         filename_lr=f"records100/00000/{name}", filename_hr=f"records500/00000/{eid:05d}_hr"))
    pd.DataFrame(rows).set_index("ecg_id").to_csv(root / "ptbxl_database.csv")
    st = [dict(code=c, diagnostic_class="MI") for c in MI_STATEMENTS + ("INJAS",)]
    st += [dict(code="NORM", diagnostic_class="NORM"), dict(code="AFIB", diagnostic_class=None)]
    pd.DataFrame(st).set_index("code").to_csv(root / "scp_statements.csv")
    if corrupt:
        dat = root / "records100" / "00000" / f"{corrupt:05d}_lr.dat"
        dat.write_bytes(dat.read_bytes()[:100])
    return root
