"""Markdown report and PNG plots from the result dict of :mod:`selfmis.benchmarks.run`."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .energy import format_energy
from .live_paths import markdown as live_markdown
from .targets import format_verdict

__all__ = ["render_markdown", "write_markdown", "write_plots", "fmt"]


def fmt(v, nd: int = 3, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 10 ** -nd):
            s = f"{v:.{nd}g}"
        else:
            s = f"{v:.{nd}f}".rstrip("0").rstrip(".") if "." in f"{v:.{nd}f}" else f"{v:.{nd}f}"
    else:
        s = str(v)
    return s + unit


def _size(n):
    if n is None:
        return "n/a"
    return f"{n / 1024:.1f} kB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.2f} MB"


def _src(s):
    s = s or ""
    return "stand-in" if s.startswith("stand-in") else ("real" if s.startswith("real") else (s or "?"))


def _header(res: dict) -> list:
    m = res["machine"]
    L = []
    a = L.append
    a("# SelfMIS Edge benchmark" + (" (quick run)" if res.get("quick") else ""))
    a("")
    a(f"- date (UTC): {m['date_utc']}; command: `{m['command']}`; git {m.get('git_commit')}")
    a(f"- machine: {m['cpu_model']} ({m['cpu_arch']}), {m['usable_cpus']} usable cores, "
      f"{m.get('cpu_mhz') or '?'} MHz, {m.get('mem_total_mb')} MB RAM"
      f"{', virtualised' if m.get('virtualised') else ''}{', board ' + m['board'] if m.get('board') else ''}; "
      f"load average at start {m.get('loadavg_at_start')}")
    v = m["versions"]
    a("- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val))
    a(f"- environment: {m['env'] or 'no BLAS/thread variables set'}")
    a(f"- elapsed: {res.get('elapsed_s', 0):.0f} s")
    a("")
    a("Absolute times belong to this machine (a shared 2-core VM unless stated otherwise); compare runtimes by "
      "the ratios measured side by side in this run.")
    a("")
    return L


def _targets(res: dict) -> list:
    L = []
    a = L.append
    a("## Targets")
    a("")
    a("| target | figure | verdict | how |")
    a("|---|---|---|---|")
    for t in res.get("targets", []):
        a(f"| {t['target']} | {fmt(t['value'])} {t['unit'] if t['value'] is not None else ''} | "
          f"**{format_verdict(t).split(':')[0]}** | {t['source'] or '-'} |")
    sci = (res.get("latency") or {}).get("speedup_ci") or {}
    if sci.get("ci95") and not sci.get("estimator"):  # a run before the one-estimator rule
        a("")
        a(f"In this run the speed-up's point ({sci['ratio_of_medians']:.2f}x: the ratio of the medians of all "
          f"samples) and its 95% CI ({sci['ci95'][0]:.1f}-{sci['ci95'][1]:.1f}x: medians of resampled rounds, "
          f"{sci['method']}) came from two estimators, so the point can lie outside its interval; `selfmis bench` "
          "now reports ""the point and its interval from one estimator (rerun it for a consistent pair).")
    h = res.get("headline", {})
    if h.get("int8_speedup_vs_teacher_torch") is not None:
        a("")
        a(f"int8 TFLite student vs the torch fp32 *teacher* (1 thread, p50): "
          f"{h['int8_speedup_vs_teacher_torch']:.1f}x.")
    a("")
    return L


def _models(res: dict) -> list:
    L = []
    a = L.append
    a("## Models measured")
    a("")
    for k, mm in (res.get("models") or {}).items():
        if mm:
            a(f"- **{k}**: {mm.get('source')}")
    a("")
    a("| model / format | params | MACs per window | file | how counted | model |")
    a("|---|---|---|---|---|---|")
    for k, c in (res.get("costs") or {}).items():
        a(f"| {k} | {fmt(c.get('params'))} | {fmt(c.get('macs'))} | {_size(c.get('file_size'))} | "
          f"{c.get('method', '-')} | {_src(c.get('source'))} |")
    return L


def _latency(res: dict) -> list:
    m = res["machine"]
    L = []
    a = L.append
    lat = res.get("latency")
    if lat:
        pk = res.get("peak", {})
        a("")
        a("## Per-window inference (500-sample window, batch 1)")
        a("")
        a(f"Method: {lat['method']}; budget {lat['budget_s']:g} s. Peaks: " +
          "; ".join(f"{k} {fmt((p.get('macs_per_s') or 0) / 1e9)} GMAC/s per core ({p.get('method')})"
                    for k, p in pk.items()))
        a("")
        multi = sorted({r["threads"] for r in lat["rows"] if r["threads"] > 1})
        if multi:
            a("")
            a(f"Rows at {multi} threads use every core of the machine; where other processes run too (load "
              f"average {m.get('loadavg_at_start')} at start on {m['usable_cpus']} cores) they measure "
              "contention as much as the runtime: a thread pool waits for its slowest thread.")
        a("")
        a("| runtime | threads | load ms | first ms | p50 ms | p90 ms | p99 ms | n | GMAC/s @p50 | "
          "% theor. peak | % matmul peak | speed-up vs torch student 1 thread (p50) | model |")
        a("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        sp = lat.get("speedups_p50", {})
        for r in lat["rows"]:
            s = r["steady_ms"]
            key = f"{r['id']} vs student/torch-fp32/1t"
            ach = r.get("achieved_macs_per_s_at_p50")
            ft, fm = r.get("fraction_of_theoretical_peak"), r.get("fraction_of_measured_matmul_peak")
            a(f"| {r['id'].rsplit('/', 1)[0]} | {r['threads']} | {fmt(r['load_ms'], 1)} | {fmt(r['first_inference_ms'])} | "
              f"{fmt(s.get('p50'))} | {fmt(s.get('p90'))} | {fmt(s.get('p99'))} | {s.get('n')} | "
              f"{fmt(ach / 1e9 if ach else None, 2)} | {fmt(ft * 100 if ft else None, 1)} | "
              f"{fmt(fm * 100 if fm else None, 1)} | {fmt(sp.get(key), 2)} | {_src(r['source'])} |")
    return L


def _coldstart(res: dict) -> list:
    L = []
    a = L.append
    cs = res.get("coldstart")
    if cs:
        a("")
        a("## Cold start (fresh process; 1-thread runs pinned to one core; median)")
        a("")
        a("| runtime | process wall s | import s | load s | first inference ms | peak RSS MB | reps |")
        a("|---|---|---|---|---|---|---|")
        for r in cs:
            md = r["median"]
            a(f"| {r['id']} | {fmt(md['process_wall_s'])} | {fmt(md['import_s'])} | {fmt(md['load_s'])} | "
              f"{fmt((md['first_s'] or 0) * 1e3)} | {fmt(md['rss_peak_mb'], 1)} | {r['reps']} |")
    return L


def _imports(res: dict) -> list:
    L = []
    a = L.append
    imp = res.get("imports")
    if imp:
        a("")
        a("## Import time (fresh interpreter, one core)")
        a("")
        a("| what | median s | max s | process wall s | RSS after MB | heavy modules loaded |")
        a("|---|---|---|---|---|---|")
        for k, r in imp.get("modules", {}).items():
            a(f"| {r['what']} | {fmt(r['median_s'])} | {fmt(r['max_s'])} | {fmt(r['process_wall_median_s'])} | "
              f"{fmt(r['rss_after_import_mb'], 1)} | {', '.join(r['heavy_modules_loaded']) or 'none'} |")
        if imp.get("edge_run_help_process_s"):
            a("")
            a(f"`edge-run --help` whole process: {fmt(imp['edge_run_help_process_s']['median_s'])} s (median).")
        top = (imp.get("importtime_top") or {}).get("top_cumulative_us")
        if top:
            a("")
            a(f"Largest imports (`-X importtime`, cumulative, {imp['importtime_top']['case']}): " +
              ", ".join(f"{t['module']} {t['cumulative_us'] / 1e3:.0f} ms" for t in top[:8]))
    return L


def _streaming(res: dict) -> list:
    L = []
    a = L.append
    st = res.get("streaming")
    if st:
        a("")
        a("## Streaming through edge-run (one core)")
        a("")
        a(f"Driver: {st.get('driver')}; bundle: {(st.get('bundle') or {}).get('source')}; "
          f"taskset core {st.get('cpu')}: {st.get('taskset')}")
        rep = st.get("replay") or {}
        if rep:
            a("")
            a(f"- replay `--fast`: {rep.get('record')}: {rep.get('beats')} beats, {rep.get('decisions')} decisions, "
              f"real-time factor **{fmt(rep.get('rtf'), 0)}x** (pipeline), {fmt(rep.get('rtf_process'), 0)}x "
              f"(whole process incl. start-up); decision latency p50 {fmt(rep.get('latency_p50_ms'))} ms, "
              f"p99 **{fmt(rep.get('latency_p99_ms'))} ms**; peak RSS **{fmt(rep.get('rss_peak_mb'), 1)} MB**; "
              f"CPU {fmt(rep.get('cpu_s'))} s ({fmt(rep.get('cpu_per_beat_ms'))} ms per beat, start-up included)")
            a(f"- command: `{rep.get('command')}`")
            r100 = st.get("replay_100hz") or {}
            if r100.get("rtf") is not None:
                a(f"- same record at the model rate (no resampling): {r100['record']}: real-time factor "
                  f"{fmt(r100['rtf'], 0)}x, decision latency p99 {fmt(r100.get('latency_p99_ms'))} ms, "
                  f"peak RSS {fmt(r100.get('rss_peak_mb'), 1)} MB")
            if rep.get("n_slow_decisions"):
                a(f"- decisions later than 20 ms: {rep['n_slow_decisions']} (signal time s, ms): "
                  f"{rep.get('slow_decisions')}")
    return L


def _stage_breakdown(res: dict) -> list:
    st = res.get("streaming") or {}
    if not st:
        return []
    L = []
    a = L.append
    sb = st.get("stage_breakdown") or {}
    if sb.get("stages"):
        a("")
        a(f"Where the replay's time goes ({sb['method']}; total {fmt(sb.get('total_s'))} s, {sb.get('beats')} beats):")
        a("")
        a("| stage | s | ms per beat | share |")
        a("|---|---|---|---|")
        for k, v in sb["stages"].items():
            a(f"| {k} | {fmt(v['s'])} | {fmt(v['ms_per_beat'])} | "
              f"{fmt(v['share'] * 100 if v.get('share') is not None else None, 1)} % |")
    return L


def _duty_cycle(res: dict) -> list:
    st = res.get("streaming") or {}
    if not st:
        return []
    L = []
    a = L.append
    du = st.get("duty_cycle") or {}
    if du.get("per_bpm"):
        a("")
        a(f"Duty cycle ({du['method']}; {du['ecg_minutes']:g} min each; start-up CPU "
          f"{fmt(du.get('startup_cpu_s'))} s):")
        a("")
        a("| heart rate | beats found / expected | decisions | CPU per beat ms | duty cycle (one core) | peak RSS MB |")
        a("|---|---|---|---|---|---|")
        for bpm, r in du["per_bpm"].items():
            a(f"| {bpm} bpm | {r['beats']} / {r['expected_beats']} | {r['decisions']} | "
              f"{fmt(r['cpu_per_beat_ms'])} | {fmt(r['duty_cycle'] * 100, 3)} % | {fmt(r['rss_peak_mb'], 1)} |")
        if du.get("marginal_cpu_per_beat_ms") is not None:
            a("")
            a(f"Marginal CPU of one more beat ((CPU at 120 - CPU at 60) / extra beats): "
              f"{fmt(du['marginal_cpu_per_beat_ms'])} ms.")
    return L


def _deferral(res: dict) -> list:
    st = res.get("streaming") or {}
    if not st:
        return []
    L = []
    a = L.append
    df = st.get("deferral") or {}
    if df.get("cases"):
        a("")
        a(f"Waiting for later chunks ({df['method']}):")
        a("")
        a("| signal | decisions | deferred by >= 1 frame | wait p50 ms | wait p99 ms |")
        a("|---|---|---|---|---|")
        for k, v in df["cases"].items():
            w = v.get("wait_ms", {})
            a(f"| {k} | {v['decisions']} | {fmt((v['deferred_share'] or 0) * 100, 1)} % | {fmt(w.get('p50'))} | "
              f"{fmt(w.get('p99'))} |")
    return L


def _virtual_device(res: dict) -> list:
    st = res.get("streaming") or {}
    if not st:
        return []
    L = []
    a = L.append
    vd = st.get("virtual_device") or {}
    a("")
    if vd.get("skipped"):
        a(f"- virtual device: skipped ({vd['skipped']})")
    elif vd:
        a(f"- virtual device (pty, real time, {fmt(vd.get('ecg_s'), 0)} s): {vd.get('beats')} beats, "
          f"{vd.get('decisions')} decisions, latency p50 {fmt(vd.get('latency_p50_ms'))} ms, "
          f"p99 **{fmt(vd.get('latency_p99_ms'))} ms**, peak RSS {fmt(vd.get('rss_peak_mb'), 1)} MB, "
          f"CPU {fmt(vd.get('cpu_s'))} s")
        if vd.get("n_slow_decisions"):
            a(f"- decisions later than 20 ms: {vd['n_slow_decisions']} of {vd.get('decisions')} "
              f"(signal time s, ms): {vd.get('slow_decisions_t_s_latency_ms')}")
        a(f"- commands: `{vd.get('simulator')}` | `{vd.get('command')}`")
    lp = st.get("live_paths")
    if lp:
        a("")
        a(live_markdown(lp).rstrip())
    return L


def _energy(res: dict) -> list:
    L = []
    a = L.append
    en = res.get("energy")
    if en:
        a("")
        a("## Energy (every figure labelled with its method)")
        a("")
        a(f"RAPL: {'available' if en['rapl']['available'] else 'not available (' + en['rapl']['reason'] + ')'}. "
          f"Board power used for estimates: {en['board_watts']:g} W ({en['board_watts_note']}).")
        a("")
        a("| what | energy | detail |")
        a("|---|---|---|")
        for k, f in en.get("figures", {}).items():
            a(f"| {k} | {format_energy(f)} | {f.get('detail', '')} |")
    return L


def _accuracy(res: dict) -> list:
    L = []
    a = L.append
    acc = res.get("accuracy")
    if acc:
        a("")
        a("## Accuracy beside cost (MI AUROC)")
        a("")
        a(f"{acc['method']}.")
        a("")
        a("| model | MI AUROC | 95% CI | size | params | MACs | latency p50 ms (1t) | cost measured on | AUROC from |")
        a("|---|---|---|---|---|---|---|---|---|")
        for r in acc["table"]:
            ci = f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}" if r.get("ci95") else "n/a"
            a(f"| {r['category']} | {fmt(r['mi_auroc'])} | {ci} | {_size(r['file_size'])} | {fmt(r['params'])} | "
              f"{fmt(r['macs'])} | {fmt(r['latency_p50_ms_1t'])} | {_src(r.get('cost_source')) if r.get('cost_source') else '-'} | "
              f"{r['from'] or 'not found'} |")
        if acc.get("rows"):
            a("")
            a("<details><summary>Every MI AUROC found (file : JSON path)</summary>")
            a("")
            for r in acc["rows"]:
                ci = f" ({r['ci95'][0]:.3f}-{r['ci95'][1]:.3f})" if r.get("ci95") else ""
                a(f"- {r['mi_auroc']:.4f}{ci} [{r.get('category') or 'other'}] `{r['file']}` : `{r['path']}`")
            a("")
            a("</details>")
        if any(_src(r.get("cost_source")) == "stand-in" for r in acc["table"] if r.get("mi_auroc") is not None):
            a("")
            a("Rows whose cost was measured on a stand-in pair a real AUROC with the stand-in's cost "
              "(same architecture, so the same size and latency).")
    return L


def _plots_and_notes(res: dict) -> list:
    L = []
    a = L.append
    if res.get("plots"):
        a("")
        a("## Plots")
        a("")
        for p in res["plots"]:
            a(f"![{p}]({p})")
    if res.get("notes"):
        a("")
        a("## Notes")
        a("")
        for n in res["notes"]:
            a(f"- {n}")
    return L


#: The sections of bench.md, in order: each is a view of one part of the result dict.
SECTIONS = (_header, _targets, _models, _latency, _coldstart, _imports, _streaming, _stage_breakdown, _duty_cycle,
            _deferral, _virtual_device, _energy, _accuracy, _plots_and_notes)


def render_markdown(res: dict) -> str:
    """bench.md from the result dict (``bench.json``): the sections in order, then the beat reference."""
    text = "\n".join(line for section in SECTIONS for line in section(res)) + "\n"
    if res.get("beats"):
        from .beat_reference import markdown as beats_markdown
        text += "\n" + beats_markdown(res["beats"], level=2).replace("](beats.png)", "](beats/beats.png)") + "\n"
    return text


def write_markdown(res: dict, path) -> Path:
    """Write :func:`render_markdown` of ``res`` to ``path``."""
    path = Path(path)
    path.write_text(render_markdown(res))
    return path


def write_plots(res: dict, raw_ms: dict, out_dir) -> list:
    """latency_hist.png, latency_box.png, accuracy_vs_cost.png (when there is accuracy data)."""
    os.environ.setdefault("MPLCONFIGDIR", str(Path(tempfile.gettempdir()) / "selfmis-mpl"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir = Path(out_dir)
    written = []
    rows = (res.get("latency") or {}).get("rows", [])
    ids = [r["id"] for r in rows if raw_ms.get(r["id"])]
    if ids:
        one = [i for i in ids if i.endswith("/1t")] or ids
        fig, ax = plt.subplots(figsize=(10, 5.5))
        lo = max(1e-3, min(min(raw_ms[i]) for i in one))
        hi = max(np.percentile(raw_ms[i], 99.5) for i in one)
        bins = np.logspace(np.log10(lo), np.log10(hi), 80)
        for i in one:
            v = np.asarray(raw_ms[i])
            p50, p99 = np.percentile(v, 50), np.percentile(v, 99)
            ax.hist(v, bins=bins, histtype="step", linewidth=1.4, weights=np.full(len(v), 1.0 / len(v)),
                    label=f"{i.rsplit('/', 1)[0]}  (p50 {p50:.3g}, p99 {p99:.3g} ms)")
        ax.set_xscale("log")
        ax.set_xlabel("latency per window (ms, log scale)")
        ax.set_ylabel("fraction of runs per (log-spaced) bin")
        ax.set_title(f"Per-window inference latency, 1 thread ({res['machine']['cpu_model']}, "
                     f"{res['machine']['date_utc'][:10]})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "latency_hist.png", dpi=110)
        plt.close(fig)
        written.append("latency_hist.png")

        fig, ax = plt.subplots(figsize=(10, 0.42 * len(ids) + 1.5))
        ax.boxplot([raw_ms[i] for i in ids], vert=False, whis=(1, 99), showfliers=False)
        ax.set_yticks(range(1, len(ids) + 1), ids, fontsize=7)
        ax.set_xscale("log")
        ax.set_xlabel("latency per window (ms, log); box = p25-p75, whiskers = p1-p99")
        ax.set_title("Per-window latency by runtime and thread count")
        fig.tight_layout()
        fig.savefig(out_dir / "latency_box.png", dpi=110)
        plt.close(fig)
        written.append("latency_box.png")
    acc = [r for r in (res.get("accuracy") or {}).get("table", []) if r.get("mi_auroc") is not None]
    if acc:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        for ax, key, label in ((axes[0], "file_size", "model file size (kB)"),
                               (axes[1], "latency_p50_ms_1t", "latency per window p50, 1 thread (ms)")):
            pts = [r for r in acc if r.get(key)]
            for r in pts:
                x = r[key] / 1024 if key == "file_size" else r[key]
                ax.scatter([x], [r["mi_auroc"]], s=40)
                ax.annotate(r["category"], (x, r["mi_auroc"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
                if r.get("ci95"):
                    ax.errorbar([x], [r["mi_auroc"]], yerr=[[r["mi_auroc"] - r["ci95"][0]], [r["ci95"][1] - r["mi_auroc"]]],
                                fmt="none", capsize=3, color="grey")
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("MI AUROC")
            if not pts:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center")
        fig.suptitle("Accuracy vs cost")
        fig.tight_layout()
        fig.savefig(out_dir / "accuracy_vs_cost.png", dpi=110)
        plt.close(fig)
        written.append("accuracy_vs_cost.png")
    return written
