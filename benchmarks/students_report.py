"""The student front's README: a view of ``students.json``, every figure read from it.

:func:`render` is the only writer of ``benchmarks/results/students/README.md``; the sentences that
summarise the front (the shipped pick against the previous default, the spread over seeds, which
members fail TFLite Micro parity, which would need QAT) are computed from the rows, so a new run
can never carry an old run's numbers.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["render", "summary_notes", "plot_front", "QAT_TOLERANCE"]

#: int8 - fp32 validation MI AUROC beyond which a member would need quantization-aware training.
QAT_TOLERANCE = -0.003

STATIC_NOTES = (
    "The chosen models were picked on the validation fold only. The front itself is not cross-validated (a "
    "SelfMIS teacher per fold and every member); the two shipped students are, by "
    "`python -m selfmis.benchmarks.crossval` (a teacher per test fold): benchmarks/results/crossval.",
    "LiteRT latency: one thread, XNNPACK, int8, all members interleaved in one run on one machine "
    "(shared VM: compare ratios). TFLM time: reference kernels on the host, relative to LiteRT's builtin "
    "kernels; an MCU's absolute speed is not measured here.",
)


def _fmt(a) -> str:
    if not a:
        return "n/a"
    return f"{a['auroc']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]" if a.get("ci") else f"{a['auroc']:.3f}"


def _parity(r) -> str:
    if r.get("ensemble"):
        return "(members)"
    p = r.get("micro_parity") or {}
    if not p:
        return "-"
    ref = p.get("reference", {})
    return ("ok" if p.get("ok") else "**fails**") + (f" (max {ref.get('max_lsb')} LSB, "
                                                     f"{ref.get('record_decision_flips')} record decisions differ)")


def _rel(x) -> str:
    return "" if not x else f"{x:.1f}x"


def _mi(r, split):
    return (r.get(split) or {}).get("MI")


def _int8_minus_fp32(r):
    a, b = _mi(r, "val_int8"), _mi(r, "val_fp32")
    return a["auroc"] - b["auroc"] if a and b else None


def _data_note(report: dict) -> str:
    d = report.get("data")
    if not d:
        return ("Accuracy: MI / IMI AUROC with bootstrap 95% CIs, Lead I, record = mean logit of 5 s windows. "
                "The data set, its rate, the splits and the bootstrap size are not recorded in students.json "
                "(a run before provenance was recorded): see the shipped cards' `metrics` for the default's.")
    return (f"Accuracy: {d['name']} ({d['n_records']:,} records, {d.get('fs', 'rate not recorded')} Hz), "
            f"Lead I; validation = {d.get('val', '?')}, test = {d.get('test', '?')}; AUROC with bootstrap 95% CIs "
            f"({d.get('n_boot', '?')} record resamples).")


def _shipped_note(rows: dict, pick: dict) -> str | None:
    """The chosen default against the model shipped before the study (the ``shipped-*`` row)."""
    new, old = pick["default"], next((n for n in rows if n.startswith("shipped-")), None)
    if old is None or old == new or not (_mi(rows[new], "val_int8") and _mi(rows[old], "val_int8")):
        return None
    a, b = _mi(rows[new], "val_int8"), _mi(rows[old], "val_int8")
    overlap = a.get("ci") and b.get("ci") and a["ci"][0] <= b["ci"][1] and b["ci"][0] <= a["ci"][1]
    ta, tb = _mi(rows[new], "test_int8"), _mi(rows[old], "test_int8")
    test = f"; test: {ta['auroc']:.3f} against {tb['auroc']:.3f}" if ta and tb else ""
    return (f"Shipped: `default` = {new} (validation MI {a['auroc']:.3f} against the previous default {old}'s "
            f"{b['auroc']:.3f}, {'overlapping' if overlap else 'disjoint'} CIs{test}); `micro` = {pick['micro']}.")


def _seed_note(rows: dict, pick: dict) -> str | None:
    """The spread over seeds of the one student configuration trained with several."""
    groups: dict = {}
    for n, r in rows.items():
        if r.get("ensemble") or n.startswith("shipped-") or "student" not in r:
            continue
        key = repr({k: v for k, v in r["student"].items()})
        groups.setdefault(key, []).append(n)
    multi = [g for g in groups.values() if len(g) > 1]
    if not multi:
        return None
    out = []
    for names in multi:
        val = [_mi(rows[n], "val_int8")["auroc"] for n in names if _mi(rows[n], "val_int8")]
        test = {n: _mi(rows[n], "test_int8")["auroc"] for n in names if _mi(rows[n], "test_int8")}
        s = (f"the {len(names)} seeds of {names[0]} ({', '.join(names)}) span {min(val):.3f}-{max(val):.3f} on "
             f"validation and {min(test.values()):.3f}-{max(test.values()):.3f} on test")
        if pick["micro"] in test:
            rank = sorted(test, key=test.get).index(pick["micro"]) + 1
            s += f"; the micro pick ({pick['micro']}) ranks {rank} of {len(test)} on test (1 = weakest)"
        out.append(s)
    return "Selection on one validation fold is noisy: " + "; ".join(out) + "."


def _parity_note(rows: dict) -> str:
    bad = {n: (r.get("micro_parity") or {}).get("reference", {}) for n, r in rows.items()
           if not r.get("ensemble") and r.get("micro_parity") and not r["micro_parity"].get("ok")}
    if not bad:
        return "TFLite Micro parity holds for every member (<= 1 LSB, no record-level decision changed)."
    return ("TFLite Micro parity fails for " + ", ".join(
        f"{n} (max {v.get('max_lsb')} LSB, {v.get('record_decision_flips')} record decisions differ)"
        for n, v in bad.items()) + "; the rule excludes them from micro.")


def _qat_note(rows: dict) -> str:
    beyond = [n for n, r in rows.items() if (d := _int8_minus_fp32(r)) is not None and d < QAT_TOLERANCE]
    if not beyond:
        return (f"int8 - fp32 (validation MI) is within {QAT_TOLERANCE} for every member with an fp32 twin: "
                "quantization-aware training was not needed.")
    return f"int8 - fp32 (validation MI) is beyond {QAT_TOLERANCE} for {', '.join(beyond)}: these would need QAT."


def summary_notes(report: dict) -> list:
    """The README's notes, each computed from ``report`` (or a fixed method statement with no figure)."""
    rows, pick = report["rows"], report["choice"]
    notes = [_data_note(report), *STATIC_NOTES, _shipped_note(rows, pick), _seed_note(rows, pick),
             _parity_note(rows), _qat_note(rows)]
    return [n for n in notes if n]


def _row(n: str, r: dict, pick: dict) -> str:
    mark = " **(default)**" if n == pick["default"] else (" **(micro)**" if n == pick["micro"] else "")
    d = _int8_minus_fp32(r)
    return (f"| {n}{mark} | {r['params']:,} | {r['int8_bytes']:,} | {r['macs'] or 0:,} | "
            f"{_fmt(_mi(r, 'val_fp32'))} | {_fmt(r['val_int8']['MI'])} | "
            f"{_fmt(r['val_int8']['IMI'])} | {_fmt(r['test_int8']['MI'])} | {_fmt(r['test_int8']['IMI'])} | "
            f"{'' if d is None else f'{d:+.4f}'} | {r['litert_ms']['p50']:.4f} / {r['litert_ms']['p99']:.4f} | "
            f"{r.get('arena_bytes') or '-'} | {_rel(r.get('micro_rel'))} | {_parity(r)} |")


def render(report: dict) -> str:
    """README.md of the student front from ``students.json``."""
    rows, pick = report["rows"], report["choice"]
    lines = ["# The student front: accuracy against size, latency and microcontroller memory", "",
             "| student | params | int8 bytes | MACs | val MI AUROC fp32 | val MI int8 | val IMI int8 | "
             "test MI int8 | test IMI int8 | int8 - fp32 (val MI) | LiteRT p50 / p99 ms | TFLM arena B | "
             "TFLM / LiteRT time | TFLM parity |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(n, r, pick) for n, r in rows.items()]
    lines += ["", f"Rule (validation only): `default` = {pick['rule']['default']}; `micro` = {pick['rule']['micro']}.",
              f"Chosen: `default` = **{pick['default']}**, `micro` = **{pick['micro']}**.", "",
              "![front](front.png)", "", "Regenerate: `" + report["command"] + "`", ""]
    lines += [f"- {n}" for n in summary_notes(report)]
    return "\n".join(lines) + "\n"


def plot_front(report: dict, path: Path) -> None:
    """front.png: validation MI AUROC (int8) against file size, LiteRT p50 and TFLM arena."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    rows, pick = report["rows"], report["choice"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (key, label) in zip(axes, (("int8_bytes", "int8 file (bytes)"), ("litert_p50", "LiteRT p50 (ms)"),
                                       ("arena_bytes", "TFLM arena (bytes)"))):
        for n, r in rows.items():
            x = r["litert_ms"]["p50"] if key == "litert_p50" else r.get(key)
            if not x or not r["val_int8"]["MI"]:
                continue
            y = r["val_int8"]["MI"]["auroc"]
            color = "tab:red" if n == pick["default"] else ("tab:green" if n == pick["micro"] else
                                                            ("tab:purple" if r.get("ensemble") else "tab:blue"))
            ax.scatter(x, y, color=color, s=40, marker="s" if "resnet" in n else "o")
            ax.annotate(n, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation MI AUROC (int8)")
        ax.grid(alpha=0.3)
    fig.suptitle("Student front (red: default, green: micro, purple: ensembles; squares: resnet family)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
