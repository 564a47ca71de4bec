"""Run a command and report *its* CPU time and peak RSS (``os.wait4``) as JSON into a file.

Why a wrapper: on Linux a child's ``ru_maxrss`` keeps the high-water mark of the
process it was forked from (it survives ``execve``), so a child forked straight from
the benchmark (with torch and TensorFlow loaded, ~300 MB) would report the
benchmark's memory. Forked from this small interpreter instead, the figure is the
command's own (the wrapper's ~10 MB is below any Python program's peak).

``python -m selfmis.benchmarks.rusage_wrap OUT.json -- CMD ...``; stdin/stdout/stderr
are the command's.
"""
from __future__ import annotations

import json
import os
import sys
import time


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    out, cmd = argv[0], argv[argv.index("--") + 1:]
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.execvp(cmd[0], cmd)
        finally:
            os._exit(127)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    with open(out, "w") as fh:
        json.dump({"rc": rc, "wall_s": wall, "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
                   "cpu_s": ru.ru_utime + ru.ru_stime, "rss_peak_mb": ru.ru_maxrss / 1024.0}, fh)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main())
