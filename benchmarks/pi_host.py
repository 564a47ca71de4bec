"""The workstation side of ``target_pi``: the wheel, the x86 reference install, armhf wheels, kernel cost.

Everything here runs on the x86 host (no emulation). The x86 reference is installed
exactly as the images are (a fresh venv, the wheel with its extras, plain PyPI without
this machine's pip configuration), and its ``pip freeze`` becomes the constraints the
images install against, so x86 and arm64 differ in the architecture only.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfmis.benchmarks.machine import cpu_info, peak_estimate

__all__ = ["git_state", "build_wheel", "sha256", "cached", "clean_pip_env", "x86_install", "armhf_wheels", "kernel_cost",
           "pi_latency_estimate", "PI_BOARDS", "ARMV7_PLATFORMS"]

# pip --platform matches exact tags: every manylinux glibc level up to Bookworm's 2.36 (tflite-runtime 2.14.0
# is manylinux_2_34_armv7l)
ARMV7_PLATFORMS = ("linux_armv7l", "manylinux2014_armv7l") + tuple(f"manylinux_2_{m}_armv7l" for m in range(17, 37))
# board -> (core, MHz, vector ISA flag for machine.peak_estimate): nominal clocks from the vendor
PI_BOARDS = {"Raspberry Pi 4 (Cortex-A72, 1.5 GHz)": 1500, "Raspberry Pi 5 (Cortex-A76, 2.4 GHz)": 2400}
NOT_PINNED = ("selfmis-edge", "selfmis_edge", "pip", "setuptools", "wheel")


def git_state(repo: Path) -> dict:
    def git(*a):
        return subprocess.run(["git", "-C", str(repo), *a], capture_output=True, text=True).stdout.strip()
    return {"sha": git("rev-parse", "HEAD"), "describe": git("log", "-1", "--format=%h %s")[:120],
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def clean_pip_env(**extra) -> dict:
    """The environment without this machine's pip configuration (its wheel folders hold x86 builds of
    pinned versions): plain PyPI, as a user's Pi has."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "180"})
    if os.path.exists("/etc/ssl/certs/ca-certificates.crt"):
        env["PIP_CERT"] = "/etc/ssl/certs/ca-certificates.crt"
    env.update(extra)
    return env


def build_wheel(repo: Path, out_dir: Path) -> Path:
    """``python -m build --wheel`` of the working tree's tracked + untracked-not-ignored files (a copy:
    stale ``build/`` folders never leak into the wheel)."""
    files = subprocess.run(["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="selfmis-wheel-") as tmp:
        for f in files:
            src = repo / f
            if src.is_file():
                dst = Path(tmp) / f
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
        r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out_dir), tmp],
                           capture_output=True, text=True, cwd=tmp)
        if r.returncode != 0:
            raise RuntimeError(f"python -m build --wheel failed (is `build` installed? pip install build):\n"
                               f"{(r.stderr or r.stdout)[-3000:]}")
    wheels = sorted(out_dir.glob("selfmis_edge-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"{out_dir}: expected one selfmis_edge wheel, found {[w.name for w in wheels]}")
    (out_dir / "wheel.json").write_text(json.dumps({"built_from": git_state(repo), "sha256": sha256(wheels[0])}))
    return wheels[0]


def sha256(path: Path) -> str:
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def cached(path: Path, key: dict, compute):
    """``compute()``, or the value stored in ``path`` by an earlier run with the same ``key``."""
    if path.exists():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return stored["value"]
    value = compute()
    path.write_text(json.dumps({"key": key, "value": value}))
    return value


def x86_install(wheel: Path, venv: Path, extras: str, log=print, reuse: bool = False) -> dict:
    """A fresh x86 venv with the wheel, as a user installs it; its freeze -> constraints for the images.
    ``reuse``: keep an earlier run's venv and figures, reinstall only this wheel (``--no-deps``)."""
    saved = venv / "install.json"
    if reuse and saved.exists():
        py = str(venv / "bin" / "python")
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(wheel)], check=True,
                       env=clean_pip_env())
        return {**json.loads(saved.read_text()), "python": py, "reused": "venv from an earlier run"}
    if venv.exists():
        shutil.rmtree(venv)
    t0 = time.monotonic()
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", f"{wheel}[{extras}]"], capture_output=True, text=True,
                       env=clean_pip_env())
    if r.returncode != 0:
        raise RuntimeError(f"x86 pip install failed:\n{r.stderr[-3000:]}")
    install_s = time.monotonic() - t0
    freeze = subprocess.run([py, "-m", "pip", "freeze", "--all"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    freeze = [f for f in freeze if "==" in f]  # not the wheel itself (`selfmis-edge @ file://...`)
    constraints = venv / "constraints.txt"
    constraints.write_text("\n".join(f for f in freeze if f.split("==")[0].lower() not in NOT_PINNED) + "\n")
    log(f"target-pi: x86 reference venv ready ({install_s:.0f} s)")
    res = {"install_s": round(install_s, 1), "packages": freeze, "constraints": str(constraints)}
    saved.write_text(json.dumps(res))
    return {**res, "python": py}


def _pip_download(pkg: str, py: str, dest: Path) -> dict:
    dest = Path(tempfile.mkdtemp(prefix=f"{pkg}-", dir=dest))  # empty: pip says "Saved" for every file
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", py,
           "-d", str(dest)] + sum([["--platform", p] for p in ARMV7_PLATFORMS], []) + [pkg]
    r = subprocess.run(cmd, capture_output=True, text=True, env=clean_pip_env(), timeout=600)
    shutil.rmtree(dest, ignore_errors=True)
    saved = [line.split("/")[-1] for line in r.stdout.splitlines()
             if line.startswith("Saved ") or line.startswith("File was already downloaded")]
    errors = [line for line in (r.stderr + r.stdout).splitlines() if line.startswith("ERROR")]
    return {"wheel": saved[0] if saved else None, "error": errors[-1] if errors else None}


def armhf_wheels(wheel: Path, extras: str, work: Path, log=print) -> dict:
    """What a 32-bit Pi OS (armv7l) can install from PyPI, and what pip says for the gateway's extras."""
    log("target-pi: armhf: which wheels exist for linux_armv7l")
    work.mkdir(parents=True, exist_ok=True)
    found = {}
    (work / "3.11").mkdir(exist_ok=True)
    (work / "3.13").mkdir(exist_ok=True)
    for py in ("3.11", "3.13"):  # Pi OS Bookworm, Trixie
        for pkg in ("ai-edge-litert", "tflite-runtime", "numpy", "pyserial", "bleak", "paho-mqtt"):
            found[f"{pkg} cp{py.replace('.', '')}"] = _pip_download(pkg, py, work / py)
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--target", str(work / "t"),
           "--only-binary=:all:", "--python-version", "3.11"] + sum([["--platform", p] for p in ARMV7_PLATFORMS], []) \
        + [f"{wheel}[{extras}]"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=clean_pip_env(), timeout=600)
    return {"wheels": found, "gateway_install": {
        "command": f"pip install --dry-run --only-binary=:all: --platform linux_armv7l ... '{wheel.name}[{extras}]'",
        "exit": r.returncode, "errors": [line for line in r.stderr.splitlines() if line.startswith("ERROR")]}}


_KERNEL_SNIPPET = r"""
import json, sys, time
import numpy as np
from selfmis.edge_runtime.interpreter import TFLiteModel
kernels = ("default", "builtin", "reference")
rng = np.random.default_rng(0)
out = {}
for bundle in ("default", "micro"):
    from selfmis.edge_runtime.models import resolve_bundle
    models = {k: TFLiteModel(resolve_bundle(bundle), kernels=k) for k in kernels}
    w = rng.standard_normal((64, models["default"].window)).astype(np.float32)
    times = {k: [] for k in kernels}
    for rnd in range(int(sys.argv[1])):  # interleaved rounds, rotating order: same load for each
        for k in kernels[rnd % 3:] + kernels[:rnd % 3]:
            t0 = time.thread_time(); models[k].predict_logits(w); times[k].append((time.thread_time() - t0) / len(w))
    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    out[bundle] = {"per_window_ms_p50": {k: round(v, 4) for k, v in med.items()},
                   "reference_vs_default": round(med["reference"] / med["default"], 2),
                   "reference_vs_builtin": round(med["reference"] / med["builtin"], 2)}
print(json.dumps(out))
"""


def kernel_cost(python: str, rounds: int = 40) -> dict:
    """Per-window invoke time of the three kernel modes on this x86 host, interleaved (a ratio, not Pi time)."""
    r = subprocess.run(["taskset", "-c", "0", python, "-c", _KERNEL_SNIPPET, str(rounds)], capture_output=True,
                       text=True, cwd=tempfile.gettempdir())
    if r.returncode != 0:
        raise RuntimeError(f"kernel cost measurement failed: {r.stderr[-2000:]}")
    return {"machine": cpu_info().get("model"), "method": f"64 windows x {rounds} interleaved rounds per mode, "
            "one core (taskset -c 0), quantise + invoke + dequantise, thread CPU time (the machine is shared), "
            "median per window", **json.loads(r.stdout)}


def pi_latency_estimate(cost: dict) -> dict:
    """The figure a Pi user should expect, UNMEASURED: this host's measured per-window time scaled by
    the ratio of theoretical single-core peaks (machine.peak_estimate) of this CPU and the board's."""
    cpu = cpu_info()
    host_peak = peak_estimate(cpu.get("flags"), cpu.get("mhz"))["macs_per_s"]
    out = {"status": "unmeasured estimate (emulated time is not Pi time)",
           "measure_on_the_pi": "selfmis bench --quick   (on the board, in the venv with the edge extra)",
           "method": "x86 p50 per window (measured here, per kernel mode) x (x86 theoretical peak / board "
                     "theoretical peak); both peaks from machine.peak_estimate (NEON: 4 fp32 lanes x 2 pipes); "
                     "reference = the kernels the shipped cards name, what edge-run runs by default",
           "boards": {}}
    for board, mhz in PI_BOARDS.items():
        pi_peak = peak_estimate(["asimd"], mhz)["macs_per_s"]
        out["boards"][board] = {f"{b} ({k} kernels)": round(v["per_window_ms_p50"][k] * host_peak / pi_peak, 3)
                                for b, v in cost.items() if isinstance(v, dict) and "per_window_ms_p50" in v
                                for k in ("reference", "default")}
    return out
