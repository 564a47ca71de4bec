"""The students: tiny 1-D CNNs for one preprocessed Lead-I window, in two families.

* ``dscnn`` (default): depthwise-separable blocks (MobileNet-style; Howard et al. 2017), the cheapest
  per MAC and per byte;
* ``resnet``: plain residual blocks (He et al. 2016) of full convolutions: more MACs per parameter, a
  different trade-off on an MCU (no depthwise kernels) and a second family for the accuracy/size front.

Ops are chosen for int8 TFLite / XNNPACK on a gateway CPU: strided convolutions
(no pooling layers), ReLU6 (a bounded range quantises well and fuses into the
conv as a clamp), one global average pool and one dense layer. BatchNorm is
used while training and folded into the convolutions before export
(:func:`fold_batchnorm`), so the exported graph has Conv, Relu6 (Clip), Mean
and Gemm only.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

__all__ = ["StudentConfig", "Student", "fold_batchnorm", "count_params", "ExportWrapper"]


@dataclass
class StudentConfig:
    """Sizes of the student; every field is a CLI option (``--width``, ``--blocks`` ...)."""

    in_samples: int = 500
    n_outputs: int = 11
    stem_channels: int = 16
    stem_kernel: int = 7
    stem_stride: int = 2
    #: (out_channels, stride) of each depthwise-separable block
    blocks: list = field(default_factory=lambda: [[24, 2], [32, 2], [48, 2], [64, 2], [96, 1]])
    kernel: int = 7
    embed_dim: int = 0         # teacher embedding size; 0 = no embedding head (not exported anyway)
    dropout: float = 0.1
    family: str = "dscnn"      # "dscnn" (depthwise-separable blocks) or "resnet" (residual full-conv blocks)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "StudentConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def _conv_bn_act(c_in, c_out, k, stride, groups=1):
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU6(inplace=False),
    )


class DepthwiseSeparable(nn.Module):
    """Depthwise conv (spatial, strided) then pointwise conv (channel mixing)."""

    def __init__(self, c_in, c_out, k, stride):
        super().__init__()
        self.depthwise = _conv_bn_act(c_in, c_in, k, stride, groups=c_in)
        self.pointwise = _conv_bn_act(c_in, c_out, 1, 1)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class Residual(nn.Module):
    """Conv-BN-ReLU6, Conv-BN, plus the input (a strided 1x1 Conv-BN when the shape changes), ReLU6.

    Both paths are ``nn.Sequential`` conv->BN pairs, so :func:`fold_batchnorm` folds them; the sum exports
    as one ADD."""

    def __init__(self, c_in, c_out, k, stride):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm1d(c_out),
            nn.ReLU6(inplace=False),
            nn.Conv1d(c_out, c_out, k, stride=1, padding=k // 2, bias=False), nn.BatchNorm1d(c_out))
        self.skip = (nn.Identity() if stride == 1 and c_in == c_out else
                     nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out)))
        self.act = nn.ReLU6(inplace=False)

    def forward(self, x):
        return self.act(self.main(x) + self.skip(x))


BLOCKS = {"dscnn": DepthwiseSeparable, "resnet": Residual}


class Student(nn.Module):
    """``forward(x (B, 1, W)) -> logits (B, n_outputs)``; ``features`` gives the pooled vector."""

    def __init__(self, config: StudentConfig = StudentConfig()):
        super().__init__()
        self.config = config
        c = config.stem_channels
        layers = [_conv_bn_act(1, c, config.stem_kernel, config.stem_stride)]
        if config.family not in BLOCKS:
            raise ValueError(f"unknown student family {config.family!r}; one of {sorted(BLOCKS)}")
        for c_out, stride in config.blocks:
            layers.append(BLOCKS[config.family](c, int(c_out), config.kernel, int(stride)))
            c = int(c_out)
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(c, config.n_outputs)
        # Only used to match the teacher's embedding during distillation; not exported.
        self.embed_head = nn.Linear(c, config.embed_dim) if config.embed_dim else None
        self.feature_dim = c

    def features(self, x):
        return self.body(x).mean(dim=-1)  # global average pool -> MEAN in TFLite

    def forward(self, x):
        return self.head(self.dropout(self.features(x)))

    def forward_distill(self, x):
        """(logits, projected embedding or None) for the distillation loss."""
        f = self.features(x)
        emb = self.embed_head(f) if self.embed_head is not None else None
        return self.head(self.dropout(f)), emb


class ExportWrapper(nn.Module):
    """What is exported: logits only, no dropout, no embedding head."""

    def __init__(self, student: Student):
        super().__init__()
        self.body, self.head = student.body, student.head

    def forward(self, x):
        return self.head(self.body(x).mean(dim=-1))


def count_params(module: nn.Module, exported: bool = True) -> int:
    """Parameters of the deployed model (``exported``: without the embedding head, BN folded)."""
    if exported and isinstance(module, Student):
        module = ExportWrapper(fold_batchnorm(module))
    return int(sum(p.numel() for p in module.parameters()))


def _fold_pair(conv: nn.Conv1d, bn: nn.BatchNorm1d) -> nn.Conv1d:
    """conv followed by bn (eval statistics) as one conv with bias.

    y = gamma * (W x + b - mean) / sqrt(var + eps) + beta
      = (gamma / std) * W x + (beta + (b - mean) * gamma / std)
    """
    std = torch.sqrt(bn.running_var + bn.eps)
    scale = bn.weight / std
    fused = nn.Conv1d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1))
        b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_(bn.bias + (b - bn.running_mean) * scale)
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every Conv1d→BatchNorm1d pair fused.

    Works on any ``nn.Sequential`` containing a conv immediately followed by a BN;
    the BN is replaced by ``nn.Identity`` (ONNX export drops it).
    """
    model = copy.deepcopy(model).eval()

    def visit(module):
        for child in module.children():
            visit(child)
        if isinstance(module, nn.Sequential):
            items = list(module._modules.items())
            for (name_a, a), (name_b, b) in zip(items, items[1:]):
                if isinstance(a, nn.Conv1d) and isinstance(b, nn.BatchNorm1d):
                    module._modules[name_a] = _fold_pair(a, b)
                    module._modules[name_b] = nn.Identity()

    visit(model)
    left = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm layers not preceded by a conv, cannot fold: {left}")
    return model
