"""An emulated Raspberry Pi OS-like image: a Debian arm64/armhf tree run through qemu-user.

``debootstrap --foreign`` from the Debian registry (the mirror apt uses on this machine),
then the second stage inside the tree through ``qemu-aarch64-static`` (binfmt). The tree is
a cached build artefact (``$SELFMIS_CACHE/pi`` or ``~/.cache/selfmis/pi``), never committed.
Commands run in it with ``chroot`` (root is needed: debootstrap, mount and chroot are).
"""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

__all__ = ["IMAGES", "HOST_APT", "cache_dir", "debian_mirror", "ensure_host_tools", "bootstrap",
           "prepare", "chroot", "release_mounts"]

# image -> (Debian suite, architecture, qemu binary); Pi OS Bookworm = Debian 12, Trixie = Debian 13
IMAGES = {
    "bookworm-arm64": ("bookworm", "arm64", "qemu-aarch64-static"),
    "trixie-arm64": ("trixie", "arm64", "qemu-aarch64-static"),
    "bookworm-armhf": ("bookworm", "armhf", "qemu-arm-static"),
}
HOST_APT = ["qemu-user-static", "debootstrap", "binfmt-support", "systemd"]
# python3-venv/pip as on Pi OS; systemd for `systemd-analyze verify` inside the tree
INCLUDE = "python3,python3-venv,python3-pip,ca-certificates,systemd"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def cache_dir() -> Path:
    base = os.environ.get("SELFMIS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "selfmis")
    return Path(base) / "pi"


def debian_mirror(sources_glob: str = "/etc/apt/sources.list.d/*", sources_list: str = "/etc/apt/sources.list") -> str:
    """The Debian URI apt uses here (deb822 ``URIs:`` or one-line ``deb URI suite``), else deb.debian.org."""
    for path in sorted(glob.glob(sources_glob)) + [sources_list]:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for uri in re.findall(r"^\s*URIs:\s*(\S+)", text, re.M) + re.findall(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            if re.search(r"/debian/?$", uri):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _missing_debs(packages) -> list:
    out = []
    for p in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
        if "install ok installed" not in r.stdout:
            out.append(p)
    return out


def ensure_host_tools(log=print) -> None:
    """apt-get install what the emulation needs (a fresh machine has none of it); enable binfmt."""
    if os.geteuid() != 0:
        raise PermissionError("target-pi needs root (debootstrap, mount, chroot): run it with sudo")
    missing = _missing_debs(HOST_APT)
    if missing:
        log(f"target-pi: apt-get install {' '.join(missing)}")
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not os.path.exists("/proc/sys/fs/binfmt_misc/status"):
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc"], check=False)
    for name in ("qemu-aarch64", "qemu-arm"):
        subprocess.run(["update-binfmts", "--enable", name], check=False, capture_output=True)
    if not os.path.exists("/proc/sys/fs/binfmt_misc/qemu-aarch64"):
        raise RuntimeError("binfmt_misc has no qemu-aarch64 entry: `update-binfmts --enable qemu-aarch64` failed "
                           "(in a container, the host must register it: apt-get install qemu-user-static there)")


def bootstrap(image: str, tree: Path, mirror: str, log=print, timeout: int = 3600) -> float:
    """Build ``tree`` once (seconds spent; 0.0 when the cached tree is complete)."""
    suite, arch, qemu = IMAGES[image]
    stamp = tree / ".selfmis-bootstrapped"
    if stamp.exists():
        return 0.0
    if tree.exists():
        release_mounts(tree)
        shutil.rmtree(tree)
    t0 = time.monotonic()
    log(f"target-pi: debootstrap {suite} {arch} -> {tree} (several minutes)")
    subprocess.run(["nice", "-n", "10", "debootstrap", f"--arch={arch}", "--variant=minbase", "--foreign",
                    f"--include={INCLUDE}", suite, str(tree), mirror], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL)
    shutil.copy2(f"/usr/bin/{qemu}", tree / "usr" / "bin" / qemu)
    subprocess.run(["nice", "-n", "10", "chroot", str(tree), f"/usr/bin/{qemu}", "/bin/sh",
                    "/debootstrap/debootstrap", "--second-stage"], check=True, timeout=timeout,
                   stdout=subprocess.DEVNULL)
    stamp.write_text(f"{suite} {arch} {mirror}\n")
    return time.monotonic() - t0


def prepare(tree: Path) -> None:
    """What pip needs inside: DNS, the host's CA bundle, /proc (pip and Python read it)."""
    shutil.copy2("/etc/resolv.conf", tree / "etc" / "resolv.conf")
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    if ca.exists():
        (tree / "etc/ssl/certs").mkdir(parents=True, exist_ok=True)
        shutil.copy2(ca, tree / "etc/ssl/certs/ca-certificates.crt")
    if not os.path.ismount(tree / "proc"):
        subprocess.run(["mount", "-t", "proc", "proc", str(tree / "proc")], check=True)


def release_mounts(tree: Path) -> None:
    if os.path.ismount(tree / "proc"):
        subprocess.run(["umount", "-l", str(tree / "proc")], check=False)


def chroot(tree: Path, command: str, timeout: float = 3600, env: dict | None = None, user: str | None = None,
           check: bool = True) -> subprocess.CompletedProcess:
    """``sh -c command`` inside the tree, niced (``SELFMIS_PI_NICE``, default 10), with a clean environment (no host pip config:
    the host's wheel folders hold x86 wheels); stdout and stderr captured as text."""
    base = {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8", "PIP_CONFIG_FILE": "/dev/null",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "180"}
    if user:
        base["HOME"] = f"/home/{user}"
    argv = ["nice", "-n", os.environ.get("SELFMIS_PI_NICE", "10"), "chroot"]
    if user:
        argv += [f"--userspec={user}:{user}"]
    argv += [str(tree), "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in {**base, **(env or {})}.items()],
             "/bin/sh", "-c", command]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"in {tree.name}: `{command}` exited {r.returncode}: {(r.stderr or r.stdout)[-3000:]}")
    return r
