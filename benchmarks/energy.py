"""Energy figures, each labelled with how it was obtained; never a bare number.

Methods, best first:

* ``rapl``: Intel/AMD RAPL package counters (``/sys/class/powercap/intel-rapl*/energy_uj``),
  read before and after a run. Whole-package energy: other processes count too.
* ``ina219``: a TI INA219/INA260 current/power monitor on the Pi's supply, read over I2C
  with smbus2 (``--ina219 BUS:ADDR``, e.g. ``1:0x40``). Whole-board power, sampled.
* ``cpu-time x board-watts``: the process's CPU seconds times a board power figure the
  user gives (``--board-watts``). An estimate: it assumes the board draws that power
  *extra* while the CPU is busy for us.

:func:`energy_figure` builds the labelled dict every report line uses.
"""
from __future__ import annotations

import glob
import threading
import time
from pathlib import Path

__all__ = ["DEFAULT_BOARD_WATTS", "BOARD_WATTS_NOTE", "energy_figure", "estimate_from_cpu",
           "Rapl", "Ina219", "parse_bus_addr", "format_energy"]

#: Raspberry Pi 4 B: ~2.7 W idle, ~6.4 W with all four cores loaded (Raspberry Pi
#: Foundation / widely reproduced measurements). One busy core adds roughly
#: (6.4 - 2.7) / 4 ~ 0.9-1.0 W above idle; we use 1.0 W per busy core as the default
#: *incremental* power, and report the figure used next to every result.
DEFAULT_BOARD_WATTS = 1.0
BOARD_WATTS_NOTE = ("default 1.0 W = incremental power of one busy Cortex-A72 core on a Raspberry Pi 4 "
                    "(~2.7 W idle, ~6.4 W all 4 cores busy); pass --board-watts for your board")

METHODS = ("rapl", "ina219", "cpu-time x board-watts")


def energy_figure(joules, method: str, detail: str = "", per: str = "") -> dict:
    """A labelled energy value: {"joules", "method", "detail", "per"}; ``method`` must be known."""
    if method not in METHODS:
        raise ValueError(f"unknown energy method {method!r}; one of {METHODS}")
    return {"joules": None if joules is None else float(joules), "method": method, "detail": detail,
            "per": per}


def format_energy(fig: dict | None) -> str:
    """'1.23 mJ per beat (cpu-time x board-watts: ...)' ; never a bare number."""
    if not fig or fig.get("joules") is None:
        return "n/a"
    j = fig["joules"]
    if j >= 1:
        val = f"{j:.3g} J"
    elif j >= 1e-3:
        val = f"{j * 1e3:.3g} mJ"
    else:
        val = f"{j * 1e6:.3g} uJ"
    per = f" per {fig['per']}" if fig.get("per") else ""
    return f"{val}{per} [{fig['method']}]"


def estimate_from_cpu(cpu_seconds: float, board_watts: float = DEFAULT_BOARD_WATTS, per: str = "",
                      note: str = "") -> dict:
    """Energy = CPU seconds x watts, labelled ``cpu-time x board-watts``."""
    if board_watts is None or board_watts <= 0:
        raise ValueError("board_watts must be > 0")
    detail = f"{cpu_seconds:.6g} CPU s x {board_watts:g} W" + (f"; {note}" if note else "")
    return energy_figure(cpu_seconds * board_watts, "cpu-time x board-watts", detail, per)


class Rapl:
    """RAPL package energy counters; ``available`` is False where none is readable (VMs, ARM)."""

    def __init__(self, root: str = "/sys/class/powercap"):
        self.zones = []
        for d in sorted(glob.glob(f"{root}/intel-rapl:*")):
            p = Path(d)
            if ":" in p.name[len("intel-rapl:"):]:
                continue  # sub-zones (core, uncore, dram) are inside the package
            try:
                int((p / "energy_uj").read_text())
                rng = int((p / "max_energy_range_uj").read_text())
                name = (p / "name").read_text().strip()
            except (OSError, ValueError):
                continue
            self.zones.append((p / "energy_uj", rng, name))
        self.available = bool(self.zones)
        self.reason = "" if self.available else f"no readable {root}/intel-rapl*/energy_uj"

    def read(self) -> list:
        return [int(p.read_text()) for p, _, _ in self.zones]

    def joules_between(self, before: list, after: list) -> float:
        total = 0
        for (_, rng, _), b, a in zip(self.zones, before, after):
            total += (a - b) if a >= b else (a + rng - b)  # counter wrap
        return total / 1e6


def parse_bus_addr(text: str) -> tuple:
    """'1:0x40' -> (1, 0x40)."""
    try:
        bus, addr = text.split(":")
        return int(bus, 0), int(addr, 0)
    except ValueError:
        raise ValueError(f"expected BUS:ADDR such as 1:0x40, got {text!r}") from None


class Ina219:
    """INA219 (or INA260) power monitor sampled in a background thread.

    INA219: the power register (0x03) is only meaningful after calibration, so we read
    the shunt voltage (0x01, 10 uV/LSB) and bus voltage (0x02, 4 mV/LSB in bits 15..3)
    and compute P = V_bus * V_shunt / R_shunt. INA260: current (0x01, 1.25 mA/LSB) and
    bus voltage (0x02, 1.25 mV/LSB) with its internal 2 mOhm shunt.
    """

    def __init__(self, bus: int, addr: int, shunt_ohm: float = 0.1, chip: str = "ina219",
                 period_s: float = 0.01):
        try:
            from smbus2 import SMBus  # type: ignore
        except ImportError:
            raise RuntimeError("--ina219 needs smbus2 (pip install smbus2) and I2C enabled "
                               "(raspi-config > Interface Options > I2C)") from None
        self._bus = SMBus(bus)
        self.addr, self.shunt, self.chip, self.period = addr, shunt_ohm, chip, period_s
        self._samples = []
        self._stop = threading.Event()
        self._thread = None

    def _word(self, reg: int) -> int:
        raw = self._bus.read_word_data(self.addr, reg)
        return ((raw & 0xFF) << 8) | (raw >> 8)  # the chips are big-endian

    def watts(self) -> float:
        if self.chip == "ina260":
            cur = self._word(0x01)
            cur = cur - 0x10000 if cur & 0x8000 else cur
            return (self._word(0x02) * 1.25e-3) * (cur * 1.25e-3)
        shunt = self._word(0x01)
        shunt = shunt - 0x10000 if shunt & 0x8000 else shunt
        vbus = (self._word(0x02) >> 3) * 4e-3
        return vbus * (shunt * 10e-6) / self.shunt

    def _run(self):
        while not self._stop.is_set():
            self._samples.append((time.perf_counter(), self.watts()))
            time.sleep(self.period)

    def start(self):
        self._samples, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> dict:
        self._stop.set()
        if self._thread:
            self._thread.join()
        s = self._samples
        if len(s) < 2:
            return energy_figure(None, "ina219", "fewer than 2 samples")
        joules = sum((t1 - t0) * (p0 + p1) / 2 for (t0, p0), (t1, p1) in zip(s, s[1:]))
        mean_w = joules / (s[-1][0] - s[0][0])
        return energy_figure(joules, "ina219", f"{self.chip} @0x{self.addr:02x}, {len(s)} samples, "
                                               f"mean {mean_w:.3f} W whole board")
