"""The gateway on emulated Raspberry Pi images: installed from the wheel, deciding as on x86.

``make target-pi`` = ``sudo python -m selfmis.benchmarks.target_pi``. On a fresh Debian/Ubuntu
x86 machine (root; network to the Debian and PyPI registries) it:

1. installs qemu-user-static, debootstrap, binfmt-support, systemd (apt) and enables binfmt;
2. builds the project's wheel (``python -m build --wheel``) from the working tree;
3. installs it the way a user does into a fresh x86 venv (``[edge,mqtt,serve]``, plain PyPI):
   the reference, and the versions the images are held to (pip constraints);
4. per image (Debian 12 arm64 = Pi OS Bookworm, Debian 13 arm64 = Pi OS Trixie): debootstrap
   (cached), then inside it, as user ``pi``, the README's commands: ``python3 -m venv
   /opt/selfmis/venv``, ``pip install 'selfmis_edge-*.whl[edge,mqtt,serve]'`` (timed; any sdist
   build is reported: the target is none); import time; ``edge-run --replay`` of the bundled
   records and of ``--records`` shared-subset 500 Hz records with ``default`` and ``micro``
   through :mod:`pi_probe`, compared with x86 event by event (:mod:`pi_compare`); the same with
   LiteRT's reference kernels; a 100-device gateway config for 60 s of signal; ``selfmis deploy
   push`` of a release into ``/opt/selfmis`` of the tree; the systemd unit installed, enabled and
   ``systemd-analyze verify``-ed there;
5. armhf (32-bit Pi OS): which runtimes have wheels (``pip download --platform linux_armv7l``), and with
   ``--images ...,bookworm-armhf`` the user's install on a Debian armhf tree (:mod:`pi_armhf`): it must
   fail naming the runtime, with nothing installed;
6. writes ``benchmarks/results/pi/target_pi.json`` and ``.md`` (:mod:`pi_report`).

Emulated time is not Pi time: no latency is reported from the emulator.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfmis.benchmarks import pi_compare, pi_report, pi_tree
from selfmis.benchmarks.pi_armhf import armhf_ok, armhf_tree_check
from selfmis.benchmarks.pi_gateway import VENV, deploy_checks, gateway_check, readme_simulate
from selfmis.benchmarks.pi_host import (armhf_wheels, build_wheel, cached, kernel_cost, pi_latency_estimate,
                                        x86_install)

__all__ = ["main", "select_records", "install_in_tree", "probe_in_tree", "verdict"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "benchmarks" / "results" / "pi"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ptbxl-subset"
SAMPLE = REPO / "core" / "sample_data" / "ptbxl"
EXTRAS = "edge,mqtt,serve"
BUNDLES = ("default", "micro")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def select_records(data: Path, n: int) -> list:
    """The bundled records, then ``n`` shared-subset 500 Hz records evenly spaced over the sorted list
    (deterministic, every patient block represented); paths without extension, names unique."""
    bundled = sorted(p.with_suffix("") for p in SAMPLE.glob("records*/*/*.hea"))
    subset = sorted(p.with_suffix("") for p in (data / "records500").glob("*/*.hea")) if n else []
    if n and len(subset) < n:
        raise FileNotFoundError(f"{data / 'records500'}: {len(subset)} records, --records asks for {n}")
    step = len(subset) / n if n else 1
    chosen = [subset[int(i * step)] for i in range(n)]
    seen, out = set(), []
    for p in bundled + chosen:
        if pi_compare.record_name(str(p)) not in seen:
            seen.add(pi_compare.record_name(str(p)))
            out.append(p)
    return out


def _copy_records(records, dest: Path) -> list:
    """Copy records into the tree under dest/<records*/block/name>; their in-tree paths."""
    out = []
    for p in records:
        rel = pi_compare.record_name(str(p))
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        for ext in (".hea", ".dat"):
            shutil.copy2(p.with_suffix(ext), target.with_suffix(ext))
        out.append("/" + str(target.relative_to(dest.parents[2])))
    return out


INSTALL_RECORD = "/opt/selfmis/.target-pi-install.json"
# the README's install lines, run word for word (then pip, held to the x86 versions with -c: the comparison's)
README_INSTALL = ("install -d -o pi -g pi /opt/selfmis", f"python3 -m venv {VENV}")


def install_in_tree(tree: Path, wheel: Path, constraints: Path, reuse: bool = False) -> dict:
    """The README's install, as user pi: venv, then pip install the wheel with the extras (timed).
    ``reuse``: an image installed by an earlier run keeps its venv (and that run's install figures);
    only this run's wheel is reinstalled over it (``--no-deps``)."""
    c = pi_tree.chroot
    c(tree, "id -u pi >/dev/null 2>&1 || useradd -m -s /bin/bash pi")
    c(tree, README_INSTALL[0])
    shutil.copy2(wheel, tree / "home" / "pi" / wheel.name)
    shutil.copy2(constraints, tree / "home" / "pi" / "constraints.txt")
    saved = tree / INSTALL_RECORD.lstrip("/")
    # a venv an interrupted install left behind (pip, but not the gateway's packages) is not reused
    intact = reuse and saved.exists() and c(tree, f"{VENV}/bin/python -c 'import numpy, ai_edge_litert'", user="pi",
                                  check=False).returncode == 0
    if reuse and not intact:
        log(f"target-pi: {tree.name}: no complete venv from an earlier run: installing afresh")
    if reuse and intact:
        c(tree, f"{VENV}/bin/pip install --no-deps --force-reinstall '/home/pi/{wheel.name}'", user="pi", timeout=3600)
        return {**json.loads(saved.read_text()), "reused": "venv from an earlier run; this run's wheel reinstalled"}
    saved.unlink(missing_ok=True)  # written again only when this install completes
    c(tree, f"rm -rf {VENV}")
    t0 = time.monotonic()
    c(tree, README_INSTALL[1], user="pi")
    r = c(tree, f"{VENV}/bin/pip install -c /home/pi/constraints.txt '/home/pi/{wheel.name}[{EXTRAS}]'",
          user="pi", timeout=3600)
    install_s = time.monotonic() - t0
    built = [line.strip() for line in (r.stdout + r.stderr).splitlines()
             if "Building wheel for" in line or "setup.py install" in line]
    freeze = [f for f in c(tree, f"{VENV}/bin/pip freeze --all", user="pi").stdout.splitlines() if f.strip()]
    py = c(tree, "python3 -c 'import platform; print(platform.python_version(), platform.machine())'").stdout.split()
    heavy = [f for f in freeze if f.split("==")[0].lower() in ("torch", "tensorflow", "tf-keras", "onnxruntime")]
    imp = c(tree, f"for i in 1 2 3; do {VENV}/bin/python -c 'import time; t=time.perf_counter(); "
                  "import selfmis.edge_runtime.cli; print(time.perf_counter()-t)'; done", user="pi").stdout.split()
    res = {"python": py[0], "machine": py[1], "install_s": round(install_s, 1), "sdists_built": built,
           "packages": freeze, "heavy_packages": heavy, "import_s_emulated": round(min(float(x) for x in imp), 3)}
    saved.write_text(json.dumps(res))
    return res


def probe_in_tree(tree: Path, records_in_tree: list, kernels: str, out: Path) -> dict:
    """pi_probe inside the tree with the installed wheel; the dump is written to ``out``."""
    cmd = (f"SELFMIS_TFLITE_KERNELS={kernels} {VENV}/bin/python -m selfmis.benchmarks.pi_probe "
           + " ".join(f"--bundle {b}" for b in BUNDLES) + " " + " ".join(records_in_tree))
    t0 = time.monotonic()
    r = pi_tree.chroot(tree, cmd, user="pi", timeout=6 * 3600)  # stderr: progress, and the error if any
    out.write_text(r.stdout)
    return {"seconds_emulated": round(time.monotonic() - t0, 1), "dump": pi_compare.load_dump(r.stdout.splitlines())}


def probe_on_host(python: str, records: list, kernels: str) -> list:
    """pi_probe in the x86 reference venv: its JSON Lines."""
    r = subprocess.run([python, "-m", "selfmis.benchmarks.pi_probe", *sum([["--bundle", b] for b in BUNDLES], []),
                        *map(str, records)], capture_output=True, text=True, check=True,
                       env={**os.environ, "SELFMIS_TFLITE_KERNELS": kernels}, cwd=tempfile.gettempdir())
    return r.stdout.splitlines()


def run_image(image: str, args, wheel: Path, constraints: Path, records: list, ref: dict, work: Path,
              save=lambda: None) -> dict:
    """Every check on one image; ``save()`` after each step (the report keeps what was measured)."""
    tree = pi_tree.cache_dir() / image if not args.cache else Path(args.cache) / image
    res = {"image": image, "suite": pi_tree.IMAGES[image][0], "arch": pi_tree.IMAGES[image][1],
           "command": args.report["command"], "commit": args.report["commit"], "wheel": args.report["wheel"]}
    args.report["images"][image] = res
    res["bootstrap_s"] = round(pi_tree.bootstrap(image, tree, args.mirror, log), 1) or "cached"
    pi_tree.prepare(tree)
    try:
        log(f"target-pi: {image}: pip install the wheel [{EXTRAS}]")
        try:
            res["install"] = install_in_tree(tree, wheel, constraints, reuse=args.reuse)
        except (RuntimeError, subprocess.TimeoutExpired) as e:  # the report keeps why (pip's own words)
            res["install"] = {"error": str(e)[-3000:]}
            save()
            raise
        save()
        log(f"target-pi: {image}: the README's first command (edge-run --simulate of the bundled record)")
        res["readme_simulate"] = readme_simulate(tree)
        save()
        data_dir = tree / "home" / "pi" / "records"
        in_tree = _copy_records(records, data_dir)
        pi_tree.chroot(tree, "chown -R pi:pi /home/pi/records")
        for kernels in args.kernels:
            log(f"target-pi: {image}: replay {len(in_tree)} records x {len(BUNDLES)} bundles ({kernels} kernels)")
            got = probe_in_tree(tree, in_tree, kernels, work / f"{image}-{kernels}.jsonl")
            cmp = pi_compare.compare_dumps(ref[kernels], got["dump"])
            res.setdefault("replay", {})[kernels] = {
                "platform": got["dump"]["platform"], "peak_rss_kib_emulated": (got["dump"]["end"] or {}).get("peak_rss_kib"),
                "seconds_emulated": got["seconds_emulated"], "compare": cmp}
            save()
        if not args.skip_gateway:
            log(f"target-pi: {image}: 100-device gateway, 60 s of signal")
            res["gateway"] = gateway_check(tree, VENV, SAMPLE / "records500" / "00000" / "00271_hr")
            save()
            log(f"target-pi: {image}: deploy + systemd unit")
            res["deploy"] = deploy_checks(tree, VENV, REPO / "edge_runtime" / "models" / "default", work)
    finally:
        pi_tree.release_mounts(tree)
    return res


def run_armhf(image: str, args, wheel: Path) -> dict:
    """The user's install on the 32-bit tree: it must fail, naming the runtime, with nothing installed."""
    tree = pi_tree.cache_dir() / image if not args.cache else Path(args.cache) / image
    t = pi_tree.bootstrap(image, tree, args.mirror, log)
    pi_tree.prepare(tree)
    try:
        res = armhf_tree_check(tree, wheel, EXTRAS, log)
    finally:
        pi_tree.release_mounts(tree)
    res["bootstrap_s"] = round(t, 1) or "cached"
    res.update(command=args.report["command"], commit=args.report["commit"], wheel=args.report["wheel"])
    return res


def verdict(report: dict) -> bool:
    """Decisions and alarm states equal on every record, image, kernel mode and bundle, and every
    gateway/deploy check that ran passed (the issue's target; int8 differences are reported, not failed)."""
    for img in report["images"].values():
        if img.get("install", {}).get("error") or not img.get("replay"):
            return False
        for rep in img.get("replay", {}).values():
            for t in rep["compare"]["bundles"].values():
                if not t["records"] == t["records_decisions_equal"] == t["records_states_equal"]:
                    return False
            if rep["compare"]["missing"]:
                return False
        if any(not img[k]["ok"] for k in ("readme_simulate", "gateway", "deploy") if k in img):
            return False
    if not all(armhf_ok(a) for a in report.get("armhf_tree", {}).values()):
        return False
    return bool(report["images"])


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "target_pi.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "target_pi.md").write_text(pi_report.markdown(report))
    log(f"target-pi: wrote {out}/target_pi.json and .md")


def _keep_earlier_images(report: dict, args) -> None:
    """Images (and armhf trees) an earlier run measured and this run does not redo stay in the report,
    each with that run's command, commit and wheel (an image takes an hour under emulation: one run each)."""
    old_path = args.out / "target_pi.json"
    if not old_path.exists():
        return
    old = json.loads(old_path.read_text())
    redo = args.images.split(",")
    for section in ("images", "armhf_tree"):
        for image, res in (old.get(section) or {}).items():
            if image in redo:
                continue
            res = {**res, "command": res.get("command") or old["command"], "data": res.get("data") or old["data"],
                   "commit": res.get("commit") or old["commit"], "wheel": res.get("wheel") or old["wheel"]}
            report.setdefault(section, {})[image] = res
            log(f"target-pi: keeping {image} from an earlier run ({res['command']}, wheel {str(res['wheel'].get('sha256'))[:12]})")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.target_pi", description=__doc__.splitlines()[0])
    p.add_argument("--images", default="bookworm-arm64,trixie-arm64,bookworm-armhf",
                   help=f"comma-separated, of {', '.join(pi_tree.IMAGES)} (default: %(default)s)")
    p.add_argument("--records", type=int, default=100, help="shared-subset 500 Hz records (default 100; 0: bundled only)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="PTB-XL subset folder (default ../shared/data/ptbxl-subset)")
    p.add_argument("--kernels", default="default,reference", help="interpreter kernels to compare (default: %(default)s)")
    p.add_argument("--cache", help="where the trees, wheel and x86 venv live (default $SELFMIS_CACHE/pi or ~/.cache/selfmis/pi)")
    p.add_argument("--mirror", default=None, help="Debian mirror (default: the one apt uses here)")
    p.add_argument("--skip-gateway", action="store_true", help="no gateway/deploy/systemd checks")
    p.add_argument("--reuse", action="store_true",
                   help="keep the x86 venv and the images' venvs of an earlier run (their install figures); "
                        "reinstall only this run's wheel (--no-deps)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder (default benchmarks/results/pi)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.kernels = [k for k in args.kernels.split(",") if k]
    args.mirror = args.mirror or pi_tree.debian_mirror()
    cache = Path(args.cache) if args.cache else pi_tree.cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    work = cache / "work"
    work.mkdir(exist_ok=True)
    t_start = time.monotonic()
    pi_tree.ensure_host_tools(log)
    records = select_records(args.data, args.records)
    log(f"target-pi: {len(records)} records; building the wheel")
    wheels = sorted((cache / "dist").glob("selfmis_edge-*.whl"))
    if args.reuse and len(wheels) == 1 and (cache / "dist" / "wheel.json").exists():
        wheel = wheels[0]  # the wheel an earlier run built (its commit is in wheel.json)
    else:
        wheel = build_wheel(REPO, cache / "dist")
    built = json.loads((cache / "dist" / "wheel.json").read_text())
    x86 = x86_install(wheel, cache / "x86-venv", EXTRAS, log, reuse=args.reuse)
    key = {"wheel": built["sha256"], "records": [str(r) for r in records]}
    ref = {k: pi_compare.load_dump(cached(work / f"x86-{k}.json", key if args.reuse else {"fresh": time.time()},
                                          lambda k=k: probe_on_host(x86["python"], records, k)))
           for k in args.kernels}
    report = {"commit": built["built_from"], "command": "python -m selfmis.benchmarks.target_pi "
              + " ".join(argv if argv is not None else sys.argv[1:]),
              "data": {"bundled": "core/sample_data/ptbxl (records100 + records500)",
                       "subset": f"{args.data.name}/records500: {args.records} of "
                                 f"{len(list((args.data / 'records500').glob('*/*.hea')))} records, evenly spaced",
                       "records": [pi_compare.record_name(str(r)) for r in records]},
              "edge_run_options": "--replay REC --fast --model BUNDLE --persist-s 0",
              "wheel": {"name": wheel.name, "size": wheel.stat().st_size, "sha256": built["sha256"]},
              "x86": {**{k: v for k, v in x86.items() if k not in ("python", "constraints")},
                      "platform": ref[args.kernels[0]]["platform"]},
              "x86_reference_vs_default": (pi_compare.compare_dumps(ref["default"], ref["reference"])
                                           if {"default", "reference"} <= set(ref) else None),
              "images": {}}
    _keep_earlier_images(report, args)
    for image in [i for i in args.images.split(",") if i]:
        args.report = report
        if pi_tree.IMAGES[image][1] == "armhf":
            report.setdefault("armhf_tree", {})[image] = run_armhf(image, args, wheel)
            write_report(report, args.out)
            continue

        def save():  # after each step: a long run keeps what it has measured
            report["elapsed_s"] = round(time.monotonic() - t_start, 1)
            write_report(report, args.out)
        run_image(image, args, wheel, Path(x86["constraints"]), records, ref, work, save)
        save()
    # native x86 checks last: the images are the long part
    report["kernel_cost_x86"] = cached(work / "kernel_cost.json", key if args.reuse else {"fresh": time.time()},
                                       lambda: kernel_cost(x86["python"]))
    report["pi_latency"] = pi_latency_estimate(report["kernel_cost_x86"])
    report["armhf"] = cached(work / "armhf.json", key if args.reuse else {"fresh": time.time()},
                             lambda: armhf_wheels(wheel, EXTRAS, cache / "armhf", log))
    report["elapsed_s"] = round(time.monotonic() - t_start, 1)
    write_report(report, args.out)
    ok = verdict(report)
    log(f"target-pi: {'every decision and alarm state equal' if ok else 'DIFFERENCES or failed checks: see the report'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
