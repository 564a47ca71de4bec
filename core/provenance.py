"""Where a result came from: commit, command line, data, machine and library versions.

One helper for every result file and model card (training, quantization, benchmarks),
standard library only, so the base layer can carry it. Nothing it returns holds an
absolute path of the machine that made the result: data are named by their folder
name, their record count and a hash of the record list (:func:`data_summary`), and
files by a path relative to the working directory when they are under it
(:func:`portable_path`).

Example
-------
>>> p = provenance(command=["selfmis", "quantize"], data=data_summary("ptbxl-subset", [1, 2, 3]))
>>> sorted(p)
['command', 'commit', 'data', 'libraries', 'machine']
"""
from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["provenance", "data_summary", "records_hash", "git_commit", "command_line", "machine_summary",
           "library_versions", "portable_path", "scrub_paths", "LIBRARIES"]

#: Libraries whose versions change results (read from package metadata: nothing is imported).
LIBRARIES = ("selfmis-edge", "numpy", "scipy", "scikit-learn", "torch", "onnx", "onnxruntime", "onnx2tf",
             "tensorflow", "ai-edge-litert", "tflite-micro")


def git_commit(root=None) -> str | None:
    """``HEAD`` of the checkout holding this package (``-dirty`` when tracked files changed), or None."""
    root = Path(root) if root else Path(__file__).resolve().parent.parent
    if not shutil.which("git"):
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None  # an installed wheel: not a checkout
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def command_line(argv=None) -> str:
    """The command as a shell would take it: the program by its base name, absolute paths made portable."""
    argv = list(sys.argv if argv is None else argv)
    if argv:
        argv[0] = Path(argv[0]).name
    return " ".join(shlex.quote(_portable_token(str(a))) for a in argv)


def _portable_token(token: str) -> str:
    """An absolute path (alone or after ``--flag=``) made portable; anything else unchanged."""
    flag, eq, value = token.rpartition("=") if token.startswith("-") and "=" in token else ("", "", token)
    scheme, colon, rest = value.partition(":")
    if colon and rest.startswith("/") and "/" not in scheme:  # serial:/dev/..., file:/...
        return flag + eq + scheme + colon + _portable_token(rest)
    if value.startswith("/") and len(value) > 1:
        return flag + eq + portable_path(value)
    return token


def scrub_paths(obj):
    """A copy of ``obj`` (dicts, lists, strings) with every absolute path made portable.

    A string is a path when it starts with ``/``; a command line (several words) has each
    word treated alone. Used on cards and result files before they are written.
    """
    if isinstance(obj, dict):
        return {k: scrub_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [scrub_paths(v) for v in obj]
    if isinstance(obj, str) and "/" in obj:
        if " " in obj and not obj.startswith("/"):
            return " ".join(_portable_token(w) for w in obj.split(" "))
        return _portable_token(obj)
    return obj


def records_hash(record_ids) -> str:
    """sha256 of the sorted record identifiers, one per line (the same list gives the same hash anywhere)."""
    text = "\n".join(sorted(str(r) for r in record_ids)) + "\n"
    return hashlib.sha256(text.encode()).hexdigest()


def data_summary(name, record_ids, **extra) -> dict:
    """``{"name", "n_records", "records_sha256", ...}``: the data named without a machine path.

    ``name`` may be a folder: only its last component is kept.
    """
    ids = list(record_ids)
    return {"name": Path(str(name)).name, "n_records": len(ids), "records_sha256": records_hash(ids), **extra}


def machine_summary() -> dict:
    """CPU model, logical and usable cores, memory, OS: what makes a timing comparable (no host name)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        usable = os.cpu_count()
    mem = None
    try:
        kb = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                  if l.startswith("MemTotal"))
        mem = round(kb / 1024 ** 2, 1)
    except (OSError, StopIteration, ValueError):
        pass
    return {"cpu": model, "arch": platform.machine(), "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "memory_gib": mem, "os": platform.platform(terse=True), "python": platform.python_version()}


def library_versions(names=LIBRARIES) -> dict:
    """Installed version of each package (None when absent), from metadata."""
    from importlib import metadata

    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def portable_path(path, root=None) -> str:
    """``path`` relative to ``root`` (default: the working directory) when under it, else its last two parts."""
    p = Path(path)
    base = Path(root) if root else Path.cwd()
    try:
        return str(p.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(Path(*p.parts[-2:])) if len(p.parts) >= 2 else p.name


def provenance(command=None, data: dict | None = None, libraries=LIBRARIES) -> dict:
    """The provenance block of a result: commit, command line, data, machine and library versions.

    Parameters
    ----------
    command : str or list, optional
        The command line (default: ``sys.argv``).
    data : dict, optional
        :func:`data_summary` of the records the result was computed on.
    libraries : iterable of str
        The packages whose versions are recorded.
    """
    cmd = command if isinstance(command, str) else command_line(command)
    return {"commit": git_commit(), "command": cmd, "data": data, "machine": machine_summary(),
            "libraries": library_versions(libraries)}
