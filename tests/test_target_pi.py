"""``make target-pi`` pieces that run without an emulated image: the probe on the real interpreter,
the event-by-event comparison, mirror parsing, record choice, the looped record, the report;
and (marker ``pi_image``, not in ``make test``) one image's install + one record's equality."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from selfmis.benchmarks import pi_compare as C
from selfmis.benchmarks import pi_probe, pi_report, pi_tree
from selfmis.benchmarks.pi_gateway import README_COMMANDS, write_looped_record
from selfmis.benchmarks.target_pi import EXTRAS, README_INSTALL, REPO, SAMPLE, select_records
from selfmis.bundle import BundleError
from selfmis.edge_runtime.interpreter import KERNELS, TFLiteModel
from selfmis.edge_runtime.models import default_bundle_dir
from selfmis.readers import read_record

REC = str(SAMPLE / "records500" / "00000" / "00271_hr")


@pytest.fixture(scope="module")
def probe_rows():
    """pi_probe on the bundled 500 Hz record, default and reference kernels (the real interpreter)."""
    out = {}
    for kernels in ("default", "reference"):
        os.environ.pop("SELFMIS_TFLITE_KERNELS", None)
        r = subprocess.run([sys.executable, "-m", "selfmis.benchmarks.pi_probe", "--kernels", kernels,
                            "--bundle", "default", "--bundle", "micro", REC], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        out[kernels] = C.load_dump(r.stdout.splitlines())
    return out


def test_probe_dumps_events_and_raw_int8(probe_rows):
    d = probe_rows["default"]
    assert d["platform"]["kernels"] == "default" and d["platform"]["machine"]
    row = d["rows"][("default", "records500/00000/00271_hr")]
    assert row["exit"] == 0
    kinds = [e["type"] for e in row["events"]]
    assert kinds.count("beat") > 5 and "decision" in kinds and kinds[-1] == "summary"
    scored = sum(1 for e in row["events"] if e["type"] == "beat" and "p" in e)
    assert len(row["int8"]) == scored and all(len(r) == 11 for r in row["int8"])
    assert all(-128 <= v <= 127 for r in row["int8"] for v in r)
    assert d["end"]["peak_rss_kib"] > 0


def test_same_machine_same_kernels_is_equal(probe_rows):
    r = C.compare_dumps(probe_rows["default"], probe_rows["default"])
    assert r["all_equal"] and r["bundles"]["default"]["max_lsb"] == 0 and r["bundles"]["micro"]["records"] == 1


def test_reference_kernels_are_within_a_few_lsb(probe_rows):
    r = C.compare_dumps(probe_rows["default"], probe_rows["reference"])
    for t in r["bundles"].values():
        assert t["max_lsb"] <= 3 and t["records_states_equal"] == t["records"]


def test_kernel_option_and_its_errors(monkeypatch):
    w = np.random.default_rng(0).standard_normal((3, 500)).astype(np.float32)
    ref = TFLiteModel(default_bundle_dir(), kernels="reference")
    assert ref.kernels == "reference" and ref.predict_logits(w).shape == (3, 11)
    monkeypatch.setenv("SELFMIS_TFLITE_KERNELS", "builtin")
    assert TFLiteModel(default_bundle_dir()).kernels == "builtin"
    assert TFLiteModel(default_bundle_dir(), kernels="default").kernels == "default"
    monkeypatch.setenv("SELFMIS_TFLITE_KERNELS", "fastest")
    with pytest.raises(BundleError, match="SELFMIS_TFLITE_KERNELS.*default, builtin, reference"):
        TFLiteModel(default_bundle_dir())
    monkeypatch.delenv("SELFMIS_TFLITE_KERNELS")
    assert TFLiteModel(default_bundle_dir(), use_xnnpack=False).kernels == "builtin" and set(KERNELS) >= {"reference"}


def _row(events, int8, exit_code=0, bundle="default", record="/x/records500/00000/00001_hr"):
    return {"type": "record", "bundle": bundle, "record": record, "exit": exit_code, "events": events, "int8": int8}


BEAT = {"type": "beat", "t": 1.0, "rr": 0.9, "hr": 66.7, "p": {"MI": 0.10, "NORM": 0.8}}
DEC = {"type": "decision", "t": 1.0, "probabilities": {"MI": 0.1, "NORM": 0.8}, "labels": [], "state": "off",
       "n_beats": 3, "latency_ms": 2.0}


def test_volatile_fields_and_probabilities_are_set_aside():
    a = _row([BEAT, DEC, {"type": "summary", "beats": 1, "wall_s": 0.1, "last_decision": {"probabilities": {"MI": 0.1}}}],
             [[1, 2]])
    b = _row([{**BEAT, "p": {"MI": 0.107, "NORM": 0.8}}, {**DEC, "latency_ms": 90.0},
              {"type": "summary", "beats": 1, "wall_s": 9.0, "last_decision": {"probabilities": {"MI": 0.1}}}],
             [[1, 3]])
    c = C.compare_rows(a, b)
    assert c["events_equal"] and c["decisions_equal"] and c["states_equal"]
    assert c["max_prob_diff"] == pytest.approx(0.007)
    assert c["int8"] == {"comparable": True, "invokes": 1, "values": 2, "max_lsb": 1, "values_differing": 1,
                         "invokes_differing": 1, "histogram": {"0": 1, "1": 1}}


def test_a_flipped_decision_or_a_lost_beat_is_a_difference():
    a = _row([BEAT, DEC], [[0]])
    flipped = _row([BEAT, {**DEC, "labels": ["MI"], "state": "on"}], [[5]])
    c = C.compare_rows(a, flipped)
    assert not c["events_equal"] and not c["decisions_equal"] and not c["states_equal"]
    assert c["first_difference"]["index"] == 1 and c["int8"]["max_lsb"] == 5
    lost = C.compare_rows(a, _row([DEC], [[0]]))
    assert not lost["events_equal"] and lost["first_difference"]["index"] == 0
    shorter = C.compare_rows(a, _row([BEAT], []))
    assert not shorter["events_equal"] and shorter["int8"]["comparable"] is False
    assert not C.compare_rows(a, _row([BEAT, DEC], [[0]], exit_code=5))["events_equal"]


def test_compare_dumps_totals_and_missing_records():
    ref = C.load_dump([json.dumps({"type": "platform", "machine": "x86_64"}),
                       json.dumps(_row([BEAT, DEC], [[0, 0]])),
                       json.dumps(_row([BEAT], [[0, 0]], record="/y/records500/00000/00002_hr"))])
    other = C.load_dump([json.dumps(_row([BEAT, {**DEC, "state": "on"}], [[0, 2]], record="/tree/home/pi/records/"
                                         "records500/00000/00001_hr"))])
    r = C.compare_dumps(ref, other)
    t = r["bundles"]["default"]
    assert t["records"] == 1 and t["records_events_equal"] == 0 and t["records_states_equal"] == 0
    assert t["max_lsb"] == 2 and t["lsb_records_histogram"] == {"2": 1} and not t["all_equal"]
    assert r["missing"] == [["default", "records500/00000/00002_hr"]] and not r["all_equal"]
    with pytest.raises(ValueError, match="line 2"):
        C.load_dump(['{"type": "end"}', "{oops"])


def test_debian_mirror_from_deb822_one_line_or_default(tmp_path):
    (tmp_path / "a.sources").write_text("Types: deb\nURIs: https://deb.nodesource.com/node_20.x\n")
    (tmp_path / "b.sources").write_text("Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n")
    assert pi_tree.debian_mirror(str(tmp_path / "*.sources"), "/nonexistent") == "http://mirror.example/debian"
    one = tmp_path / "sources.list"
    one.write_text("# deb http://no/debian\ndeb [arch=amd64] http://ftp.example/debian bookworm main\n")
    assert pi_tree.debian_mirror(str(tmp_path / "*.none"), str(one)) == "http://ftp.example/debian"
    assert pi_tree.debian_mirror(str(tmp_path / "*.none"), "/nonexistent") == pi_tree.DEFAULT_MIRROR


def test_select_records_bundled_first_then_evenly_spaced(tmp_path):
    for i in range(10):
        block = tmp_path / "records500" / "00000"
        block.mkdir(parents=True, exist_ok=True)
        (block / f"{i:05d}_hr.hea").write_text("x")
    recs = select_records(tmp_path, 4)
    names = [C.record_name(str(p)) for p in recs]
    bundled = sorted(SAMPLE.glob("records*/*/*.hea"))
    assert len(names) == len(set(names)) == len(bundled) + 4
    assert names[-4:] == [f"records500/00000/{i:05d}_hr" for i in (0, 2, 5, 7)]
    with pytest.raises(FileNotFoundError, match="--records asks for 11"):
        select_records(tmp_path, 11)


def test_looped_record_reads_back(tmp_path):
    dst = write_looped_record(Path(REC), tmp_path / "loop", 25)
    rec = read_record(str(dst))
    x, s = rec.lead("I"), read_record(REC).lead("I")
    assert rec.fs == 500 and rec.lead_names == ["I"] and len(x) == 12500
    np.testing.assert_allclose(x[:5000], s)
    np.testing.assert_allclose(x[5000:10000], s)
    np.testing.assert_allclose(x[10000:], s[:2500])


def _report():
    t = {"records": 2, "beats": 20, "decisions": 8, "records_events_equal": 2, "records_decisions_equal": 2,
         "records_states_equal": 2, "max_lsb": 1, "values": 100, "values_differing": 7, "max_prob_diff": 0.0071,
         "lsb_records_histogram": {"0": 1, "1": 1}, "differences": []}
    return {"commit": {"sha": "abcdef1234567890", "describe": "abcdef1 x", "dirty": False}, "command": "python -m x",
            "data": {"bundled": "core/sample_data", "subset": "ptbxl-subset/records500: 2", "records": ["a", "b"]},
            "edge_run_options": "--fast", "wheel": {"name": "selfmis_edge-0.1.0-py3-none-any.whl", "size": 1},
            "x86": {"install_s": 3.0}, "elapsed_s": 1.0,
            "images": {"bookworm-arm64": {"suite": "bookworm", "arch": "arm64", "bootstrap_s": "cached",
                                          "install": {"python": "3.11.2", "install_s": 99.0, "import_s_emulated": 2.5,
                                                      "sdists_built": [], "packages": ["numpy==2.3.5"]},
                                          "replay": {"default": {"peak_rss_kib_emulated": 204800,
                                                                 "compare": {"bundles": {"default": t}}}}}},
            "pi_latency": {"status": "unmeasured estimate", "measure_on_the_pi": "selfmis bench --quick",
                           "method": "m", "boards": {"Pi 4": {"default": 0.12}}}}


def test_report_renders_every_figure_from_the_json():
    md = pi_report.markdown(_report())
    assert "| bookworm-arm64 | `abcdef123456` | Python 3.11.2 |" in md  # each row names its commit
    assert "`abcdef123456`" in md and "bookworm-arm64" in md and "Python 3.11.2" in md and "99.0 s" in md
    assert "200.0 MB" in md and "0 LSB: 1, 1 LSB: 1 records (max 1; 7.0% of values differ)" in md
    assert "0.007100" in md and "UNMEASURED" in md and "selfmis bench --quick" in md and "~0.12 ms" in md
    assert "- none: every record" in md and "a compiler needed: no" in md
    reused = _report()
    reused["images"]["bookworm-arm64"]["install"]["reused"] = "venv from an earlier run; this run's wheel reinstalled"
    assert "| 99.0 s (an earlier run's venv) |" in pi_report.markdown(reused)
    bad = _report()
    bad["images"]["bookworm-arm64"]["replay"]["default"]["compare"]["bundles"]["default"].update(
        records_decisions_equal=1, differences=[{"record": "r1", "events_equal": False, "decisions_equal": False,
                                                 "states_equal": True, "first_difference": {"index": 3}}])
    md = pi_report.markdown(bad)
    assert "**NO**" in md and "`r1`" in md


def test_the_readme_pi_commands_are_the_ones_target_pi_runs():
    """edge_runtime/README.md's Raspberry Pi section says, word for word (sudo and line breaks aside), the
    commands target_pi runs in the emulated tree: change one and the other must follow."""
    text = (REPO / "edge_runtime" / "README.md").read_text()
    section = text[text.index("## On a Raspberry Pi"):]
    end = section.find("\n## ", 5)
    section = re.sub(r"\\\n\s*", " ", section[:end if end > 0 else None])
    said = {re.sub(r"\s+", " ", line.replace("sudo ", "")).strip() for line in section.splitlines()}
    said |= {line.split(" # ")[0].strip() for line in said}
    for cmd in (*README_INSTALL, *README_COMMANDS):
        assert cmd in said, f"edge_runtime/README.md no longer says `{cmd}` (what target_pi runs on the image)"
    assert f"[{EXTRAS}]'" in section and "/opt/selfmis/venv/bin/pip install" in section


@pytest.mark.pi_image
def test_one_image_installs_and_one_record_decides_as_on_x86(tmp_path):
    """Needs root, network to the Debian and PyPI registries: ``pytest -m pi_image``, 6.5 min with the tree
    cached in ``$SELFMIS_CACHE/pi`` (a fresh venv and pip install in it every time), ~50 min more to debootstrap it.
    The kernels the shipped cards were validated with (``reference``): what a Pi runs by default."""
    r = subprocess.run([sys.executable, "-m", "selfmis.benchmarks.target_pi", "--images", "bookworm-arm64",
                        "--records", "1", "--kernels", "reference", "--skip-gateway", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=3 * 3600)
    assert (tmp_path / "target_pi.json").exists(), f"target_pi exited {r.returncode}: {r.stderr[-3000:]}"
    report = json.loads((tmp_path / "target_pi.json").read_text())
    img = report["images"]["bookworm-arm64"]
    assert "error" not in img["install"], img["install"]["error"]
    assert img["install"]["sdists_built"] == [] and not img["install"]["heavy_packages"]
    assert img["readme_simulate"]["ok"], img["readme_simulate"]  # the README's first command, as user pi
    for t in img["replay"]["reference"]["compare"]["bundles"].values():
        assert t["records_decisions_equal"] == t["records"] >= 2, r.stderr[-2000:]
        assert t["max_lsb"] == 0, "reference kernels: the same int8 outputs on arm64 as on x86"
    assert r.returncode == 0, r.stderr[-2000:]  # target_pi's verdict: every decision and check


def _armhf_tree(ok=True):
    return {"tree": "Debian GNU/Linux 12 (bookworm) armhf (debootstrap)", "python": "3.11.2", "machine": "armv7l",
            "pip_command": "python3 -m venv /home/pi/venv && /home/pi/venv/bin/pip install 'w.whl[edge]'",
            "exit": 1 if ok else 0, "seconds_emulated": 42.0,
            "errors": ["ERROR: No matching distribution found for tflite-runtime>=2.5"] if ok else [],
            "sdists_built": [], "venv_after": ["pip==23.0.1"], "selfmis_installed": not ok,
            "apt_cache_search": {"tflite": ["libarmnntfliteparser22 - Arm NN"], "litert": []},
            "command": "python -m selfmis.benchmarks.target_pi --images bookworm-armhf"}


def test_report_renders_the_armhf_tree_install():
    rep = {**_report(), "armhf_tree": {"bookworm-armhf": _armhf_tree()}}
    md = pi_report.markdown(rep)
    assert "bookworm-armhf: the user's install on the tree" in md and "`armv7l`" in md
    assert "exit 1 after 42.0 s" in md and "`ERROR: No matching distribution found for tflite-runtime>=2.5`" in md
    assert "pip==23.0.1 (selfmis-edge installed: no)" in md and "`tflite`: libarmnntfliteparser22; `litert`: none" in md
    assert "nothing installed (or the runtime imports): **yes**" in md
    assert "nothing installed (or the runtime imports): **NO**" in pi_report.markdown(
        {**_report(), "armhf_tree": {"x": _armhf_tree(False)}})


def test_an_image_from_an_earlier_run_is_kept_with_its_command_commit_and_wheel(tmp_path):
    from types import SimpleNamespace

    from selfmis.benchmarks.target_pi import _keep_earlier_images
    old = {**_report(), "armhf_tree": {"bookworm-armhf": _armhf_tree()}}
    (tmp_path / "target_pi.json").write_text(json.dumps(old))
    new = {**_report(), "commit": {"sha": "f" * 40, "describe": "f new", "dirty": False},
           "wheel": {"name": "w.whl", "size": 2, "sha256": "9" * 64}, "images": {}}
    _keep_earlier_images(new, SimpleNamespace(out=tmp_path, images="trixie-arm64"))
    kept = new["images"]["bookworm-arm64"]
    assert kept["command"] == "python -m x" and kept["commit"]["sha"] == "abcdef1234567890"
    assert kept["data"]["records"] == ["a", "b"]  # the records it was measured on stay listed
    assert "bookworm-armhf" in new["armhf_tree"]
    md = pi_report.markdown(new)
    assert "measured by `python -m x` (an earlier run: commit `abcdef123456`" in md
    assert "| bookworm-arm64 | `abcdef123456` |" in md and "- commit: `ffffffffffff`" in md
    redo = {**new, "images": {}, "armhf_tree": {}}
    _keep_earlier_images(redo, SimpleNamespace(out=tmp_path, images="bookworm-arm64,bookworm-armhf"))
    assert redo["images"] == {} and redo["armhf_tree"] == {}


def test_verdict_needs_every_decision_and_check():
    from selfmis.benchmarks.target_pi import verdict
    good = _report()
    good["images"]["bookworm-arm64"]["replay"]["default"]["compare"]["missing"] = []
    assert verdict(good)
    good["images"]["bookworm-arm64"]["gateway"] = {"ok": False}
    assert not verdict(good)
    bad = _report()
    bad["images"]["bookworm-arm64"]["replay"]["default"]["compare"].update(missing=[])
    bad["images"]["bookworm-arm64"]["replay"]["default"]["compare"]["bundles"]["default"]["records_states_equal"] = 1
    assert not verdict(bad) and not verdict({"images": {}})
    failed = _report()
    failed["images"]["bookworm-arm64"] = {**failed["images"]["bookworm-arm64"], "install": {"error": "pip exited 1"}}
    failed["images"]["bookworm-arm64"].pop("replay")
    assert not verdict(failed)
    assert "the install FAILED: `pip exited 1`" in pi_report.markdown(failed)
    good["images"]["bookworm-arm64"].pop("gateway")
    assert verdict({**good, "armhf_tree": {"bookworm-armhf": _armhf_tree()}})
    assert not verdict({**good, "armhf_tree": {"bookworm-armhf": _armhf_tree(False)}})
