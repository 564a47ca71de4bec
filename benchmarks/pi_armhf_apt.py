"""32-bit Raspberry Pi OS, the route that works: Debian's numpy + tflite-runtime from PyPI, decisions vs x86.

``pip install 'selfmis_edge-*.whl[edge]'`` in a plain venv fails on armhf: PyPI has no armv7l numpy
wheel, so pip tries to compile numpy (:mod:`pi_armhf`). Debian builds numpy for armhf, and PyPI has a
``tflite-runtime`` 2.14.0 wheel for CPython 3.11 armv7l, so this route installs with no compiler::

    sudo apt install python3-numpy python3-venv
    python3 -m venv --system-site-packages ~/venv
    ~/venv/bin/pip install 'selfmis_edge-*.whl[edge]'

This study runs exactly that inside the emulated Debian 12 armhf tree (qemu-user, as user ``pi``),
then replays the bundled records through :mod:`pi_probe` with both shipped bundles and the kernels
their cards name (``reference``), and compares every event and raw int8 output with the same probe
on x86 (ai-edge-litert): :func:`pi_compare.compare_dumps`. Emulated times are not Pi times.

Run (as root, after ``make target-pi`` built the armhf tree)::

    python -m selfmis.benchmarks.pi_armhf_apt --cache ~/.cache/selfmis/pi
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfmis.benchmarks import pi_compare, pi_tree
from selfmis.benchmarks.pi_host import build_wheel
from selfmis.provenance import git_commit

__all__ = ["main", "markdown"]

IMAGE = "bookworm-armhf"
VENV = "/home/pi/venv-sys"
BUNDLES = ("default", "micro")
KERNELS = "reference"
SAMPLE = Path(__file__).resolve().parents[1] / "core" / "sample_data" / "ptbxl"
OUT = Path(__file__).resolve().parent / "results" / "pi"


def _records() -> list:
    return sorted(p.with_suffix("") for p in SAMPLE.glob("records*/*/*.hea"))


def _probe_args(records) -> str:
    return " ".join(f"--bundle {b}" for b in BUNDLES) + " " + " ".join(map(str, records))


def install(tree: Path, wheel: Path, log) -> dict:
    """apt numpy + venv, then the wheel with [edge]; what pip did and what the venv holds."""
    c = pi_tree.chroot
    c(tree, "id -u pi >/dev/null 2>&1 || useradd -m -s /bin/bash pi")
    (tree / "home" / "pi" / wheel.name).write_bytes(wheel.read_bytes())
    t0 = time.monotonic()
    log("pi_armhf_apt: apt-get install python3-numpy python3-venv")
    c(tree, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-numpy python3-venv",
      timeout=3600)
    apt_s = time.monotonic() - t0
    c(tree, f"test -x {VENV}/bin/pip || python3 -m venv --system-site-packages {VENV}", user="pi")
    t1 = time.monotonic()
    pip = f"{VENV}/bin/pip install --force-reinstall --no-deps '/home/pi/{wheel.name}' && " \
          f"{VENV}/bin/pip install '/home/pi/{wheel.name}[edge]'"
    log("pi_armhf_apt: " + pip)
    r = c(tree, pip, user="pi", timeout=3600, check=False)
    out = (r.stdout + r.stderr).splitlines()
    freeze = [f for f in c(tree, f"{VENV}/bin/pip list --format=freeze", user="pi").stdout.splitlines() if f.strip()]
    py = c(tree, "python3 -c 'import platform; print(platform.python_version(), platform.machine())'").stdout.split()
    return {"python": py[0], "machine": py[1], "apt_s_emulated": round(apt_s, 1),
            "pip_exit": r.returncode, "pip_s_emulated": round(time.monotonic() - t1, 1),
            "sdists_built": [line.strip() for line in out if "Building wheel for" in line],
            "packages": freeze,
            "commands": ["sudo apt install python3-numpy python3-venv",
                         "python3 -m venv --system-site-packages ~/venv",
                         f"~/venv/bin/pip install '{wheel.name}[edge]'"]}


def probe_tree(tree: Path, records) -> dict:
    inside = []
    for rec in records:  # the bundled records as the installed wheel holds them
        rel = rec.relative_to(SAMPLE)
        inside.append(f"{VENV}/lib/python3.11/site-packages/selfmis/sample_data/ptbxl/{rel}")
    t0 = time.monotonic()
    r = pi_tree.chroot(tree, f"SELFMIS_TFLITE_KERNELS={KERNELS} {VENV}/bin/python -m selfmis.benchmarks.pi_probe "
                       + _probe_args(inside), user="pi", timeout=6 * 3600)
    return {"seconds_emulated": round(time.monotonic() - t0, 1), "dump": pi_compare.load_dump(r.stdout.splitlines())}


def probe_host(records) -> dict:
    r = subprocess.run([sys.executable, "-m", "selfmis.benchmarks.pi_probe", *_probe_args(records).split()],
                       capture_output=True, text=True, check=True, cwd=tempfile.gettempdir(),
                       env={**os.environ, "SELFMIS_TFLITE_KERNELS": KERNELS})
    return pi_compare.load_dump(r.stdout.splitlines())


def _platform(p: dict) -> str:
    v = ", ".join(f"{k} {x}" for k, x in p.get("versions", {}).items() if x)
    return f"{p.get('machine')} Python {p.get('python')}, {p.get('backend')} ({p.get('kernels')} kernels); {v}"


def markdown(res: dict) -> str:
    i, cmp_ = res["install"], res["compare"]
    lines = ["# 32-bit Raspberry Pi OS (armhf): Debian's numpy + tflite-runtime, decisions vs x86", "",
             f"- commit: `{res['commit']}`; command: `{res['command']}`",
             f"- tree: Debian 12 armhf (debootstrap), Python {i['python']} on `{i['machine']}` under qemu-user "
             "(emulated: times are not Pi times)",
             f"- data: {res['data']}; kernels: `{res['kernels']}` (what the shipped cards name) on both machines",
             "- x86 reference: " + _platform(res["x86_platform"]), "",
             "## Install, as a user would", "",
             *[f"    {c}" for c in i["commands"]], "",
             f"pip exit {i['pip_exit']} ({i['pip_s_emulated']} s emulated; apt {i['apt_s_emulated']} s); sdists built: "
             f"{', '.join(i['sdists_built']) or 'none (no compiler needed)'}; packages: {', '.join(i['packages'])}", "",
             "## armhf vs x86, event by event", "",
             "| bundle | records | beats / decisions | events equal | decisions + alarm states equal | records with int8 identical | max LSB | max probability difference |",
             "|---|---:|---|---|---|---:|---:|---:|"]
    for b, t in cmp_["bundles"].items():
        lines.append(f"| {b} | {t['records']} | {t['beats']} / {t['decisions']} | "
                     f"{t['records_events_equal']}/{t['records']} | "
                     f"{min(t['records_decisions_equal'], t['records_states_equal'])}/{t['records']} | "
                     f"{t['records_int8_identical']}/{t['records']} | {t['max_lsb']} | {t['max_prob_diff']:.6f} |")
    lines += ["", f"Verdict: {'**identical** on every record' if cmp_['all_equal'] else '**differences** (see the JSON)'};"
              f" replay in the tree took {res['tree_probe_s_emulated']} s emulated.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.pi_armhf_apt", description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=None, help="the target-pi cache (default $SELFMIS_CACHE/pi)")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    cache = Path(a.cache) if a.cache else pi_tree.cache_dir()
    tree = cache / IMAGE
    if not (tree / "usr" / "bin" / "python3").exists():
        log(f"pi_armhf_apt: {tree}: no armhf tree; build it with `make target-pi` first")
        return 4
    wheel = build_wheel(Path(__file__).resolve().parents[1], Path(tempfile.mkdtemp(prefix="selfmis-wheel-")))
    records = _records()
    pi_tree.prepare(tree)
    try:
        inst = install(tree, wheel, log)
        log(f"pi_armhf_apt: replaying {len(records)} records x {len(BUNDLES)} bundles in the tree")
        arm = probe_tree(tree, records)
    finally:
        pi_tree.release_mounts(tree)
    ref = probe_host(records)
    res = {"benchmark": "pi_armhf_apt", "commit": git_commit() or "unknown",
           "command": "python -m selfmis.benchmarks.pi_armhf_apt" + "".join(f" {x}" for x in (argv or [])),
           "data": f"core/sample_data/ptbxl: the {len(records)} bundled records (records100 + records500), "
                   "edge-run --replay --fast --persist-s 0 through pi_probe",
           "kernels": KERNELS, "install": inst, "x86_platform": ref["platform"],
           "tree_probe_s_emulated": arm["seconds_emulated"], "compare": pi_compare.compare_dumps(ref, arm["dump"])}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "armhf_debian_numpy.json").write_text(json.dumps(res, indent=1) + "\n")
    (out / "armhf_debian_numpy.md").write_text(markdown(res))
    log(f"pi_armhf_apt: {'identical' if res['compare']['all_equal'] else 'DIFFERENCES'}; pip exit {inst['pip_exit']}")
    return 0 if res["compare"]["all_equal"] and inst["pip_exit"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
