"""``selfmis data summary`` as a user runs it."""
import json
import subprocess
import sys


def run(*args):
    return subprocess.run([sys.executable, "-m", "selfmis.cli", *args], capture_output=True, text=True)


def test_summary_on_bundled_records(bundled_ptbxl):
    r = run("data", "summary", "--data", str(bundled_ptbxl), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["records"] == 9 and s["per_label"]["IMI"] == 3


def test_summary_table_and_errors(bundled_ptbxl, tmp_path):
    r = run("data", "summary", "--data", str(bundled_ptbxl))
    assert r.returncode == 0 and "with MI" in r.stdout
    r = run("data", "summary", "--data", str(tmp_path))
    assert r.returncode == 1 and "not a PTB-XL folder" in r.stderr
    assert run().returncode == 2 and run("--help").returncode == 0
    assert run("nonsense").returncode == 2
