"""Generate the parameters of the on-device chain (``firmware_bridge/mcu/chain``) from a bundle.

One bundle drives the gateway and the wearable: every number the C library
uses -- the resampler's polyphase taps for the device's sample rate, the
window band-pass gains, the beat detector's spans, the quality gate, the card's
calibration, the operating point's thresholds, the alarm's persistence and
hysteresis -- is computed here with the same Python code the gateway runs
(:mod:`selfmis.preprocess`, :class:`~selfmis.edge_runtime.beats.StreamingBeatDetector`,
:class:`~selfmis.edge_runtime.decision.RollingDecision`) and written as C
(``smx_chain_params.h`` / ``.c``). Only numpy is needed.

Refused here, with a message naming what is wrong (never a silent wrong decision
on the device): a sample rate that the resampler cannot reach with a small
polyphase filter, a window whose FFT length has a prime factor the C FFT does
not implement, buffers that would not fit the fixed sizes, an unknown
calibration method, a card whose window is not what the model takes.

Usage::

    python -m selfmis.firmware_bridge.c_chain --bundle micro --fs 250 --out build/wearable/micro
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np

from selfmis.bundle import BundleError, load_bundle
from selfmis.preprocess import StreamResampler, band_gain
from ..edge_runtime.beats import StreamingBeatDetector
from ..edge_runtime.decision import DEFAULT_HYSTERESIS, DEFAULT_PERSIST_S, logit
from ..edge_runtime.models import resolve_bundle
from ..edge_runtime.quality import MAX_FILLED_GAP_S, QualityGate

__all__ = ["ChainConfig", "generate", "main", "CHAIN_DIR", "MAX_RADIX", "MAX_LABELS"]

CHAIN_DIR = Path(__file__).resolve().parent / "mcu" / "chain"
#: the C FFT has butterflies for 2 and 4 and a generic one for odd primes up to this
MAX_RADIX = 13
MAX_LABELS = 16          # the decision frame's active-label mask is 16 bits
MAX_TAPS = 4096          # resampler taps (flash): a 1000-Hz -> 100 Hz filter has 201


class ChainError(ValueError):
    """A bundle or option the device chain cannot honour; the message says which and why."""


def _c_float(v: float) -> str:
    v = float(v)
    if not math.isfinite(v):
        raise ChainError(f"non-finite parameter {v}")
    return repr(v) + "f" if "e" in repr(v) or "." in repr(v) else repr(v) + ".0f"


def _c_double(v: float) -> str:
    r = repr(float(v))
    return r if ("e" in r or "." in r) else r + ".0"


def _factors(n: int) -> list:
    out, m, p = [], n, 2
    while p * p <= m:
        while m % p == 0:
            out.append(p)
            m //= p
        p += 1
    if m > 1:
        out.append(m)
    return out


class ChainConfig:
    """The options ``edge-run`` offers for decisions, with its defaults."""

    def __init__(self, fs_in: float, operating_point=None, n_beats: int = 8, min_beats: int = 3,
                 every_k_beats: int = 1, persist_s: float = DEFAULT_PERSIST_S, persist_beats=None,
                 hysteresis: float = DEFAULT_HYSTERESIS, max_gap_s: float = MAX_FILLED_GAP_S):
        self.fs_in, self.operating_point = float(fs_in), operating_point
        self.n_beats, self.min_beats, self.every_k = int(n_beats), int(min_beats), int(every_k_beats)
        self.persist_s, self.persist_beats = float(persist_s), persist_beats
        self.hysteresis, self.max_gap_s = float(hysteresis), float(max_gap_s)


def _resampler(cfg: ChainConfig, fs: float) -> dict:
    if not (1.0 <= cfg.fs_in <= 10000.0):
        raise ChainError(f"sample rate {cfg.fs_in:g} Hz is outside 1..10000 Hz")
    rs = StreamResampler(cfg.fs_in, fs)
    if abs(rs.up / rs.down * cfg.fs_in - fs) > 1e-6 * fs:
        raise ChainError(f"{cfg.fs_in:g} Hz -> {fs:g} Hz is not a rational ratio the resampler reaches "
                         f"exactly (best {rs.up}/{rs.down}); generate for the device's exact rate")
    if not rs.identity and rs.up * rs.k > MAX_TAPS:
        raise ChainError(f"{cfg.fs_in:g} Hz -> {fs:g} Hz needs {rs.up}x{rs.k} polyphase taps "
                         f"(> {MAX_TAPS}): choose a rate with a simpler ratio to {fs:g} Hz")
    return {"identity": rs.identity, "up": rs.up, "down": rs.down, "k": rs.k if not rs.identity else 1,
            "taps": rs.phases[:, ::-1].ravel() if not rs.identity else np.zeros(1), "delay_s": rs.delay_s}


def generate(bundle, cfg: ChainConfig, out_dir) -> dict:
    """Write ``smx_chain_params.h`` and ``smx_chain_params.c`` into ``out_dir``; returns the parameters."""
    b = bundle if hasattr(bundle, "card") else load_bundle(resolve_bundle(bundle))
    card = b.card
    spec = card.spec
    fs = float(spec.fs)
    W, O = spec.window_samples, spec.beat_offset_samples
    post = W - O
    if int(np.prod(card.input.shape)) != W:
        raise ChainError(f"{b.directory}: the model takes {card.input.shape}, the card's window is {W} samples")
    if card.input.dtype != "int8" or card.output.dtype != "int8":
        raise ChainError(f"{b.directory}: the device chain needs an int8 model (input {card.input.dtype}, "
                         f"output {card.output.dtype})")
    if spec.standardise != "zscore":
        raise ChainError(f"{b.directory}: standardisation {spec.standardise!r} is not implemented in C")
    labels = list(card.labels)
    if not 1 <= len(labels) <= MAX_LABELS:
        raise ChainError(f"{b.directory}: {len(labels)} labels (the decision frame carries 1..{MAX_LABELS})")
    if cfg.n_beats < 1 or cfg.min_beats < 1 or cfg.n_beats > 64 or cfg.every_k < 1:
        raise ChainError("decision beats must be 1..64, min beats and every-k >= 1")
    rs = _resampler(cfg, fs)

    det = StreamingBeatDetector(fs, guard_s=max(0.3, post / fs))  # as Pipeline builds it
    q = QualityGate(fs)
    # one push: a device pushes 1 sample; the end-of-stream flush pushes the resampler's delay
    # plus one period (Pipeline.flush); a push yields at most max_out model-rate samples
    flush_in = int(math.ceil(rs["delay_s"] * cfg.fs_in)) + rs["down"] if not rs["identity"] else 1
    max_chunk = max(32, flush_in)
    max_out = max_chunk * rs["up"] // rs["down"] + 2
    dp = _detector(det, q, max_out)
    bp_pad = min(W - 1, int(fs))
    bp_m = W + 2 * bp_pad
    big = [p for p in _factors(bp_m) if p > MAX_RADIX]
    if big:
        raise ChainError(f"the window band-pass FFT length {bp_m} has prime factor {big[0]} "
                         f"(the C FFT handles primes up to {MAX_RADIX})")
    # an even length runs as a complex FFT of half the length (selfmis_dsp.c real_filter)
    fft_cpx = bp_m // 2 + 1 if bp_m % 2 == 0 else bp_m
    # the signal ring: what the gateway's buffer guarantees (Pipeline: the last window, one
    # second and the detector's lateness): the oldest sample a beat reads is its window's
    # start, at most guard + lateness + one push behind the newest (selfmis_chain.c checks it)
    keep = W + int(fs) + det.lateness
    ring = max(W, det.guard + O, q.block) + det.lateness + max_out + 1
    bp_gain = band_gain(bp_m, fs, spec.low_hz, spec.high_hz)

    op_name, thr = card.operating_point(cfg.operating_point)
    on = np.array([float(thr.get(l, 0.5)) for l in labels])
    off = 1.0 / (1.0 + np.exp(-(logit(on) - cfg.hysteresis))) if cfg.hysteresis else on.copy()
    cal = _calibration(card, labels)
    p = dict(
        fs_in=cfg.fs_in, fs=fs, rs=rs, W=W, O=O, post=post, labels=labels, op_name=op_name,
        on=on, off=off, cal=cal, det=det, dp=dp, q=q, fft_cpx=fft_cpx, keep=keep,
        bp_pad=bp_pad, bp_m=bp_m, bp_gain=bp_gain, ring=ring, cfg=cfg,
        max_gap=int(round(cfg.max_gap_s * fs)) if math.isfinite(cfg.max_gap_s) else -1,
        in_scale=float(card.input.scale), in_zp=int(card.input.zero_point),
        out_scale=float(card.output.scale), out_zp=int(card.output.zero_point),
        bundle=card.name, sha=card.sha256, max_chunk=max_chunk, max_out=max_out)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "smx_chain_params.h").write_text(_header(p))
    (out / "smx_chain_params.c").write_text(_source(p))
    return p


def _detector(det: StreamingBeatDetector, q: QualityGate, max_out: int) -> dict:
    """The beat detector's ``SMX_DET_*`` (StreamingBeatDetector.params() plus the C library's
    buffer sizes), checked against what the C arithmetic assumes."""
    p = det.params()
    taps = [int(t) for t in p["taps"]]
    a, m = _cascade(taps)
    if (sum(abs(t) for t in taps) * p["q_max"]) >> p["shift"] >= 2 ** 31:
        raise ChainError("the detector's band-passed signal would not fit 32 bits")
    uv = float(p["uv_per_mv"])
    if uv != int(uv) or not 1 <= uv <= 2 ** 20:
        raise ChainError(f"uv_per_mv {uv} is not an integer the C conversion multiplies exactly")
    rf, w, search, lag = p["refractory"], p["window"], p["search"], p["lag"]
    look = max(2 * rf + 1, rf + (w - 1) // 2 + search + 1, rf + w) + 1  # what a candidate looks back on
    sb = 166 * p["max_rr"] // 100
    # candidates are > refractory apart: the learning window's queue, the noise list (the
    # learning window plus two search-back intervals), the beats waiting for their guard
    qcap = p["learn"] // (rf + 1) + 2
    ncap = (p["learn"] + 2 * sb + 2 * rf) // (rf + 1) + 4
    pcap = (p["learn"] + det.lateness + p["guard"]) // rf + 4
    return {**p, "taps": taps, "a": a, "m": m, "rr0": min(int(det.fs), p["max_rr"]), "ring": 1 << (look - 1).bit_length(),
            "qcap": qcap, "ncap": ncap, "pcap": pcap, "max_beats": pcap + (max_out + q.block) // rf + 2,
            "uv_per_mv": int(uv)}


def detector_defines(dp: dict) -> dict:
    """The ``SMX_DET_*`` macros of :func:`_detector`'s parameters."""
    return {"SMX_DET_A": dp["a"], "SMX_DET_M": dp["m"],
            "SMX_DET_DELAY": dp["delay"], "SMX_DET_SHIFT": dp["shift"], "SMX_DET_WIN": dp["window"],
            "SMX_DET_SEARCH": dp["search"], "SMX_DET_REFRACTORY": dp["refractory"], "SMX_DET_T_WAVE": dp["t_wave"],
            "SMX_DET_STARTUP": dp["startup"], "SMX_DET_LEARN": dp["learn"], "SMX_DET_MAX_RR": dp["max_rr"],
            "SMX_DET_RR0": dp["rr0"], "SMX_DET_GUARD": dp["guard"], "SMX_DET_FLOOR": dp["floor"],
            "SMX_DET_LAG": dp["lag"], "SMX_DET_Q_MAX": dp["q_max"], "SMX_DET_UV_PER_MV": dp["uv_per_mv"],
            "SMX_DET_RING": dp["ring"], "SMX_DET_QCAP": dp["qcap"], "SMX_DET_NCAP": dp["ncap"],
            "SMX_DET_PCAP": dp["pcap"], "SMX_DET_MAX_BEATS": dp["max_beats"]}


def _cascade(taps: list) -> tuple:
    """``(a, m)`` such that ``taps`` = m x L (centred) - L * box_m with L = box_a * box_a (beats.py
    qrs_filter: Pan-Tompkins' low-pass minus its moving average), which selfmis_detect.c computes
    with running sums; refused when the taps are anything else."""
    n = len(taps)
    for a in range(1, n + 1):
        m = n + 2 - 2 * a
        if m < 1 or m % 2 == 0:
            continue
        lp = np.convolve(np.ones(a, np.int64), np.ones(a, np.int64))
        centre = np.zeros(n, np.int64)
        centre[(m - 1) // 2:(m - 1) // 2 + len(lp)] = m * lp
        if [int(t) for t in centre - np.convolve(lp, np.ones(m, np.int64))] == taps:
            return a, m
    raise ChainError("the detector's FIR is not Pan-Tompkins' boxcar cascade (selfmis_detect.c runs that cascade)")


def _calibration(card, labels) -> dict:
    """Per label: ("sigmoid", a, b) or ("isotonic", x, y), as ModelCard.probabilities applies them."""
    a, b = np.ones(len(labels)), np.zeros(len(labels))
    iso_x, iso_y, iso_at = [], [], []
    for j, label in enumerate(labels):
        c = card.calibration.get(label)
        if not c:
            iso_at.append((0, 0))
            continue
        method = c.get("method", "platt")
        if method == "isotonic":
            iso_at.append((len(iso_x), len(c["x"])))
            iso_x += [float(v) for v in c["x"]]
            iso_y += [float(v) for v in c["y"]]
        elif method in ("platt", "temperature"):
            a[j], b[j] = float(c["a"]), float(c.get("b", 0.0))
            iso_at.append((0, 0))
        else:
            raise ChainError(f"calibration method {method!r} of {label!r} is not implemented in C")
    return {"a": a, "b": b, "iso_x": iso_x or [0.0], "iso_y": iso_y or [0.0], "iso_at": iso_at}


def _arr(name: str, ctype: str, values, fmt) -> str:
    vals = [fmt(v) for v in values]
    lines = [", ".join(vals[i:i + 6]) for i in range(0, len(vals), 6)]
    return f"const {ctype} {name}[{len(vals)}] = {{\n  " + ",\n  ".join(lines) + "\n};\n"


def _header(p: dict) -> str:
    dp, q, rs, cfg = p["dp"], p["q"], p["rs"], p["cfg"]
    L = len(p["labels"])
    d = {
        "SMX_FS_IN": _c_double(p["fs_in"]), "SMX_FS": _c_double(p["fs"]),
        "SMX_RS_IDENTITY": int(rs["identity"]), "SMX_RS_UP": rs["up"], "SMX_RS_DOWN": rs["down"],
        "SMX_RS_K": rs["k"], "SMX_RS_DELAY_S": _c_double(rs["delay_s"]),
        "SMX_W": p["W"], "SMX_O": p["O"], "SMX_POST": p["post"], "SMX_RING": p["ring"],
        "SMX_BP_PAD": p["bp_pad"], "SMX_BP_TT": _c_double(float((np.linspace(-1.0, 1.0, p["W"]) ** 2).sum())),
        "SMX_BP_M": p["bp_m"], "SMX_FFT_CPX": p["fft_cpx"], "SMX_KEEP": p["keep"],
        **detector_defines(dp),
        "SMX_Q_BLOCK": q.block, "SMX_Q_KEEP": q.keep_blocks, "SMX_Q_FLAT_MV": "0.05",
        "SMX_Q_NOISE_RATIO": "0.075", "SMX_Q_MAX_MV": "8.0",
        "SMX_N_LABELS": L, "SMX_N_BEATS": cfg.n_beats, "SMX_MIN_BEATS": cfg.min_beats,
        "SMX_EVERY_K": cfg.every_k, "SMX_MAX_GAP": p["max_gap"],
        "SMX_PERSIST_S": _c_double(cfg.persist_s),
        "SMX_PERSIST_BEATS": int(cfg.persist_beats) if cfg.persist_beats is not None else 0,
        "SMX_IN_SCALE": _c_float(p["in_scale"]), "SMX_IN_ZP": p["in_zp"],
        "SMX_OUT_SCALE": _c_float(p["out_scale"]), "SMX_OUT_ZP": p["out_zp"],
        "SMX_MAX_RADIX": MAX_RADIX, "SMX_MAX_CHUNK": p["max_chunk"], "SMX_MAX_OUT": p["max_out"],
    }
    lines = ["/* Generated by selfmis.firmware_bridge.c_chain from bundle "
             f"{p['bundle']} (sha256 {p['sha'][:16]}...) for {p['fs_in']:g} Hz input.",
             f" * Operating point {p['op_name']!r}; labels {', '.join(p['labels'])}.",
             " * Do not edit: regenerate (python -m selfmis.firmware_bridge.c_chain --help). */",
             "#ifndef SMX_CHAIN_PARAMS_H", "#define SMX_CHAIN_PARAMS_H", "#include <stdint.h>", ""]
    lines += [f"#define {k} {v}" for k, v in d.items()]
    lines += [f'#define SMX_OPERATING_POINT "{p["op_name"]}"', f'#define SMX_BUNDLE_NAME "{p["bundle"]}"',
              f'#define SMX_BUNDLE_SHA256 "{p["sha"]}"',
              f'#define SMX_BUNDLE_ID 0x{(p["sha"] or "0" * 8)[:8]}u  /* the DECISION frame\'s bundle_id */', "",
              "extern const float smx_rs_taps[];", "extern const float smx_bp_gain[];",
              "extern const double smx_thr_on[], smx_thr_off[], smx_cal_a[], smx_cal_b[];",
              "extern const double smx_iso_x[], smx_iso_y[];", "extern const uint16_t smx_iso_at[][2];",
              "extern const char *const smx_labels[];", "", "#endif", ""]
    return "\n".join(lines)


def _source(p: dict) -> str:
    cal = p["cal"]
    f32 = lambda v: _c_float(np.float32(v))  # noqa: E731
    k = np.arange(p["bp_m"] // 2 + 1)
    tw = np.exp(-2j * np.pi * k / p["bp_m"])
    tw_rows = ",\n  ".join(f"{{{f32(v.real)}, {f32(v.imag)}}}" for v in tw)
    parts = ['/* Generated by selfmis.firmware_bridge.c_chain: do not edit. */',
             '#include "selfmis_chain.h"', "",
             f"/* exp(-2 pi i k / {p['bp_m']}): the window band-pass FFT's twiddles */",
             f"const smx_cpx smx_bp_tw[{len(tw)}] = {{\n  {tw_rows}\n}};",
             _arr("smx_rs_taps", "float", p["rs"]["taps"], f32),
             _arr("smx_bp_gain", "float", p["bp_gain"], f32),
             _arr("smx_thr_on", "double", p["on"], _c_double),
             _arr("smx_thr_off", "double", p["off"], _c_double),
             _arr("smx_cal_a", "double", cal["a"], _c_double),
             _arr("smx_cal_b", "double", cal["b"], _c_double),
             _arr("smx_iso_x", "double", cal["iso_x"], _c_double),
             _arr("smx_iso_y", "double", cal["iso_y"], _c_double),
             "const uint16_t smx_iso_at[][2] = {" + ", ".join(f"{{{a}, {n}}}" for a, n in cal["iso_at"]) + "};",
             "const char *const smx_labels[] = {" + ", ".join(json.dumps(l) for l in p["labels"]) + "};", ""]
    return "\n".join(parts)


def copy_library(bundle, out_dir) -> list:
    """The chain's sources, the DECISION/frame encoders and the bundle's model as plain C, into ``out_dir``."""
    from .c_model import export_plain_c  # needs the `tflite` schema package (deploy extra)
    out = Path(out_dir)
    files = []
    for f in sorted(CHAIN_DIR.glob("*.[ch]")) + [CHAIN_DIR.parent.parent / "c" / n for n in (
            "selfmis_frame.c", "selfmis_frame.h", "selfmis_decision.c", "selfmis_decision.h")]:
        shutil.copyfile(f, out / f.name)
        files.append(f.name)
    b = bundle if hasattr(bundle, "card") else load_bundle(resolve_bundle(bundle))
    export_plain_c(b.model_path, out)
    return files


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m selfmis.firmware_bridge.c_chain",
                                 description="Generate the on-device chain's parameters from a bundle.")
    ap.add_argument("--bundle", default="default", help="bundle directory or shipped name (default, micro)")
    ap.add_argument("--fs", type=float, required=True, help="the device's sample rate (Hz)")
    ap.add_argument("--out", required=True, help="folder for smx_chain_params.h/.c")
    ap.add_argument("--operating-point", default=None)
    ap.add_argument("--decision-beats", type=int, default=8)
    ap.add_argument("--min-beats", type=int, default=3)
    ap.add_argument("--every-k-beats", type=int, default=1)
    ap.add_argument("--persist-s", type=float, default=DEFAULT_PERSIST_S)
    ap.add_argument("--persist-beats", type=int, default=None)
    ap.add_argument("--hysteresis", type=float, default=DEFAULT_HYSTERESIS)
    ap.add_argument("--sketch", action="store_true",
                    help="also copy the chain library, the frame encoders and the bundle's plain-C model into --out "
                         "(an Arduino sketch folder compiles every .c in it)")
    a = ap.parse_args(argv)
    cfg = ChainConfig(a.fs, a.operating_point, a.decision_beats, a.min_beats, a.every_k_beats,
                      a.persist_s, a.persist_beats, a.hysteresis)
    try:
        p = generate(a.bundle, cfg, a.out)
    except (ChainError, BundleError) as exc:
        print(f"c_chain: {exc}", file=sys.stderr)
        return 2
    if a.sketch:
        copy_library(a.bundle, a.out)
    print(f"wrote {a.out}/smx_chain_params.h/.c: {p['bundle']} at {a.fs:g} Hz, "
          f"resampler {p['rs']['up']}/{p['rs']['down']} x {p['rs']['k']} taps, window FFT {p['bp_m']}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
