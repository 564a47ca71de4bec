"""32-bit Raspberry Pi OS (Debian armhf, ``armv7l``): what a user's ``pip install`` does there, for real.

Inside the emulated armhf tree (:mod:`pi_tree`), as user ``pi``, the README's gateway install:
``python3 -m venv`` then ``pip install 'selfmis_edge-*.whl[edge,mqtt,serve]'`` from PyPI. No LiteRT
runtime has an armv7l wheel on PyPI, so the target is a clean failure that names the runtime (the
``edge`` extra requires ``tflite-runtime`` on 32-bit ARM, see pyproject.toml) with nothing installed:
never a half-installed gateway. Also: what Debian itself offers (``apt-cache search`` in the tree).
"""
from __future__ import annotations

import time
from pathlib import Path

from selfmis.benchmarks import pi_tree

__all__ = ["armhf_tree_check", "armhf_ok"]

VENV = "/home/pi/venv"
#: what `apt-cache search` is asked in the tree (any TFLite/LiteRT runtime Debian might package)
APT_QUERIES = ("tflite", "tensorflow", "litert")


def armhf_tree_check(tree: Path, wheel: Path, extras: str, log=print) -> dict:
    """The install on the armhf tree: pip's exit code and ERROR lines, what the venv holds afterwards,
    and Debian's TFLite packages for this architecture."""
    c = pi_tree.chroot
    c(tree, "id -u pi >/dev/null 2>&1 || useradd -m -s /bin/bash pi")
    (tree / "home" / "pi" / wheel.name).write_bytes(wheel.read_bytes())
    machine = c(tree, "python3 -c 'import platform; print(platform.python_version(), platform.machine())'").stdout.split()
    log(f"target-pi: armhf tree ({' '.join(machine)}): pip install the wheel [{extras}]")
    # a venv a failed install left is as fresh as a new one (pip installs nothing when resolution fails;
    # `venv_after` shows it): creating one takes ~10 min under emulation
    c(tree, f"test -x {VENV}/bin/pip || python3 -m venv {VENV}", user="pi")
    cmd = f"{VENV}/bin/pip install '/home/pi/{wheel.name}[{extras}]'"
    t0 = time.monotonic()
    r = c(tree, cmd, user="pi", timeout=3600, check=False)
    after = [f for f in c(tree, f"{VENV}/bin/pip list --format=freeze", user="pi").stdout.splitlines() if f.strip()]
    out = (r.stdout + r.stderr).splitlines()
    log("target-pi: armhf tree: apt-get update; apt-cache search " + " ".join(APT_QUERIES))
    c(tree, "apt-get update -q", timeout=3600, check=False)
    apt = {q: [line for line in c(tree, f"apt-cache search {q}", check=False).stdout.splitlines() if line.strip()]
           for q in APT_QUERIES}
    dist = c(tree, ". /etc/os-release; echo $PRETTY_NAME").stdout.strip()
    return {"tree": f"{dist} armhf (debootstrap)", "python": machine[0], "machine": machine[1],
            "pip_command": f"python3 -m venv {VENV} && " + cmd.replace(f"/home/pi/{wheel.name}", wheel.name),
            "exit": r.returncode, "seconds_emulated": round(time.monotonic() - t0, 1),
            "errors": [line.strip() for line in out if line.lstrip().startswith(("ERROR", "error", "×", "╰─>", "note:"))],
            "output_tail": [line for line in out if line.strip()][-8:],
            "downloaded": [line.strip() for line in out if line.lstrip().startswith(("Downloading", "Collecting"))],
            "sdists_built": [line.strip() for line in out if "Building wheel for" in line],
            "venv_after": after, "selfmis_installed": any(f.lower().startswith("selfmis") for f in after),
            "apt_cache_search": apt}


def armhf_ok(a: dict) -> bool:
    """Never a half-installed gateway: pip failed with nothing of ours installed, or the runtime imports."""
    return bool((a["exit"] != 0 and not a["selfmis_installed"]) or a.get("runtime_imports"))
