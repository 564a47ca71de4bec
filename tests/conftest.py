"""Shared fixtures: where the data is, and a quiet, sandboxed environment."""
import os
import tempfile
from pathlib import Path

import pytest

_TMP = tempfile.mkdtemp(prefix="selfmis-test-")
# TensorFlow, matplotlib and onnxruntime write into $HOME; keep them in a temp dir.
for var, sub in (("MPLCONFIGDIR", "mpl"), ("KERAS_HOME", "keras"), ("XDG_CACHE_HOME", "cache")):
    os.environ.setdefault(var, os.path.join(_TMP, sub))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("SELFMIS_CACHE", os.path.join(_TMP, "selfmis-cache"))

REPO = Path(__file__).resolve().parent.parent
SHARED_PTBXL = REPO.parent / "shared" / "data" / "ptbxl-subset"
BUNDLED_PTBXL = REPO / "core" / "sample_data" / "ptbxl"


@pytest.fixture(scope="session")
def bundled_ptbxl() -> Path:
    """The nine PTB-XL records shipped in the repository (always present)."""
    return BUNDLED_PTBXL


@pytest.fixture(scope="session")
def shared_ptbxl() -> Path:
    """The 1,987-record PTB-XL subset; tests needing it skip when it is absent."""
    root = Path(os.environ.get("SELFMIS_PTBXL", SHARED_PTBXL))
    if not (root / "ptbxl_database.csv").is_file():
        pytest.skip(f"PTB-XL subset not found at {root}")
    return root
