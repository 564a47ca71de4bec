"""Which machine, which software, which command: every result carries this.

Nothing here imports torch or TensorFlow: versions are read from package
metadata. :func:`peak_estimate` derives a theoretical fp32 peak from the CPU
flags and clock; :func:`measured_matmul_peak` measures a float32 matmul with
numpy on one thread in a fresh subprocess. Both are labelled.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

__all__ = ["cpu_info", "machine_info", "versions", "peak_estimate", "measured_matmul_peak",
           "ENV_VARS", "PACKAGES"]

ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
            "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "CUDA_VISIBLE_DEVICES")
PACKAGES = ("selfmis-edge", "numpy", "torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow",
            "ai-edge-litert", "tflite-runtime", "matplotlib", "psutil", "smbus2")


def cpu_info() -> dict:
    """Model name, flags, MHz and core counts from /proc/cpuinfo (Linux), else platform."""
    info = {"model": platform.processor() or platform.machine(), "flags": [], "mhz": None,
            "logical_cpus": os.cpu_count(), "arch": platform.machine()}
    try:
        info["usable_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        info["usable_cpus"] = os.cpu_count()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip().lower(), val.strip()
        if key in ("model name", "hardware", "cpu model") and val and info.get("_model_set") is None:
            info["model"], info["_model_set"] = val, True
        elif key in ("flags", "features") and not info["flags"]:
            info["flags"] = val.split()
        elif key == "cpu mhz" and info["mhz"] is None:
            try:
                info["mhz"] = float(val)
            except ValueError:
                pass
        elif key == "cpu family" and "family" not in info:
            info["family"] = val
        elif key == "model" and "model_id" not in info:
            info["model_id"] = val
    info.pop("_model_set", None)
    for p in ("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq",
              "/sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq"):
        try:
            info["max_mhz"] = int(Path(p).read_text().strip()) / 1000.0
            break
        except (OSError, ValueError):
            continue
    try:
        dt = Path("/proc/device-tree/model").read_bytes().rstrip(b"\0").decode()
        info["board"] = dt  # e.g. "Raspberry Pi 4 Model B Rev 1.4"
    except OSError:
        pass
    try:
        hv = "hypervisor" in info["flags"]
        info["virtualised"] = hv
    except TypeError:
        pass
    return info


def versions() -> dict:
    """Installed versions of the packages that matter, from metadata (no imports)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists() or not shutil.which("git"):
        return None
    try:
        r = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return None


#: what a timing study records of its host: its figures depend on it (gateway/gateway_cost_host.md)
HOST_KEYS = ("cpu_arch", "cpu_model", "cpu_mhz", "cpu_flags_relevant", "platform")


def _relevant_flags(cpu: dict) -> list:
    """The CPU flags that decide kernel speed (vector ISA) and whether the figures are a VM's."""
    return sorted(set(cpu.get("flags", [])) & {"avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16",
                                                "avx_vnni", "sse4_2", "neon", "asimd", "asimddp", "hypervisor"})


def host_summary() -> dict:
    """The :data:`HOST_KEYS` fields of :func:`machine_info` (from /proc/cpuinfo alone: no package
    versions, no git): the host a gateway study ran on."""
    cpu = cpu_info()
    return {"cpu_arch": cpu.get("arch"), "cpu_model": cpu.get("model"), "cpu_mhz": cpu.get("mhz"),
            "cpu_flags_relevant": _relevant_flags(cpu), "platform": platform.platform()}


def machine_info(argv=None) -> dict:
    cpu = cpu_info()
    interesting = _relevant_flags(cpu)
    try:
        mem_kb = int(next(l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines()
                          if l.startswith("MemTotal")))
    except (OSError, StopIteration, ValueError):
        mem_kb = None
    return {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": cpu.get("model"),
        "cpu_arch": cpu.get("arch"),
        "cpu_flags_relevant": interesting,
        "cpu_mhz": cpu.get("mhz"),
        "cpu_max_mhz": cpu.get("max_mhz"),
        "board": cpu.get("board"),
        "virtualised": cpu.get("virtualised"),
        "logical_cpus": cpu.get("logical_cpus"),
        "usable_cpus": cpu.get("usable_cpus"),
        "mem_total_mb": round(mem_kb / 1024) if mem_kb else None,
        "loadavg_at_start": _loadavg(),
        "env": {k: os.environ.get(k) for k in ENV_VARS if os.environ.get(k) is not None},
        "versions": versions(),
        "git_commit": _git_commit(),
        "command": " ".join(list(sys.argv if argv is None else argv)),
        "invoked_as": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "python_executable": sys.executable,
        "taskset": shutil.which("taskset"),
    }


def peak_estimate(flags, mhz) -> dict:
    """Theoretical single-core fp32 peak from the vector ISA and clock.

    Assumes two FMA pipes per core of the widest vector width the flags
    announce (AVX-512: 16 fp32 lanes, AVX2+FMA: 8, NEON/ASIMD: 4, else SSE 4
    without FMA). That is an upper bound: Zen 4 runs AVX-512 on 256-bit pipes,
    Cortex-A72 (Pi 4) has 2x128-bit pipes; the clock in a VM is the nominal one.
    """
    flags = set(flags or [])
    if not mhz:
        return {"macs_per_s": None, "method": "theoretical: unknown clock"}
    if "avx512f" in flags:
        lanes, isa = 16, "AVX-512"
    elif "avx2" in flags and "fma" in flags:
        lanes, isa = 8, "AVX2+FMA"
    elif "asimd" in flags or "neon" in flags:
        lanes, isa = 4, "NEON"
    else:
        lanes, isa = 4, "SSE (no FMA, 1 mul + 1 add pipe)"
    fma_pipes = 2
    macs = float(mhz) * 1e6 * lanes * fma_pipes
    return {"macs_per_s": macs, "method": f"theoretical: {mhz:.0f} MHz x {lanes} fp32 lanes ({isa}) x "
                                          f"{fma_pipes} FMA pipes, one core (upper bound)"}


_MATMUL_SNIPPET = r"""
import json, time, numpy as np
n = int(__import__('sys').argv[1]); reps = int(__import__('sys').argv[2])
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
a @ b
best = float('inf')
for _ in range(reps):
    t = time.perf_counter(); a @ b; best = min(best, time.perf_counter() - t)
core = None
try:
    from threadpoolctl import threadpool_info
    core = [(i.get('internal_api'), i.get('architecture'), i.get('num_threads')) for i in threadpool_info()]
except Exception:
    pass
print(json.dumps({"n": n, "best_s": best, "macs_per_s": n ** 3 / best, "blas": core}))
"""


def measured_matmul_peak(n: int = 512, reps: int = 20, timeout: float = 60.0, cpu: int | None = None) -> dict:
    """float32 ``n x n`` matmul on one BLAS thread in a fresh subprocess; best of ``reps``.

    The environment is kept as it is (``OPENBLAS_CORETYPE`` included, which may
    select a slower kernel); the BLAS kernel reported by threadpoolctl is recorded.
    """
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, "-c", _MATMUL_SNIPPET, str(n), str(reps)]
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu)] + cmd
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        out = json.loads(r.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"macs_per_s": None, "method": f"measured numpy matmul: failed ({exc})"}
    out["method"] = (f"measured: numpy float32 {n}x{n} matmul, 1 BLAS thread, best of {reps} "
                     f"(OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')})")
    return out
