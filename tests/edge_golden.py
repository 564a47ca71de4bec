"""The single-device ``edge-run`` runs whose JSON Lines must not change (issue 26, one runtime).

Every bundled PTB-XL record (``core/sample_data/ptbxl``) replayed with ``--fast``, plus a few
option variants, run in-process through :func:`selfmis.edge_runtime.cli.main`. Only what
depends on the wall clock is blanked (latencies, wall and CPU seconds, the real-time factor,
the start-up time); every other byte of every line is compared.

Regenerate (only when a change of output is intended, e.g. a new shipped model), from the
repository root::

    python tests/edge_golden.py [REASON]   # writes tests/data/edge_run_golden.jsonl.gz

Regenerated once since the refactor, with its reason in the file's first line: the shipped cards were
re-validated with LiteRT's reference kernels (issue 23), which edge-run now runs by default.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "edge_run_golden.jsonl.gz"
SAMPLE = "core/sample_data/ptbxl"
#: fields measured on the wall clock or the CPU: their value differs from run to run
VOLATILE = ("latency_ms", "wall_s", "realtime_factor", "cpu_s", "startup_s")


def records() -> list:
    return sorted(str(p.with_suffix("").relative_to(REPO)) for p in (REPO / SAMPLE).rglob("*.hea"))


def cases() -> list:
    """(name, argv); paths relative to the repository root (the runs are made from there)."""
    out = [(Path(r).name, ["--replay", r, "--fast"]) for r in records()]
    hr, lr = f"{SAMPLE}/records500/00000/00271_hr", f"{SAMPLE}/records100/00000/00271_lr"
    out += [
        ("simulate_hr", ["--simulate", hr, "--fast"]),
        ("simulate_lr_quiet", ["--simulate", lr, "--fast", "--quiet"]),
        ("every_k_3", ["--replay", hr, "--fast", "--every-k-beats", "3"]),
        ("max_seconds_6", ["--replay", hr, "--fast", "--max-seconds", "6"]),
        ("screening_4", ["--replay", hr, "--fast", "--decision-beats", "4", "--operating-point", "screening",
                         "--persist-beats", "2", "--hysteresis", "0.2"]),
        ("lead_ii", ["--replay", lr, "--fast", "--lead", "II"]),
        ("missing_file", ["--replay", f"{SAMPLE}/no_such_record", "--fast"]),
        ("usage_retries", ["--replay", hr, "--fast", "--retries", "-1"]),
    ]
    return out


def _blank(v):
    if isinstance(v, dict):
        return {k: (None if k in VOLATILE and not isinstance(x, dict) else
                    {kk: None for kk in x} if k in VOLATILE else _blank(x)) for k, x in v.items()}
    return v


def normalise(line: str) -> str:
    """One JSON line with its wall-clock fields blanked (key order kept)."""
    return json.dumps(_blank(json.loads(line)), separators=(",", ":"))


def run_case(argv) -> dict:
    """``edge-run ARGV`` in this process, from the repository root: exit code and normalised lines."""
    from selfmis.edge_runtime import cli
    buf, cwd = io.StringIO(), os.getcwd()
    os.chdir(REPO)
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            code = cli.main(argv + ["--model", "default"])
    finally:
        os.chdir(cwd)
    return {"exit_code": int(code), "lines": [normalise(l) for l in buf.getvalue().splitlines() if l.strip()]}


def load() -> dict:
    with gzip.open(GOLDEN, "rt", encoding="utf-8") as f:
        head, *rows = [json.loads(l) for l in f]
    return {"head": head, **{r["name"]: r for r in rows}}


def main(argv=None) -> int:
    """``python tests/edge_golden.py [REASON]``: the reason is kept in the file's first line."""
    argv = sys.argv[1:] if argv is None else argv
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    os.environ.pop("SELFMIS_TFLITE_KERNELS", None)  # the kernels the shipped card names, as a user runs it
    rows = [{"name": n, "argv": a, **run_case(a)} for n, a in cases()]
    head = {"commit": commit, "command": "python tests/edge_golden.py", "volatile": VOLATILE}
    if argv:
        head["reason"] = " ".join(argv)
    with gzip.GzipFile(GOLDEN, "wb", mtime=0) as gz:
        text = "\n".join(json.dumps(r, separators=(",", ":")) for r in [head] + rows)
        gz.write((text + "\n").encode())
    print(f"{GOLDEN.relative_to(REPO)}: {len(rows)} runs, {sum(len(r['lines']) for r in rows)} lines, "
          f"commit {commit[:12]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
