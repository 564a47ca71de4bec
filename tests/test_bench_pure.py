"""Pure functions of the benchmark harness: percentiles, MAC counts, energy labels, verdicts, parsers."""
import json
import math

import numpy as np
import pytest

from selfmis.benchmarks import energy as E
from selfmis.benchmarks.accuracy import categorise, find_mi_auroc
from selfmis.benchmarks.macs import conv_macs, linear_macs
from selfmis.benchmarks.machine import peak_estimate
from selfmis.benchmarks.stats import percentile, ratio, summarize
from selfmis.benchmarks.targets import TARGETS, evaluate_targets, format_verdict, verdict


# --------------------------------------------------------------------------- stats

@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 99, 100])
def test_percentile_matches_numpy_linear(q):
    rng = np.random.default_rng(1)
    for n in (1, 2, 7, 100, 1001):
        x = rng.exponential(size=n)
        assert percentile(x, q) == pytest.approx(float(np.percentile(x, q)), rel=1e-12, abs=1e-15)


def test_percentile_known_values_and_errors():
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([10, 20], 99) == pytest.approx(19.9)
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_summarize_scales_units_and_handles_empty():
    s = summarize([0.001, 0.002, 0.003], scale=1e3)
    assert s["n"] == 3 and s["p50"] == pytest.approx(2.0) and s["min"] == pytest.approx(1.0)
    assert s["max"] == pytest.approx(3.0) and s["mean"] == pytest.approx(2.0) and s["std"] == pytest.approx(1.0)
    assert summarize([]) == {"n": 0}


def test_ratio():
    assert ratio(10, 2) == 5
    assert ratio(None, 2) is None and ratio(1, 0) is None and ratio(1, None) is None


# --------------------------------------------------------------------------- MACs

def test_conv_and_linear_formulas():
    # 1 -> 4 channels, kernel 3, 10 outputs: 4 * 10 * 1 * 3
    assert conv_macs(1, 4, 3, 10) == 120
    # depthwise 8 channels (groups=8), kernel 7, 50 outputs: 8 * 50 * 1 * 7
    assert conv_macs(8, 8, 7, 50, groups=8) == 2800
    # 2-D kernel as a tuple
    assert conv_macs(2, 3, (3, 3), 4) == 3 * 4 * 2 * 9
    assert linear_macs(16, 11) == 176
    with pytest.raises(ValueError):
        conv_macs(3, 4, 3, 10, groups=2)


def test_count_torch_on_a_known_model():
    torch = pytest.importorskip("torch")
    from torch import nn

    from selfmis.benchmarks.macs import count_torch

    model = nn.Sequential(
        nn.Conv1d(1, 4, 3, padding=1),            # 10 out: 4*10*1*3 = 120
        nn.ReLU(),
        nn.Conv1d(4, 4, 5, stride=2, padding=2, groups=4),  # 5 out: 4*5*1*5 = 100
        nn.Conv1d(4, 6, 1),                       # 5 out: 6*5*4 = 120
        nn.Flatten(),
        nn.Linear(30, 2),                         # 60
    )
    c = count_torch(model, (1, 1, 10))
    assert [m for _, _, m in c["layers"]] == [120, 100, 120, 60]
    assert c["macs"] == 400
    assert c["params"] == sum(p.numel() for p in model.parameters())
    assert [k for _, k, _ in c["layers"]] == ["conv", "depthwise", "conv", "linear"]
    del torch


def test_count_tflite_agrees_with_torch_on_the_standin():
    pytest.importorskip("torch")
    pytest.importorskip("ai_edge_litert")
    from selfmis.benchmarks.artefacts import load_torch_model
    from selfmis.benchmarks.macs import count_tflite, count_torch
    from selfmis.benchmarks.standin import standin_files

    f = standin_files()
    t = count_torch(load_torch_model("student-file", f["torch"]), (1, 1, 500))
    for key in ("tflite_fp32", "tflite_int8"):
        c = count_tflite(f[key])
        assert c["macs"] == t["macs"] > 0
        assert c["params"] == t["params"]


def test_peak_estimate_is_labelled():
    p = peak_estimate(["avx2", "fma"], 2000.0)
    assert p["macs_per_s"] == 2000e6 * 8 * 2 and "theoretical" in p["method"] and "AVX2" in p["method"]
    assert peak_estimate(["asimd"], 1500.0)["macs_per_s"] == 1500e6 * 4 * 2
    assert peak_estimate([], None)["macs_per_s"] is None


# --------------------------------------------------------------------------- energy

def test_energy_figures_always_carry_their_method():
    f = E.estimate_from_cpu(0.002, 1.5, per="beat")
    assert f["method"] == "cpu-time x board-watts" and f["joules"] == pytest.approx(0.003)
    assert "0.002 CPU s x 1.5 W" in f["detail"]
    s = E.format_energy(f)
    assert s == "3 mJ per beat [cpu-time x board-watts]"
    assert E.format_energy(None) == "n/a"
    with pytest.raises(ValueError):
        E.energy_figure(1.0, "guess")
    with pytest.raises(ValueError):
        E.estimate_from_cpu(1.0, 0)


def test_rapl_reads_a_fake_powercap_tree(tmp_path):
    z = tmp_path / "intel-rapl:0"
    z.mkdir()
    (z / "energy_uj").write_text("1000\n")
    (z / "max_energy_range_uj").write_text("5000\n")
    (z / "name").write_text("package-0\n")
    sub = tmp_path / "intel-rapl:0:0"  # a sub-zone: not counted twice
    sub.mkdir()
    (sub / "energy_uj").write_text("7\n")
    r = E.Rapl(str(tmp_path))
    assert r.available and len(r.zones) == 1
    assert r.joules_between([1000], [4000]) == pytest.approx(0.003)
    assert r.joules_between([4000], [1000]) == pytest.approx(0.002)  # counter wrapped at 5000
    assert not E.Rapl(str(tmp_path / "none")).available


def test_ina219_bus_address_and_missing_smbus(monkeypatch):
    assert E.parse_bus_addr("1:0x40") == (1, 0x40)
    with pytest.raises(ValueError):
        E.parse_bus_addr("0x40")
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name == "smbus2":
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(RuntimeError, match="smbus2"):
        E.Ina219(1, 0x40)


# --------------------------------------------------------------------------- targets

def test_verdicts():
    assert verdict(12, ">=", 10) is True and verdict(9.99, ">=", 10) is False
    assert verdict(20, "<=", 20) is True and verdict(20.1, "<=", 20) is False
    assert verdict(None, "<=", 20) is None
    with pytest.raises(ValueError):
        verdict(1, "==", 1)


def test_evaluate_targets_covers_every_target_and_says_not_measured():
    rows = evaluate_targets({"int8_speedup_vs_torch": 12.5, "rss_peak_mb": 95.0}, {"rss_peak_mb": "wait4"})
    assert [r["key"] for r in rows] == list(TARGETS)
    by = {r["key"]: r for r in rows}
    assert by["int8_speedup_vs_torch"]["met"] is True
    assert by["rss_peak_mb"]["met"] is False and by["rss_peak_mb"]["source"] == "wait4"
    assert by["streaming_rtf"]["met"] is None
    assert format_verdict(by["int8_speedup_vs_torch"]).startswith("MET: 12.5 x")
    assert format_verdict(by["rss_peak_mb"]).startswith("NOT MET: 95 MB")
    assert format_verdict(by["streaming_rtf"]).startswith("NOT MEASURED")


# --------------------------------------------------------------------------- accuracy files

def test_find_mi_auroc_in_the_layouts_we_meet():
    quantize_like = {"results": {"teacher": {"MI": {"auroc": 0.91, "auroc_ci": [0.88, 0.93]}},
                                 "student_int8_tflite": {"MI": {"auroc": 0.89}, "NORM": {"auroc": 0.95}}}}
    found = find_mi_auroc(quantize_like)
    assert ("/results/teacher/MI/auroc", 0.91, [0.88, 0.93]) in found
    assert ("/results/student_int8_tflite/MI/auroc", 0.89, None) in found
    assert len(found) == 2
    card_like = {"auroc": {"MI": {"auroc": 0.9, "auroc_ci": [0.8, 0.95]}}}
    assert find_mi_auroc(card_like) == [("/auroc/MI", 0.9, [0.8, 0.95])]
    assert find_mi_auroc({"runs": [{"mi_auroc": 0.7}]}) == [("/runs[0]/mi_auroc", 0.7, None)]
    assert find_mi_auroc({"MI": {"auroc": {"value": 0.8, "ci": [0.7, 0.9]}}}) == [("/MI/auroc", 0.8, [0.7, 0.9])]
    experiments_like = {"methods": {"twelve_lead": {"MI": {"fold10_mean": 0.9, "fold10_seed0_ci": [0.85, 0.94]},
                                                    "IMI": {"fold10_mean": 0.8}},
                                    "selfmis": {"MI": {"fold10_mean": 0.86, "cv_pooled_auroc": 0.84}}}}
    assert find_mi_auroc(experiments_like) == [("/methods/twelve_lead/MI/fold10_mean", 0.9, [0.85, 0.94]),
                                                ("/methods/selfmis/MI/fold10_mean", 0.86, None)]


def test_categorise():
    assert categorise("/results/student_int8_tflite/MI") == "student-int8"
    assert categorise("/results/student_fp32_tflite/MI") == "student-fp32"
    assert categorise("/results/student_torch/MI") == "student-fp32"
    assert categorise("selfmis_lead1/MI") == "selfmis-lead1"
    assert categorise("teacher_12lead/MI") == "teacher"
    assert categorise("/methods/twelve_lead/MI/fold10_mean") == "teacher"
    assert categorise("/methods/selfmis/MI/fold10_mean") == "selfmis-lead1"
    assert categorise("/results/teacher/MI/auroc") == "teacher"
    assert categorise("/methods/scratch/MI/fold10_mean") is None
    assert categorise("something") is None


# --------------------------------------------------------------------------- streaming helpers

def test_wfdb16_round_trip_and_synthetic_rate(tmp_path):
    from selfmis.benchmarks.streaming import parse_jsonl, write_wfdb16
    from selfmis.simulate import synthetic_ecg
    from selfmis.readers import read_record

    x = synthetic_ecg(120, 10.0, fs=500.0)
    stem = write_wfdb16(tmp_path / "syn", x, 500.0)
    rec = read_record(str(stem))
    assert rec.fs == 500.0 and rec.lead("I").shape == x.shape
    assert np.abs(rec.lead("I") - x).max() <= 0.0005 + 1e-6  # 1 uV steps
    # R peaks (> 0.7 mV local maxima): 120 bpm over 10 s starting at 0.4 s -> 20 beats
    peaks = [i for i in range(1, len(x) - 1) if x[i] > 0.7 and x[i] >= x[i - 1] and x[i] > x[i + 1]]
    assert len(peaks) == 20

    text = "\n".join(json.dumps(e) for e in (
        {"type": "beat", "t": 1}, {"type": "decision", "latency_ms": 2.5}, {"type": "decision", "latency_ms": None},
        {"type": "summary", "beats": 1})) + "\nnot json\n"
    p = parse_jsonl(text)
    assert p["beats"] == 1 and p["decisions"] == 2 and p["latencies_ms"] == [2.5]
    assert p["summary"] == {"type": "summary", "beats": 1}
    assert math.isfinite(p["latencies_ms"][0])


# --------------------------------------------------------------------------- headline figures from a result

def _row(id_, runtime, model, precision, threads, p50):
    return {"id": id_, "runtime": runtime, "model": model, "precision": precision, "threads": threads,
            "steady_ms": {"p50": p50}}


def test_headline_values_pick_the_right_figures():
    from selfmis.benchmarks.run import headline_values, speedups

    rows = [_row("teacher/torch-fp32/1t", "torch", "teacher", "fp32", 1, 2.0),
            _row("student/torch-fp32/1t", "torch", "student", "fp32", 1, 1.0),
            _row("student/tflite-int8/xnnpack/1t", "tflite", "student", "int8", 1, 0.05),
            _row("student/tflite-int8/builtin/1t", "tflite", "student", "int8", 1, 0.2),
            _row("student/tflite-int8/xnnpack/2t", "tflite", "student", "int8", 2, 0.01)]
    res = {"latency": {"rows": rows},
           "streaming": {"replay": {"rtf": 2500.0, "latency_p99_ms": 4.0, "rss_peak_mb": 90.0, "ecg_s": 3600},
                         "virtual_device": {"latency_p99_ms": 12.0, "rss_peak_mb": 50.0, "ecg_s": 60}},
           "imports": {"modules": {"selfmis.edge_runtime": {"median_s": 0.01},
                                   "edge-run ready": {"median_s": 0.2, "method": "m"}}}}
    v, src, _ = headline_values(res)
    assert v["int8_speedup_vs_torch"] == pytest.approx(20.0)       # best 1-thread int8, same model
    assert v["int8_speedup_vs_teacher_torch"] == pytest.approx(40.0)
    assert v["streaming_rtf"] == 2500.0
    assert v["decision_latency_p99_ms"] == 12.0                     # worse of replay and device
    assert "4.00" in src["decision_latency_p99_ms"] and "12.00" in src["decision_latency_p99_ms"]
    assert v["runtime_import_s"] == 0.2                             # CLI + interpreter, not the bare package
    assert v["rss_peak_mb"] == 50.0 and "90.0" in src["rss_peak_mb"]  # device run judged, replay shown
    sp = speedups(rows)
    assert sp["student/tflite-int8/xnnpack/2t vs student/torch-fp32/1t"] == pytest.approx(100.0)
    assert "student/tflite-int8/xnnpack/2t vs student/torch-fp32/2t" not in sp   # no 2-thread torch row
    # nothing measured: nothing claimed
    v, _, _ = headline_values({})
    assert v == {}


def test_a_claim_says_where_its_interval_lies():
    rows = evaluate_targets({"int8_speedup_vs_torch": 12.0}, {}, {"int8_speedup_vs_torch": [9.0, 14.0]})
    r = rows[0]
    assert r["met"] is True and r["interval_verdict"] == "straddles the target"
    assert "point estimate; 95% CI 9-14 x: straddles the target" in format_verdict(r)
    r = evaluate_targets({"int8_speedup_vs_torch": 12.0}, {}, {"int8_speedup_vs_torch": [11.0, 14.0]})[0]
    assert r["interval_verdict"] == "all of it meets"


def test_bootstrap_ratio_over_rounds():
    from selfmis.benchmarks.latency import bootstrap_ratio

    rng = np.random.default_rng(0)
    rounds = np.repeat(np.arange(50), 20)
    load = np.repeat(rng.uniform(1.0, 1.5, 50), 20)          # shared background load per round
    a = 10.0 * load * rng.uniform(0.95, 1.05, rounds.size)
    b = 1.0 * load * rng.uniform(0.95, 1.05, rounds.size)
    point, ci = bootstrap_ratio(a, rounds, b, rounds, n_boot=300)
    assert point == pytest.approx(float(np.median(a) / np.median(b)), rel=0.01)
    assert ci[0] <= point <= ci[1] and ci[0] < 10.0 * 1.1 and ci[1] > 10.0 * 0.9
    # the point is the interval's own estimator on the rounds as measured: inside its interval
    for seed in range(5):
        r = np.random.default_rng(seed)
        a2, b2 = a * r.uniform(0.8, 1.2, a.size), b * r.uniform(0.8, 1.2, b.size)
        p2, c2 = bootstrap_ratio(a2, rounds, b2, rounds, n_boot=200, seed=seed)
        assert c2[0] <= p2 <= c2[1]
    # too few common rounds: no interval
    assert bootstrap_ratio(a[:20], rounds[:20], b[:20], rounds[:20])[1] is None
