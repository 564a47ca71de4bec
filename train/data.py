"""PTB-XL data layer: labels, folds, leads, resampling and an on-disk cache.

Reads PTB-XL in its official layout (``ptbxl_database.csv``,
``scp_statements.csv``, ``records100/``, ``records500/``) with wfdb. Works the
same on the 21,799-record download and on the shared subset.

Labels come from ``scp_statements.csv``: the MI superclass is every statement
whose ``diagnostic_class`` is ``MI`` (as in the PTB-XL benchmark, Strodthoff et
al. 2021, this includes the INJ* codes); the nine MI statements are checked to
exist there. Splits follow ``strat_fold`` (patient-disjoint by construction).

References: Wagner et al., PTB-XL, Sci Data 7:154 (2020); Strodthoff et al.,
Deep learning for ECG analysis: benchmarks and insights from PTB-XL, IEEE JBHI
25(5) (2021).
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from selfmis.preprocess import resample
from selfmis.sample_data import BUNDLED_PTBXL

log = logging.getLogger(__name__)

__all__ = [
    "LEADS", "MI_STATEMENTS", "DEFAULT_TASKS", "DataError", "PTBXL", "Dataset",
    "resolve_data_root", "load_split", "SPLITS",
]

LEADS = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
MI_STATEMENTS = ("IMI", "ASMI", "ILMI", "AMI", "ALMI", "LMI", "IPLMI", "IPMI", "PMI")
#: Output order of every model: MI superclass, the nine statements, NORM.
DEFAULT_TASKS = ("MI",) + MI_STATEMENTS + ("NORM",)
SPLITS = {"train": tuple(range(1, 9)), "val": (9,), "test": (10,), "all": tuple(range(1, 11))}
ENV_VAR = "SELFMIS_PTBXL"
DB_COLUMNS = ("scp_codes", "strat_fold", "patient_id", "filename_lr", "filename_hr")


class DataError(ValueError):
    """Bad or missing data; the message names the file or record."""


def _repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def resolve_data_root(path=None) -> Path:
    """Where PTB-XL is: ``path``, else ``$SELFMIS_PTBXL``, else ``../shared/data/ptbxl-subset``
    next to the repository or the working directory, else the few records shipped
    in the package (``core/sample_data/ptbxl``)."""
    candidates = []
    if path:
        p = Path(path).expanduser()
        if not (p / "ptbxl_database.csv").is_file():
            raise DataError(f"{p}: not a PTB-XL folder (no ptbxl_database.csv)")
        return p
    if os.environ.get(ENV_VAR):
        p = Path(os.environ[ENV_VAR]).expanduser()
        if not (p / "ptbxl_database.csv").is_file():
            raise DataError(f"${ENV_VAR}={p}: not a PTB-XL folder (no ptbxl_database.csv)")
        return p
    for base in (_repo_root(), Path.cwd()):
        candidates.append(base.parent / "shared" / "data" / "ptbxl-subset")
    candidates.append(BUNDLED_PTBXL)
    for c in candidates:
        if (c / "ptbxl_database.csv").is_file():
            return c
    raise DataError("no PTB-XL folder found: pass --data PATH or set $" + ENV_VAR)


@dataclass
class Dataset:
    """Signals and labels of one split, ready for training."""

    X: np.ndarray            # (n, leads, samples) float32, mV, not yet preprocessed
    Y: np.ndarray            # (n, tasks) float32 in {0, 1}
    ecg_ids: np.ndarray
    patient_ids: np.ndarray
    folds: np.ndarray
    tasks: tuple
    leads: tuple
    fs: float
    skipped: dict = field(default_factory=dict)  # ecg_id -> reason

    def __len__(self) -> int:
        return len(self.ecg_ids)


class PTBXL:
    """One PTB-XL folder. ``min_likelihood`` filters ``scp_codes`` (0 keeps every statement)."""

    def __init__(self, root=None, min_likelihood: float = 0.0):
        import pandas as pd

        self.root = resolve_data_root(root)
        db_path, st_path = self.root / "ptbxl_database.csv", self.root / "scp_statements.csv"
        for p in (db_path, st_path):
            if not p.is_file():
                raise DataError(f"{p}: missing")
        db = pd.read_csv(db_path, index_col="ecg_id")
        missing = [c for c in DB_COLUMNS if c not in db.columns]
        if missing:
            raise DataError(f"{db_path}: lacks columns {missing}")
        st = pd.read_csv(st_path, index_col=0)
        if "diagnostic_class" not in st.columns:
            raise DataError(f"{st_path}: lacks column 'diagnostic_class'")
        absent = [s for s in MI_STATEMENTS if s not in st.index]
        if absent:
            raise DataError(f"{st_path}: MI statements {absent} not found")

        def parse(s, eid):
            try:
                return ast.literal_eval(s) if isinstance(s, str) else {}
            except (ValueError, SyntaxError):
                raise DataError(f"{db_path}: ecg_id {eid}: unparsable scp_codes {s!r}") from None

        db["scp_codes"] = [parse(s, e) for e, s in zip(db.index, db["scp_codes"])]
        self.db = db
        self.statements = st
        self.min_likelihood = float(min_likelihood)
        self.mi_codes = tuple(st.index[st["diagnostic_class"] == "MI"])

    # ------------------------------------------------------------------ labels
    def codes(self, eid) -> set:
        return {c for c, lk in self.db.at[eid, "scp_codes"].items()
                if float(lk) >= self.min_likelihood}

    def labels(self, ids=None, tasks=DEFAULT_TASKS) -> np.ndarray:
        ids = self.db.index if ids is None else ids
        Y = np.zeros((len(ids), len(tasks)), dtype=np.float32)
        for i, eid in enumerate(ids):
            codes = self.codes(eid)
            for j, t in enumerate(tasks):
                Y[i, j] = bool(codes & set(self.mi_codes)) if t == "MI" else (t in codes)
        return Y

    # ------------------------------------------------------------------ splits
    def split_ids(self, split="test", folds=None, by: str = "strat_fold", seed: int = 0) -> np.ndarray:
        """ecg_ids of a split. ``by='patient_id'`` re-splits patients 80/10/10 with ``seed``."""
        if by == "patient_id" and folds is None:
            pats = np.array(sorted(self.db.patient_id.unique()))
            rng = np.random.default_rng(seed)
            rng.shuffle(pats)
            n = len(pats)
            cut = {"train": pats[: int(0.8 * n)], "val": pats[int(0.8 * n): int(0.9 * n)],
                   "test": pats[int(0.9 * n):], "all": pats}[split]
            return self.db.index[self.db.patient_id.isin(cut)].to_numpy()
        folds = SPLITS[split] if folds is None else tuple(folds)
        return self.db.index[self.db.strat_fold.isin(folds)].to_numpy()

    # ------------------------------------------------------------------ signals
    def record_path(self, eid, fs: int = 100) -> Path:
        col = "filename_lr" if fs == 100 else "filename_hr"
        return self.root / str(self.db.at[eid, col])

    def read(self, eid, fs: int = 100, leads=LEADS) -> np.ndarray:
        """One record as (leads, samples) float32 mV; raises DataError naming the record."""
        import wfdb

        path = self.record_path(eid, fs)
        try:
            sig, meta = wfdb.rdsamp(str(path))
        except FileNotFoundError as exc:
            raise DataError(f"ecg_id {eid} ({path}): missing file {exc.filename or ''}") from None
        except Exception as exc:  # wfdb raises many kinds for truncated/odd files
            raise DataError(f"ecg_id {eid} ({path}): unreadable ({type(exc).__name__}: {exc})") from None
        if int(round(meta["fs"])) != fs:
            raise DataError(f"ecg_id {eid} ({path}.hea): sampling rate {meta['fs']} Hz, expected {fs}")
        names = [n.upper() for n in meta["sig_name"]]
        try:
            idx = [names.index(l.upper()) for l in leads]
        except ValueError:
            raise DataError(f"ecg_id {eid} ({path}.hea): leads {meta['sig_name']} lack one of {list(leads)}") from None
        x = sig[:, idx].T.astype(np.float32)
        if x.shape[1] != 10 * fs:
            raise DataError(f"ecg_id {eid} ({path}): {x.shape[1]} samples, expected {10 * fs}")
        if not np.isfinite(x).all():
            raise DataError(f"ecg_id {eid} ({path}): {int((~np.isfinite(x)).sum())} NaN/inf samples")
        return x

    def _cache_key(self, ids, fs, leads, fs_out) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([str(self.root.resolve()), fs, list(leads), fs_out, 2]).encode())
        for eid in ids:
            p = self.record_path(eid, fs).with_suffix(".dat")
            try:
                stt = p.stat()
                h.update(f"{eid}:{stt.st_size}:{int(stt.st_mtime)};".encode())
            except OSError:
                h.update(f"{eid}:missing;".encode())
        return h.hexdigest()[:20]

    def load(self, ids, fs: int = 100, leads=LEADS, fs_out=None, cache_dir=None, progress=True):
        """Signals of ``ids`` as (n, leads, samples); bad records are skipped, counted and named.

        Returns (X, kept_ids, skipped) where skipped maps ecg_id to the reason.
        The array is cached as ``.npy`` under ``cache_dir`` keyed by the source
        files (size, mtime), rate, leads and target rate.
        """
        ids = np.asarray(ids)
        cache = Path(cache_dir) if cache_dir else default_cache_dir()
        key = self._cache_key(ids, fs, leads, fs_out)
        f_x, f_meta = cache / f"ptbxl-{key}.npy", cache / f"ptbxl-{key}.json"
        if f_x.is_file() and f_meta.is_file():
            meta = json.loads(f_meta.read_text())
            return (np.load(f_x, mmap_mode="r"), np.asarray(meta["kept"]),
                    {int(k): v for k, v in meta["skipped"].items()})
        from tqdm.auto import tqdm

        n_t = int(10 * (fs_out or fs))
        try:  # stream every record straight into the cache file: memory stays one record deep
            cache.mkdir(parents=True, exist_ok=True)
            sink = _NpySink(f_x, (len(ids), len(leads), n_t))
        except OSError as exc:  # a read-only cache must not stop training
            log.warning("cache not written (%s); holding the records in memory", exc)
            sink = None
        xs, kept, skipped = [], [], {}
        for eid in tqdm(ids, desc=f"reading PTB-XL {fs} Hz", disable=not progress, unit="rec"):
            try:
                x = self.read(eid, fs, leads)
            except DataError as exc:
                skipped[int(eid)] = str(exc)
                log.warning("skipping %s", exc)
                continue
            if fs_out and fs_out != fs:
                x = resample(x, fs, fs_out)
            if sink is not None:
                sink.write(x)
            else:
                xs.append(x)
            kept.append(int(eid))
        if skipped:
            log.warning("skipped %d of %d records (first: %s)", len(skipped), len(ids),
                        next(iter(skipped.values())))
        if sink is None:
            X = np.stack(xs) if xs else np.zeros((0, len(leads), n_t), np.float32)
            return X, np.asarray(kept), skipped
        sink.close(len(kept))
        f_meta.write_text(json.dumps({"kept": kept, "skipped": skipped}))
        return np.load(f_x, mmap_mode="r"), np.asarray(kept), skipped

    # ------------------------------------------------------------------ summary
    def summary(self, tasks=DEFAULT_TASKS, check_files: bool = True) -> dict:
        Y = self.labels(tasks=tasks)
        out = {
            "root": str(self.root),
            "records": int(len(self.db)),
            "patients": int(self.db.patient_id.nunique()),
            "min_likelihood": self.min_likelihood,
            "per_fold": {int(k): int(v) for k, v in self.db.strat_fold.value_counts().sort_index().items()},
            "per_label": {t: int(Y[:, j].sum()) for j, t in enumerate(tasks)},
            "mi_per_fold": {int(f): int(Y[(self.db.strat_fold == f).to_numpy(), 0].sum())
                            for f in sorted(self.db.strat_fold.unique())},
            "mi_statements_all": {c: int(sum(c in self.codes(e) for e in self.db.index))
                                  for c in self.mi_codes},
        }
        if check_files:
            for fs, col in ((100, "filename_lr"), (500, "filename_hr")):
                present = sum((self.root / f).with_suffix(".dat").is_file() for f in self.db[col])
                out[f"files_{fs}hz"] = int(present)
        return out


class _NpySink:
    """A float32 ``.npy`` written record by record (then renamed into place), so caching the full
    PTB-XL at 500 Hz (5 GB) never holds more than one record in memory."""

    def __init__(self, path: Path, shape: tuple):
        self.path, self.shape = path, shape
        self.tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        self.f = open(self.tmp, "wb")
        self.header = self._header(shape)
        self.f.write(self.header)

    @staticmethod
    def _header(shape) -> bytes:
        import io
        b = io.BytesIO()
        np.lib.format.write_array_header_1_0(b, {"descr": "<f4", "fortran_order": False, "shape": tuple(shape)})
        return b.getvalue()

    def write(self, x: np.ndarray) -> None:
        self.f.write(np.ascontiguousarray(x, dtype="<f4").tobytes())

    def close(self, n_kept: int) -> None:
        self.f.close()
        if n_kept != self.shape[0]:  # skipped records: the header's first dimension shrinks
            h = self._header((n_kept,) + tuple(self.shape[1:]))
            if len(h) == len(self.header):
                with open(self.tmp, "r+b") as f:
                    f.write(h)
            else:  # header length changed (rare): rewrite the file behind a new header
                import shutil
                body = self.tmp.with_name(self.tmp.name + ".body")
                os.replace(self.tmp, body)
                with open(body, "rb") as fi, open(self.tmp, "wb") as fo:
                    fi.seek(len(self.header))
                    fo.write(h)
                    shutil.copyfileobj(fi, fo, 16 << 20)
                body.unlink()
        os.replace(self.tmp, self.path)


def default_cache_dir() -> Path:
    return Path(os.environ.get("SELFMIS_CACHE", Path.home() / ".cache" / "selfmis"))


def load_split(root=None, split="train", fs: int = 100, leads=LEADS, tasks=DEFAULT_TASKS,
               min_likelihood: float = 0.0, folds=None, fs_out=None, cache_dir=None,
               progress=True, ptbxl: PTBXL | None = None, ids=None) -> Dataset:
    """Load one split as a :class:`Dataset` (signals in mV, labels 0/1)."""
    ds = ptbxl or PTBXL(root, min_likelihood=min_likelihood)
    if ids is None:
        ids = ds.split_ids(split, folds=folds)
        if fs == 500:  # records500 may be partial (the shared subset): keep what exists
            ids = np.array([e for e in ids if ds.record_path(e, 500).with_suffix(".hea").is_file()])
    X, kept, skipped = ds.load(ids, fs=fs, leads=leads, fs_out=fs_out, cache_dir=cache_dir,
                               progress=progress)
    db = ds.db.loc[kept] if len(kept) else ds.db.iloc[:0]
    return Dataset(X=X, Y=ds.labels(kept, tasks), ecg_ids=kept, patient_ids=db.patient_id.to_numpy(),
                   folds=db.strat_fold.to_numpy(), tasks=tuple(tasks), leads=tuple(leads),
                   fs=float(fs_out or fs), skipped=skipped)
