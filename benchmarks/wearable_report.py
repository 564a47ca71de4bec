"""README.md and wearable.png of benchmarks/results/wearable from wearable.json (no measuring here)."""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _k(v) -> str:
    return "-" if v is None else f"{v / 1024:.1f} KiB"


def _nth(k: int) -> str:
    return f"{k}" + ("th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th"))


def _m(v) -> str:
    return "-" if v is None else f"{v / 1e6:.2f} M"


def write_report(res: dict, out: Path) -> None:
    """README.md (rendered by :func:`markdown`) and wearable.png into ``out``."""
    out = Path(out)
    (out / "README.md").write_text(markdown(res))
    _plot(res, out / "wearable.png")


def markdown(res: dict) -> str:
    """README.md of benchmarks/results/wearable, from wearable.json alone."""
    L = [f"# The wearable decides on its own: C chain on a Cortex-M4F", "",
         f"Commit `{res['commit']}`, command `{res['command']}`.", f"Data: {res['data']}.",
         f"Toolchain: gcc {res['toolchain']['gcc']}, arm-none-eabi-gcc {res['toolchain']['arm-none-eabi-gcc']}, "
         f"{res['toolchain']['qemu']}.", "", "## Parity: C chain (host gcc) vs the gateway's Pipeline", "",
         "Beats compared by sample index at the model rate, windows and model outputs as int8, decisions "
         "by alarm state + active labels + beats in the median (state diffs) and by probabilities at the "
         "6 decimals the gateway reports. No tolerance anywhere.", "",
         "| bundle | gateway model | input | records | beats py / C | beat diffs | windows (int8 differing) | "
         "model outputs differing (max LSB) | decisions py / C | state diffs | probability diffs | states (C) |",
         "|---|---|---|---:|---|---:|---|---|---|---:|---:|---|"]
    for p in res["parity"]:
        t = p["totals"]
        L.append(f"| {p['bundle']} | {p['reference']} | {p['fs']:g} Hz | {t['records']} | {t['beats_py']} / "
                 f"{t['beats_c']} | {t['beat_diffs']} | {t['windows']} ({t['windows_differing']}) | "
                 f"{t['outputs_differing']} ({t['output_max_lsb']}) | {t['decisions_py']} / {t['decisions_c']} | "
                 f"{t['decision_state_diffs']} | {t['probability_diffs']} | "
                 + ", ".join(f"{k} {v}" for k, v in sorted(t["states_c"].items())) + " |")
    L += ["", "`tflm`: the gateway's Pipeline scoring with TFLite Micro (the reference kernels the plain C "
          "engine equals bit for bit); `litert`: LiteRT with XNNPACK, what `edge-run` runs. Every record with "
          "a difference is listed in wearable.json (`parity[].differences`).", "",
          "## On the target: Cortex-M4F (hard float) under QEMU mps2-an386", ""]
    L += ["| bundle | input | scored | QEMU output == host | flash (text+data) | RAM (data+bss+stack) | of which chain | "
          "model arena | stack high-water | instr / s ECG (record) | instr / s ECG (steady) | instr / decision | "
          "of which model |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in res["target"]:
        d, s = t["device_image"], t.get("summary", {})
        k = t.get("every_k_beats", 1)
        L.append(f"| {t['bundle']} | {t['fs']:g} Hz | {'every beat' if k == 1 else f'every {_nth(k)} beat'} | "
                 f"{t['qemu_output_identical_to_host']} | {_k(d['flash_bytes'])} | "
                 f"{_k(d['ram_bytes'])} | {_k(d['chain_struct_bytes'])} | {_k(d['model_arena_bytes'])} | "
                 f"{_k(d['stack_high_water'])} | {_m(s.get('chain_instr_per_s_record'))} | "
                 f"{_m(s.get('chain_instr_per_s_steady'))} | {_m(s.get('instr_per_decision'))} | "
                 f"{_m(s.get('model_instr_per_invoke'))} |")
    L += ["", "Flash and RAM are those of the device image (library + model + the sketch's minimal main, "
          "`firmware/ad8232_decide/minimal_main.c`, no stdio) from `arm-none-eabi-size`; the stack high-water mark "
          "is the painted stack's lowest overwritten word after the record. *Record*: instructions in "
          "`smx_chain_push` over the 10-s record / 10 s (its first 4.5 s score nothing); *steady*: the non-scoring "
          "instructions per second plus instructions per decision x the record's beats per second. "
          "**An instruction count is not a cycle count**: QEMU counts executed instructions (`-singlestep -d "
          "exec,nochain`, one trace line each); cycles depend on the core's pipeline, flash wait states and "
          "the cache. On a board: enable the DWT cycle counter (`CoreDebug->DEMCR |= "
          "CoreDebug_DEMCR_TRCENA_Msk; DWT->CYCCNT = 0; DWT->CTRL |= DWT_CTRL_CYCCNTENA_Msk;`), read "
          "`DWT->CYCCNT` before and after `smx_chain_push` and around `smx_model_invoke` "
          "(firmware_bridge/README.md). *Scored*: the decision cadence, `--every-k-beats` of both "
          "`edge-run` and the chain's generator (`python -m selfmis.firmware_bridge.c_chain --every-k-beats K`): "
          "every beat is still detected (heart rate, RR), every k-th is scored and decided on; the rolling median "
          "then spans 8 scored beats = 8k beats. MI is no arrhythmia: its evidence changes over minutes, and the "
          "alarm persists 30 s by default.", ""]
    L += _stages(res)
    L += _targets(res)
    L += _energy(res)
    L += ["", "## What is not here", "",
          "- **TFLite Micro on the target**: not built. Compiling TFLM for Cortex-M4F needs its C++ sources "
          "(tensorflow/tflite-micro and its third-party downloads); the `tflite-micro` pip package is a compiled "
          "x86-64 Python extension. TFLM's arena is measured through that package in `model_parity.md`; the "
          "chain's parity against TFLM runs on the host (the `tflm` rows above).",
          "- **Cycles and energy on a board**: instruction counts come from QEMU, energy from the model below; "
          "the procedures for a board (DWT cycle counter, Power Profiler Kit II or INA219) are in "
          "firmware_bridge/README.md, section 5.", "",
          "## CI subset", "",
          "`tests/test_wearable_chain.py` on every CI run: the bundled record 00271 at 500 Hz and decimated to "
          "250 Hz and the nine bundled 100 Hz records (each tiled 3x), C chain vs the gateway with TFLite Micro "
          "(identical required) and with LiteRT (beats and int8 windows identical required); the same record "
          "through a flat stretch, a noise burst, lost samples, a baseline jump and an amplitude drop (the "
          "detector's restarts and search-backs; identical required); the quality gate's block statistics "
          "against quality.py on ~1,300 real, near-threshold and wide-exponent blocks; the 500 Hz record "
          "on the emulated Cortex-M4F, byte for byte against the host build; the sketch's minimal main on the "
          "emulated M4F; refusals; the DECISION frame from C to `edge-run` over a pty. No instruction tracing "
          "in CI (QEMU's trace runs at ~0.1-0.6 M instructions per second). About 1 min on a loaded 2-core "
          "machine.", "", "Assumptions (value, unit, source):", ""]
    L += [f"- `{k}` = {v['value']} {v['unit']}: {v['source']}" for k, v in res["energy_assumptions"].items()]
    return "\n".join(L) + "\n"


def _energy(res: dict) -> list:
    """The energy table per bundle and cadence, and the instruction rates 5x below streaming."""
    L = ["## Energy (a labelled model, not a measurement)", ""]
    L += ["| bundle, cadence | CPI | on-device uJ/s | streaming uJ/s | streaming / on-device | uJ per decision | "
          "mAh/day on-device | mAh/day streaming |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, e in res["energy"].items():
        for cpi, v in e["by_cpi"].items():
            L.append(f"| {key} | {cpi} | {v['on_device_uj_per_s']:.1f} | {v['streaming_uj_per_s']:.1f} | "
                     f"{v['ratio_streaming_over_device']:.2f} | {v['uj_per_decision']:.1f} | "
                     f"{v['mah_per_day_on_device']:.2f} | {v['mah_per_day_streaming']:.2f} |")
    if res["energy"]:
        e = next(iter(res["energy"].values()))
        below = "; ".join(f"{kk}: {v['instr_per_s_for_5x'] / 1e6:.3f} M" for kk, v in res["energy"].items())
        L += ["", f"Deciding would cost 5x less than streaming below these instructions per second of ECG "
              f"(in this model; fewer decisions send fewer DECISION frames): {below}. Both designs also pay the "
              f"AD8232 front end, the ADC and the BLE connection: {e['baseline_ua_both']:.0f} uA = {e['baseline_mah_per_day_both']:.2f} mAh/day "
              "(not in the ratio)."]
    return L


def _stages(res: dict) -> list:
    """Where the instructions go: per stage, per traced run (QEMU trace, trace_profile.c)."""
    runs = [t for t in res["target"] if t.get("summary", {}).get("stages_instr_per_s")]
    if not runs:
        return []
    names = []
    for t in runs:
        names += [n for n in t["summary"]["stages_instr_per_s"] if n not in names]
    head = [f"{t['bundle'].split('-')[2]}@{t['fs']:g}, k={t.get('every_k_beats', 1)}" for t in runs]
    L = ["### Where the instructions go (M instructions per second of the record, in pushes)", "",
         "| stage | " + " | ".join(head) + " |", "|---|" + "---:|" * len(runs)]
    for n in names:
        L.append(f"| {n} | " + " | ".join(f"{t['summary']['stages_instr_per_s'].get(n, 0) / 1e6:.3f}"
                                          for t in runs) + " |")
    L.append("| **all (record)** | " + " | ".join(f"**{t['summary']['chain_instr_per_s_record'] / 1e6:.3f}**"
                                               for t in runs) + " |")
    L += ["", "Per function from QEMU's execution trace (`firmware_bridge/mcu/qemu/trace_profile.c`: each "
          "instruction charged to the function whose address range holds it, code inlined by the compiler to its "
          "caller; the scored-beat and model phases by the markers). Over the 10-s record, whose first 4.5 s "
          "score nothing: the steady rate above weights the scored phases by the beats per second. The "
          "replay harness's printing of events is not counted (marked out).", ""]
    return L


def _targets(res: dict) -> list:
    """The issue's targets against the measurements (micro, 250 Hz input)."""
    L = ["### Targets (micro bundle, 250 Hz input)", "",
         "| target | cadence | measured | met |", "|---|---|---:|---|"]
    for t in res["target"]:
        s = t.get("summary", {})
        if "micro" not in t["bundle"] or t["fs"] != 250.0 or not s:
            continue
        k = t.get("every_k_beats", 1)
        cad = "every beat" if k == 1 else f"every {_nth(k)} beat"
        v = s["chain_instr_per_s_steady"]
        bpm = (3.2e6 - s["non_scoring_instr_per_s"]) / max(1.0, s["instr_per_decision"]) * k * 60
        upto = f"up to {bpm:.0f} bpm" if bpm < 300 else "beyond 300 bpm"
        L.append(f"| whole chain <= 3.2 M instr / s of ECG (steady, {s['beats_per_s'] * 60:.0f} bpm record; within "
                 f"the budget {upto} at this cadence) | {cad} | {v / 1e6:.2f} M | "
                 f"{'yes' if v <= 3.2e6 else f'no ({v / 3.2e6:.2f}x the budget)'} |")
        key = next((kk for kk, e in res["energy"].items() if kk.startswith("micro@250") and
                    e.get("every_k_beats", 1) == k), None)
        if key:
            e = res["energy"][key]
            r = e["by_cpi"]["1.5"]["ratio_streaming_over_device"]
            need = e["instr_per_s_for_5x"]
            L.append(f"| streaming / on-device energy >= 5 (CPI 1.5) | {cad} | {r:.2f} | "
                     + ("yes" if r >= 5 else f"no: needs <= {need / 1e6:.3f} M instr/s, "
                        f"{v / max(need, 1):.1f}x less") + " |")
    return L + [""] + _cadence(res)


#: decision cadences the energy target is evaluated at (derived rows) and heart rates
CADENCES = (1, 2, 4, 8, 16, 24, 32, 48, 64)


def _cadence(res: dict) -> list:
    """Which ``--every-k-beats`` meets the energy target: derived from the k=1 run's measured costs
    (instructions per second outside scored beats, instructions per scored beat) at the record's
    heart rate and at 75 bpm, through the same energy model; or what stands in the way."""
    from .wearable_energy import cpu_uj, model
    run = next((t for t in res["target"] if "micro" in t["bundle"] and t["fs"] == 250.0
                and t.get("every_k_beats", 1) == 1 and t.get("summary")), None)
    key = next((kk for kk, e in res["energy"].items() if kk.startswith("micro@250") and
                e.get("every_k_beats", 1) == 1), None)
    if not run or not key:
        return []
    s, e1 = run["summary"], res["energy"][key]
    rest, per, fs = s["non_scoring_instr_per_s"], s["instr_per_decision"], run["fs"]
    frame = round(e1["on_device"]["bytes_per_s"] / max(s["scored_per_s"], 1e-9))
    rates = [s["beats_per_s"] * 60, 75.0]

    def ratio(k, bpm):
        d = bpm / 60 / k
        return model(fs, rest + per * d, per, d, frame)["by_cpi"]["1.5"]["ratio_streaming_over_device"]

    L = ["### Which decision cadence meets the energy target (micro, 250 Hz, CPI 1.5)", "",
         f"Derived from the measured every-beat run: {rest / 1e6:.3f} M instructions per second outside scored "
         f"beats, {per / 1e6:.3f} M per scored beat, {frame}-byte DECISION frames; the same energy model "
         "(below) at each cadence k and heart rate. The measured rows of the targets table above check it.", "",
         "| k (--every-k-beats) | " + " | ".join(f"streaming / on-device at {b:.0f} bpm" for b in rates) + " |",
         "|---:|" + "---:|" * len(rates)]
    for k in CADENCES:
        L.append(f"| {k} | " + " | ".join(f"{ratio(k, b):.2f}" for b in rates) + " |")
    budget = e1["streaming"]["radio_uj_per_s"] / 5 / cpu_uj(1.0)  # with no decision at all
    L.append("")
    for b in rates:
        ok = [k for k in CADENCES if ratio(k, b) >= 5]
        L.append(f"- at {b:.0f} bpm: " + (f"**met from k = {ok[0]}** (a decision every {ok[0] * 60 / b:.0f} s, "
                                           f"the rolling median of 8 scored beats spanning {8 * ok[0] * 60 / b / 60:.1f} min)"
                                           if ok else "not met at any k listed"))
    if rest >= budget:
        st = sorted(((n, v) for n, v in s["stages_instr_per_s"].items()
                     if not n.startswith(("model", "scored beat"))), key=lambda kv: -kv[1])
        L += ["", f"**Not met at any cadence**: even with no decision at all the chain runs {rest / 1e6:.3f} M "
              f"instructions per second, above the {budget / 1e6:.3f} M that 5x below streaming allows. In the way: "
              + "; ".join(f"{n} {v / 1e6:.3f} M" for n, v in st) + "."]
    return L + [""]


def _plot(res: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    tg = [t for t in res["target"]]
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    names = [f"{t['bundle'].split('-')[2] if len(t['bundle'].split('-')) > 2 else t['bundle']}\n{t['fs']:g} Hz"
             f" k={t.get('every_k_beats', 1)}" for t in tg]
    ram = [t["device_image"]["ram_bytes"] / 1024 for t in tg]
    flash = [t["device_image"]["flash_bytes"] / 1024 for t in tg]
    xs = range(len(tg))
    ax[0].bar([x - 0.2 for x in xs], flash, 0.4, label="flash")
    ax[0].bar([x + 0.2 for x in xs], ram, 0.4, label="RAM (incl. stack)")
    ax[0].axhline(32, color="k", ls=":", lw=1, label="32 KiB RAM target (micro)")
    ax[0].axhline(64, color="grey", ls="--", lw=1, label="64 KiB flash target (micro)")
    ax[0].set_xticks(list(xs), names, fontsize=8)
    ax[0].set_ylabel("KiB")
    ax[0].set_title("device image (arm-none-eabi-size + painted stack)")
    ax[0].legend(fontsize=7)
    keys = list(res["energy"])
    cpi = "1.5"
    dev = [res["energy"][k]["by_cpi"][cpi]["mah_per_day_on_device"] for k in keys]
    st = [res["energy"][k]["by_cpi"][cpi]["mah_per_day_streaming"] for k in keys]
    xs = range(len(keys))
    ax[1].bar([x - 0.2 for x in xs], dev, 0.4, label="decide on device (CPU + DECISION frames)")
    ax[1].bar([x + 0.2 for x in xs], st, 0.4, label="stream raw ECG over BLE")
    ax[1].set_xticks(list(xs), [k.replace(", ", "\n") for k in keys], fontsize=7)
    ax[1].set_ylabel("mAh per day (model, CPI 1.5)")
    ax[1].set_title("energy model: nRF52840 datasheet figures")
    ax[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/wearable")
    write_report(json.loads((d / "wearable.json").read_text()), d)
