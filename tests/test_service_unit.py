"""The gateway service stays up: the systemd unit (checked by systemd-analyze), waiting for the
device on a real pty, and `selfmis deploy push` explaining permission errors."""
from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from selfmis.exit_codes import ExitCode
from selfmis.firmware_bridge import deploy, gateway_ops
from selfmis.firmware_bridge.deploy import DeployError, render_systemd_unit
from test_edge_support import model_bundle, quiet_env
from test_fb_deploy import make_bundle

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd = pytest.mark.skipif(SYSTEMD_ANALYZE is None,
                                   reason="systemd-analyze not installed (apt-get install systemd)")
EDGE_RUN = [sys.executable, "-m", "selfmis.edge_runtime.cli"]
SIM = [sys.executable, "-m", "selfmis.firmware_bridge.virtual_device"]


def parse_unit(text: str) -> dict:
    """{section: {key: [values]}} (systemd keys may repeat)."""
    out, section = {}, None
    for ln in text.splitlines():
        ln = ln.strip()
        if not ln or ln.startswith(("#", ";")):
            continue
        if ln.startswith("["):
            section = out.setdefault(ln.strip("[]"), {})
            continue
        k, _, v = ln.partition("=")
        section.setdefault(k, []).append(v)
    return out


def systemd_version() -> int:
    out = subprocess.run([SYSTEMD_ANALYZE, "--version"], capture_output=True, text=True).stdout
    return int(re.search(r"systemd (\d+)", out).group(1))


def verify(unit_text: str, where: Path):
    """systemd-analyze verify on the unit written to ``where``; (rc, messages about this unit)."""
    where.mkdir(parents=True, exist_ok=True)
    path = where / "selfmis-edge.service"
    path.write_text(unit_text)
    r = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", str(path)], capture_output=True,
                       text=True, timeout=60)
    mine = [ln for ln in (r.stdout + r.stderr).splitlines() if "selfmis-edge" in ln]
    return r.returncode, mine


@pytest.fixture
def gateway(tmp_path):
    """A gateway root with a pushed release and a venv whose bin/edge-run is the real one."""
    root = tmp_path / "gw"
    arc = tmp_path / "r.tar.gz"
    deploy.pack_bundle(make_bundle(tmp_path / "b", 1), arc, "1.0.0")
    deploy.push(arc, root, allow_unsigned=True)  # the unit is under test, not the signature
    venv = Path(sys.executable).parent.parent
    if not (venv / "bin" / "edge-run").is_file():  # pytest run from a venv without the scripts
        venv = root / "venv"
        (venv / "bin").mkdir(parents=True)
        exe = venv / "bin" / "edge-run"
        exe.write_text(f"#!{sys.executable}\nfrom selfmis.edge_runtime.cli import main\nraise SystemExit(main())\n")
        exe.chmod(0o755)
    return root, venv


# ----------------------------------------------------------------- what the unit says

def test_restarts_forever_with_backoff_and_waits_for_the_device():
    u = parse_unit(render_systemd_unit())
    assert u["Unit"]["StartLimitIntervalSec"] == ["0"]  # no start limit: never gives up
    assert "StartLimitBurst" not in u["Unit"] and "StartLimitBurst" not in u["Service"]
    s = u["Service"]
    assert s["Restart"] == ["always"]
    assert float(s["RestartSec"][0]) > 0
    assert int(s["RestartSteps"][0]) >= 1 and int(s["RestartMaxDelaySec"][0]) > float(s["RestartSec"][0])
    exec_start = s["ExecStart"][0].split()
    assert exec_start[0] == "/opt/selfmis/venv/bin/edge-run" and "--wait-for-device" in exec_start
    assert "Group" not in s  # the user's own primary group, whatever --user is
    # an older systemd: the keys it does not know are left out, the restart policy stays
    old = parse_unit(render_systemd_unit(systemd_version=252))["Service"]
    assert "RestartSteps" not in old and "RestartMaxDelaySec" not in old and old["Restart"] == ["always"]
    assert "RestartSteps" in parse_unit(render_systemd_unit(systemd_version=254))["Service"]


@pytest.mark.parametrize("root,venv,protect", [
    ("/opt/selfmis", None, "yes"),
    ("/srv/ecg/", None, "yes"),
    ("/home/pi/selfmis", None, "read-only"),      # `yes` would hide the release from the service
    ("/opt/selfmis", "/home/pi/.venvs/edge", "read-only"),
    ("/root/selfmis", None, "read-only"),
    ("/homestead/selfmis", None, "yes"),
])
def test_protect_home_never_hides_the_root_or_venv(root, venv, protect):
    text = render_systemd_unit(root, "pi", venv)
    s = parse_unit(text)["Service"]
    assert s["ProtectHome"] == [protect]
    r = root.rstrip("/")
    assert s["WorkingDirectory"] == [f"{r}/current"] and s["User"] == ["pi"]
    assert s["ExecStart"][0].startswith(f"{venv or r + '/venv'}/bin/edge-run ")
    assert "/opt/selfmis" not in text or r == "/opt/selfmis"


def test_bad_roots_and_users_are_refused_with_the_reason():
    for root in ("relative/path", "/opt/my selfmis", "/opt/100%"):
        with pytest.raises(DeployError, match="--root"):
            render_systemd_unit(root)
    with pytest.raises(DeployError, match="--user"):
        render_systemd_unit(user="a b")


def test_documentation_names_a_file_every_release_contains(gateway):
    root, venv = gateway
    docs = parse_unit(render_systemd_unit(str(root), venv=str(venv)))["Unit"]["Documentation"][0].split()
    assert docs
    for uri in docs:
        assert uri.startswith("file://"), uri
        assert Path(uri[len("file://"):]).is_file(), uri  # in the installed release
    manifest = json.loads((root / "current" / "MANIFEST.json").read_text())
    assert {Path(u).name for u in docs} <= set(manifest["files"])


# ----------------------------------------------------------------- systemd-analyze verify

@needs_systemd
@pytest.mark.parametrize("user,under_home", [("selfmis", False), ("pi", True)])
def test_systemd_analyze_verifies_the_unit(gateway, tmp_path, user, under_home):
    root, venv = gateway
    if under_home:  # a --root inside a home folder: its path is what matters to the unit
        text = render_systemd_unit("/home/pi/selfmis", user, str(venv), systemd_version=systemd_version())
        assert "ProtectHome=read-only" in text
    else:
        text = render_systemd_unit(str(root), user, str(venv), systemd_version=systemd_version())
    rc, mine = verify(text, tmp_path / "unit")
    assert rc == 0 and mine == [], mine


@needs_systemd
def test_systemd_analyze_on_the_default_template_and_older_systemd(gateway, tmp_path):
    """The full template (backoff keys included): only a systemd older than 254 may call them unknown."""
    root, venv = gateway
    rc, mine = verify(render_systemd_unit(str(root), "selfmis", str(venv)), tmp_path / "unit")
    assert rc == 0, mine
    unknown = [ln for ln in mine if "Unknown key" in ln]
    assert len(unknown) == len(mine), mine
    if systemd_version() >= deploy.SYSTEMD_BACKOFF_VERSION:
        assert mine == []
    else:
        assert sorted(re.search(r"'(\w+)'", ln).group(1) for ln in unknown) == \
            ["RestartMaxDelaySec", "RestartSteps"]


@needs_systemd
def test_systemd_analyze_fails_when_edge_run_is_missing(tmp_path):
    """The check has teeth: a unit for a root without the venv does not verify."""
    rc, mine = verify(render_systemd_unit(str(tmp_path / "nothing-here")), tmp_path / "unit")
    assert rc != 0 and any("edge-run" in ln for ln in mine), mine


def test_cli_prints_the_unit_for_other_paths(capsys, caplog):
    assert deploy.main(["systemd-unit", "--root", "/home/ecg/gw", "--user", "ecg",
                        "--systemd-version", "252"]) == 0
    u = parse_unit(capsys.readouterr().out)
    assert u["Service"]["ProtectHome"] == ["read-only"] and u["Service"]["User"] == ["ecg"]
    assert "RestartSteps" not in u["Service"]
    assert deploy.main(["systemd-unit", "--root", "rel"]) == ExitCode.USAGE
    assert "absolute" in caplog.text


# ----------------------------------------------------------------- deploy push: permissions

def _as_other_user(cmd, cwd):
    """Run ``cmd`` as `nobody` (root can write anywhere, so a permission error needs another user)."""
    if os.geteuid() != 0:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=60)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) not installed")
    return subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", *cmd],
                          capture_output=True, text=True, cwd=cwd, timeout=60)


def test_push_to_a_root_owned_by_someone_else_says_what_to_chown(tmp_path):
    """The README's old steps left /opt/selfmis owned by root: `[Errno 13] ... .lock` with no hint."""
    base = Path(tempfile.mkdtemp(prefix="selfmis-perm-"))  # world-traversable, unlike tmp_path
    try:
        base.chmod(0o755)
        (base / "incoming").mkdir()
        (base / "incoming").chmod(0o777)  # the upload folder is the deploy user's (prepare made it)
        arc = base / "r.tar.gz"
        deploy.pack_bundle(make_bundle(tmp_path / "b", 1), arc, "1.0.0")
        arc.chmod(0o644)
        ops = base / "gateway_ops.py"  # what runs on the gateway over ssh, as the deploy user
        shutil.copy(gateway_ops.__file__, ops)
        ops.chmod(0o644)
        root = base / "opt-selfmis"
        root.mkdir()
        if os.geteuid() != 0:
            root.chmod(0o555)  # our own, but not writable: the same error
        # the gateway side (ssh target): the error comes back in the JSON with the fix
        upload = base / "incoming" / "upload.tar.gz"  # install deletes the uploaded copy
        shutil.copy(arc, upload)
        upload.chmod(0o644)
        r = _as_other_user([sys.executable, str(ops), "install", str(root), str(upload)], cwd=base)
        assert r.returncode == gateway_ops.TARGET == ExitCode.TARGET, r.stderr
        err = json.loads(r.stdout.splitlines()[-1])["error"]
        assert "permission denied" in err and "chown -R" in err and str(root) in err, err
        owner = __import__("pwd").getpwuid(root.stat().st_uid).pw_name
        assert f"owned by {owner}" in err, err
        # a root that does not exist yet, inside a folder we may not write: create it for us
        r = _as_other_user([sys.executable, str(ops), "prepare", str(root / "sub")], cwd=base)
        err = json.loads(r.stdout.splitlines()[-1])["error"]
        assert "sudo install -d -o" in err and str(root / "sub") in err, err
        # the local `selfmis deploy push` says the same on stderr, exit TARGET (7)
        r = _as_other_user([sys.executable, "-m", "selfmis.firmware_bridge.deploy", "push", str(arc),
                            str(root)], cwd=base)
        assert r.returncode == ExitCode.TARGET and "chown -R" in r.stderr and "Errno 13" not in r.stderr, r.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


# ----------------------------------------------------------------- edge-run --wait-for-device

def test_wait_for_device_gives_up_after_its_limit(tmp_path):
    port = str(tmp_path / "ttyNOPE")
    t0 = time.monotonic()
    r = subprocess.run(EDGE_RUN + ["--port", port, "--model", model_bundle(), "--wait-for-device", "1.5"],
                       capture_output=True, text=True, timeout=60, env=quiet_env(tmp_path))
    waited = time.monotonic() - t0
    assert r.returncode == 4, r.stderr
    assert "waiting for it to appear (for up to 1.5 s)" in r.stderr and "not there after waiting" in r.stderr
    assert waited >= 1.5
    assert r.stderr.count("waiting for it to appear") == 1  # one line, not one per poll


def test_wait_for_device_starts_when_a_pty_appears(tmp_path):
    """The service case: edge-run starts before the wearable; a real pty then appears at the path."""
    from test_edge_support import record_path
    rec = record_path(271, hr=True)
    if rec is None:
        pytest.skip("no PTB-XL records available")
    link = tmp_path / "ttyECG"
    # the simulator runs at 4x real time: --trust-rate, or the arrival-rate check withholds every beat
    edge = subprocess.Popen(EDGE_RUN + ["--port", str(link), "--model", model_bundle(), "--wait-for-device",
                                        "--max-seconds", "12", "--retries", "0", "--trust-rate"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=quiet_env(tmp_path))
    sim = None
    try:
        time.sleep(3.0)
        assert edge.poll() is None, edge.communicate()[1]  # still waiting, not exit 4
        sim = subprocess.Popen(SIM + [rec, "--pty", "--loop", "--speed", "4", "--link", str(link)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=quiet_env(tmp_path))
        out, err = edge.communicate(timeout=90)
    finally:
        for p in (edge, sim):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert edge.returncode == 0, err
    assert err.count("waiting for it to appear") == 1, err
    appeared = re.search(r"appeared after ([\d.]+) s", err)
    assert appeared and float(appeared.group(1)) >= 2.5, err
    ev = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    assert any(e.get("kind") == "connected" for e in ev if e["type"] == "link")
    assert [e for e in ev if e["type"] == "beat"] and ev[-1]["type"] == "summary", err


@needs_systemd
def test_the_documented_udev_drop_in_verifies(gateway, tmp_path):
    """README's BindsTo/After drop-in, added to the unit, is accepted by systemd-analyze."""
    readme = (Path(deploy.__file__).parent / "README.md").read_text()
    block = re.search(r"```ini\n(\[Unit\]\n.*?)```", readme, re.S).group(1)
    lines = [ln for ln in block.splitlines()[1:] if ln.strip()]
    assert {ln.split("=")[0] for ln in lines} == {"BindsTo", "After"}
    root, venv = gateway
    text = render_systemd_unit(str(root), venv=str(venv), systemd_version=systemd_version())
    text = text.replace("[Unit]\n", "[Unit]\n" + "\n".join(lines) + "\n", 1)
    rc, mine = verify(text, tmp_path / "unit")
    assert rc == 0 and mine == [], mine
    assert parse_unit(text)["Unit"]["BindsTo"] == ["dev-selfmis\\x2decg.device"]
    if shutil.which("systemd-escape"):  # the name really is the escaped device path
        esc = subprocess.run(["systemd-escape", "--path", "--suffix=device", "/dev/selfmis-ecg"],
                             capture_output=True, text=True).stdout.strip()
        assert parse_unit(text)["Unit"]["BindsTo"] == [esc]
