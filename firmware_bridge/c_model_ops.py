"""Lowering of each supported TFLite operator to a plain-C kernel call (see :mod:`.c_model`).

Every check here mirrors what TFLite Micro's ``Prepare`` of that operator computes or insists on; where
TFLite would run something the kernels do not implement (another dtype, a fused activation, a MEAN over
non-adjacent axes, a shuffled weight format), the export is refused rather than approximated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np

from selfmis.exit_codes import CodedError, ExitCode

__all__ = ["UnsupportedModelError", "Tensor", "Step", "CModel", "quantize_multiplier", "enum_names", "lower"]


class UnsupportedModelError(CodedError, ValueError):
    """The model uses something the plain C engine does not implement; nothing is generated."""

    exit_code = ExitCode.MODEL


@dataclass
class Tensor:
    index: int
    name: str
    shape: Tuple[int, ...]
    dtype: str
    scale: Optional[np.ndarray]       # float32, one per channel or one
    zero_point: Optional[np.ndarray]  # int64
    qdim: int
    data: Optional[np.ndarray]        # constant tensors only

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass
class Step:
    """One kernel call: ``kind`` (conv, fc, mean, pad, reshape), tensor ids, C parameters, constants."""

    op_index: int
    op: str
    kind: str
    inputs: List[int]
    output: int
    params: Dict[str, object] = field(default_factory=dict)
    consts: Dict[str, np.ndarray] = field(default_factory=dict)
    fused: List[str] = field(default_factory=list)  # operators folded into this one (PAD into CONV_2D)


@dataclass
class CModel:
    tensors: List[Tensor]
    steps: List[Step]
    input: int
    output: int
    source_name: str = "model.tflite"
    sha256: str = ""


# --------------------------------------------------------------------------
# TFLite's arithmetic, at generation time
# --------------------------------------------------------------------------

def _round_away(x: float) -> int:
    """std::round / TfLiteRound: half away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def quantize_multiplier(real: float) -> Tuple[int, int]:
    """TFLite's ``QuantizeMultiplier`` (double-rounding build): ``real`` = m * 2^shift / 2^31."""
    if real == 0.0:
        return 0, 0
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"multiplier {real!r} is not a positive finite scale")
    q, shift = math.frexp(real)
    q_fixed = _round_away(q * (1 << 31))  # exact: a power-of-two scaling of a double
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:  # every bit would be shifted out: TFLite stores a zero multiplier
        shift, q_fixed = 0, 0
    return int(q_fixed), int(shift)


def _activation_range(act: str, t: Tensor, where: str) -> Tuple[int, int]:
    """``CalculateActivationRangeQuantized`` for an int8 output (``f / scale`` in float32, then rounded)."""
    scale, zp = np.float32(t.scale[0]), int(t.zero_point[0])

    def q(f):
        return zp + _round_away(float(np.float32(f) / scale))

    if act == "NONE":
        return -128, 127
    if act == "RELU":
        return max(-128, q(0.0)), 127
    if act == "RELU6":
        return max(-128, q(0.0)), min(127, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(-128, q(-1.0)), min(127, q(1.0))
    raise UnsupportedModelError(f"{where}: fused activation {act} is not implemented by the plain C engine")


def enum_names(enum_class) -> dict:
    """{value: NAME} of a flatbuffer enum class of the tflite schema."""
    return {v: k for k, v in vars(enum_class).items() if k.isupper() and isinstance(v, int)}




def _need(cond: bool, at: str, why: str) -> None:
    if not cond:
        raise UnsupportedModelError(f"{at}: {why}")


def _int8_act(t: Tensor, at: str, role: str) -> None:
    _need(t.dtype == "int8", at, f"{role} {t.name!r} is {t.dtype}; the plain C engine implements int8 only")
    _need(t.data is None, at, f"{role} {t.name!r} is a constant; expected an activation")
    _need(t.scale is not None and t.zero_point is not None and len(t.scale) == 1, at,
          f"{role} {t.name!r} needs one (per-tensor) scale and zero point")


def _options(tfl, op, cls_name):
    cls = getattr(tfl, cls_name)
    opts = cls()
    table = op.BuiltinOptions()
    if table is None:
        return None
    opts.Init(table.Bytes, table.Pos)
    return opts


def _weights(t: Tensor, at: str, n_out: int, role: str = "filter") -> np.ndarray:
    _need(t.data is not None and t.dtype == "int8", at, f"{role} {t.name!r} must be a constant int8 tensor "
                                                        f"(it is {t.dtype}{'' if t.data is not None else ', not constant'})")
    _need(t.scale is not None and len(t.scale) in (1, n_out), at,
          f"{role} {t.name!r}: expected 1 or {n_out} scales, found {0 if t.scale is None else len(t.scale)}")
    if len(t.scale) > 1:
        _need(t.qdim == 0, at, f"{role} {t.name!r} is quantised along dimension {t.qdim}; expected 0")
    return np.asarray(t.scale, np.float32)


def _bias(tensors, ins, at, n_out):
    if len(ins) < 3 or ins[2] < 0:
        return None
    b = tensors[ins[2]]
    _need(b.data is not None and b.dtype == "int32", at,
          f"bias {b.name!r} is {b.dtype}; the plain C engine implements a constant int32 bias")
    _need(b.size == n_out, at, f"bias {b.name!r} has {b.size} values for {n_out} outputs")
    return np.asarray(b.data, np.int32).reshape(-1)


def _per_channel(in_scale, f_scales, out_scale, n_out):
    """PopulateConvolutionQuantizationParams: double(in) * double(filter[c]) / double(out), per channel."""
    mult, shift = [], []
    for c in range(n_out):
        fs = float(f_scales[c if len(f_scales) > 1 else 0])
        m, s = quantize_multiplier(float(in_scale) * fs / float(out_scale))
        mult.append(m)
        shift.append(s)
    return np.asarray(mult, np.int32), np.asarray(shift, np.int32)


def _lower_conv(tfl, op, ins, out, tensors, at) -> Step:
    x, f, y = tensors[ins[0]], tensors[ins[1]], tensors[out]
    _int8_act(x, at, "input")
    _int8_act(y, at, "output")
    _need(len(x.shape) == 4 and len(f.shape) == 4 and len(y.shape) == 4, at, "CONV_2D needs 4-D NHWC tensors")
    n, ih, iw, ic = x.shape
    oc, kh, kw, kic = f.shape
    scales = _weights(f, at, oc)
    _need(f.zero_point is None or not np.any(f.zero_point), at, "filter zero point must be 0 (symmetric)")
    _need(kic > 0 and ic % kic == 0 and oc % (ic // kic) == 0, at,
          f"input depth {ic} and filter depth {kic} / {oc} outputs do not form groups")
    o = _options(tfl, op, "Conv2DOptions")
    _need(o is not None, at, "no Conv2DOptions")
    acts, pads = enum_names(tfl.ActivationFunctionType), enum_names(tfl.Padding)
    sh, sw, dh, dw = o.StrideH(), o.StrideW(), o.DilationHFactor(), o.DilationWFactor()
    _need(min(sh, sw, dh, dw) >= 1, at, f"stride {sh}x{sw} / dilation {dh}x{dw} must be >= 1")
    padding = pads.get(o.Padding(), str(o.Padding()))
    _need(padding in ("SAME", "VALID"), at, f"padding {padding} is not implemented")
    eff_h, eff_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padding == "SAME":
        out_h, out_w = (ih + sh - 1) // sh, (iw + sw - 1) // sw
    else:
        out_h, out_w = (ih + sh - eff_h) // sh, (iw + sw - eff_w) // sw
    _need(y.shape == (n, out_h, out_w, oc), at, f"output shape {list(y.shape)} is not the CONV_2D result "
                                                f"{[n, out_h, out_w, oc]} (dynamic shapes are not supported)")
    # ComputePaddingHeightWidth: only the leading pad matters to the reference kernel
    pad_h = max(0, ((out_h - 1) * sh + eff_h - ih) // 2) if padding == "SAME" else 0
    pad_w = max(0, ((out_w - 1) * sw + eff_w - iw) // 2) if padding == "SAME" else 0
    act_min, act_max = _activation_range(acts.get(o.FusedActivationFunction(), "?"), y, at)
    mult, shift = _per_channel(x.scale[0], scales, y.scale[0], oc)
    bias = _bias(tensors, ins, at, oc)
    params = dict(batches=n, in_h=ih, in_w=iw, in_c=ic, out_h=out_h, out_w=out_w, out_c=oc, k_h=kh, k_w=kw,
                  k_in_c=kic, stride_h=sh, stride_w=sw, dil_h=dh, dil_w=dw, pad_h=pad_h, pad_w=pad_w,
                  input_offset=-int(x.zero_point[0]), output_offset=int(y.zero_point[0]),
                  act_min=act_min, act_max=act_max)
    w = np.asarray(f.data, np.int8)
    consts = {"filter": w.reshape(-1), "multiplier": mult, "shift": shift}
    if bias is not None:
        consts["bias"] = bias
    # interior positions: sum(w * (x + off)) + bias == sum(w * x) + (bias + off * sum(w)), exact in integers
    full = (0 if bias is None else bias.astype(np.int64)) + params["input_offset"] * \
        w.reshape(oc, -1).astype(np.int64).sum(axis=1)
    _need(bool(np.all(np.abs(full) < 2 ** 31)), at, "bias + input offset x filter sum overflows int32")
    consts["bias_full"] = full.astype(np.int32)
    return Step(0, "CONV_2D", "conv", [ins[0]], out, params, consts)


def _lower_fc(tfl, op, ins, out, tensors, at) -> Step:
    x, f, y = tensors[ins[0]], tensors[ins[1]], tensors[out]
    _int8_act(x, at, "input")
    _int8_act(y, at, "output")
    _need(len(f.shape) == 2, at, f"weights {f.name!r} must be 2-D, found {list(f.shape)}")
    n_out, depth = f.shape
    scales = _weights(f, at, n_out, "weights")
    o = _options(tfl, op, "FullyConnectedOptions")
    _need(o is not None, at, "no FullyConnectedOptions")
    _need(o.WeightsFormat() == tfl.FullyConnectedOptionsWeightsFormat.DEFAULT, at,
          "shuffled weights (SHUFFLED4x16INT8) are not implemented")
    _need(x.size % depth == 0, at, f"input of {x.size} values is not a multiple of the depth {depth}")
    batches = x.size // depth
    _need(y.size == batches * n_out, at, f"output has {y.size} values, expected {batches * n_out}")
    acts = enum_names(tfl.ActivationFunctionType)
    act_min, act_max = _activation_range(acts.get(o.FusedActivationFunction(), "?"), y, at)
    in_scale, out_scale = np.float32(x.scale[0]), np.float32(y.scale[0])
    if len(scales) > 1:  # per-channel: symmetric weights, TFLM's FullyConnectedPerChannel
        _need(f.zero_point is None or not np.any(f.zero_point), at, "per-channel weights need zero point 0")
        mult, shift = _per_channel(in_scale, scales, out_scale, n_out)
        filter_offset = 0
    else:  # per-tensor: GetQuantizedConvolutionMultipler multiplies the scales in float32 first
        m, s = quantize_multiplier(float(np.float32(in_scale * scales[0])) / float(out_scale))
        mult, shift = np.full(n_out, m, np.int32), np.full(n_out, s, np.int32)
        filter_offset = -int(f.zero_point[0]) if f.zero_point is not None else 0
    params = dict(batches=batches, in_depth=depth, out_depth=n_out, input_offset=-int(x.zero_point[0]),
                  filter_offset=filter_offset, output_offset=int(y.zero_point[0]),
                  act_min=act_min, act_max=act_max)
    consts = {"filter": np.asarray(f.data, np.int8).reshape(-1), "multiplier": mult, "shift": shift}
    bias = _bias(tensors, ins, at, n_out)
    if bias is not None:
        consts["bias"] = bias
    return Step(0, "FULLY_CONNECTED", "fc", [ins[0]], out, params, consts)


def _lower_mean(tfl, op, ins, out, tensors, at) -> Step:
    x, ax, y = tensors[ins[0]], tensors[ins[1]], tensors[out]
    _int8_act(x, at, "input")
    _int8_act(y, at, "output")
    _need(ax.data is not None and ax.dtype == "int32", at, "the axis must be a constant int32 tensor")
    nd = len(x.shape)
    axes = sorted({int(a) + nd if int(a) < 0 else int(a) for a in np.asarray(ax.data).reshape(-1)})
    _need(all(0 <= a < nd for a in axes), at, f"axis {list(np.asarray(ax.data))} out of range for {nd}-D input")
    reduce = int(np.prod([x.shape[a] for a in axes], dtype=np.int64)) if axes else 1
    _need(reduce > 0 and y.size * reduce == x.size, at, f"output shape {list(y.shape)} does not match a "
                                                       f"mean of {list(x.shape)} over {axes}")
    # merge dims into outer x reduce x inner; the reduced (non-1) dims must be adjacent
    big = [d for d in range(nd) if x.shape[d] != 1]
    red = [d for d in big if d in axes]
    if red:
        _need(red == [d for d in big if red[0] <= d <= red[-1]], at,
              f"MEAN over non-adjacent axes {axes} of {list(x.shape)} is not implemented")
        outer = int(np.prod([x.shape[d] for d in big if d < red[0]], dtype=np.int64))
        inner = int(np.prod([x.shape[d] for d in big if d > red[-1]], dtype=np.int64))
    else:
        outer, inner = 1, x.size
    # QuantizedMeanOrSum: QuantizeMultiplier(in/out) then fold 1/count into it (integer, truncating)
    mult, shift = quantize_multiplier(float(x.scale[0]) / float(y.scale[0]))
    s = min(reduce.bit_length() - 1, 32, 31 + shift)
    mult = int((mult << s) // reduce) if s >= 0 else int((mult >> -s) // reduce)
    _need(-(2 ** 31) <= mult < 2 ** 31, at, "MEAN multiplier overflows int32")
    params = dict(outer=outer, reduce=reduce, inner=inner, input_zero_point=int(x.zero_point[0]),
                  output_zero_point=int(y.zero_point[0]), multiplier=mult, shift=shift - s)
    return Step(0, "MEAN", "mean", [ins[0]], out, params, {})


def _lower_pad(tfl, op, ins, out, tensors, at) -> Step:
    x, p, y = tensors[ins[0]], tensors[ins[1]], tensors[out]
    _int8_act(x, at, "input")
    _int8_act(y, at, "output")
    _need(len(ins) == 2, at, "PAD with a constant value tensor is not implemented")
    nd = len(x.shape)
    _need(1 <= nd <= 4, at, f"{nd}-D PAD is not implemented (1 to 4 dimensions)")
    _need(p.data is not None and p.dtype == "int32" and p.size == 2 * nd, at,
          "paddings must be a constant int32 [rank, 2] tensor")
    pads = np.asarray(p.data, np.int64).reshape(nd, 2)
    _need(bool(np.all(pads >= 0)), at, "negative paddings are not supported")
    expect = tuple(int(x.shape[d] + pads[d, 0] + pads[d, 1]) for d in range(nd))
    _need(y.shape == expect, at, f"output shape {list(y.shape)} is not the padded {list(expect)}")
    _need(-128 <= int(y.zero_point[0]) <= 127, at, "output zero point out of int8 range")
    lead = 4 - nd
    params = dict(in_dims=[1] * lead + list(x.shape), before=[0] * lead + [int(v) for v in pads[:, 0]],
                  after=[0] * lead + [int(v) for v in pads[:, 1]], pad_value=int(y.zero_point[0]))
    return Step(0, "PAD", "pad", [ins[0]], out, params, {})


def _lower_reshape(tfl, op, ins, out, tensors, at) -> Step:
    x, y = tensors[ins[0]], tensors[out]
    _int8_act(x, at, "input")
    _int8_act(y, at, "output")
    _need(x.size == y.size, at, f"reshape of {x.size} values into {list(y.shape)}")
    return Step(0, "RESHAPE", "reshape", [ins[0]], out, {}, {})


_LOWER = {"CONV_2D": _lower_conv, "FULLY_CONNECTED": _lower_fc, "MEAN": _lower_mean, "PAD": _lower_pad,
          "RESHAPE": _lower_reshape}


def lower(tfl, name: str, index: int, op, ins: List[int], out: int, tensors: List[Tensor], at: str) -> Step:
    """One operator as a :class:`Step` (raises :class:`UnsupportedModelError`)."""
    _need(len(ins) >= 1 and ins[0] >= 0, at, "no input tensor")
    for i in ins:
        _need(i < len(tensors), at, f"input tensor {i} does not exist")
    _need(0 <= out < len(tensors), at, f"output tensor {out} does not exist")
    step = _LOWER[name](tfl, op, ins, out, tensors, at)
    step.op_index = index
    return step
