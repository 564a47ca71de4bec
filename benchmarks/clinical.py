"""Clinical view of the shipped bundle: calibration, operating points, and alarm burden per person.

    python -m selfmis.benchmarks.clinical [--minutes 10] [--records N] [--model BUNDLE]

writes ``benchmarks/results/clinical/``: ``clinical.json``, ``clinical.md``,
``reliability.png`` (reliability diagrams before/after calibration, test fold) and
``alarm_burden.png``.

**Alarm burden.** A person's ECG changes little from minute to minute, so a record
the model scores as MI is a person alarmed every day. Each test-fold record (the
card's ``training.folds.test``, 100 Hz, Lead I) is looped for ``--minutes`` and
streamed at full speed through the real path -- the simulated wearable
(:class:`VirtualDevice`: ADC counts, white noise, mains hum, breathing baseline wander,
occasional electrode-motion bursts and lead-off, wire protocol
frames) -> :class:`FramedStream` -> :class:`Pipeline` (quality gate, beat detector,
TFLite model, rolling median) -- with one :class:`RollingDecision` per operating
point and persistence span fed the same beats (the pipeline's own decider calls,
resets included). Per operating point and span it reports the share of NORM people
and of all non-MI people who get at least one MI ``onset`` (Wilson 95% CIs), the
share of MI people who do and their time to first onset, and MI state changes per
hour of signal (flicker; per-beat = today's decision without persistence).
A person is a record here (PTB-XL has a few patients with two records in a fold).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from selfmis.simulate import VirtualDevice

__all__ = ["SPANS", "stream_person", "alarm_burden", "wilson", "main"]

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "clinical"
#: (name, persist_s, hysteresis in logit units); "per-beat" is today's decision.
SPANS = (("per-beat", 0.0, 0.0), ("10 s", 10.0, 0.5), ("30 s", 30.0, 0.5), ("60 s", 60.0, 0.5))
NOISE_UV = 10.0          # white noise SD at the electrodes (the gate starts objecting near 10-20 uV at 100 Hz)
LEAD_OFF_EVERY_S = 300.0  # on average one lead-off ...
LEAD_OFF_S = 5.0          # ... of this length every 5 minutes
MAINS_UV, MAINS_HZ = 20.0, 50.0   # mains pickup of a chest-strap front end (AD8232 class)
WANDER_UV, WANDER_HZ = 100.0, 0.25  # breathing: 15 breaths a minute moving the baseline
MOTION_EVERY_S = 120.0    # on average one electrode-motion burst ...
MOTION_S, MOTION_UV = 3.0, 200.0  # ... of this length and SD every 2 minutes (someone shifting in bed)


def wilson(k: int, n: int, z: float = 1.96) -> list:
    """Wilson score interval for k of n (Wilson 1927); [nan, nan] when n = 0."""
    if n == 0:
        return [float("nan")] * 2
    p = k / n
    den = 1 + z * z / n
    c = (p + z * z / (2 * n)) / den
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return [max(0.0, c - h), min(1.0, c + h)]


class _FanOut:
    """Stands in for the pipeline's decider: every call goes to each RollingDecision."""

    def __init__(self, deciders: dict, label: str):
        self.deciders = deciders
        self.first = next(iter(deciders.values()))
        self.thresholds = self.first.thresholds
        self.j = self.first.labels.index(label)
        self.onsets = {k: [] for k in deciders}
        self.changes = {k: 0 for k in deciders}  # of this label's state only
        self.probs = []

    def reset(self):
        for d in self.deciders.values():
            d.reset()

    def __len__(self):
        return len(self.first)

    def add(self, proba, t=None):
        out = None
        for key, d in self.deciders.items():
            r = d.add(proba, t)
            if r is not None and r["state"] in ("onset", "cleared"):
                self.changes[key] += 1
                if r["state"] == "onset":
                    self.onsets[key].append(t)
            out = r if out is None else out
        if out is not None:
            self.probs.append(out["probabilities"][self.first.labels[self.j]])
        return out


def stream_person(model, path, seconds: float, seed: int, ops, label: str = "MI") -> dict:
    """Loop record ``path`` for ``seconds`` through the wire protocol and the pipeline."""
    from selfmis.edge_runtime.decision import RollingDecision
    from selfmis.edge_runtime.pipeline import Pipeline
    from selfmis.edge_runtime.sources.framed import FramedStream
    from selfmis.readers import read_record

    rec = read_record(str(path))
    x = np.nan_to_num(np.asarray(rec.lead(model.card.lead), np.float64))
    n = int(round(seconds * rec.fs))
    signal = np.tile(x, -(-n // len(x)))[:n]  # looping = the record again and again
    rng = np.random.default_rng(seed)
    n_off = rng.poisson(seconds / LEAD_OFF_EVERY_S)
    lead_off = [(float(s), LEAD_OFF_S) for s in np.sort(rng.uniform(10.0, seconds - LEAD_OFF_S, n_off))]
    n_motion = rng.poisson(seconds / MOTION_EVERY_S)
    motion = [(float(s), MOTION_S) for s in np.sort(rng.uniform(10.0, seconds - MOTION_S, n_motion))]
    dev = VirtualDevice(signal, rec.fs, lead=model.card.lead, noise_uv=NOISE_UV, mains_uv=MAINS_UV,
                        mains_hz=MAINS_HZ, wander_uv=WANDER_UV, wander_hz=WANDER_HZ, motion=motion,
                        motion_uv=MOTION_UV, lead_off=lead_off, seed=seed)
    pipe = Pipeline(model)
    deciders = {(op, span): RollingDecision.from_card(model.card, op, persist_s=ps, hysteresis=h)
                for op in ops for span, ps, h in SPANS}
    fan = pipe.decider = _FanOut(deciders, label)
    framed = FramedStream(model.card.lead)
    for ch in dev.chunks():
        for item in framed.feed(ch.data, ch.t, 0.0):
            pipe.handle(item)
    pipe.flush()
    s = pipe.summary()
    return {"signal_s": float(s["signal_s"]), "decisions": int(s["decisions"]), "suppressed": s["suppressed"],
            "lead_off": lead_off, "mean_probability": float(np.mean(fan.probs)) if fan.probs else None,
            "configs": {f"{op}|{span}": {"onsets": fan.onsets[(op, span)],
                                          "changes": fan.changes[(op, span)]}
                        for op, span in deciders}}


_MODELS = {}


def _stream_task(task, model=None):
    """One person, in this process or a worker (each worker loads the bundle once)."""
    bundle, path, seconds, seed, ops = task
    if model is None:
        from selfmis.edge_runtime.interpreter import TFLiteModel

        model = _MODELS.get(bundle) or _MODELS.setdefault(bundle, TFLiteModel(bundle))
    return stream_person(model, path, seconds, seed, ops)


def _progress(i: int, n: int, t0: float) -> None:
    if (i + 1) % 10 == 0 or i + 1 == n:
        print(f"[clinical] {i + 1}/{n} records streamed ({time.perf_counter() - t0:.0f} s)", file=sys.stderr,
              flush=True)


def alarm_burden(people: list, ops, label: str = "MI") -> list:
    """Rows per operating point and span from :func:`stream_person` results (+ ``y``, ``norm``)."""
    rows = []
    for op in ops:
        base = None
        for span, ps, h in SPANS:
            key = f"{op}|{span}"
            grp = {"NORM": [p for p in people if p["norm"] and not p["y"]], "non-MI": [p for p in people if not p["y"]],
                   "MI": [p for p in people if p["y"]]}
            row = {"operating_point": op, "span": span, "persist_s": ps, "hysteresis": h}
            for g, members in grp.items():
                k = sum(bool(p["configs"][key]["onsets"]) for p in members)
                row[g] = {"n": len(members), "with_onset": k, "share": k / len(members) if members else None,
                          "ci": wilson(k, len(members))}
            first = [p["configs"][key]["onsets"][0] for p in grp["MI"] if p["configs"][key]["onsets"]]
            row["MI"]["time_to_first_onset_s"] = {
                "median": float(np.median(first)) if first else None,
                "p25": float(np.percentile(first, 25)) if first else None,
                "p75": float(np.percentile(first, 75)) if first else None}
            hours = sum(p["signal_s"] for p in people) / 3600.0
            changes = sum(p["configs"][key]["changes"] for p in people)
            row["changes_per_hour"] = changes / hours if hours else None
            for g in ("NORM", "non-MI", "MI"):
                hg = sum(p["signal_s"] for p in grp[g]) / 3600.0
                row[g]["changes_per_hour"] = (sum(p["configs"][key]["changes"] for p in grp[g]) / hg) if hg else None
            if base is None:
                base = row["changes_per_hour"]
            row["flicker_reduction_vs_per_beat"] = (base / row["changes_per_hour"]) if row["changes_per_hour"] \
                else (float("inf") if base else None)
            rows.append(row)
    return rows


# ------------------------------------------------------------------------------------------ report

def _pct(share, ci):
    if share is None:
        return "n/a"
    return f"{100 * share:.1f}% ({100 * ci[0]:.1f}-{100 * ci[1]:.1f})"


def _ci(v, ci, digits=2):
    if v is None:
        return "n/a"
    return f"{v:.{digits}f} ({ci[0]:.{digits}f}-{ci[1]:.{digits}f})" if ci and ci[0] is not None else f"{v:.{digits}f}"


def _ratio(v):
    if v is None:
        return "n/a (no changes)"
    return "no changes left" if math.isinf(v) else f"{v:.1f}x"


def markdown(report: dict) -> str:
    c, m = report["card"], report["stream"]
    cal = c["metrics"]["calibration"]
    lines = ["# Clinical view of the shipped bundle", "",
             f"Bundle `{report['bundle']}` (sha256 `{c['sha256'][:16]}...`), data `{cal['data']}`, "
             f"Lead {cal['lead']}, {cal['fs']:g} Hz; calibration and thresholds fitted on {cal['fit_split']}, "
             f"figures on {cal['test_split']} (the shipped student's own test fold; the same students "
             "cross-validated, a teacher per test fold: benchmarks/results/crossval). Regenerate: `" + report["command"] + "`.", "",
             "Not a diagnostic device: these are research figures on a 2,550-record PTB-XL subset "
             "(hospital 12-lead ECGs, Lead I only, 10 s each); a wearable population differs.", "",
             "## Calibration (test fold, record level)", "",
             f"Calibration: {cal['calibration']}; ECE with {cal['ece']}.", "",
             "| label | method | test positives | ECE before | ECE after | Brier before | Brier after | ECE of a perfectly "
             "calibrated model at this n |", "|---|---|---|---|---|---|---|---|"]
    for lab, r in cal["per_label"].items():
        floor = report["ece_floor"].get(lab)
        lines.append(f"| {lab} | {r.get('method', 'platt')} | {r['n_test_positives']} | {_ci(r['ece_before'], r.get('ece_before_ci'), 3)} | "
                     f"{_ci(r['ece_after'], r.get('ece_after_ci'), 3)} | {r['brier_before']:.3f} | "
                     f"{r['brier_after']:.3f} | {floor['median']:.3f} (95% {floor['p95']:.3f}) |")
    rt = report.get("runtime_ece")
    if rt:
        lines += ["", f"At the runtime (mean over a stream of the rolling-median calibrated MI probability, "
                  f"{rt['n']} looped records): ECE {rt['ece']:.3f} (95% CI {rt['ci'][0]:.3f}-{rt['ci'][1]:.3f})."]
    ops = c["metrics"]["operating_points"]
    prev = cal["prevalence_for_ppv"].get("MI")
    lines += ["", "## MI operating points (thresholds chosen on validation, figures on test, 95% bootstrap CIs)", "",
              f"PPV at the MI prevalence of the whole subset ({100 * prev:.1f}%, all folds). Specificity is against "
              "every record without MI; 'vs NORM' only against NORM records.", "",
              "| operating point | rule | threshold (calibrated p) | sensitivity | specificity (all non-MI) | "
              "specificity vs NORM | PPV |", "|---|---|---|---|---|---|---|"]
    for name, o in ops.items():
        t = o["test"].get("MI")
        if not t:
            continue
        lines.append(f"| `{name}` | {o['rule']} | {t['threshold']:.3f} | {_ci(t['sensitivity'], t['sensitivity_ci'])} | "
                     f"{_ci(t['specificity'], t['specificity_ci'])} | "
                     f"{_ci(t['specificity_norm'], t['specificity_norm_ci'])} | {_ci(t['ppv'], t['ppv_ci'])} |")
    lines += ["", "## Alarm burden per person (MI alarm)", "",
              f"{m['n_people']} test-fold records, each looped {m['minutes']:g} min through the simulated wearable "
              f"(white noise {m['noise_uv']:g} uV, mains {m.get('mains_uv', 0):g} uV at {m.get('mains_hz', 50):g} Hz, "
              f"breathing wander {m.get('wander_uv', 0):g} uV at {m.get('wander_hz', 0):g} Hz, "
              f"a {m.get('motion_s', 0):g} s electrode-motion burst of {m.get('motion_uv', 0):g} uV SD every "
              f"~{m.get('motion_every_s', 0):g} s, a {m['lead_off_s']:g} s lead-off every ~{m['lead_off_every_s']:g} s) "
              f"and the real pipeline; {m['hours']:.1f} h of signal in {m['wall_s']:.0f} s. "
              "Onset = the rolling median stays above the threshold for the span; clears below it minus the "
              "hysteresis (logit units) for the span. Shares with Wilson 95% CIs.", "",
              "| operating point | span (hysteresis) | NORM people alarmed | non-MI people alarmed | MI people alarmed | "
              "MI: time to first onset, median (IQR) | state changes / h | flicker reduction |",
              "|---|---|---|---|---|---|---|---|"]
    for r in report["alarm_burden"]:
        tt = r["MI"]["time_to_first_onset_s"]
        tts = "n/a" if tt["median"] is None else f"{tt['median']:.0f} s ({tt['p25']:.0f}-{tt['p75']:.0f})"
        lines.append(f"| `{r['operating_point']}` | {r['span']} ({r['hysteresis']:g}) | "
                     f"{_pct(r['NORM']['share'], r['NORM']['ci'])} | {_pct(r['non-MI']['share'], r['non-MI']['ci'])} | "
                     f"{_pct(r['MI']['share'], r['MI']['ci'])} | {tts} | {r['changes_per_hour']:.1f} | "
                     f"{_ratio(r['flicker_reduction_vs_per_beat'])} |")
    lines += ["", "Reading it: 'alarmed' means at least one MI onset during the stream. A NORM person alarmed "
              "here would be alarmed every day; an MI person not alarmed is a missed infarct. Per-beat is today's "
              "decision (no persistence); its state changes per hour are the flicker a user would see.", ""]
    return "\n".join(lines)


def plots(report: dict, out: Path) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    per = report["card"]["metrics"]["calibration"]["per_label"]
    labs = list(per)
    fig, axes = plt.subplots(1, len(labs), figsize=(3.2 * len(labs), 3.4), squeeze=False)
    for ax, lab in zip(axes[0], labs):
        for key, colour, name in (("reliability_before", "tab:red", "before"), ("reliability_after", "tab:blue", "after")):
            bins = [b for b in per[lab][key] if b[2] > 0]
            ax.plot([b[3] for b in bins], [b[4] for b in bins], "o-", color=colour, ms=3,
                    label=f"{name} ECE {per[lab]['ece_' + name]:.3f}")
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_title(f"{lab} (test n+={per[lab]['n_test_positives']})", fontsize=9)
        ax.set_xlabel("predicted probability")
        ax.legend(fontsize=7, loc="upper left")
    axes[0][0].set_ylabel("fraction positive")
    fig.suptitle("Reliability, PTB-XL subset test fold 10, Lead I (calibration fitted on fold 1: "
                 + ", ".join(f"{lab} {per[lab].get('method', 'platt')}" for lab in labs) + ")", fontsize=10)
    fig.tight_layout()
    f = out / "reliability.png"
    fig.savefig(f, dpi=110)
    plt.close(fig)
    files.append(f)

    rows = report["alarm_burden"]
    ops = list(dict.fromkeys(r["operating_point"] for r in rows))
    spans = [s for s, _, _ in SPANS]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, g, title in ((axes[0], "NORM", "NORM people with an MI onset"),
                         (axes[1], "MI", "MI people with an MI onset")):
        for op in ops:
            rr = [r for r in rows if r["operating_point"] == op]
            if any(r[g]["share"] is None for r in rr):  # nobody in this group (a --records subset)
                continue
            y = [100 * r[g]["share"] for r in rr]
            # Wilson bounds can miss a share of 0 or 1 by a rounding error: clip the bars at 0
            lo = [max(0.0, 100 * (r[g]["share"] - r[g]["ci"][0])) for r in rr]
            hi = [max(0.0, 100 * (r[g]["ci"][1] - r[g]["share"])) for r in rr]
            ax.errorbar(spans, y, yerr=[lo, hi], marker="o", capsize=3, label=op)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("%")
        ax.set_xlabel("persistence span")
    for op in ops:
        rr = [r for r in rows if r["operating_point"] == op]
        axes[2].plot(spans, [max(r["changes_per_hour"], 1e-2) for r in rr], marker="o", label=op)
    axes[2].set_yscale("log")
    axes[2].set_title("MI state changes per hour (all people)", fontsize=10)
    axes[2].set_xlabel("persistence span")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Alarm burden: {report['stream']['n_people']} test-fold records looped "
                 f"{report['stream']['minutes']:g} min each", fontsize=10)
    fig.tight_layout()
    f = out / "alarm_burden.png"
    fig.savefig(f, dpi=110)
    plt.close(fig)
    files.append(f)
    return files


def ece_floor(per_label: dict, seed: int = 0, n_sim: int = 1000) -> dict:
    """ECE a perfectly calibrated model would show on the same test probabilities, per label
    (:func:`selfmis.quantize.calibrate.ece_noise_floor`): the sampling noise of ECE at this n."""
    from selfmis.quantize.calibrate import ece_noise_floor

    return {lab: ece_noise_floor(r["_p_after"], seed=seed, n_sim=n_sim) for lab, r in per_label.items()}


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m selfmis.benchmarks.clinical", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="bundle (default: the shipped one)")
    ap.add_argument("--data", default=None, help="PTB-XL folder (default: the shared subset)")
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes each record is looped (default 10)")
    ap.add_argument("--records", type=int, default=None, help="only the first N test records (a quick look)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1, help="worker processes (records are independent)")
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    logging.getLogger("selfmis").setLevel(logging.WARNING)

    from selfmis.edge_runtime.interpreter import TFLiteModel
    from selfmis.edge_runtime.models import default_bundle_dir
    from selfmis.train.data import PTBXL

    t0 = time.perf_counter()
    model = TFLiteModel(a.model or default_bundle_dir())
    card = model.card
    if not card.calibration or not card.operating_points:
        print(f"{model.bundle.directory}: card has no calibration/operating points; run selfmis calibrate first",
              file=sys.stderr)
        return 2
    folds = card.training.get("folds") or {"test": [10]}
    db = PTBXL(a.data)
    ids = db.split_ids("test", folds=folds["test"])
    if a.records:
        ids = ids[:a.records]
    Y = db.labels(ids, tasks=("MI", "NORM"))
    ops = list(card.operating_points)
    floor = ece_floor_on_test(model, folds["test"], a.data, a.seed)
    people = stream_people(model, db, ids, ops, a, t0)
    for i, (r, eid) in enumerate(zip(people, ids)):
        r.update({"ecg_id": int(eid), "y": bool(Y[i, 0]), "norm": bool(Y[i, 1])})
    rows = alarm_burden(people, ops)
    wall = time.perf_counter() - t0
    report = {"bundle": _shown(model.bundle.directory), "command": "python -m selfmis.benchmarks.clinical "
              + " ".join(argv if argv is not None else sys.argv[1:]),
              "card": {"sha256": card.sha256, "metrics": {"calibration": card.metrics["calibration"],
                                                          "operating_points": card.metrics["operating_points"]},
                       "operating_points": card.operating_points, "calibration": card.calibration},
              "ece_floor": floor,
              "runtime_ece": runtime_ece(people, a.seed),
              "stream": {"n_people": len(people), "minutes": a.minutes, "noise_uv": NOISE_UV,
                         "mains_uv": MAINS_UV, "mains_hz": MAINS_HZ, "wander_uv": WANDER_UV, "wander_hz": WANDER_HZ,
                         "motion_s": MOTION_S, "motion_uv": MOTION_UV, "motion_every_s": MOTION_EVERY_S,
                         "lead_off_s": LEAD_OFF_S, "lead_off_every_s": LEAD_OFF_EVERY_S,
                         "hours": sum(p["signal_s"] for p in people) / 3600.0, "wall_s": wall, "seed": a.seed,
                         "source": VirtualDevice.__module__},
              "alarm_burden": rows, "people": people}
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "clinical.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    (a.out / "clinical.md").write_text(markdown(report))
    plots(report, a.out)
    print(markdown(report))
    return 0


def ece_floor_on_test(model, test_folds, data, seed) -> dict:
    """Record-level calibration figures come from the card; the ECE noise floor needs the test probabilities."""
    from selfmis.quantize.calibrate import apply_calibration
    from selfmis.quantize.calibrate_cli import bundle_record_logits

    card = model.card
    zt, yt, _ = bundle_record_logits(model.bundle, test_folds, data)
    per = {lab: dict(r) for lab, r in card.metrics["calibration"]["per_label"].items()}
    for lab in per:
        j = card.labels.index(lab)
        per[lab]["_p_after"] = apply_calibration(zt[:, j], card.calibration[lab])
    return ece_floor(per, seed)


def stream_people(model, db, ids, ops, a, t0) -> list:
    """Every test record looped for ``a.minutes`` through the runtime, in ``a.jobs`` processes."""
    seconds = a.minutes * 60.0
    tasks = [(str(model.bundle.directory), str(db.record_path(eid, 100)), seconds, a.seed * 100003 + int(eid), ops)
             for eid in ids]
    people = []
    if a.jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(a.jobs) as pool:
            results = pool.imap(_stream_task, tasks)
            for i, r in enumerate(results):
                people.append(r)
                _progress(i, len(ids), t0)
    else:
        for i, task in enumerate(tasks):
            people.append(_stream_task(task, model))
            _progress(i, len(ids), t0)
    return people


def runtime_ece(people: list, seed: int) -> dict:
    """ECE of the streamed mean probabilities per person, with a bootstrap 95% CI."""
    from selfmis.quantize.calibrate import ece

    yp = np.array([p["y"] for p in people])
    pm = np.array([p["mean_probability"] if p["mean_probability"] is not None else np.nan for p in people])
    ok = np.isfinite(pm)
    rng = np.random.default_rng(seed)
    boots = [ece(yp[ok][i], pm[ok][i]) for i in (rng.integers(0, ok.sum(), ok.sum()) for _ in range(1000))]
    return {"n": int(ok.sum()), "ece": ece(yp[ok], pm[ok]),
            "ci": [float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))]}


def _shown(bundle_dir: Path) -> str:
    """The bundle as the report names it: relative to the repository where it lies inside."""
    bundle_dir = bundle_dir.resolve()
    return str(bundle_dir.relative_to(HERE.parent) if bundle_dir.is_relative_to(HERE.parent) else bundle_dir)


if __name__ == "__main__":
    sys.exit(main())
