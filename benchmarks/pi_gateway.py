"""Inside an emulated Pi image: the 100-device gateway, ``selfmis deploy`` and the systemd unit.

Every command here is the one a user types on the Pi (or on the workstation, for
``selfmis deploy bundle/push``), run in the tree through ``chroot``; the README's Pi
section lists the same commands.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from selfmis.benchmarks.pi_tree import chroot

__all__ = ["write_looped_record", "gateway_check", "deploy_checks", "readme_simulate", "README_COMMANDS", "N_DEVICES",
           "SIGNAL_S"]

N_DEVICES = 100
SIGNAL_S = 60
VENV = "/opt/selfmis/venv"
# The README's Pi commands (edge_runtime/README.md, "On a Raspberry Pi"), run here word for word in the tree
# (as root where the README says sudo: the tree has no sudo); tests/test_target_pi.py checks that the README
# still says exactly these. `daemon-reload`, `enable --now` and `journalctl` need a booted systemd: not run.
README_SIMULATE = (f"{VENV}/bin/edge-run --simulate {VENV}/lib/python3*/site-packages/selfmis/sample_data/ptbxl/"
                   "records500/00000/00271_hr.hea --fast --quiet")  # .hea: a glob matches only a file
UNIT = "/etc/systemd/system/selfmis-edge.service"
README_SERVICE = ("useradd --system --home /var/lib/selfmis --groups dialout,bluetooth selfmis",
                  f"{VENV}/bin/selfmis deploy systemd-unit --root /opt/selfmis --user selfmis "
                  f"--systemd-version \"$(systemctl --version | awk 'NR==1{{print $2}}')\" | tee {UNIT}",
                  f"systemd-analyze verify {UNIT}")
README_COMMANDS = (README_SIMULATE, *README_SERVICE)


def readme_simulate(tree: Path) -> dict:
    """The README's first run after the install, as user pi: the bundled record through the wheel's model."""
    r = chroot(tree, README_SIMULATE, user="pi", check=False, timeout=1800)
    events = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    summary = next((e for e in events if e.get("type") == "summary"), {})
    return {"command": README_SIMULATE, "exit": r.returncode, "beats": summary.get("beats"),
            "decisions": sum(1 for e in events if e.get("type") == "decision"), "model": summary.get("model"),
            "stderr_tail": r.stderr[-600:] if r.returncode else "",
            "ok": r.returncode == 0 and bool(summary.get("beats")) and any(e.get("type") == "decision" for e in events)}


def write_looped_record(src: Path, dst: Path, seconds: float, lead: str = "I") -> Path:
    """A single-lead WFDB (format 16) record of ``seconds``: ``src``'s lead looped (real PTB-XL
    signal; the joins are ordinary baseline steps). Returns ``dst`` without extension."""
    lines = src.with_suffix(".hea").read_text().splitlines()
    name, n_sig, fs, n = lines[0].split()[:4]
    n_sig, fs, n = int(n_sig), float(fs), int(n)
    leads = [ln.split()[-1] for ln in lines[1:1 + n_sig]]
    spec = lines[1 + leads.index(lead)].split()
    data = np.fromfile(src.with_suffix(".dat"), dtype="<i2").reshape(-1, n_sig)[:, leads.index(lead)]
    total = int(round(seconds * fs))
    x = np.resize(data, total).astype("<i2")
    dst.parent.mkdir(parents=True, exist_ok=True)
    x.tofile(dst.with_suffix(".dat"))
    checksum = int(x.astype(np.int64).sum()) % 65536
    checksum = checksum - 65536 if checksum > 32767 else checksum
    # file fmt gain(baseline)/units adcres adczero initval checksum blocksize description
    sig = [f"{dst.name}.dat", "16", spec[2], spec[3], spec[4], str(int(x[0])), str(checksum), "0", lead]
    dst.with_suffix(".hea").write_text(f"{dst.name} 1 {fs:g} {total}\n" + " ".join(sig) + "\n")
    return dst


def gateway_check(tree: Path, venv: str, record: Path) -> dict:
    """``selfmis deploy gateway-config`` with 100 replayed wearables, then ``edge-run --config`` for
    60 s of signal each (``fast``: the emulator cannot keep 100 real-time streams; no time reported)."""
    gw = tree / "home" / "pi" / "gateway"
    write_looped_record(record, gw / "loop60", SIGNAL_S)
    chroot(tree, "chown -R pi:pi /home/pi/gateway")
    devices = " ".join(f"--device d{i:03d}=replay:/home/pi/gateway/loop60,fast=true" for i in range(N_DEVICES))
    chroot(tree, f"{venv}/bin/selfmis deploy gateway-config -o /home/pi/gateway/gateway.json {devices}", user="pi")
    t0 = time.monotonic()
    r = chroot(tree, f"cd /home/pi/gateway && {venv}/bin/edge-run --config gateway.json --max-seconds {SIGNAL_S} "
                     "--quiet > events.jsonl", user="pi", timeout=6 * 3600, check=False)
    wall = time.monotonic() - t0
    events = [json.loads(line) for line in (gw / "events.jsonl").read_text().splitlines() if line.strip()]
    sums = [e for e in events if e.get("type") == "summary"]
    signal = [float(s.get("signal_s") or 0) for s in sums]
    ok = r.returncode == 0 and len(sums) == N_DEVICES and min(signal, default=0) >= SIGNAL_S - 0.5
    return {"devices": N_DEVICES, "exit": r.returncode, "summaries": len(sums),
            "signal_s_per_device": {"min": min(signal, default=None), "max": max(signal, default=None)},
            "decisions": sum(1 for e in events if e.get("type") == "decision"),
            "errors": [e for e in events if e.get("type") == "error"][:5],
            "stderr_tail": r.stderr[-600:] if not ok else "", "ok": ok,
            "emulated_wall_s": round(wall, 1)}


def _workstation(*args, check=True) -> subprocess.CompletedProcess:
    """``selfmis ...`` on the workstation (this host, this checkout)."""
    r = subprocess.run([sys.executable, "-m", "selfmis.cli", *map(str, args)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"selfmis {' '.join(map(str, args))} exited {r.returncode}: {r.stderr[-2000:]}")
    return r


def deploy_checks(tree: Path, venv: str, bundle: Path, work: Path) -> dict:
    """Pack a release on the workstation, push it into the tree's /opt/selfmis (the Pi's disk), run it
    there, install the service as the README says and ``systemd-analyze verify`` it inside the tree."""
    archive, key = work / "release.tar.gz", work / "release_key"
    if not key.is_file():  # the README's release key: the gateway activates only what it signed
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", str(key)],
                       check=True)
    _workstation("deploy", "trust", tree / "opt" / "selfmis", "--pubkey", f"{key}.pub")
    # the version names the bundle's content: a tree keeps an earlier run's release, and a release
    # version that exists with other files is refused (rightly): another bundle is another version
    digest = hashlib.sha256()
    for f in sorted(p for p in bundle.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(f.relative_to(bundle).as_posix().encode() + b"\0" + f.read_bytes())
    version = f"0.1.0-pi.{digest.hexdigest()[:10]}"
    _workstation("deploy", "bundle", bundle, "-o", archive, "--version", version, "--sign-key", key)
    push = _workstation("deploy", "push", archive, tree / "opt" / "selfmis")
    current = tree / "opt" / "selfmis" / "current"
    res = {"push_exit": push.returncode, "signed_by": json.loads(push.stdout).get("signed_by"), "current": str(current.readlink()) if current.is_symlink() else None,
           "current_relative": current.is_symlink() and not current.readlink().is_absolute()}
    chroot(tree, "chown -R pi:pi /opt/selfmis")
    st = chroot(tree, f"{venv}/bin/selfmis deploy status /opt/selfmis", user="pi", check=False)
    res["status_on_pi"] = {"exit": st.returncode, "output": (st.stdout + st.stderr).strip()[-400:]}
    run = chroot(tree, f"{venv}/bin/edge-run --config /opt/selfmis/current/runtime.json --replay "
                       "/home/pi/gateway/loop60 --fast --quiet", user="pi", check=False, timeout=3600)
    decisions = [json.loads(x) for x in run.stdout.splitlines() if '"decision"' in x]
    res["release_runs"] = {"exit": run.returncode, "decisions": len(decisions),
                           "model": next((json.loads(x).get("model") for x in run.stdout.splitlines()
                                          if '"summary"' in x), None)}
    res["service"] = _service(tree, venv)
    res["ok"] = (res["current_relative"] and res["signed_by"] == "release" and st.returncode == 0 and run.returncode == 0 and len(decisions) > 0
                 and res["service"]["verify_exit"] == 0 and res["service"]["enable_exit"] == 0
                 and bool(res["service"]["unit_first_exec"]))
    return res


def _service(tree: Path, venv: str) -> dict:
    """The README's service commands (``README_SERVICE``), as root in the tree; ``--now`` needs a booted
    systemd (the tree is a chroot): ``systemctl enable`` only."""
    version = chroot(tree, "systemctl --version").stdout.split()[1]
    chroot(tree, "getent group bluetooth >/dev/null || groupadd --system bluetooth")  # Pi OS has it (bluez)
    user, unit, verify = README_SERVICE
    chroot(tree, f"id -u selfmis >/dev/null 2>&1 || {user}")
    chroot(tree, f"{unit} >/dev/null")  # a failed `selfmis` leaves no ExecStart= (checked in deploy_checks)
    v = chroot(tree, verify, check=False)
    e = chroot(tree, "systemctl enable selfmis-edge", check=False)
    return {"systemd": version, "verify_exit": v.returncode, "verify_output": (v.stdout + v.stderr).strip()[-800:],
            "enable_exit": e.returncode, "enable_output": (e.stdout + e.stderr).strip()[-400:],
            "commands": list(README_SERVICE) + ["systemctl enable selfmis-edge"],
            "unit_first_exec": next((ln for ln in (tree / UNIT.lstrip("/")).read_text().splitlines()
                                     if ln.startswith("ExecStart=")), None)}
