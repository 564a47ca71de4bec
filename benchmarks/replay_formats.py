"""Replay a day-long recording in every input format: peak memory and speed side by side.

``python -m selfmis.benchmarks.replay_formats [--hours 24] [--out DIR]``

One real PTB-XL lead I (record 00271, 500 Hz, an MI patient, 10 s) is tiled to
``--hours`` of signal and written, in a temporary folder, as CSV (mV, one
column), WFDB format 16, WFDB format 212 and EDF (pyedflib's writer, 1-s data
records). Each file is then replayed by ``edge-run --replay FILE --fast --quiet``
(the shipped model, the whole pipeline), in turn, under
:mod:`.rusage_wrap` so the peak RSS is the command's own. The real-time factor
(signal seconds / wall seconds) of each format is compared with WFDB-16's from
the same run. Targets (issue 16): peak RSS <= 100 MB, real-time factor within
20% of WFDB-16's.

Results: ``replay_formats.json`` and ``replay_formats.md`` in ``--out``
(default ``benchmarks/results/replay_formats/``).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from selfmis.readers import read_record
from selfmis.sample_data import BUNDLED_PTBXL

from .machine import machine_info

FS = 500
RECORD = "records500/00000/00271_hr"
FORMATS = ("wfdb-16", "wfdb-212", "csv", "edf")
RSS_TARGET_MB, RTF_RATIO_TARGET = 100.0, 0.8
OUT = Path(__file__).resolve().parent / "results" / "replay_formats"


def _tile_writer(path: Path, block: bytes, n_blocks: int, head: bytes = b"") -> None:
    with open(path, "wb") as fh:
        fh.write(head)
        for _ in range(n_blocks):
            fh.write(block)


def write_files(folder: Path, hours: float) -> dict:
    """The tiled signal in each format; returns ``{format: path to replay}``."""
    x = read_record(BUNDLED_PTBXL / RECORD).lead("I").astype(np.float64)  # 10 s, mV
    n_tiles = int(round(hours * 3600 * FS / len(x)))
    n = n_tiles * len(x)
    files = {}
    # WFDB 16: 1000 counts per mV
    d16 = np.round(x * 1000).astype("<i2")
    _tile_writer(folder / "day16.dat", d16.tobytes(), n_tiles)
    (folder / "day16.hea").write_text(f"day16 1 {FS} {n}\nday16.dat 16 1000/mV 16 0 {int(d16[0])} 0 0 I\n")
    files["wfdb-16"] = folder / "day16"
    # WFDB 212: 200 counts per mV, two 12-bit samples per 3 bytes (a tile has an even length)
    d = np.clip(np.round(x * 200), -2047, 2047).astype(np.int32) & 0xFFF
    a, b = d[0::2], d[1::2]
    packed = np.stack([a & 0xFF, ((a >> 8) & 0x0F) | ((b >> 8) << 4), b & 0xFF], axis=1).astype(np.uint8)
    _tile_writer(folder / "day212.dat", packed.tobytes(), n_tiles)
    (folder / "day212.hea").write_text(f"day212 1 {FS} {n}\nday212.dat 212 200/mV 12 0 0 0 0 I\n")
    files["wfdb-212"] = folder / "day212"
    # CSV: one column of mV with three decimals, the rate in a comment line
    text = "".join(f"{v:.3f}\n" for v in x).encode()
    _tile_writer(folder / "day.csv", text, n_tiles, head=f"# fs={FS}\nI\n".encode())
    files["csv"] = folder / "day.csv"
    # EDF+: pyedflib's writer, one signal in uV, 1-s data records
    import pyedflib
    w = pyedflib.EdfWriter(str(folder / "day.edf"), 1, file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders([{"label": "ECG I", "dimension": "uV", "sample_frequency": FS,
                         "physical_min": -10000.0, "physical_max": 10000.0,
                         "digital_min": -32768, "digital_max": 32767, "transducer": "",
                         "prefilter": ""}])
    for _ in range(n_tiles):
        w.writeSamples([x * 1000])
    w.close()
    files["edf"] = folder / "day.edf"
    return files


def replay(path: Path, folder: Path, model: str | None) -> dict:
    """One ``edge-run --replay --fast`` under the rusage wrapper: its summary and resources."""
    usage, out = folder / "usage.json", folder / "out.jsonl"
    cmd = [sys.executable, "-m", "selfmis.benchmarks.rusage_wrap", str(usage), "--",
           sys.executable, "-m", "selfmis.edge_runtime.cli", "--replay", str(path), "--fast",
           "--quiet", "--lead", "I"] + (["--model", model] if model else [])
    with open(out, "w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.PIPE, text=True).returncode
    summary = json.loads(out.read_text().strip().splitlines()[-1])
    use = json.loads(usage.read_text())
    return {"rc": rc, "signal_s": summary.get("signal_s"), "wall_s": use["wall_s"],
            "pipeline_wall_s": summary.get("wall_s"), "cpu_s": use["cpu_s"],
            "rss_peak_mb": round(use["rss_peak_mb"], 1),
            # the pipeline's own clock: reading + processing, without interpreter and model start-up
            "realtime_factor": round(summary["signal_s"] / summary["wall_s"], 1),
            "realtime_factor_process": round(summary["signal_s"] / use["wall_s"], 1),
            # signal seconds per CPU second of the whole command: what a busy machine cannot blur
            "realtime_factor_cpu": round(summary["signal_s"] / use["cpu_s"], 1),
            "beats": summary.get("beats"), "decisions": summary.get("decisions"),
            "file_mb": round(sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 2**20, 1)}


def markdown(res: dict) -> str:
    rows = res["results"]
    for r in rows.values():  # older result files lack it
        r.setdefault("realtime_factor_cpu", round(r["signal_s"] / r["cpu_s"], 1))
    base, base_cpu = rows["wfdb-16"]["realtime_factor"], rows["wfdb-16"]["realtime_factor_cpu"]
    m = res["machine"]
    lines = [f"# Replay of a {res['hours']:g}-hour 500 Hz recording in each format",
             "", f"`{res['command']}` on {m['cpu_model']} ({m['usable_cpus']} usable CPUs, load average "
             f"{m['loadavg_at_start']} at the start), {m['date_utc']}, commit {m['git_commit']}.",
             "", f"Signal: PTB-XL {RECORD} lead I (an MI patient, 10 s) tiled; `edge-run --replay FILE "
             "--fast --quiet` (shipped model, whole pipeline), one run per format in turn. Peak RSS: the "
             "command's own (os.wait4). Real-time factor (RTF) = signal seconds / wall seconds of the "
             "run (edge-run's summary, start-up excluded); CPU RTF = signal seconds / CPU seconds of the "
             "whole command, the fair comparison when other jobs share the cores.", "",
             "| format | file MB | signal h | wall s | CPU s | RTF | CPU RTF | CPU RTF vs WFDB-16 |"
             " peak RSS MB | beats | decisions | RSS <= 100 MB | within 20% of WFDB-16 (CPU RTF) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for f in FORMATS:
        if f not in rows:
            continue
        r = rows[f]
        ratio = r["realtime_factor_cpu"] / base_cpu
        lines.append(f"| {f} | {r['file_mb']} | {r['signal_s'] / 3600:.2f} | {r['wall_s']:.0f} | "
                     f"{r['cpu_s']:.1f} | {r['realtime_factor']:.0f} | {r['realtime_factor_cpu']:.0f} | "
                     f"{ratio:.2f} | {r['rss_peak_mb']:.1f} | {r['beats']} | {r['decisions']} | "
                     f"{'MET' if r['rss_peak_mb'] <= RSS_TARGET_MB else 'NOT MET'} | "
                     f"{'MET' if ratio >= RTF_RATIO_TARGET else 'NOT MET'} |")
    lines += ["", f"Wall-clock RTF vs WFDB-16 ({base:.0f}): " + ", ".join(
        f"{f} {rows[f]['realtime_factor'] / base:.2f}" for f in FORMATS if f in rows)
        + " (moves with the other jobs' load during each run)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.replay_formats",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--hours", type=float, default=24.0, help="signal length (default 24)")
    p.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT})")
    p.add_argument("--model", help="model bundle (default: the shipped one)")
    p.add_argument("--formats", default=",".join(FORMATS), help="comma-separated subset")
    p.add_argument("--report", type=Path, metavar="JSON",
                   help="only rewrite the Markdown from an earlier replay_formats.json")
    args = p.parse_args(argv)
    if args.report:
        res = json.loads(args.report.read_text())
        args.report.with_suffix(".md").write_text(markdown(res))
        return 0
    res = {"hours": args.hours, "record": RECORD, "fs": FS,
           "command": " ".join(["python -m selfmis.benchmarks.replay_formats"] + list(argv or sys.argv[1:])),
           "machine": machine_info(argv), "targets": {"rss_peak_mb": RSS_TARGET_MB,
                                                      "rtf_vs_wfdb16": RTF_RATIO_TARGET},
           "results": {}}
    with tempfile.TemporaryDirectory(prefix="selfmis-replay-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        files = write_files(folder, args.hours)
        print(f"files written in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        for f in args.formats.split(","):
            res["results"][f] = r = replay(files[f], folder, args.model)
            print(f"{f}: {json.dumps(r)}", file=sys.stderr)
            if r["rc"] != 0:
                print(f"{f}: edge-run exited {r['rc']}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replay_formats.json").write_text(json.dumps(res, indent=2) + "\n")
    if "wfdb-16" in res["results"]:
        (args.out / "replay_formats.md").write_text(markdown(res))
    bad = [f for f, r in res["results"].items() if r["rc"] != 0]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
