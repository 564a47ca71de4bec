"""What ``selfmis bench`` leads with: the headline figures judged against the targets (each with
the sentence that says where it came from), and the energy section (every figure labelled with
its method)."""
from __future__ import annotations

from . import energy as E
from .stats import ratio

__all__ = ["energy_section", "headline_values"]


def energy_section(result, args, notes) -> dict:
    """Per-window and per-beat energy, each labelled with its method."""
    out = {"board_watts": args.board_watts, "board_watts_note": E.BOARD_WATTS_NOTE, "figures": {}}
    rapl = E.Rapl()
    out["rapl"] = {"available": rapl.available, "reason": rapl.reason}
    st = result.get("streaming") or {}
    for key, entry in (st.get("energy") or {}).items():
        out["figures"][key] = entry
    for r in (result.get("latency") or {}).get("rows", []):
        if r["threads"] == 1 and r["steady_ms"].get("p50"):
            out["figures"][f"inference {r['id']}"] = E.estimate_from_cpu(
                r["steady_ms"]["p50"] / 1e3, args.board_watts, per="window",
                note="p50 wall time of one window on one busy core")
    if args.ina219 and not st.get("energy", {}).get("ina219"):
        notes.append("--ina219 given: board power is sampled during the streaming replay (see streaming.energy)")
    return out


def headline_values(result) -> tuple:
    values, sources, intervals = {}, {}, {}
    lat = result.get("latency") or {}
    by = {r["id"]: r for r in lat.get("rows", [])}
    base = by.get("student/torch-fp32/1t")
    cands = [r for r in lat.get("rows", []) if r["model"] == "student" and r["precision"] == "int8"
             and r["threads"] == 1]
    if base and cands:
        best = min(cands, key=lambda r: r["steady_ms"]["p50"])
        sci = lat.get("speedup_ci") or {}
        if sci.get("ci95") and sci.get("estimator"):  # the point and its interval from one estimator
            values["int8_speedup_vs_torch"] = sci["ratio_of_medians"]
            intervals["int8_speedup_vs_torch"] = sci["ci95"]
            sources["int8_speedup_vs_torch"] = (f"{sci['pair']}, {sci['estimator']}; 95% CI "
                                                f"{sci['ci95'][0]:.1f}-{sci['ci95'][1]:.1f}x (bootstrap over "
                                                "interleaved rounds)")
        else:
            values["int8_speedup_vs_torch"] = ratio(base["steady_ms"]["p50"], best["steady_ms"]["p50"])
            sources["int8_speedup_vs_torch"] = (f"p50 {base['steady_ms']['p50']:.3f} ms (student/torch-fp32/1t) / "
                                                f"p50 {best['steady_ms']['p50']:.3f} ms ({best['id']}), same model; "
                                                "no interval (too few shared rounds)")
        t = by.get("teacher/torch-fp32/1t")
        if t:
            values["int8_speedup_vs_teacher_torch"] = ratio(t["steady_ms"]["p50"], best["steady_ms"]["p50"])
    st = result.get("streaming") or {}
    rep = st.get("replay") or {}
    if rep.get("rtf") is not None:
        values["streaming_rtf"] = rep["rtf"]
        sources["streaming_rtf"] = rep.get("rtf_method", "")
    if rep.get("latency_p99_ms") is not None:
        values["decision_latency_p99_ms"] = rep["latency_p99_ms"]
        sources["decision_latency_p99_ms"] = rep.get("latency_method", "")
    vd = st.get("virtual_device") or {}
    if vd.get("latency_p99_ms") is not None:
        # the device path is the one a user meets: judge the worse of the two, show both
        rp = values.get("decision_latency_p99_ms")
        both = (f"worse of: replay --fast (2 s chunks) p99 {rp if rp is not None else float('nan'):.2f} ms, "
                f"virtual device in real time (100 ms frames) p99 {vd['latency_p99_ms']:.2f} ms; "
                "edge-run's decision.latency_ms = arrival of the chunk completing the beat window -> decision")
        values["decision_latency_p99_ms"] = max(v for v in (rp, vd["latency_p99_ms"]) if v is not None)
        sources["decision_latency_p99_ms"] = both
    imp = result.get("imports") or {}
    mods = imp.get("modules") or {}
    # the figure a gateway pays before its first model load: CLI + interpreter module
    rt = mods.get("edge-run ready") or mods.get("pipeline modules") or mods.get("selfmis.edge_runtime")
    if rt and rt.get("median_s") is not None:
        values["runtime_import_s"] = rt["median_s"]
        sources["runtime_import_s"] = rt.get("method", "")
    # RSS of the runtime as deployed: streaming from a device; the replay's peak is shown beside it
    # (WFDB format 16 is read chunk by chunk; CSV and format 212 files are still read whole).
    if vd.get("rss_peak_mb") is not None:
        values["rss_peak_mb"] = vd["rss_peak_mb"]
        sources["rss_peak_mb"] = (f"peak RSS of edge-run reading the virtual device for {vd.get('ecg_s', 0):g} s "
                                  "(ru_maxrss via os.wait4); replay --fast of the "
                                  f"{(rep.get('ecg_s') or 0) / 60:g}-min file: {rep.get('rss_peak_mb') or 0:.1f} MB")
    elif rep.get("rss_peak_mb") is not None:
        values["rss_peak_mb"] = rep["rss_peak_mb"]
        sources["rss_peak_mb"] = (f"peak RSS of edge-run --replay --fast of a {(rep.get('ecg_s') or 0) / 60:g}-min "
                                  "file (ru_maxrss via os.wait4)")
    return values, sources, intervals
