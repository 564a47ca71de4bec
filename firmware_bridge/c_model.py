"""A TFLite int8 model as plain C99: ``selfmis deploy export-c --engine plain``.

The shipped students use five operators (CONV_2D, FULLY_CONNECTED, MEAN, PAD, RESHAPE). For exactly
those, this module reads the ``.tflite`` (with the ``tflite`` schema package), computes every
requantisation parameter the way TensorFlow Lite does at ``Prepare`` time (``QuantizeMultiplier`` on
``double(input_scale) * double(filter_scale) / double(output_scale)``, the MEAN multiplier divided by the
element count as ``QuantizedMeanOrSum`` does, activation clamps as ``CalculateActivationRangeQuantized``)
and writes ``<name>.h`` / ``<name>.c``: the weights and parameters as ``const`` data (flash), one static
activation arena whose buffer reuse is planned here, and ``<name>_invoke()`` calling the hand-written
kernels of ``mcu/model/selfmis_kernels.c`` in graph order. No interpreter, no heap, no float at run time.

Anything else -- another operator, a fused activation, a dtype, an option the kernels do not implement --
is refused with :class:`UnsupportedModelError` (exit code ``MODEL``) naming the operator and the reason;
nothing is approximated. Why hand-written and not TFLite Micro: TFLM needs an interpreter, op resolver and
a tensor arena with per-tensor bookkeeping; a wearable running one fixed model needs none of it (the RAM
comparison is in ``benchmarks/results/wearable/model_parity.md``).

The generated interface (fixed: the C signal chain links against it)::

    #define <NAME>_INPUT_LEN / <NAME>_OUTPUT_LEN / <NAME>_ARENA_BYTES
    extern const float <name>_input_scale;  extern const int32_t <name>_input_zero_point;
    extern const float <name>_output_scale; extern const int32_t <name>_output_zero_point;
    int <name>_invoke(const int8_t *input, int8_t *output);   /* 0 on success */
"""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from . import c_model_ops
from .c_model_emit import emit_header, emit_source
from .c_model_ops import CModel, Tensor, UnsupportedModelError, enum_names, quantize_multiplier

__all__ = ["UnsupportedModelError", "SUPPORTED_OPERATORS", "KERNELS_DIR", "CModel", "read_model",
           "quantize_multiplier", "export_plain_c"]

#: The hand-written kernels the generated model calls (copied next to it by :func:`export_plain_c`).
KERNELS_DIR = Path(__file__).resolve().parent / "mcu" / "model"
KERNEL_FILES = ("selfmis_kernels.h", "selfmis_kernels.c")
SUPPORTED_OPERATORS = ("CONV_2D", "FULLY_CONNECTED", "MEAN", "PAD", "RESHAPE")
_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if inline int long "
    "register restrict return short signed sizeof static struct switch typedef union unsigned void volatile "
    "while _Bool _Complex _Imaginary".split())
#: Arena buffers start on 4-byte boundaries (word loads stay possible; costs at most 3 B a buffer).
ARENA_ALIGN = 4


# --------------------------------------------------------------------------
# Reading the flatbuffer
# --------------------------------------------------------------------------

def _schema():
    try:
        import tflite  # TensorFlow Lite's schema.fbs as generated flatbuffer classes
    except ImportError:
        raise ImportError("export-c --engine plain reads the model with the `tflite` package: "
                          "pip install 'selfmis-edge[deploy]'") from None
    return tflite


def _read_tensors(tfl, m, sg, where) -> List[Tensor]:
    types = enum_names(tfl.TensorType)
    out = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        dtype = types.get(t.Type(), f"type{t.Type()}").lower()
        q = t.Quantization()
        scale = np.asarray(q.ScaleAsNumpy(), np.float32) if q is not None and q.ScaleLength() else None
        zp = np.asarray(q.ZeroPointAsNumpy(), np.int64) if q is not None and q.ZeroPointLength() else None
        data = None
        b = t.Buffer()
        if 0 < b < m.BuffersLength():
            buf = m.Buffers(b)
            if buf.Offset() > 1:
                raise UnsupportedModelError(f"{where}: tensor {i} stores its data outside the flatbuffer "
                                            "(a >2 GB model); not supported")
            if buf.DataLength() > 0:
                if dtype not in ("int8", "int32"):
                    raise UnsupportedModelError(f"{where}: constant tensor {i} ({t.Name().decode()}) is "
                                                f"{dtype}; the plain C engine handles int8 and int32")
                raw = buf.DataAsNumpy().tobytes()
                data = np.frombuffer(raw, "<i1" if dtype == "int8" else "<i4").reshape(shape or (1,))
        out.append(Tensor(i, (t.Name() or b"").decode("utf-8", "replace"), shape, dtype, scale, zp,
                          int(q.QuantizedDimension()) if q is not None else 0, data))
    return out


def read_model(tflite_path, fuse: bool = True) -> CModel:
    """Read ``tflite_path`` into :class:`CModel` (one subgraph, int8 in and out), lowering each operator
    to a kernel call; :class:`UnsupportedModelError` for anything the plain C engine does not implement.
    ``fuse``: fold a PAD that only feeds a convolution into it (:func:`fuse_pads`)."""
    path = Path(tflite_path)
    data = path.read_bytes()
    where = path.name
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UnsupportedModelError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier)")
    tfl = _schema()
    m = tfl.Model.GetRootAs(data, 0)
    if m.SubgraphsLength() != 1:
        raise UnsupportedModelError(f"{where}: {m.SubgraphsLength()} subgraphs; the plain C engine runs "
                                    "a single-subgraph model")
    sg = m.Subgraphs(0)
    tensors = _read_tensors(tfl, m, sg, where)
    if sg.InputsLength() != 1 or sg.OutputsLength() != 1:
        raise UnsupportedModelError(f"{where}: {sg.InputsLength()} inputs and {sg.OutputsLength()} outputs; "
                                    "the plain C engine generates one int8 input and one int8 output")
    inp, outp = int(sg.Inputs(0)), int(sg.Outputs(0))
    for role, t in (("input", tensors[inp]), ("output", tensors[outp])):
        if t.dtype != "int8" or t.scale is None or t.zero_point is None:
            raise UnsupportedModelError(f"{where}: the model {role} {t.name!r} is {t.dtype}"
                                        f"{'' if t.scale is not None else ' without quantisation'}; "
                                        "the plain C engine runs full-int8 models")
    op_names = enum_names(tfl.BuiltinOperator)
    steps = []
    for k in range(sg.OperatorsLength()):
        op = sg.Operators(k)
        oc = m.OperatorCodes(op.OpcodeIndex())
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        name = op_names.get(code, f"BUILTIN_{code}")
        if code == tfl.BuiltinOperator.CUSTOM:
            name = "custom " + (oc.CustomCode() or b"?").decode("utf-8", "replace")
        at = f"{where}: operator {k} ({name})"
        if name not in SUPPORTED_OPERATORS:
            raise UnsupportedModelError(f"{at}: not supported by the plain C engine (it implements "
                                        f"{', '.join(SUPPORTED_OPERATORS)}); export with --engine tflm, "
                                        "or change the model")
        ins = [int(i) for i in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(i) for i in op.OutputsAsNumpy()] if op.OutputsLength() else []
        if len(outs) != 1:
            raise UnsupportedModelError(f"{at}: {len(outs)} outputs; expected 1")
        steps.append(c_model_ops.lower(tfl, name, k, op, ins, outs[0], tensors, at))
    model = CModel(tensors, steps, inp, outp, path.name, hashlib.sha256(data).hexdigest())
    return fuse_pads(model) if fuse else model


# --------------------------------------------------------------------------
# PAD folded into the convolution it feeds
# --------------------------------------------------------------------------

def _spatial_padding(pad_step, conv_in_shape) -> Tuple[int, int, int, int] | None:
    """The PAD as (top, bottom, left, right) padding of the conv's NHWC input, or None when it pads
    anything else (batch, channels, or not as a block once reshaped). Decided by laying the PAD out on
    element indices and comparing with a spatial pad of the unpadded block."""
    p = pad_step.params
    nd = 4
    src = np.arange(int(np.prod(p["in_dims"])), dtype=np.int64).reshape(p["in_dims"])
    laid = np.pad(src, [(p["before"][d], p["after"][d]) for d in range(nd)], constant_values=-1)
    n, h, w, c = conv_in_shape
    if laid.size != n * h * w * c:
        return None
    laid = laid.reshape(n, h, w, c)
    inside = laid >= 0
    rows, cols = np.flatnonzero(inside.any(axis=(0, 2, 3))), np.flatnonzero(inside.any(axis=(0, 1, 3)))
    if len(rows) == 0 or len(cols) == 0:
        return None
    top, bottom, left, right = int(rows[0]), h - 1 - int(rows[-1]), int(cols[0]), w - 1 - int(cols[-1])
    block = src.reshape(n, h - top - bottom, w - left - right, c) if src.size == n * (h - top - bottom) * \
        (w - left - right) * c else None
    if block is None:
        return None
    expect = np.pad(block, [(0, 0), (top, bottom), (left, right), (0, 0)], constant_values=-1)
    return (top, bottom, left, right) if np.array_equal(expect, laid) else None


def fuse_pads(model: CModel) -> CModel:
    """Fold PAD (-> RESHAPE ...) -> CONV_2D into the convolution when the padded tensor feeds nothing else
    and the pad value is the convolution's input zero point: a padded element then contributes
    w * (zp - zp) = 0, exactly what TFLite's kernel gives a tap it skips outside the image. Saves the
    padded buffer (RAM) and its copy. Anything else is left as it is."""
    readers: Dict[int, int] = {}
    for s in model.steps:
        for t in s.inputs:
            readers[t] = readers.get(t, 0) + 1
    producer = {s.output: s for s in model.steps}
    drop = set()
    for conv in model.steps:
        if conv.kind != "conv":
            continue
        chain, t = [], conv.inputs[0]
        while t in producer and producer[t].kind == "reshape":
            chain.append(producer[t])
            t = producer[t].inputs[0]
        pad = producer.get(t)
        if pad is None or pad.kind != "pad" or pad.params["pad_value"] != -conv.params["input_offset"]:
            continue
        tensors = [pad.output] + [r.output for r in chain]
        if any(readers.get(x, 0) != 1 or x == model.output for x in tensors):
            continue
        spatial = _spatial_padding(pad, (conv.params["batches"], conv.params["in_h"], conv.params["in_w"],
                                         conv.params["in_c"]))
        if spatial is None:
            continue
        top, bottom, left, right = spatial
        conv.params.update(in_h=conv.params["in_h"] - top - bottom, in_w=conv.params["in_w"] - left - right,
                           pad_h=conv.params["pad_h"] + top, pad_w=conv.params["pad_w"] + left)
        conv.inputs = [pad.inputs[0]]
        conv.fused.append(f"op{pad.op_index} PAD")
        drop.update(id(x) for x in [pad, *chain])
    model.steps = [s for s in model.steps if id(s) not in drop]
    return model


# --------------------------------------------------------------------------
# Memory plan
# --------------------------------------------------------------------------

def plan_memory(model: CModel) -> dict:
    """Place every activation buffer in one arena, reusing space whose tensor is dead (greedy by size,
    first fit, as TFLM's GreedyMemoryPlanner does). RESHAPE outputs alias their input (no copy); the model
    input is read in place from the caller's buffer and the last producer writes straight into the
    caller's output buffer. Returns ``{"arena_bytes", "where": {tensor: ("in"|"out"|"arena", offset)},
    "copy_out": bool, "buffers": [...]}``."""
    root = {model.input: model.input}
    for s in model.steps:
        root[s.output] = root[s.inputs[0]] if s.kind == "reshape" else s.output
    first, last = {}, {}
    for k, s in enumerate(model.steps):
        r = root[s.output]
        first.setdefault(r, k)
        last[r] = max(last.get(r, k), k)
        for t in s.inputs:
            if t in root:
                last[root[t]] = max(last.get(root[t], k), k)
    out_root = root[model.output]
    # the output buffer is the caller's when a kernel writes it (not when it is the input itself)
    copy_out = out_root == model.input
    placed: Dict[int, Tuple[str, int]] = {model.input: ("in", 0)}
    if not copy_out:
        placed[out_root] = ("out", 0)
    arena_roots = sorted((r for r in first if r not in placed),
                         key=lambda r: (-model.tensors[r].size, first[r]))
    blocks: List[Tuple[int, int, int, int]] = []  # offset, size, first, last
    for r in arena_roots:
        size = -(-model.tensors[r].size // ARENA_ALIGN) * ARENA_ALIGN
        offset = 0
        for o, sz, f, l in sorted(b for b in blocks if not (b[3] < first[r] or last[r] < b[2])):
            if offset + size <= o:
                break
            offset = max(offset, o + sz)
        blocks.append((offset, size, first[r], last[r]))
        placed[r] = ("arena", offset)
    arena = max((o + sz for o, sz, _, _ in blocks), default=0)
    where = {t: placed[root[t]] for t in root}
    buffers = [{"tensor": r, "shape": list(model.tensors[r].shape), "bytes": model.tensors[r].size,
                "offset": o, "live_steps": [f, l]} for (o, sz, f, l), r in zip(blocks, arena_roots)]
    return {"arena_bytes": int(arena), "where": where, "copy_out": copy_out, "buffers": buffers,
            "activation_bytes_without_reuse": int(sum(b["bytes"] for b in buffers))}


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------

def export_plain_c(tflite_path, out_dir, name: str = "smx_model", copy_kernels: bool = True,
                   fuse: bool = True) -> dict:
    """Write ``<name>.h`` / ``<name>.c`` (and, with ``copy_kernels``, ``selfmis_kernels.h/.c``) into
    ``out_dir``; return a summary: operators, arena bytes, constant bytes, paths. ``fuse=False`` keeps
    every PAD as its own step (the tests check both forms)."""
    if not name.isidentifier() or not name.isascii() or name in _C_KEYWORDS:
        raise ValueError(f"--name {name!r} is not a valid C identifier")
    model = read_model(tflite_path, fuse=fuse)
    plan = plan_memory(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hp, cp = out_dir / f"{name}.h", out_dir / f"{name}.c"
    hp.write_text(emit_header(model, plan, name), encoding="utf-8")
    source, const_bytes = emit_source(model, plan, name)
    cp.write_text(source, encoding="utf-8")
    files = [str(hp), str(cp)]
    if copy_kernels:
        for f in KERNEL_FILES:
            shutil.copyfile(KERNELS_DIR / f, out_dir / f)
            files.append(str(out_dir / f))
    ops = sorted({s.op for s in model.steps})
    return {"engine": "plain", "name": name, "ops": ops, "n_steps": len(model.steps),
            "fused": [f"{f} into op{s.op_index} {s.op}" for s in model.steps for f in s.fused],
            "input_len": model.tensors[model.input].size, "output_len": model.tensors[model.output].size,
            "arena_bytes": plan["arena_bytes"],
            "activation_bytes_without_reuse": plan["activation_bytes_without_reuse"],
            "const_bytes": const_bytes, "header": str(hp), "source": str(cp), "files": files,
            "model_sha256": model.sha256}
