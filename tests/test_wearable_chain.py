"""The wearable decides on its own: the C chain against the gateway, on the host and on a
Cortex-M4F under QEMU; the DECISION frame from C to `edge-run`.

CI subset (the full >= 100-record parity is `python -m selfmis.benchmarks.wearable`): the
bundled PTB-XL records -- 00271 at 500 Hz, the same record decimated to 250 Hz, the nine
100 Hz records -- each tiled 3x (30 s, so alarms have time to go on), pushed one sample at a
time through both chains, compared beat by beat, window by window and decision by decision
with no tolerance; one record under QEMU compared byte for byte with the host build.
Missing compilers or QEMU fail these tests (CI installs them), they never skip.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from selfmis import protocol
from selfmis.benchmarks import wearable_parity as wp
from selfmis.bundle import load_bundle
from selfmis.edge_runtime.models import resolve_bundle
from selfmis.firmware_bridge import c_chain
from selfmis.firmware_bridge.c_chain import ChainConfig, ChainError

REPO = Path(__file__).resolve().parents[1]
REC500 = REPO / "core" / "sample_data" / "ptbxl" / "records500" / "00000" / "00271_hr"
REC100 = sorted((REPO / "core" / "sample_data" / "ptbxl" / "records100").glob("*/*.hea"))


def _tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: .ci/run installs it (apt-get install gcc-arm-none-eabi " \
                 "libnewlib-arm-none-eabi qemu-system-arm)"
    return path


@pytest.fixture(scope="module")
def micro():
    return load_bundle(resolve_bundle("micro"))


def _parity(bundle, x, fs, tmp, name, engine="tflm"):
    cfg = ChainConfig(fs, persist_s=5.0)  # 5-s persistence: onsets and clears within 30 s
    exe = wp.build_host(bundle, cfg, tmp / f"h{int(fs)}", model_dir=wp.model_dir_for(bundle, tmp))
    c, _ = wp.run_c(exe, x)
    py = wp.python_reference(x, fs, wp.reference_model(bundle, engine), cfg)
    return wp.compare(name, py, c, list(bundle.card.labels))


@pytest.mark.parametrize("rate", [500, 250])
def test_host_chain_equals_gateway_on_the_bundled_500hz_record(micro, tmp_path, rate):
    _tool("gcc")
    x, fs = wp.read_lead_i(REC500)
    if rate == 250:
        x, fs = x[::2].copy(), 250.0  # decimated: a real 250 Hz input through the 2/5 polyphase path
    rp = _parity(micro, np.tile(x, 3), fs, tmp_path, f"00271 at {rate} Hz")
    assert rp.beats_py >= 25 and rp.windows >= 20 and rp.decisions_py >= 15, rp
    assert rp.identical, rp


def test_decision_cadence_is_the_same_on_the_device_and_the_gateway(micro, tmp_path):
    """--every-k-beats K (edge-run) = --every-k-beats K (the chain's generator): every beat is still
    found, every K-th scored, and the decisions are the same ones (the benchmark's cheaper cadence)."""
    _tool("gcc")
    x, _ = wp.read_lead_i(REC500)
    x, fs = np.tile(x[::2], 3), 250.0
    cfg = ChainConfig(fs, persist_s=5.0, every_k_beats=3)
    exe = wp.build_host(micro, cfg, tmp_path / "k3", model_dir=wp.model_dir_for(micro, tmp_path))
    c, _ = wp.run_c(exe, x)
    rp = wp.compare("00271 at 250 Hz, every 3rd beat", wp.python_reference(x, fs, wp.reference_model(micro, "tflm"),
                                                                          cfg), c, list(micro.card.labels))
    assert rp.identical, rp
    assert rp.beats_py >= 25 and 0 < rp.windows <= rp.beats_py // 3 + 1 and rp.decisions_py >= 3, rp


def test_host_chain_against_the_gateway_as_edge_run_runs_it(micro, tmp_path):
    """LiteRT (XNNPACK) is the gateway's engine: its int8 outputs differ from the reference kernels
    the plain C engine equals by up to 2 LSB here (reported, benchmarks/results/wearable/); what the
    chain owns -- beats and the int8 windows the model is fed -- must still be identical."""
    x, fs = wp.read_lead_i(REC500)
    rp = _parity(micro, np.tile(x, 3), fs, tmp_path, "00271 at 500 Hz (LiteRT)", engine="litert")
    assert not rp.beat_diffs and rp.windows >= 20 and rp.windows_differing == 0, rp
    assert rp.decisions_py == rp.decisions_c, rp


def test_host_chain_equals_gateway_on_the_bundled_100hz_records(micro, tmp_path):
    _tool("gcc")
    cfg = ChainConfig(100.0, persist_s=5.0)
    exe = wp.build_host(micro, cfg, tmp_path / "h100", model_dir=wp.model_dir_for(micro, tmp_path))
    model = wp.reference_model(micro, "tflm")
    states, diffs = {}, []
    for hea in REC100:
        x, fs = wp.read_lead_i(hea.with_suffix(""))
        x = np.tile(x, 3)
        c, _ = wp.run_c(exe, x)
        rp = wp.compare(hea.stem, wp.python_reference(x, fs, model, cfg), c, list(micro.card.labels))
        diffs += [] if rp.identical else [rp]
        for k, v in rp.states.items():
            states[k] = states.get(k, 0) + v
    assert not diffs, diffs
    assert states.get("onset") and states.get("ongoing") and states.get("off"), states


def test_generation_and_start_refuse_what_would_decide_wrongly(micro, tmp_path):
    with pytest.raises(ChainError, match="polyphase taps"):
        c_chain.generate(micro, ChainConfig(100.0 * np.pi), tmp_path / "pi")
    with pytest.raises(ChainError, match="not a rational ratio"):
        c_chain.generate(micro, ChainConfig(333.3), tmp_path / "odd")
    with pytest.raises(ChainError, match="outside"):
        c_chain.generate(micro, ChainConfig(0.5), tmp_path / "slow")
    assert c_chain.main(["--bundle", "micro", "--fs", "333.3", "--out", str(tmp_path / "x")]) == 2
    # a chain generated for 500 Hz, started at 250 Hz: refused at start, naming both rates
    _tool("gcc")
    exe = wp.build_host(micro, ChainConfig(500.0), tmp_path / "h500", model_dir=wp.model_dir_for(micro, tmp_path))
    inp = tmp_path / "x.f32"
    np.zeros(100, "<f4").tofile(inp)
    r = subprocess.run([str(exe), "-r", "250", str(inp)], capture_output=True, text=True)
    assert r.returncode == 1 and "E 1 sample rate differs" in r.stdout and "250 Hz" in r.stdout, r.stdout
    assert "500 Hz" in r.stdout


def test_cortex_m4f_under_qemu_prints_what_the_host_prints(micro, tmp_path):
    for t in ("gcc", "arm-none-eabi-gcc", "qemu-system-arm"):
        _tool(t)
    from selfmis.benchmarks import wearable
    x, fs = wp.read_lead_i(REC500)
    cfg = ChainConfig(fs, persist_s=5.0)
    mdir = wp.model_dir_for(micro, tmp_path)
    exe = wp.build_host(micro, cfg, tmp_path / "host", model_dir=mdir)
    _, host_text = wp.run_c(exe, x)
    elf = wearable.build_target(micro, cfg, tmp_path / "m4f", model_dir=mdir)
    out = wearable.run_qemu(elf, x, tmp_path / "q")
    lines = [l for l in out.splitlines() if not l.startswith("M ")]
    assert "\n".join(lines) + "\n" == host_text
    mem = [l for l in out.splitlines() if l.startswith("M ")]
    assert mem and int(mem[0].split()[2]) > 0  # the painted stack's high-water mark


def _c_decision_bytes(tmp_path) -> bytes:
    src = tmp_path / "enc.c"
    src.write_text(r'''
#include <stdio.h>
#include "selfmis_decision.h"
int main(void) {
  double p[11] = {0.5, 0.25, 0.0, 1.0, 0.123456, 0.9, 0.01, 0.02, 0.03, 0.04, 0.6};
  sm_decision_t d = {7, 12340, 0xDEADBEEFu, 1, 8, 0x0401, 72.5f, 11, p, "balanced"};
  uint8_t out[128];
  size_t n = sm_encode_decision(out, sizeof out, &d), i;
  for (i = 0; i < n; i++) printf("%02x", out[i]);
  return n == 0;
}''')
    c = REPO / "firmware_bridge" / "c"
    exe = tmp_path / "enc"
    subprocess.run([_tool("gcc"), "-std=c99", "-Wall", "-Werror", "-I", str(c), str(src), str(c / "selfmis_decision.c"),
                    str(c / "selfmis_frame.c"), "-o", str(exe)], check=True)
    return bytes.fromhex(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout)


def test_decision_frame_c_encoder_equals_python_and_decodes(tmp_path):
    raw = _c_decision_bytes(tmp_path)
    f = protocol.DecisionFrame(seq=7, t_s=12.34, probabilities=[0.5, 0.25, 0.0, 1.0, 0.123456, 0.9, 0.01, 0.02,
                                                                 0.03, 0.04, 0.6],
                               state="onset", active=0x0401, n_beats=8, hr=72.5, bundle_id=0xDEADBEEF,
                               operating_point="balanced")
    assert raw == protocol.encode_decision(f)
    (msg,) = protocol.StreamDecoder().feed(b"\x00junk" + raw)[1:]
    assert msg.state == "onset" and msg.active == 0x0401 and msg.hr == 72.5 and msg.operating_point == "balanced"
    assert abs(msg.probabilities[4] - 0.123456) <= 0.5 / 65535
    with pytest.raises(ValueError, match="state"):
        protocol.encode_decision(protocol.DecisionFrame(seq=0, t_s=0, probabilities=[0.5], state="alarm"))


def test_edge_run_relays_a_device_decision_from_a_pty(tmp_path, micro):
    """A wearable that decides sends HELLO, then DECISION frames; `edge-run --port` relays each
    as a decision event marked on_device, labelled with its card when the bundle ids match."""
    master, slave = os.openpty()
    hello = protocol.encode_hello(protocol.Hello(fs_hz=250.0, device_id="wearable", firmware_version="decide-1"))
    bid = int(micro.card.sha256[:8], 16)
    frames = [protocol.encode_decision(protocol.DecisionFrame(
        seq=i, t_s=5.0 + i, probabilities=[0.7] + [0.1] * 10, state="onset" if i == 1 else "ongoing" if i else "off",
        active=1 if i else 0, n_beats=3 + i, hr=70.0, bundle_id=bid, operating_point="balanced")) for i in range(3)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "selfmis.edge_runtime.cli", "--port", os.ttyname(slave),
                          "--model", "micro", "--max-seconds", "6", "--retries", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        log = ""
        deadline = time.time() + 60
        while "source serial" not in log and time.time() < deadline:  # the port is open: bytes now count
            r, _, _ = select.select([p.stderr], [], [], 1.0)
            if r:
                log += p.stderr.readline()
        time.sleep(0.5)
        os.write(master, hello + b"".join(frames))
        out, err = p.communicate(timeout=60)
        err = log + err
    finally:
        p.kill()
        os.close(master)
        os.close(slave)
    ev = [json.loads(l) for l in out.splitlines() if l.strip()]
    dec = [e for e in ev if e["type"] == "decision"]
    assert len(dec) == 3, err[-2000:]
    assert all(d["on_device"] for d in dec) and [d["state"] for d in dec] == ["off", "onset", "ongoing"]
    assert dec[1]["labels"] == ["MI"] and abs(dec[1]["probabilities"]["MI"] - 0.7) < 1e-4


def test_sketch_core_builds_for_cortex_m4f_and_sends_decision_frames(micro, tmp_path):
    """ad8232_decide's per-sample work (minimal_main.c) with the same toolchain: it links without
    stdio, runs on the emulated M4F and encodes one DECISION frame per decision."""
    for t in ("arm-none-eabi-gcc", "qemu-system-arm"):
        _tool(t)
    from selfmis.benchmarks import wearable
    x, fs = wp.read_lead_i(REC500)
    x = np.tile(x[::2], 2)
    elf = wearable.build_minimal(micro, ChainConfig(250.0), tmp_path / "m", wp.model_dir_for(micro, tmp_path))
    (tmp_path / "q").mkdir()
    x.astype("<f4").tofile(tmp_path / "q" / "input.f32")
    r = subprocess.run(wearable.qemu_cmd(elf), cwd=tmp_path / "q", capture_output=True, text=True, timeout=300)
    line = next(l for l in (r.stdout + r.stderr).splitlines() if l.startswith("M stack"))
    m = dict(zip(line.split()[1::2], map(int, line.split()[2::2])))
    assert r.returncode == 0 and m["error"] == 0 and m["frames"] == m["decisions"] >= 5, line
    assert m["bytes"] == 56 * m["frames"], line  # 11 labels, "balanced": 56-byte frames (PROTOCOL.md)
    mem = wearable.memory(elf)
    assert mem["text"] < 64 * 1024 and mem["bss"] + mem["data"] + m["stack"] < 40 * 1024, (mem, m)


def test_alarm_goes_on_and_off_the_same_way_in_c_and_in_the_gateway(micro, tmp_path):
    """The nine bundled 100 Hz records of different people back to back (each twice, 180 s, with the
    jumps between them): the alarm states change as the people do -- onset, ongoing, cleared -- and
    the C chain follows the gateway through every change."""
    _tool("gcc")
    x = np.concatenate([np.tile(wp.read_lead_i(h.with_suffix(""))[0], 2) for h in REC100])
    cfg = ChainConfig(100.0, persist_s=5.0)
    exe = wp.build_host(micro, cfg, tmp_path / "h100", model_dir=wp.model_dir_for(micro, tmp_path))
    c, _ = wp.run_c(exe, x)
    rp = wp.compare("bundled 100 Hz records in sequence", wp.python_reference(x, 100.0, wp.reference_model(micro, "tflm"),
                                                                           cfg), c, list(micro.card.labels))
    assert rp.identical, rp
    assert rp.states.get("onset") and rp.states.get("cleared") and rp.states.get("ongoing"), rp.states


_ASSESS_MAIN = r"""
#include <stdio.h>
#include "selfmis_chain.h"
int main(void) {  /* blocks on stdin: int32 n, n float32, n flag bytes; prints the reason mask of each */
  int32_t n;
  smx_real x[SMX_Q_BLOCK];
  uint8_t fl[SMX_Q_BLOCK];
  while (fread(&n, 4, 1, stdin) == 1 && n <= SMX_Q_BLOCK && fread(x, 4, (size_t)n, stdin) == (size_t)n
         && fread(fl, 1, (size_t)n, stdin) == (size_t)n)
    printf("%u\n", (unsigned)smx_assess(x, fl, n));
  return 0;
}
"""


def test_quality_block_statistics_equal_the_gateways_on_hard_blocks(micro, tmp_path):
    """selfmis_quality.c computes quality.py's float64 statistics in int64 (exact when a block's
    exponents span <= 48 bits, the float64 path otherwise) and medians by selection: every
    verdict must equal assess_block's, on real blocks, on blocks at the noise threshold, and on
    blocks that force the wide-span path (values 2^-100 beside 1 mV, subnormals, signed zeros)."""
    from selfmis.edge_runtime.quality import REASONS, QualityGate
    from selfmis.edge_runtime.scoring import F_GAP, F_LEAD_OFF, F_SAT
    out = tmp_path / "q"
    c_chain.generate(micro, ChainConfig(100.0), out)
    (out / "main.c").write_text(_ASSESS_MAIN)
    exe = out / "assess"
    ch = c_chain.CHAIN_DIR
    subprocess.run([_tool("gcc"), *wp.CFLAGS, "-I", str(ch), "-I", str(out), str(out / "main.c"),
                    str(ch / "selfmis_quality.c"), str(ch / "selfmis_dsp.c"), str(out / "smx_chain_params.c"),
                    "-o", str(exe)], check=True)
    rng = np.random.default_rng(7)
    blocks = []
    for hea in REC100:
        x, _ = wp.read_lead_i(hea.with_suffix(""))
        blocks += [x[i:i + 100] for i in range(0, len(x) - 99, 37)]
    for k in range(600):  # ECG-like blocks, tails too, with noise around the 0.075 x amplitude threshold
        base = blocks[k % len(blocks)][: 100 - (k % 2) * (k % 51)].astype(np.float64)
        sd = np.ptp(base) * 0.075 * rng.uniform(0.8, 1.6)  # noise_sd estimates the sd of white noise
        blocks.append((base + rng.normal(0, sd, len(base))).astype(np.float32))
    for k in range(60):  # wide exponent spans, subnormals, signed zeros, short tails
        x = blocks[k].copy()
        x[rng.integers(0, 100, 5)] = np.float32([2.0 ** -100, -1e-42, -0.0, 0.0, 1e-38][k % 5])
        blocks += [x, x[: 50 + k % 50]]
    blocks += [np.zeros(100, np.float32), np.full(100, -0.0, np.float32), np.float32(rng.normal(0, 20, 100))]
    flags = [np.zeros(len(b), np.uint8) for b in blocks]
    for k in range(200):  # device flags: lead-off, saturation around the 2 % rule, filled gaps
        b = blocks[k][: 100 - k % 7]
        f = np.zeros(len(b), np.uint8)
        f[rng.choice(len(b), int(rng.integers(0, 5)), replace=False)] |= np.uint8([F_LEAD_OFF, F_SAT, F_GAP][k % 3])
        blocks.append(b)
        flags.append(f)
    data = b"".join(np.int32(len(b)).tobytes() + np.asarray(b, "<f4").tobytes() + f.tobytes()
                    for b, f in zip(blocks, flags))
    got = subprocess.run([str(exe)], input=data, capture_output=True, check=True).stdout.decode().split()
    gate = QualityGate(100.0)
    want = [sum(1 << REASONS.index(r) for r in gate.assess(b, f)) for b, f in zip(blocks, flags)]
    assert len(got) == len(blocks)
    assert [int(g) for g in got] == want
    assert {0, 1, 4, 8, 16} <= set(want) and sum(w == 16 for w in want) >= 50  # each verdict met


def test_host_chain_equals_gateway_through_flat_noise_gaps_and_steps(micro, tmp_path):
    """The detector's restarts after bad stretches, its search-backs after amplitude steps, gaps
    filled and flagged: the bundled 500 Hz record at 250 Hz with a flat stretch, a noise burst,
    lost samples (NaN), a baseline jump and an amplitude drop, identical in C and in the gateway."""
    _tool("gcc")
    x, _ = wp.read_lead_i(REC500)
    x = np.tile(x[::2], 3).astype(np.float32)
    rng = np.random.default_rng(3)
    x[500:1200] = x[500]                                            # flat 2.8 s: a flat block
    x[2600:2900] += rng.normal(0, 1.0, 300).astype(np.float32)      # noise burst
    x[3700:3760] = np.nan                                           # 0.24 s lost
    x[4400:] += np.float32(1.5)                                     # baseline jump
    x[5200:] *= np.float32(0.3)                                     # amplitude drop: search-backs
    cfg = ChainConfig(250.0, persist_s=5.0)
    exe = wp.build_host(micro, cfg, tmp_path / "h", model_dir=wp.model_dir_for(micro, tmp_path))
    c, text = wp.run_c(exe, x)
    py = wp.python_reference(x, 250.0, wp.reference_model(micro, "tflm"), cfg)
    rp = wp.compare("00271 at 250 Hz, hostile stretches", py, c, list(micro.card.labels))
    assert rp.identical, rp
    assert rp.beats_py >= 20 and rp.windows >= 10 and rp.decisions_py >= 5, rp
    verdicts = {int(l.split()[2]) for l in text.splitlines() if l.startswith("Q ")}
    assert {0, 8, 16} <= verdicts, verdicts  # ok, flat and noisy blocks: the detector restarted twice


_DETECT_MAIN = r"""
#include <stdio.h>
#include "selfmis_chain.h"
static smx_detector det;
int main(void) {  /* float32 samples on stdin, one push each; prints every R peak */
  float x;
  int32_t out[SMX_DET_MAX_BEATS];
  int i, n;
  smx_det_reset(&det);
  while (fread(&x, 4, 1, stdin) == 1) {
    n = smx_det_push(&det, &x, 1, out, SMX_DET_MAX_BEATS);
    if (n < 0) { printf("E\n"); return 1; }
    for (i = 0; i < n; i++) printf("%ld\n", (long)out[i]);
  }
  return 0;
}
"""


@pytest.mark.parametrize("fs", [250.0, 500.0])
def test_c_detector_equals_beats_py_at_other_model_rates(micro, tmp_path, fs):
    """selfmis_detect.c against StreamingBeatDetector at model rates the shipped bundles do not use
    (longer cascades; at 500 Hz the band-pass output is right-shifted, negative values included):
    the bundled 500 Hz record, tiled, with an amplitude drop and noise, sample by sample."""
    from selfmis.edge_runtime.beats import StreamingBeatDetector
    from selfmis.edge_runtime.quality import QualityGate
    out = tmp_path / "d"
    c_chain.generate(micro, ChainConfig(100.0), out)
    det = StreamingBeatDetector(fs, guard_s=0.5)
    dp = c_chain._detector(det, QualityGate(fs), 8)
    (out / "smx_chain_params_100.h").write_text((out / "smx_chain_params.h").read_text())
    (out / "smx_chain_params.h").write_text('#include "smx_chain_params_100.h"\n' + "".join(
        f"#undef {k}\n#define {k} {v}\n" for k, v in c_chain.detector_defines(dp).items()))
    (out / "main.c").write_text(_DETECT_MAIN)
    exe = out / "detect"
    subprocess.run([_tool("gcc"), *wp.CFLAGS, "-I", str(c_chain.CHAIN_DIR), "-I", str(out), str(out / "main.c"),
                    str(c_chain.CHAIN_DIR / "selfmis_detect.c"), "-o", str(exe)], check=True)
    x, f0 = wp.read_lead_i(REC500)
    x = np.tile(x[::int(f0 // fs)], 3)
    x[len(x) // 2:] *= np.float32(0.3)
    x += np.random.default_rng(1).normal(0, 0.02, len(x)).astype(np.float32)
    got = [int(v) for v in subprocess.run([str(exe)], input=x.astype("<f4").tobytes(), capture_output=True,
                                          check=True).stdout.split()]
    want = [r for i in range(len(x)) for r in det.push(x[i:i + 1])]
    assert dp["shift"] > 0 or fs != 500.0  # the shifted path is exercised
    assert len(want) >= 25 and got == want
