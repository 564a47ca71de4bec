"""The model as plain C (``selfmis deploy export-c --engine plain``): bit-exact to TFLite Micro, within 1 LSB
of LiteRT, compiles for the host and for a Cortex-M4F, and refuses what it does not implement.

Parity data (measured on the 2-core dev machine: loading all 1,987 records costs ~40 s and the three
engines ~35 s per bundle, so CI does not run every window):

* always: every window of the nine PTB-XL records shipped in the repository (54 windows);
* with the shared subset: a fixed stratified subset, 10 MI and 10 non-MI records of each of the 10
  strat_folds (lowest ecg_ids; 200 records, 1,200 windows), ~20 s in all;
* every window of the subset (1,987 records, 11,922 windows) is the committed study
  ``benchmarks/results/wearable/model_parity.{json,md}`` (``python -m selfmis.benchmarks.wearable_model``),
  which runs the same functions.
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from selfmis.bundle import load_bundle
from selfmis.edge_runtime.models import MODELS_DIR
from selfmis.exit_codes import ExitCode
from selfmis.firmware_bridge.c_model import UnsupportedModelError, export_plain_c, quantize_multiplier

wm = pytest.importorskip("selfmis.benchmarks.wearable_model")  # needs the train extra (windows) + tflite-micro

BUNDLES = sorted(p.parent for p in MODELS_DIR.glob("*/card.json"))
IDS = [b.name for b in BUNDLES]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} is not installed (CI installs it: .ci/run); this check must not be skipped"
    return path


def _check(rep: dict) -> None:
    assert rep["windows"] > 0
    assert rep["tflite_micro"]["outputs_differing"] == 0, rep
    assert rep["litert_builtin"]["max_lsb"] <= 1, rep
    assert rep["ok"]


@pytest.fixture(scope="module")
def bundled_windows(bundled_ptbxl):
    return wm.load_windows(bundled_ptbxl)


@pytest.mark.parametrize("fuse", [True, False], ids=["pad-folded", "pad-as-step"])
@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_plain_equals_tflite_micro_on_the_bundled_records(bundle, fuse, bundled_windows, tmp_path):
    """Both forms: PADs folded into the convolutions (the export; border taps skipped as TFLite does) and
    PADs kept as steps (every tap inside: the folded-offset interior path only)."""
    _need("gcc")
    rep = wm.parity(bundle, bundled_windows.X, tmp_path, fuse=fuse)
    assert rep["windows"] == len(bundled_windows.X) == 54
    _check(rep)


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_plain_equals_tflite_micro_on_a_stratified_subset(bundle, shared_ptbxl, tmp_path):
    _need("gcc")
    w = wm.load_windows(shared_ptbxl, wm.stratified_ids(shared_ptbxl))
    assert w.n_records == 200 and int(w.Y[:, list(w.tasks).index("MI")].sum()) == 100
    rep = wm.parity(bundle, w.X, tmp_path)
    print(f"{bundle.name}: {rep['windows']} windows, {rep['outputs']} outputs; differing from TFLM "
          f"{rep['tflite_micro']['outputs_differing']}, from LiteRT {rep['litert_builtin']['outputs_differing']} "
          f"(max {rep['litert_builtin']['max_lsb']} LSB)")
    _check(rep)


def test_a_perturbed_model_is_caught(bundled_windows, tmp_path):
    """The comparison can fail: one weight changed in the generated C gives different outputs."""
    _need("gcc")
    b = load_bundle(BUNDLES[0])
    exe = wm.build_host(b.model_path, tmp_path)
    src = tmp_path / "smx_model.c"
    text = src.read_text()
    i = text.index("_filter[")
    j = text.index("{", i) + 1
    k = text.index(",", j)
    first = int(text[j:k])
    src.write_text(text[:j] + f"\n    {first + 60 if first < 60 else first - 60}" + text[k:])
    subprocess.run(["gcc", *wm.HOST_FLAGS, "-I", str(tmp_path), str(wm.HOST_HARNESS), str(src),
                    str(tmp_path / "selfmis_kernels.c"), "-o", str(exe)], check=True)
    from selfmis.quantize.micro import MicroModel
    m = MicroModel(b)
    plain = wm.run_plain(exe, m.quantize(bundled_windows.X), 11)
    assert (plain != m.predict_raw(bundled_windows.X)).any()


@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_generated_code_compiles_strictly_for_host_and_cortex_m4(bundle, tmp_path):
    gcc, arm = _need("gcc"), _need("arm-none-eabi-gcc")
    info = export_plain_c(load_bundle(bundle).model_path, tmp_path)
    for src in ("smx_model.c", "selfmis_kernels.c"):
        subprocess.run([gcc, *wm.HOST_FLAGS, "-pedantic", "-c", str(tmp_path / src), "-o", str(tmp_path / "h.o")],
                       check=True)
        subprocess.run([arm, *wm.M4_FLAGS, "-c", str(tmp_path / src), "-o", str(tmp_path / "m.o")], check=True)
    h = (tmp_path / "smx_model.h").read_text()
    for needle in ("#define SMX_MODEL_INPUT_LEN 500", "#define SMX_MODEL_OUTPUT_LEN 11",
                   f"#define SMX_MODEL_ARENA_BYTES {info['arena_bytes']}", "extern const float smx_model_input_scale;",
                   "extern const int32_t smx_model_output_zero_point;",
                   "int smx_model_invoke(const int8_t *input, int8_t *output);"):
        assert needle in h
    c = (tmp_path / "smx_model.c").read_text()
    assert "malloc" not in c and "float" not in c.split("smx_model_output_zero_point =")[1]
    # every PAD of the students feeds one convolution with the zero point as pad value: all folded in
    unfused = export_plain_c(load_bundle(bundle).model_path, tmp_path / "unfused", fuse=False)
    assert "PAD" in unfused["ops"] and "PAD" not in info["ops"] and info["fused"]
    assert info["n_steps"] < unfused["n_steps"] and info["arena_bytes"] < unfused["arena_bytes"]
    fp = wm.m4_footprint(load_bundle(bundle).model_path, tmp_path / "m4")
    assert fp["ram_bytes"] == fp["arena_bytes"] == info["arena_bytes"]  # the arena is the only static RAM
    assert fp["arena_bytes"] < fp["activation_bytes_without_reuse"]
    assert 0 < fp["stack_bytes_upper"] < 512


def test_quantize_multiplier_is_tflites():
    assert quantize_multiplier(0.5) == (1 << 30, 0)
    assert quantize_multiplier(1.0) == (1 << 30, 1)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(2.0 ** -40) == (0, 0)            # shift < -31: TFLite stores zero
    assert quantize_multiplier(1 - 2.0 ** -33) == (1 << 30, 1)  # q rounds up to 2^31: halved, shift + 1
    m, s = quantize_multiplier(0.0123)
    assert abs(m * 2.0 ** (s - 31) - 0.0123) < 1e-9


def _mbqm_reference(x: int, m: int, shift: int) -> int:
    """TFLite's MultiplyByQuantizedMultiplier (double rounding), in Python integers."""
    left, right = max(shift, 0), max(-shift, 0)
    a = (x << left) & 0xFFFFFFFF
    a = a - (1 << 32) if a >= 1 << 31 else a
    if a == m == -(1 << 31):
        hi = (1 << 31) - 1
    else:
        ab = a * m
        nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
        num = ab + nudge
        hi = abs(num) // (1 << 31) * (1 if num >= 0 else -1)  # C division truncates toward zero
    mask = (1 << right) - 1
    rem = hi & mask
    thr = (mask >> 1) + (1 if hi < 0 else 0)
    return (hi >> right) + (1 if rem > thr else 0)


def test_c_requantisation_matches_tflite_rounding(tmp_path):
    """smx_mbqm against TFLite's integer rounding on random and edge values (ties, negatives, saturation)."""
    gcc = _need("gcc")
    src = tmp_path / "t.c"
    src.write_text('#include <stdio.h>\n#include "selfmis_kernels.h"\nint main(void){long x,m,s;'
                   'while(scanf("%ld %ld %ld",&x,&m,&s)==3)printf("%ld\\n",(long)smx_mbqm((int32_t)x,(int32_t)m,'
                   '(int32_t)s));return 0;}\n')
    subprocess.run([gcc, *wm.HOST_FLAGS, "-I", str(wm.KERNELS_DIR), str(src), str(wm.KERNELS_DIR / "selfmis_kernels.c"),
                    "-o", str(tmp_path / "t")], check=True)
    rng = np.random.default_rng(0)
    cases = [(-(1 << 31), -(1 << 31), 0), (-(1 << 31), 1 << 30, -1), (3, 1 << 30, -1), (-3, 1 << 30, -1),
             (5, 1 << 30, -2), (-5, 1 << 30, -2), ((1 << 31) - 1, (1 << 31) - 1, -31), (-1, 1 << 30, 0)]
    for _ in range(3000):
        cases.append((int(rng.integers(-(1 << 31), 1 << 31)), int(rng.integers(1 << 30, 1 << 31)),
                      int(rng.integers(-31, 2))))
    for _ in range(1000):  # accumulator-sized values, as the kernels see them
        cases.append((int(rng.integers(-(1 << 20), 1 << 20)), int(rng.integers(1 << 30, 1 << 31)),
                      int(rng.integers(-12, 1))))
    p = subprocess.run([str(tmp_path / "t")], input="\n".join(f"{x} {m} {s}" for x, m, s in cases),
                       capture_output=True, text=True, check=True)
    got = [int(v) for v in p.stdout.split()]
    assert got == [_mbqm_reference(*c) for c in cases]


def _patch(model_bytes: bytes, *, op_code=None, conv_activation=None) -> bytes:
    """Edit a .tflite in place: the first FULLY_CONNECTED opcode -> ``op_code``, or every CONV_2D's fused
    activation -> ``conv_activation`` (fields present in the shipped files, so no re-serialisation)."""
    import tflite
    data = bytearray(model_bytes)
    m = tflite.Model.GetRootAs(bytes(data), 0)
    if op_code is not None:
        for i in range(m.OperatorCodesLength()):
            tab = m.OperatorCodes(i)._tab
            if m.OperatorCodes(i).BuiltinCode() == tflite.BuiltinOperator.FULLY_CONNECTED:
                assert tab.Offset(10) and tab.Offset(4)
                struct.pack_into("<i", data, tab.Pos + tab.Offset(10), op_code)
                struct.pack_into("<b", data, tab.Pos + tab.Offset(4), min(op_code, 127))
    if conv_activation is not None:
        sg = m.Subgraphs(0)
        for k in range(sg.OperatorsLength()):
            op = sg.Operators(k)
            if op.BuiltinOptionsType() == tflite.BuiltinOptions.Conv2DOptions:
                t = op.BuiltinOptions()
                o = tflite.Conv2DOptions()
                o.Init(t.Bytes, t.Pos)
                assert o._tab.Offset(10)
                struct.pack_into("<b", data, o._tab.Pos + o._tab.Offset(10), conv_activation)
    return bytes(data)


@pytest.mark.parametrize("what,needle", [("op", "TANH"), ("act", "fused activation TANH")])
def test_unsupported_operator_or_option_is_refused(what, needle, tmp_path):
    import tflite
    src = load_bundle(BUNDLES[-1]).model_path.read_bytes()
    bad = tmp_path / "bad.tflite"
    kw = {"op_code": tflite.BuiltinOperator.TANH} if what == "op" else \
        {"conv_activation": tflite.ActivationFunctionType.TANH}
    bad.write_bytes(_patch(src, **kw))
    with pytest.raises(UnsupportedModelError, match=needle) as e:
        export_plain_c(bad, tmp_path / "out")
    assert e.value.exit_code == ExitCode.MODEL and not (tmp_path / "out" / "smx_model.c").exists()
    p = subprocess.run([sys.executable, "-m", "selfmis.cli", "deploy", "export-c", "--engine", "plain", str(bad),
                        str(tmp_path / "cli")], capture_output=True, text=True, timeout=120)
    assert p.returncode == ExitCode.MODEL, p.stderr
    assert needle in p.stderr and "bad.tflite" in p.stderr and p.stdout == ""


def test_cli_engines(tmp_path):
    """--engine plain writes the C model; tflm (the default) still writes the TFLite Micro array."""
    bundle = str(BUNDLES[-1])
    for args, files in ((["--engine", "plain"], ["smx_model.h", "smx_model.c", "selfmis_kernels.h",
                                                 "selfmis_kernels.c"]),
                        (["--engine", "tflm"], ["model_data.h", "model_data.cc"]),
                        ([], ["model_data.h", "model_data.cc"])):
        out = tmp_path / ("x".join(args) or "default")
        p = subprocess.run([sys.executable, "-m", "selfmis.cli", "deploy", "export-c", *args, bundle, str(out)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert sorted(f.name for f in out.iterdir()) == sorted(files)
    assert "kGModelTensorArenaSize" in (tmp_path / "default" / "model_data.h").read_text()
