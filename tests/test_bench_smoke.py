"""``selfmis bench --quick`` end to end: it runs and writes JSON + Markdown (no timing assertions)."""
import json

import pytest


def test_quick_bench_writes_json_and_markdown(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))
    from selfmis.benchmarks.run import main

    out = tmp_path / "bench"
    rc = main(["--quick", "--out", str(out), "--stream-minutes", "1"])
    assert rc == 0
    res = json.loads((out / "bench.json").read_text())
    md = (out / "bench.md").read_text()
    # provenance: machine, versions, command, date
    m = res["machine"]
    for key in ("cpu_model", "usable_cpus", "versions", "command", "date_utc", "env"):
        assert key in m
    assert "bench" in m["command"] and "--quick" in m["command"]
    # every target has a row and a verdict word in the Markdown
    assert len(res["targets"]) == 5
    for t in res["targets"]:
        assert t["target"] in md
    assert "| target | figure | verdict |" in md
    # models are labelled real or stand-in
    assert res["models"]["student"]["source"].split(":")[0] in ("real", "stand-in")
    # latency rows (torch may be missing on an edge-only install; TFLite is not)
    ids = [r["id"] for r in res["latency"]["rows"]]
    assert any(i.startswith("student/tflite-int8") for i in ids)
    for r in res["latency"]["rows"]:
        assert r["steady_ms"]["n"] > 0 and r["steady_ms"]["p50"] <= r["steady_ms"]["p99"]
    # energy figures are labelled
    for f in res["energy"]["figures"].values():
        assert f["method"] in ("rapl", "ina219", "cpu-time x board-watts")
    # streaming went through the pipeline
    st = res["streaming"]
    assert st["replay"]["rc"] == 0 and st["replay"]["beats"] > 0
    assert st["replay"]["rss_peak_mb"] and st["replay"]["cpu_s"] is not None
    # every live path ran side by side with replay, as a real-time factor
    lp = st["live_paths"]["paths"]
    assert set(lp) == {"replay", "pty binary", "pty ASCII", "TCP", "BLE (fake Polar H10)"}
    for name, row in lp.items():
        assert row["rc"] == 0 and row["rtf"] and row["rtf_cpu"] and row["decisions"] > 0, (name, row)
    assert "pty ASCII" in md


def test_unknown_section_is_a_usage_error(tmp_path):
    from selfmis.benchmarks.run import main

    assert main(["--quick", "--out", str(tmp_path), "--skip", "nonsense"]) == 2


def test_module_entry_point_help():
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "selfmis.benchmarks.run", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0 and "--quick" in p.stdout and "--board-watts" in p.stdout


def test_edge_only_install_skips_torch_parts(tmp_path):
    """A gateway without torch/onnxruntime/TensorFlow/matplotlib: TFLite and streaming still run, with notes."""
    import os
    import subprocess
    import sys

    out = tmp_path / "edge"
    code = ("import sys\n"
            "for m in ('torch', 'onnxruntime', 'tensorflow', 'onnx', 'matplotlib'):\n"
            "    sys.modules[m] = None\n"
            "from selfmis.benchmarks.run import main\n"
            f"sys.exit(main(['--quick', '--out', {str(out)!r}, '--stream-minutes', '1', '--skip', 'coldstart']))\n")
    env = dict(os.environ, MPLCONFIGDIR=str(tmp_path / "mpl"))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads((out / "bench.json").read_text())
    ids = [r["id"] for r in res["latency"]["rows"]]
    assert ids and all("tflite" in i for i in ids)
    assert any("torch not installed" in n for n in res["notes"])
    assert res["streaming"]["replay"]["beats"] > 0
    assert (out / "bench.md").is_file()
