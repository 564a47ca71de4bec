"""CI fails on a skip that is not on tests/skip_allowlist: the real conftest, run by a real pytest
on a planted test file (four pytest runs, about 15 s)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

PLANTED = '''
import pytest

def test_runs():
    assert True

def test_planted_skip():
    pytest.skip("a tool is missing")

def test_allowed_skip():
    pytest.skip("the 24-hour soak")
'''


def _run(tmp_path, allowlist: str, ci: bool):
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "skip_allowlist").write_text(allowlist)
    (tmp_path / "test_planted.py").write_text(PLANTED)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "SELFMIS_STRICT_SKIPS", "PYTEST_ADDOPTS")}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                           str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)


def test_a_planted_skip_fails_ci_and_names_itself(tmp_path):
    r = _run(tmp_path, "*::test_allowed_skip  ::  the soak runs for a day\n", ci=True)
    assert r.returncode == 1, r.stdout
    assert "test_planted.py::test_planted_skip: a tool is missing" in r.stdout
    assert "SKIPPED test_planted.py::test_allowed_skip" not in r.stdout  # on the allow-list


def test_the_allowlist_lets_a_listed_skip_pass_and_outside_ci_skips_are_reported_only(tmp_path):
    both = "*::test_allowed_skip  ::  the soak runs for a day\n*::test_planted_skip  ::  planted, for this test\n"
    assert _run(tmp_path, both, ci=True).returncode == 0
    r = _run(tmp_path, "", ci=False)
    assert r.returncode == 0 and "2 skipped" in r.stdout


def test_an_allowlist_entry_must_say_why(tmp_path):
    r = _run(tmp_path, "*::test_planted_skip\n", ci=True)
    assert r.returncode == 4 and "<why>" in r.stdout + r.stderr  # pytest's usage error


def test_the_shipped_allowlist_gives_a_reason_for_every_entry():
    for line in (HERE / "skip_allowlist").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pattern, _, why = line.partition("::  ")
            assert pattern.strip().startswith("tests/") and len(why.split()) >= 4, line
