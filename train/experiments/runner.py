"""A tiny scheduler for the grid's training runs: at most ``workers`` processes, teachers first.

Each job is ``python -m selfmis.train.cli ...`` in its own process (its output in ``train.log`` of
the run folder). Resumable: finished runs are skipped, and a run another scheduler is still writing
(``Job.busy``) is left alone.
"""
from __future__ import annotations

import subprocess
import time

__all__ = ["run_jobs"]


def run_jobs(jobs, common, workers=2):
    """Run the unfinished ``jobs`` (trainer options ``common`` plus each job's own), teachers before students."""
    pending, running = [j for j in jobs if not j.done], []
    t0 = time.time()
    while pending or running:
        for j, p, f in list(running):
            if p.poll() is not None:
                running.remove((j, p, f))
                f.close()
                state = "ok" if p.returncode == 0 else f"FAILED rc={p.returncode} (see {f.name})"
                print(f"[{time.time() - t0:6.0f}s] {j.out.relative_to(j.out.parents[1])}: {state}", flush=True)
        ready = [j for j in pending if j.teachers_done or j.own_teacher]
        active = [r[0] for r in running] + pending
        blocked = [j for j in pending if not j.own_teacher and any(
            not n.done and all(n is not a for a in active) and not n.busy() for n in j.needs)]
        for j in blocked:  # its teacher failed: give up on it
            pending.remove(j)
            print(f"skipping {j.out}: teacher missing", flush=True)
        ready = [j for j in ready if not j.busy()]  # e.g. still running under a previous runner
        while ready and len(running) < workers:
            j = ready.pop(0)
            pending.remove(j)
            j.out.mkdir(parents=True, exist_ok=True)
            f = open(j.out / "train.log", "w")
            running.append((j, subprocess.Popen(j.cmd(common), stdout=f, stderr=subprocess.STDOUT), f))
        time.sleep(1)
