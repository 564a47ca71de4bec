"""Full-size readiness of training, measured on a synthetic PTB-XL (``selfmis data synth``).

- loader: cold (read every WFDB record + write the ``.npy`` cache) and warm (memory-mapped cache)
  time and peak RSS of ``load_split`` at 100 Hz and 500 Hz, each in a fresh process;
- throughput: training records/s per method (``metrics.jsonl`` of a 1-epoch run on the first
  ``--train-records`` records), on this machine's CPU (and any device given with ``--devices``);
- cpu_speed: this checkout against a baseline checkout (``--baseline-pythonpath``: e.g. main
  before the DDP rewrite) on the real subset, same config, run alternately, wall-clock ratio.

    python -m selfmis.benchmarks.training_scale --synth /tmp/synth --out benchmarks/results/training
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LOAD_CHILD = r"""
import json, resource, sys, time
from selfmis.train.data import PTBXL, load_split
root, fs, n, cache = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
db = PTBXL(root)
ids = db.split_ids("all")
if fs == 500:
    ids = [e for e in ids if db.record_path(e, 500).with_suffix(".hea").is_file()]
ids = ids[:n] if n else ids
t = time.time()
ds = load_split(root, fs=fs, cache_dir=cache, progress=False, ptbxl=db, ids=ids)
s = float(ds.X[0].sum() + ds.X[-1].sum())  # the data is there (touching all of it would map the file)
ru = resource.getrusage(resource.RUSAGE_SELF)
# peak RSS counts the file pages of the memory-mapped cache too; RssAnon is the process's own memory
st = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
mb = lambda k: int(st.get(k, "0 kB").split()[0]) / 1024
print(json.dumps({"records": len(ds), "seconds": time.time() - t, "cpu_seconds": ru.ru_utime + ru.ru_stime,
                  "shape": list(ds.X.shape),
                  "dtype": str(ds.X.dtype), "peak_rss_mb": ru.ru_maxrss / 1024, "rss_anon_mb": mb("RssAnon"),
                  "rss_file_mb": mb("RssFile")}))
"""


def run_py(code_or_args, env=None, timeout=3600, cpu=False):
    """Run python; (stdout, wall seconds) or, with ``cpu``, (stdout, wall, CPU seconds of the child):
    on a shared machine CPU time is the fairer comparison, wall time the one users feel."""
    import resource

    args = [sys.executable] + (["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args)
    t, ru = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode:
        raise RuntimeError(f"{' '.join(map(str, args[:4]))}...: rc {r.returncode}\n{r.stderr[-2000:]}")
    ru2 = resource.getrusage(resource.RUSAGE_CHILDREN)
    c = (ru2.ru_utime - ru.ru_utime) + (ru2.ru_stime - ru.ru_stime)
    return (r.stdout, time.time() - t, c) if cpu else (r.stdout, time.time() - t)


def loader(root: str, cache: str, sizes: dict) -> list:
    """Cold then warm load per (rate, records); each in a fresh process, so peak RSS is its own."""
    rows = []
    for fs, ns in sizes.items():
        for n in ns:
            c = Path(cache) / f"fs{fs}_n{n}"
            for phase in ("cold", "warm"):
                out, _ = run_py([ "-c", LOAD_CHILD, root, str(fs), str(n), str(c)])
                r = json.loads(out.strip().splitlines()[-1])
                rows.append(dict(r, fs=fs, phase=phase))
                print(f"loader {fs} Hz {phase}: {r['records']} records {r['seconds']:.1f} s "
                      f"({r['cpu_seconds']:.1f} s CPU incl. imports), "
                      f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    return rows


def throughput(root: str, work: Path, n_train: int, devices, env) -> list:
    """records/s of each method's main stage, one epoch on the first ``n_train`` records."""
    base = dict(data=root, max_records=n_train, epochs=1, pretrain_epochs=1, teacher_epochs=1, progress=False,
                n_boot=10, test_fold=10)
    rows = []
    for dev in devices:
        teacher = work / dev / "twelve_lead" / "model.pt"
        for method, stage, extra in (("twelve_lead", "twelve_lead", {}), ("scratch", "scratch", {}),
                                     ("selfmis", "joint", {"teacher": str(teacher), "align_weight": 3.0}),
                                     ("simclr", "simclr", {}),
                                     ("generative", "reconstruct", {"teacher": str(teacher)})):
            out = work / dev / method
            cfg = dict(base, method=method, device=dev, out=str(out), **extra)
            (work / dev).mkdir(parents=True, exist_ok=True)
            (work / dev / f"{method}.json").write_text(json.dumps(cfg))
            _, wall = run_py(["-m", "selfmis.train.cli", "--config", str(work / dev / f"{method}.json")], env=env)
            recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
            r = next(x for x in recs if x["stage"] == stage)
            rows.append({"device": dev, "method": method, "stage": stage, "records_per_s": r["records_per_s"],
                         "epoch_seconds": r["seconds"], "epoch_cpu_seconds": r.get("cpu_seconds"),
                         "records_per_cpu_s": (r["records_per_s"] * r["seconds"] / r["cpu_seconds"])
                         if r.get("cpu_seconds") else None, "train_records": n_train, "run_wall_s": wall})
            print(f"throughput {dev} {method} ({stage}): {r['records_per_s']:.0f} records/s", flush=True)
    return rows


def cpu_speed(real: str, baseline_pythonpath: str, work: Path, repeats: int) -> dict:
    """The same two configs with this checkout and the baseline, alternating, 1 thread each."""
    configs = {"scratch": dict(method="scratch", epochs=2),
               "selfmis": dict(method="selfmis", epochs=2, teacher_epochs=2, align_weight=3.0)}
    out = {}
    for name, c in configs.items():
        times, cpus = {"this": [], "baseline": []}, {"this": [], "baseline": []}
        for rep in range(repeats):
            for who in ("baseline", "this") if rep % 2 == 0 else ("this", "baseline"):
                env = dict(os.environ)
                if who == "baseline":
                    env["PYTHONPATH"] = baseline_pythonpath
                run = work / f"speed_{name}_{who}_{rep}"
                args = ["-m", "selfmis.train.cli", "--data", real, "--out", str(run), "--threads", "1",
                        "--progress", "false", "--n-boot", "10", "--resume", "false"]
                for k, v in c.items():
                    args += [f"--{k.replace('_', '-')}", str(v)]
                _, wall, cpu = run_py(args, env=env, cpu=True)
                times[who].append(wall)
                cpus[who].append(cpu)
                print(f"cpu speed {name} {who} rep {rep}: {wall:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        out[name] = {"config": c, "wall_s": times, "cpu_s": cpus,
                     "ratio_this_over_baseline": sum(times["this"]) / sum(times["baseline"]),
                     "cpu_ratio_this_over_baseline": sum(cpus["this"]) / sum(cpus["baseline"])}
    return out


def markdown(rep: dict) -> str:
    L = ["# Training at full scale: synthetic PTB-XL, loader, throughput, CPU speed", "",
         f"Machine: {rep['machine']}. Synthetic data: `{rep['synth_command']}` ({rep['synth']}); NOT real ECGs, "
         "used for loader, memory and speed only.", f"Command: `{rep['command']}`", ""]
    if rep.get("loader"):
        L += ["## Loader (`load_split`, every record, fresh process each)", "",
              "| rate | records | phase | wall s | CPU s (process) | peak RSS (MB) | at end: anon / file MB | array |",
              "|---|---|---|---|---|---|---|---|"]
        for r in rep["loader"]:
            L.append(f"| {r['fs']} Hz | {r['records']} | {r['phase']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} | {r.get('rss_anon_mb', float('nan')):.0f} / "
                     f"{r.get('rss_file_mb', float('nan')):.0f} | "
                     f"{r['dtype']} {r['shape']} |")
        L += ["", rep.get("loader_note", ""), ""]
    if rep.get("throughput"):
        L += ["## Training throughput (one epoch of the method's main stage)", "",
              "| device | method | stage | records/s (wall) | records per CPU-second | epoch wall s | epoch CPU s | "
              "train records |", "|---|---|---|---|---|---|---|---|"]
        for r in rep["throughput"]:
            pc = r.get("records_per_cpu_s")
            L.append(f"| {r['device']} | {r['method']} | {r['stage']} | {r['records_per_s']:.0f} | "
                     f"{'' if pc is None else f'{pc:.0f}'} | {r['epoch_seconds']:.1f} | "
                     f"{r.get('epoch_cpu_seconds') or float('nan'):.1f} | {r['train_records']} |")
        L.append("")
    if rep.get("cpu_speed"):
        L += ["## CPU speed: this checkout vs the baseline (real subset, 1 thread, alternating runs)", "",
              "| config | this: wall s (CPU s) | baseline: wall s (CPU s) | wall ratio | CPU ratio this/baseline |",
              "|---|---|---|---|---|"]
        f = lambda r, w: ", ".join(f"{t:.1f} ({c:.1f})" for t, c in zip(r["wall_s"][w], r["cpu_s"][w]))
        for n, r in rep["cpu_speed"].items():
            L.append(f"| {n} {r['config']} | {f(r, 'this')} | {f(r, 'baseline')} | "
                     f"{r['ratio_this_over_baseline']:.2f} | {r['cpu_ratio_this_over_baseline']:.2f} |")
        L += ["", rep.get("cpu_speed_note", ""), ""]
    return "\n".join(L)


def plot(rep: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    if rep.get("throughput"):
        rows = rep["throughput"]
        axes[0].bar([f"{r['method']}\n{r['device']}" for r in rows], [r["records_per_s"] for r in rows])
        axes[0].set_ylabel("training records/s")
        axes[0].set_title("throughput per method (synthetic PTB-XL, 100 Hz)")
    if rep.get("loader"):
        rows = rep["loader"]
        # '*': a run whose child read every record after loading (file pages counted in its RSS)
        lab = [f"{r['fs']} Hz {r['phase']}\n{r['records']}{'*' if r.get('note') else ''}" for r in rows]
        axes[1].bar(lab, [r["seconds"] for r in rows], color="tab:orange", label="seconds")
        ax2 = axes[1].twinx()
        ax2.plot(lab, [r["peak_rss_mb"] for r in rows], "ko", label="peak RSS (MB)")
        ax2.set_ylabel("peak RSS (MB)")
        axes[1].set_ylabel("seconds")
        axes[1].set_title("loader: read + cache (cold), memory-mapped (warm)")
        axes[1].tick_params(axis="x", labelsize=6, rotation=60)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.training_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--synth", required=True, help="folder written by selfmis data synth")
    p.add_argument("--synth-command", default="selfmis data synth --records 21799 --records-500 5000 --out DIR")
    p.add_argument("--real", default=None, help="real PTB-XL folder for the CPU speed comparison")
    p.add_argument("--baseline-pythonpath", default="", help="PYTHONPATH of the baseline checkout's selfmis tree")
    p.add_argument("--out", default="benchmarks/results/training")
    p.add_argument("--work", default=None)
    p.add_argument("--parts", nargs="+", default=["loader", "throughput", "cpu_speed"])
    p.add_argument("--sizes-100", type=int, nargs="+", default=[0], help="100 Hz record counts (0 = all)")
    p.add_argument("--sizes-500", type=int, nargs="+", default=[2500, 0], help="500 Hz record counts (0 = all present)")
    p.add_argument("--loader-rates", type=int, nargs="+", default=[100, 500])
    p.add_argument("--train-records", type=int, default=1024)
    p.add_argument("--devices", nargs="+", default=["cpu"])
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args(argv)
    work = Path(a.work or tempfile.mkdtemp(prefix="selfmis-scale-"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    f = out / "scale.json"
    rep = json.loads(f.read_text()) if f.is_file() else {}  # parts run separately accumulate
    rep.update(machine=f"{platform.machine()}, {os.cpu_count()} cores visible, {platform.python_version()}",
               synth=a.synth, synth_command=a.synth_command,
               command="python -m selfmis.benchmarks.training_scale " + " ".join(argv if argv is not None else sys.argv[1:]))
    env = dict(os.environ, SELFMIS_CACHE=str(work / "cache"))
    if "loader" in a.parts:
        sizes = {fs: n for fs, n in ((100, a.sizes_100), (500, a.sizes_500)) if fs in a.loader_rates}
        rows = loader(a.synth, str(work / "loadcache"), sizes)
        rep["loader"] = rep.get("loader", []) + rows  # runs accumulate (each row names its rate and size)
    if "throughput" in a.parts:
        run_py(["-c", LOAD_CHILD, a.synth, "100", "0", str(work / "cache")])  # the training cache, once
        rep["throughput"] = throughput(a.synth, work / "runs", a.train_records, a.devices, env)
    if "cpu_speed" in a.parts and a.real and a.baseline_pythonpath:
        rep["cpu_speed"] = cpu_speed(a.real, a.baseline_pythonpath, work / "speed", a.repeats)
    f.write_text(json.dumps(rep, indent=1))
    (out / "scale.md").write_text(markdown(rep))
    plot(rep, out / "scale.png")
    print(markdown(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
