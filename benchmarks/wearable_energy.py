"""Energy of deciding on the wearable vs streaming the raw ECG over BLE: a labelled model.

Nothing here is measured on a board. Instruction counts come from QEMU (benchmarks/wearable.py);
every other number is an assumption named in :data:`ASSUMPTIONS` with its source. The model
compares what differs between the two designs -- the radio traffic, and the chain's CPU time
-- and lists apart what both pay (the AD8232 front end, the ADC, the BLE connection itself).

Hardware procedure (to replace this model by a measurement): firmware_bridge/README.md,
"Measuring energy on a board" (Nordic Power Profiler Kit II in source-meter mode at 3.0 V, or an
INA219 on the supply rail sampled at >= 1 kHz; one hour per firmware, same electrodes).
"""
from __future__ import annotations

#: name -> (value, unit, source)
ASSUMPTIONS = {
    "supply_v": (3.0, "V", "nRF52840 Product Specification v1.7, typical figures are given at VDD = 3 V"),
    "cpu_mhz": (64.0, "MHz", "nRF52840 PS v1.7 section 1 (Cortex-M4F at 64 MHz)"),
    "i_cpu_ma": (3.3, "mA", "nRF52840 PS v1.7 section 5.2.1.1, CPU running CoreMark from flash, cache on, "
                            "DC/DC regulator, 64 MHz: 3.3 mA (~52 uA/MHz)"),
    "cpi": (1.5, "cycles/instruction", "ASSUMPTION: Cortex-M4 issues most ALU/FPU instructions in 1 cycle, "
                                         "loads/stores and multiply-accumulate chains in 2, branches 1-3 (ARM "
                                         "Cortex-M4 TRM r0p1, ch. 3 'Instruction timing'), flash wait states hidden "
                                         "by the nRF52 cache; 1.5 is a middle value, 1.0 and 2.0 are shown too"),
    "i_tx_ma": (6.4, "mA", "nRF52840 PS v1.7 section 6.20.15.x, radio TX at 0 dBm, DC/DC, 3 V: 6.4 mA"),
    "i_rx_ma": (6.26, "mA", "nRF52840 PS v1.7, radio RX 1 Mbps BLE, DC/DC, 3 V: 6.26 mA"),
    "us_per_byte": (8.0, "us", "BLE 1M PHY: 1 Mbit/s on air (Bluetooth Core 5.x Vol 6 Part A)"),
    "ll_overhead_bytes": (17, "bytes/notification", "LL preamble 1 + access address 4 + header 2 + CRC 3, "
                                                      "L2CAP 4 + ATT notification 3 (Core 5.x Vol 6 Part B 2.1, "
                                                      "Vol 3 Part F 3.4.7.1)"),
    "rx_per_notification_us": (80 + 2 * 150, "us", "the central's empty packet (10 bytes = 80 us) and two "
                                                     "T_IFS of 150 us with the receiver on (Core Vol 6 Part B 4.1.1)"),
    "ramp_us": (2 * 40, "us", "radio ramp-up TX and RX, fast mode: 40 us each (nRF52840 PS v1.7, tTXEN/tRXEN "
                              "FAST); counted at the TX current"),
    "frame_samples": (25, "samples/DATA frame", "the streaming firmware ad8232_ble: 25 int16 samples per frame "
                                                 "(PROTOCOL.md DATA: 18 + 2n bytes)"),
}

#: paid by both designs, not in the ratio (listed for a day's total)
BASELINE = {
    "ad8232_ua": (170.0, "uA", "AD8232 datasheet rev. C, supply current 170 uA typical"),
    "saadc_ua": (700.0 * 0.004, "uA", "nRF52840 PS v1.7 SAADC 700 uA while sampling x ~4 us per conversion at "
                                      "250 Hz (~0.1% duty): ~3 uA, ASSUMPTION of 4 us acquisition+conversion"),
}


def _a(name: str) -> float:
    return float(ASSUMPTIONS[name][0])


def radio_uj_per_notification(payload_bytes: int) -> float:
    """Energy of one notification of ``payload_bytes`` application bytes (one frame), in uJ."""
    v = _a("supply_v")
    t_tx = (payload_bytes + _a("ll_overhead_bytes")) * _a("us_per_byte") + _a("ramp_us")
    t_rx = _a("rx_per_notification_us")
    return v * (_a("i_tx_ma") * t_tx + _a("i_rx_ma") * t_rx) * 1e-3  # mA x us x V = nJ; /1e3 -> uJ


def cpu_uj(instructions: float, cpi: float | None = None) -> float:
    """Energy of executing ``instructions`` at the stated CPI and active current, in uJ."""
    cpi = _a("cpi") if cpi is None else cpi
    seconds = instructions * cpi / (_a("cpu_mhz") * 1e6)
    return seconds * _a("i_cpu_ma") * _a("supply_v") * 1e3


def ua(uj_per_s: float) -> float:
    """Average current (uA) of a power in uJ/s at the supply voltage."""
    return uj_per_s / _a("supply_v")


def model(fs_in: float, chain_instr_per_s: float, instr_per_decision: float, decisions_per_s: float,
          decision_frame_bytes: int) -> dict:
    """Per second, per decision and per day for both designs; ratio streaming / on-device."""
    n = int(_a("frame_samples"))
    frame = 8 + 10 + 2 * n                          # DATA frame bytes (PROTOCOL.md)
    stream_uj_s = fs_in / n * radio_uj_per_notification(frame)
    out = {"fs_in": fs_in, "streaming": {"bytes_per_s": fs_in / n * frame,
                                         "radio_uj_per_s": stream_uj_s}, "on_device": {}, "by_cpi": {}}
    for cpi in (1.0, _a("cpi"), 2.0):
        cpu_s = cpu_uj(chain_instr_per_s, cpi)
        radio_s = decisions_per_s * radio_uj_per_notification(decision_frame_bytes)
        dev = cpu_s + radio_s
        out["by_cpi"][str(cpi)] = {
            "on_device_uj_per_s": dev, "streaming_uj_per_s": stream_uj_s,
            "ratio_streaming_over_device": stream_uj_s / dev if dev else None,
            "uj_per_decision": cpu_uj(instr_per_decision, cpi) + radio_uj_per_notification(decision_frame_bytes),
            "mah_per_day_on_device": ua(dev) * 24 / 1000, "mah_per_day_streaming": ua(stream_uj_s) * 24 / 1000}
    main = out["by_cpi"][str(_a("cpi"))]
    out["on_device"] = {"cpu_uj_per_s": cpu_uj(chain_instr_per_s), "bytes_per_s": decisions_per_s * decision_frame_bytes,
                        "radio_uj_per_s": decisions_per_s * radio_uj_per_notification(decision_frame_bytes),
                        "uj_per_decision": main["uj_per_decision"]}
    # the instruction rate at which deciding costs 5x less than streaming (the target)
    budget = stream_uj_s / 5 - out["on_device"]["radio_uj_per_s"]
    out["instr_per_s_for_5x"] = max(0.0, budget) / cpu_uj(1.0)
    base_ua = sum(v for v, _, _ in BASELINE.values())
    out["baseline_ua_both"] = base_ua
    out["baseline_mah_per_day_both"] = base_ua * 24 / 1000
    return out
