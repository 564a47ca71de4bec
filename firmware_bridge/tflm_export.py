"""``selfmis deploy export-c --engine tflm``: a model as a C array for TensorFlow Lite Micro.

The model is read by :func:`selfmis.bundle.read_tflite_graph`; this module lists the operators
to register and sizes the tensor arena (measured by TFLite Micro when the card holds a
measurement, else estimated: :func:`estimate_arena`). The interpreter-free plain C engine is
:mod:`.c_model`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Dict, Optional

from selfmis.bundle import BundleError, read_tflite_graph

from .gateway_ops import USAGE, DeployError

__all__ = ["TFLiteSummary", "read_tflite", "estimate_arena", "export_c_array"]


class TFLiteSummary(dict):
    """Plain-dict summary of a .tflite: ops, tensors, arena estimate."""


def read_tflite(data: bytes) -> TFLiteSummary:
    """What TFLite Micro needs to know from a model, read by :func:`selfmis.bundle.read_tflite_graph`.

    Returns a dict with ``ops`` (sorted operator names, custom ops by their
    name, also listed in ``custom_ops``), ``op_versions``, ``inputs``/``outputs``
    (name, shape, dtype), ``n_tensors``, ``n_operators``, ``weights_bytes`` and
    ``arena`` (see :func:`estimate_arena`).
    """
    try:
        g = read_tflite_graph(data)
    except BundleError as e:
        raise DeployError(str(e)) from None
    versions: Dict[str, int] = {}
    for op in g.operators:
        versions[op.name] = max(op.version, versions.get(op.name, 0))
    tensors = [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes,
                "constant": t.constant, "variable": t.variable, "dynamic": any(d < 0 for d in t.shape)}
               for t in g.tensors]

    def io_spec(i):
        t = tensors[i]
        return {"name": t["name"], "shape": t["shape"], "dtype": t["dtype"]}

    summary = TFLiteSummary(
        ops=g.operator_names, custom_ops=sorted({op.name for op in g.operators if op.custom}),
        op_versions=versions,
        inputs=[io_spec(i) for i in g.inputs if 0 <= i < len(tensors)],
        outputs=[io_spec(i) for i in g.outputs if 0 <= i < len(tensors)],
        n_tensors=len(tensors), n_operators=len(g.operators), n_subgraphs=g.n_subgraphs,
        weights_bytes=sum(t["bytes"] for t in tensors if t["constant"]),
        description=g.description)
    summary["arena"] = estimate_arena(tensors, [(0, op.inputs, op.outputs) for op in g.operators],
                                      g.inputs, g.outputs)
    return summary


def estimate_arena(tensors, operators, inputs, outputs, align: int = 16) -> dict:
    """Tensor-arena size estimate for TFLite Micro (an *estimate*, not a guarantee).

    Computed as:

    1. ``activations``: peak over the operators, in execution order, of the
       total size of the non-constant tensors alive at that operator (each
       rounded up to ``align`` bytes).  A tensor lives from the operator that
       produces it (graph inputs: from the start) to the last operator that
       reads it (graph outputs: to the end); variable tensors live
       throughout.  This is what an ideal memory planner achieves; TFLM's
       greedy planner is usually within a few percent of it.
    2. ``overhead``: TFLM's persistent bookkeeping, taken as 64 B per tensor
       + 128 B per operator + 1 KiB, a rough allowance from TFLM's
       ``TfLiteEvalTensor``/node structures; kernel scratch buffers (e.g.
       CMSIS-NN convolutions) are *not* included.
    3. ``recommended`` = (activations x 1.1 + overhead) rounded up to 1 KiB.

    Measure the real value on the target with
    ``MicroInterpreter::arena_used_bytes()`` and trim the arena to it.
    """
    n_ops = len(operators)
    first, last = {}, {}
    for i in inputs:
        first[i] = 0
    for k, (_, ins, outs) in enumerate(operators):
        for t in outs:
            first.setdefault(t, k)
        for t in ins:
            if t >= 0:
                first.setdefault(t, k)
                last[t] = k
    for o in outputs:
        last[o] = max(n_ops - 1, 0)

    def size(t):
        return -(-tensors[t]["bytes"] // align) * align

    live_peak, peak_at = 0, 0
    for k in range(max(n_ops, 1)):
        live = sum(size(t) for t in range(len(tensors))
                   if not tensors[t]["constant"] and (
                       tensors[t]["variable"]
                       or (t in first and first[t] <= k <= last.get(t, first[t]))))
        if live > live_peak:
            live_peak, peak_at = live, k
    overhead = 64 * len(tensors) + 128 * n_ops + 1024
    recommended = -(-int(live_peak * 1.1 + overhead) // 1024) * 1024
    return {"activations_peak_bytes": live_peak, "peak_at_operator": peak_at,
            "overhead_bytes": overhead, "recommended_bytes": recommended,
            "dynamic_shapes": any(t["dynamic"] for t in tensors),
            "method": "peak live non-constant tensors (16-byte aligned) x 1.1 + "
                      "64 B/tensor + 128 B/op + 1 KiB; excludes kernel scratch buffers"}


def _camel(op: str) -> str:
    """CONV_2D -> Conv2D, the MicroMutableOpResolver::Add* naming."""
    return "".join(p if p[:1].isdigit() else p.capitalize() for p in op.split("_"))


def export_c_array(tflite_path, out_dir, name: str = "g_model", header_name: str = "model_data.h",
                   measured: Optional[dict] = None) -> dict:
    """Write ``model_data.h`` / ``model_data.cc`` for TensorFlow Lite Micro.

    The array is 16-byte aligned (TFLM reads the flatbuffer in place) and the
    header lists the operators to register and the arena size: the one TFLite Micro
    measured (``measured``: a card's ``micro`` entry, written by ``selfmis quantize``)
    when there is one, else the estimate, labelled as such.  Returns the
    :func:`read_tflite` summary plus the paths written.
    """
    if not name.isidentifier():
        raise DeployError(f"{name!r} is not a valid C identifier", USAGE)
    data = Path(tflite_path).read_bytes()
    info = read_tflite(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arena = info["arena"]
    if measured and measured.get("measured") and measured.get("arena_bytes"):
        arena_bytes = int(measured["arena_bytes"])
        arena_text = (f"// Tensor arena: MEASURED {arena_bytes} bytes\n"
                      f"//   (TFLite Micro {measured.get('tflite_micro', '?')} allocator on the host: the smallest "
                      f"arena that allocates, found by bisection;\n"
                      f"//    a 32-bit MCU needs at most this; the estimate was {arena['recommended_bytes']} B).")
        info["arena"] = dict(arena, measured_bytes=arena_bytes, method_used="measured")
    else:
        arena_bytes = int(arena["recommended_bytes"])
        arena_text = (f"// Tensor arena: ESTIMATE {arena_bytes} bytes (no TFLite Micro measurement in the card:\n"
                      f"//   pip install 'selfmis-edge[micro]' and re-run selfmis quantize to measure it;\n"
                      f"//   {arena['method']};\n"
                      f"//    activation peak {arena['activations_peak_bytes']} B at operator {arena['peak_at_operator']},\n"
                      f"//    overhead {arena['overhead_bytes']} B"
                      f"{', model has dynamic shapes: estimate is a lower bound' if arena['dynamic_shapes'] else ''}).\n"
                      f"//   Check with MicroInterpreter::arena_used_bytes() on the target.")
        info["arena"] = dict(arena, method_used="estimate")
    guard = "SELFMIS_" + header_name.upper().replace(".", "_").replace("-", "_")
    custom = info["custom_ops"]
    builtin = [op for op in info["ops"] if op not in custom]
    resolver = "\n".join(f"//   resolver.Add{_camel(op)}();" for op in builtin)
    h = f"""// Generated by `selfmis deploy export-c` from {Path(tflite_path).name}
// ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}...). Do not edit.
//
// Operators used ({len(info['ops'])}): {', '.join(info['ops']) or 'none'}
// Register them with a resolver sized to that count, e.g.
//   static tflite::MicroMutableOpResolver<{max(1, len(info['ops']))}> resolver;
{resolver}
{''.join(f'//   (custom op {c!r}: register your own kernel with resolver.AddCustom)' + chr(10) for c in custom)}//
// Inputs:  {'; '.join(f"{t['name']} {t['shape']} {t['dtype']}" for t in info['inputs'])}
// Outputs: {'; '.join(f"{t['name']} {t['shape']} {t['dtype']}" for t in info['outputs'])}
//
{arena_text}
#ifndef {guard}
#define {guard}

#include <cstddef>
#include <cstdint>

constexpr std::size_t k{_camel(name)}TensorArenaSize = {arena_bytes};
extern const unsigned char {name}[];
extern const unsigned int {name}_len;

#endif  // {guard}
"""
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    cc = (f'// Generated by `selfmis deploy export-c`. Do not edit.\n'
          f'#include "{header_name}"\n\n'
          f"// alignas(16): TFLite Micro uses the flatbuffer in place\n"
          f"alignas(16) const unsigned char {name}[] = {{\n  " + ",\n  ".join(rows) + "\n};\n"
          f"const unsigned int {name}_len = {len(data)};\n")
    hp, cp = out_dir / header_name, out_dir / (Path(header_name).stem + ".cc")
    hp.write_text(h, encoding="utf-8")
    cp.write_text(cc, encoding="utf-8")
    info["header"], info["source"] = str(hp), str(cp)
    return info
