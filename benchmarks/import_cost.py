"""Import cost of the gateway: fresh interpreters importing the runtime, the CLI, and the CLI plus
the TFLite interpreter, on one core; median of several runs; ``-X importtime`` top entries."""
from __future__ import annotations

import json
import re
import subprocess
import sys

from .edge_process import EDGE_RUN, child_env, run_measured, taskset
from .stats import percentile

__all__ = ["measure_imports"]


_IMPORT_SNIPPET = """
import time, sys, json
t = time.perf_counter()
for m in sys.argv[1].split(','):
    __import__(m)
if len(sys.argv) > 2 and sys.argv[2] == 'backend':
    from selfmis.edge_runtime.interpreter import interpreter_backend
    interpreter_backend()
dt = time.perf_counter() - t
hwm = None
try:
    hwm = [int(l.split()[1]) / 1024.0 for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
except Exception:
    import resource
    hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({'s': dt, 'rss_mb': hwm,
                  'heavy': sorted(m for m in ('torch', 'tensorflow', 'scipy', 'onnxruntime', 'pandas', 'matplotlib')
                                  if m in sys.modules)}))
"""


def measure_imports(args, quick: bool, notes: list) -> dict:
    reps = 2 if quick else 7
    cli = "selfmis.edge_runtime.cli"
    cases = {"selfmis.edge_runtime": ("selfmis.edge_runtime", False, "import selfmis.edge_runtime (package)"),
             cli: (cli, False, "import selfmis.edge_runtime.cli (what edge-run imports at start)"),
             "edge-run ready": (cli, True, "import the CLI + load the TFLite interpreter module "
                                           "(everything before the first model load)")}
    out = {"modules": {}, "reps": reps, "cpu": args.cpu}
    for key, (mods, backend, what) in cases.items():
        runs = []
        for _ in range(reps):
            cmd = taskset(args.cpu) + [sys.executable, "-c", _IMPORT_SNIPPET, mods] + (["backend"] if backend else [])
            r = run_measured(cmd, timeout=120)
            try:
                d = json.loads(r["stdout"].strip().splitlines()[-1])
            except (ValueError, IndexError):
                notes.append(f"imports {key}: failed rc={r['rc']} {r['stderr'][-300:]}")
                break
            d["process_wall_s"] = r["wall_s"]
            runs.append(d)
        if not runs:
            continue
        out["modules"][key] = {
            "what": what, "median_s": percentile([r["s"] for r in runs], 50),
            "max_s": max(r["s"] for r in runs),
            "process_wall_median_s": percentile([r["process_wall_s"] for r in runs], 50),
            "rss_after_import_mb": percentile([r["rss_mb"] for r in runs], 50),
            "heavy_modules_loaded": runs[-1]["heavy"],
            "method": f"fresh interpreter on core {args.cpu}, perf_counter around the imports, median of {len(runs)} "
                      "(warm file cache)"}
    # the worst offenders, from -X importtime, for the biggest case
    key = list(out["modules"])[-1] if out["modules"] else None
    if key:
        mods, backend, _ = cases[key]
        cmd = [sys.executable, "-X", "importtime", "-c", _IMPORT_SNIPPET, mods] + (["backend"] if backend else [])
        rows = _importtime_lines(cmd)
        out["importtime_top"] = {"case": key, "top_cumulative_us": rows}
    # edge-run --help, a whole process
    runs = [run_measured(taskset(args.cpu) + EDGE_RUN + ["--help"], timeout=120)["wall_s"] for _ in range(reps)]
    out["edge_run_help_process_s"] = {"median_s": percentile(runs, 50),
                                      "method": "wall time of `edge-run --help` (interpreter start included)"}
    return out


def _importtime_lines(cmd, top: int = 12) -> list:
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=child_env())
    rows = []
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)", line)
        if m:
            rows.append((int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
    # top-level-ish entries (depth <= 2) by cumulative time
    rows = sorted((r for r in rows if r[1] <= 2), reverse=True)[:top]
    return [{"module": name, "cumulative_us": us, "depth": d} for us, d, name in rows]
