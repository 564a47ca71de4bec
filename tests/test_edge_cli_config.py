"""``edge-run --config runtime.json``: a deployed release's source and bundle, overridable."""
import json
import subprocess
import sys

from selfmis.bundle import load_bundle
from selfmis.edge_runtime.models import default_bundle_dir
from selfmis.runtime_config import cli_defaults, default_runtime_config, load_runtime_config


def _edge_run(*args):
    return subprocess.run([sys.executable, "-m", "selfmis.edge_runtime.cli", *args],
                          capture_output=True, text=True, timeout=120)


def test_config_defaults_and_relative_paths(tmp_path):
    cfg = default_runtime_config(load_bundle(default_bundle_dir()).card)
    cfg["bundle"] = str(default_bundle_dir())
    cfg["source"] = {"kind": "replay", "path": "rec.csv", "fast": True, "fs": 100}
    (tmp_path / "runtime.json").write_text(json.dumps(cfg))
    d = cli_defaults(load_runtime_config(tmp_path))
    assert d["replay"] == str(tmp_path / "rec.csv") and d["fast"] is True and d["lead"] == "I"


def test_edge_run_replays_the_source_named_by_the_config(tmp_path, bundled_ptbxl):
    rec = bundled_ptbxl / "records100/01000/01737_lr"
    cfg = {"format": "selfmis-runtime-config", "format_version": 1, "bundle": str(default_bundle_dir()),
           "lead": "I", "source": {"kind": "replay", "path": str(rec), "fast": True}}
    (tmp_path / "runtime.json").write_text(json.dumps(cfg))
    r = _edge_run("--config", str(tmp_path / "runtime.json"), "--quiet")
    assert r.returncode == 0, r.stderr
    summary = [json.loads(l) for l in r.stdout.splitlines() if '"summary"' in l]
    assert summary and summary[-1]["beats"] > 5


def test_bad_config_is_a_usage_error(tmp_path):
    (tmp_path / "runtime.json").write_text('{"format": "something-else"}')
    r = _edge_run("--config", str(tmp_path / "runtime.json"))
    assert r.returncode == 2 and "not a SelfMIS runtime config" in r.stderr


def test_a_source_on_the_command_line_replaces_the_configs(tmp_path, bundled_ptbxl):
    cfg = {"format": "selfmis-runtime-config", "format_version": 1, "bundle": str(default_bundle_dir()),
           "lead": "I", "source": {"kind": "serial", "port": "/dev/does-not-exist", "baud": 115200}}
    (tmp_path / "runtime.json").write_text(json.dumps(cfg))
    r = _edge_run("--config", str(tmp_path / "runtime.json"), "--quiet", "--fast",
                  "--replay", str(bundled_ptbxl / "records100/01000/01737_lr"))
    assert r.returncode == 0, r.stderr
    r = _edge_run("--config", str(tmp_path / "runtime.json"), "--quiet")
    assert r.returncode == 4 and "does-not-exist" in r.stderr
