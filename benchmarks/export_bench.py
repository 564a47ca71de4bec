"""Export of a day-long recording: ``selfmis recording export`` to EDF+, WFDB and CSV, timed.

The recording is built from a real one: PTB-XL ecg 271 (500 Hz, lead I, an MI
record shipped in core/sample_data) streamed through the in-process virtual
device and the pipeline with ``--record`` semantics (counts, beats, decisions),
then tiled to ``--hours`` (default 24) with shifted sequence numbers, arrival
times and event times -- the same records a day of ``edge-run --record`` writes.

Each export runs as its own ``selfmis recording export`` process pinned to one
core (``taskset -c 0`` when available), wrapped by :mod:`.rusage_wrap` for its
CPU time and peak RSS. Target (issue 16): <= 2 minutes per format on one core.
The export is single-threaded, so its CPU time (user + sys) is the time it takes
on one core of its own; the wall time is reported beside it with the load
average, which on a shared machine says how much of it was spent waiting.

    python -m selfmis.benchmarks.export_bench [--hours 24] [--out benchmarks/results/export]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selfmis.edge_runtime.recording import PipelineOutput, Recorder, read_recording
from selfmis.edge_runtime.stream import Chunk, LinkEvent

FORMATS = ("edf", "wfdb", "csv")
TARGET_S = 120.0
RECORD = Path(__file__).resolve().parents[1] / "core" / "sample_data" / "ptbxl" / "records500" / "00000" / "00271_hr"


def record_base(directory: Path) -> Path:
    """A real 10-s recording: the virtual device -> pipeline (shipped model) -> Recorder."""
    from selfmis.edge_runtime.interpreter import TFLiteModel
    from selfmis.edge_runtime.pipeline import Pipeline
    from selfmis.edge_runtime.sources.simulated import SimulatedSource
    pipe = Pipeline(TFLiteModel(None))
    src = SimulatedSource(str(RECORD))
    with Recorder(directory, src.describe()) as rec, src:
        for item in src:
            rec.write(item)
            rec.write_outputs(pipe.handle(item), pipe.timeline_s)
        rec.write_outputs(pipe.flush(), pipe.timeline_s)
    return directory


def tile(base: Path, out: Path, hours: float) -> dict:
    """Repeat ``base`` for ``hours``: what a day of recording that signal writes."""
    items = list(read_recording(base, outputs=True))
    chunks = [c for c in items if isinstance(c, Chunk)]
    span = sum(len(c.samples) + c.gap_before for c in chunks) / chunks[0].fs
    reps = max(1, int(round(hours * 3600 / span)))
    n_seq = len(chunks)
    with Recorder(out, {"source": "simulated:00271_hr (tiled)", "lead": "I", "fs": chunks[0].fs}) as rec:
        for k in range(reps):
            dt = k * span
            for it in items:
                if isinstance(it, Chunk):
                    rec.write(Chunk(it.samples, it.fs, it.t_arrival + dt, 1.0, seq=(it.seq + k * n_seq) % 65536,
                                    lead_off=it.lead_off, gap_before=it.gap_before, rails=it.rails,
                                    counts=it.counts, uv_per_lsb=it.uv_per_lsb))
                elif isinstance(it, LinkEvent):
                    if k == 0 or it.kind not in ("connected", "hello"):
                        if it.kind != "end" or k == reps - 1:
                            rec.write(LinkEvent(it.kind, it.detail, it.t_arrival + dt))
                elif isinstance(it, PipelineOutput):
                    ev = [{**e, "t": round(e["t"] + dt, 3)} for e in it.events]
                    rec.write_outputs(ev, it.t + dt)
    return {"seconds": reps * span, "repeats": reps, "stream_bin_mb": (out / "stream.bin").stat().st_size / 1e6}


def run_export(rec: Path, fmt: str, dest: Path, tmp: Path) -> dict:
    stats = tmp / f"rusage-{fmt}.json"
    load = os.getloadavg()[0]
    pin = ["taskset", "-c", "0"] if shutil.which("taskset") else []
    cmd = [sys.executable, "-m", "selfmis.benchmarks.rusage_wrap", str(stats), "--", *pin,
           sys.executable, "-m", "selfmis.edge_runtime.recording_cli", "export", str(rec),
           "--to", fmt, "-o", str(dest / ("day.edf" if fmt == "edf" else "day.csv" if fmt == "csv" else "day"))]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"export to {fmt} failed: {p.stderr[-2000:]}")
    r = json.loads(stats.read_text())
    files = [Path(f) for f in p.stdout.split()]
    return {"format": fmt, "wall_s": round(r["wall_s"], 2), "cpu_s": round(r["cpu_s"], 2),
            "rss_peak_mb": round(r["rss_peak_mb"], 1), "output_mb": round(sum(f.stat().st_size for f in files) / 1e6, 1),
            "files": [f.name for f in files], "pinned_to_one_core": bool(pin),
            "load_avg_1min": round(load, 1), "meets_target": r["cpu_s"] <= TARGET_S}


def markdown(result: dict) -> str:
    """export.md from export.json."""
    rows = result["exports"]
    md = [f"# Export of a {result['hours']:g}-hour 500 Hz recording", "",
          f"Signal: {result['signal']}; stream.bin {result['stream_bin_mb']} MB. One process per format, "
          f"pinned to one core; target <= {result['target_s']:g} s of one core (CPU time: the export is "
          f"single-threaded; wall time waits for the core when the machine is shared, see the load). "
          f"`python -m selfmis.benchmarks.export_bench`", "",
          "| format | CPU, one core (s) | wall (s) | load avg | peak RSS (MB) | output (MB) | target met |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['format']} | {r['cpu_s']} | {r['wall_s']} | {r['load_avg_1min']} | {r['rss_peak_mb']} | "
           f"{r['output_mb']} | {'yes' if r['meets_target'] else 'NO'} |" for r in rows]
    return "\n".join(md) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--out", default="benchmarks/results/export")
    ap.add_argument("--formats", default=",".join(FORMATS))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="selfmis-export-bench-"))
    try:
        t0 = time.perf_counter()
        base = record_base(tmp / "base")
        info = tile(base, tmp / "day", args.hours)
        info["build_s"] = round(time.perf_counter() - t0, 1)
        print(f"recording: {info['seconds'] / 3600:.2f} h, {info['stream_bin_mb']:.1f} MB "
              f"(built in {info['build_s']} s)", file=sys.stderr)
        rows = []
        for fmt in args.formats.split(","):
            dest = tmp / f"out-{fmt}"
            dest.mkdir()
            rows.append(run_export(tmp / "day", fmt, dest, tmp))
            print(json.dumps(rows[-1]), file=sys.stderr)
            shutil.rmtree(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"benchmark": "export", "signal": "PTB-XL ecg 271 lead I, 500 Hz, device counts, tiled",
              "hours": round(info["seconds"] / 3600, 3), "samples": int(info["seconds"] * 500),
              "stream_bin_mb": round(info["stream_bin_mb"], 1), "target_s": TARGET_S,
              "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                          "cores": os.cpu_count()},
              "exports": rows}
    (out / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "export.md").write_text(markdown(result))
    print(markdown(result))
    return 0 if all(r["meets_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
