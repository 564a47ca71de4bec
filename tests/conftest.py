"""Shared fixtures: where the data is, and a quiet, sandboxed environment; in CI, no silent skips.

In CI (``CI=true``, as ``.ci/run`` sets it, or ``SELFMIS_STRICT_SKIPS=1``) every skipped test or
module fails the run unless ``tests/skip_allowlist`` names it with the reason it cannot run there.
"""
import fnmatch
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
    """The 1,987-record PTB-XL subset (../shared/data/ptbxl-subset beside the clone, or $SELFMIS_PTBXL).

    Outside CI a test needing it skips, saying so; in CI (which has ../shared beside the clone)
    that skip fails the run (see the skip policy below).
    """
    root = Path(os.environ.get("SELFMIS_PTBXL", SHARED_PTBXL))
    if not (root / "ptbxl_database.csv").is_file():
        pytest.skip(f"needs the PTB-XL subset ../shared/data/ptbxl-subset (or $SELFMIS_PTBXL): not found at {root}")
    return root


# --------------------------------------------------------------------------- the skip policy
ALLOWLIST = Path(__file__).resolve().parent / "skip_allowlist"
_STRICT = (os.environ.get("CI", "").lower() in ("1", "true", "yes")
           or os.environ.get("SELFMIS_STRICT_SKIPS") == "1")
_SKIPS: list = []  # (node id, reason) of every skip this session


def _allowlist() -> list:
    """``[(pattern, why)]`` from tests/skip_allowlist; an entry without a reason is a usage error."""
    out = []
    if not ALLOWLIST.is_file():
        return out
    for n, line in enumerate(ALLOWLIST.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pattern, _, why = (x.strip() for x in line.partition("::  "))
        if not pattern or not why:
            raise pytest.UsageError(f"{ALLOWLIST}:{n}: an entry is '<node id pattern>  ::  <why>', got {line!r}")
        out.append((pattern, why))
    return out


def pytest_configure(config):
    _allowlist()  # a malformed allow-list stops the run before any test


def _note_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        lr = report.longrepr
        reason = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
        _SKIPS.append((report.nodeid, reason.removeprefix("Skipped: ")))


def pytest_collectreport(report):
    _note_skip(report)  # a module-level skip (importorskip, pytestmark)


def pytest_runtest_logreport(report):
    _note_skip(report)


def _unallowed() -> list:
    allowed = _allowlist()
    return [(node, why) for node, why in _SKIPS if not any(fnmatch.fnmatch(node, p) for p, _ in allowed)]


def pytest_sessionfinish(session, exitstatus):
    if _STRICT and _unallowed() and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    bad = _unallowed() if _STRICT else []
    if bad:
        terminalreporter.section("skips not on tests/skip_allowlist (CI fails on them)", red=True)
        for node, why in bad:
            terminalreporter.line(f"SKIPPED {node}: {why}")
