"""Parameter and multiply-accumulate (MAC) counts, from layer shapes.

Counted for convolutions and dense layers only (they are >99% of the work of
these CNNs); element-wise ops, pooling and activations are not MACs. One MAC is
one multiply plus one add (2 FLOPs).

* :func:`conv_macs` / :func:`linear_macs`: the formulas (pure, unit-tested).
* :func:`count_torch`: runs one forward pass with hooks on ``Conv1d``/``Conv2d``/``Linear``
  and applies the formulas to the observed output shapes.
* :func:`count_tflite`: the same from a ``.tflite`` file's operators and tensor shapes
  (``CONV_2D``, ``DEPTHWISE_CONV_2D``, ``FULLY_CONNECTED``), read from the flatbuffer
  by :func:`selfmis.bundle.read_tflite_graph`, so a machine without torch can count too.
"""
from __future__ import annotations

from math import prod

from selfmis.bundle import read_tflite_graph

__all__ = ["conv_macs", "linear_macs", "count_torch", "count_tflite"]


def conv_macs(c_in: int, c_out: int, kernel, out_positions: int, groups: int = 1, batch: int = 1) -> int:
    """MACs of a (grouped) convolution: each output value sums ``c_in/groups * prod(kernel)`` products."""
    k = prod(kernel) if isinstance(kernel, (tuple, list)) else int(kernel)
    if c_in % groups or c_out % groups:
        raise ValueError(f"channels {c_in}->{c_out} not divisible by groups={groups}")
    return int(batch) * int(c_out) * int(out_positions) * (int(c_in) // int(groups)) * k


def linear_macs(in_features: int, out_features: int, rows: int = 1) -> int:
    """MACs of a dense layer applied to ``rows`` vectors."""
    return int(rows) * int(in_features) * int(out_features)


def count_torch(model, input_shape) -> dict:
    """{"macs", "params", "layers": [(name, kind, macs)]} for one input of ``input_shape``.

    ``input_shape`` includes the batch dimension; MACs are reported per sample
    (divided by the batch size).
    """
    import torch
    from torch import nn

    layers = []
    hooks = []

    def hook(name):
        def fn(mod, inp, out):
            batch = out.shape[0]
            if isinstance(mod, (nn.Conv1d, nn.Conv2d)):
                positions = prod(out.shape[2:])
                m = conv_macs(mod.in_channels, mod.out_channels, mod.kernel_size, positions, mod.groups, 1)
                kind = "depthwise" if mod.groups == mod.in_channels and mod.groups > 1 else "conv"
            else:  # Linear
                rows = prod(out.shape[1:-1]) if out.dim() > 2 else 1
                m = linear_macs(mod.in_features, mod.out_features, rows)
                kind = "linear"
            layers.append((name, kind, int(m)))
            del batch
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            hooks.append(mod.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(*input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    params = int(sum(p.numel() for p in model.parameters()))
    return {"macs": int(sum(m for _, _, m in layers)), "params": params, "layers": layers,
            "method": "torch forward hooks on Conv/Linear output shapes"}


def count_tflite(path) -> dict:
    """{"macs", "params", "ops", "layers"} of a ``.tflite`` file (batch 1), from its flatbuffer.

    Operators and tensor shapes come from :func:`selfmis.bundle.read_tflite_graph`
    (the model's own graph, no interpreter and no delegate rewriting it).
    ``params`` counts the elements of the weight and bias tensors of the counted ops.
    """
    g = read_tflite_graph(path)
    shapes = {t.index: list(t.shape) for t in g.tensors}
    layers, total, params = [], 0, 0
    for op in g.operators:
        name = op.name
        ins = [i for i in op.inputs if i >= 0]
        outs = list(op.outputs)
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") and len(ins) >= 2 and outs:
            out = shapes.get(outs[0], [])
            w = shapes.get(ins[1], [])
            if not out or not w:
                continue
            if name == "CONV_2D":            # out (N,H,W,Cout), filter (Cout,kh,kw,Cin)
                m = prod(out[:-1]) * w[0] * w[1] * w[2] * w[3]
            elif name == "DEPTHWISE_CONV_2D":  # filter (1,kh,kw,Cout)
                m = prod(out) * w[1] * w[2]
            else:                             # weights (out, in)
                m = prod(out[:-1]) * w[0] * w[1]
            layers.append((f"{name}#{op.index}", name, int(m)))
            total += int(m)
            params += prod(w) + (prod(shapes.get(ins[2], [0])) if len(ins) > 2 else 0)
    return {"macs": int(total), "params": int(params), "ops": g.operator_names, "layers": layers,
            "method": "tflite flatbuffer: CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED shapes"}
