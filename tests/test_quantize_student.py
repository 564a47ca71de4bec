"""Student architecture, BatchNorm folding, distillation and comparison helpers (torch only, fast)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from selfmis.quantize.student import (ExportWrapper, Student, StudentConfig, count_params,  # noqa: E402
                                      fold_batchnorm)

TINY = StudentConfig(stem_channels=4, blocks=[[8, 2], [8, 2]], kernel=5, embed_dim=6)


def _randomise_bn(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(m.num_features, generator=g))
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


def test_fold_batchnorm_matches_eval_model():
    torch.manual_seed(0)
    m = Student(TINY).eval()
    _randomise_bn(m)
    folded = fold_batchnorm(m)
    assert not any(isinstance(x, nn.BatchNorm1d) for x in folded.modules())
    x = torch.randn(5, 1, 500)
    with torch.no_grad():
        ref, got = m(x), ExportWrapper(folded)(x)
    assert torch.allclose(ref, got, atol=1e-5), float((ref - got).abs().max())
    # the original is untouched (a copy is folded)
    assert any(isinstance(x, nn.BatchNorm1d) for x in m.modules())


def test_fold_batchnorm_handles_conv_bias_and_rejects_orphan_bn():
    torch.manual_seed(1)
    seq = nn.Sequential(nn.Conv1d(2, 3, 3, padding=1, bias=True), nn.BatchNorm1d(3)).eval()
    _randomise_bn(seq, 1)
    x = torch.randn(4, 2, 20)
    with torch.no_grad():
        assert torch.allclose(seq(x), fold_batchnorm(seq)(x), atol=1e-5)
    with pytest.raises(ValueError, match="cannot fold"):
        fold_batchnorm(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)))


def test_student_shapes_and_params():
    m = Student(TINY).eval()
    x = torch.randn(3, 1, 500)
    logits, emb = m.forward_distill(x)
    assert logits.shape == (3, 11) and emb.shape == (3, 6)
    # the deployed count has no BN (folded into bias) and no embedding head
    assert count_params(m) < sum(p.numel() for p in m.parameters())
    default = count_params(Student(StudentConfig()))
    assert 5_000 < default < 60_000


def test_distill_learns_and_returns_eval_student():
    from selfmis.quantize.distill import DistillConfig, distill

    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 500)).astype(np.float32)
    Y = (rng.random((64, 11)) < 0.3).astype(np.float32)
    t_logits = rng.standard_normal((64, 11)).astype(np.float32)
    t_emb = rng.standard_normal((64, 6)).astype(np.float32)
    s = distill(X, Y, t_logits, t_emb, TINY, DistillConfig(epochs=1, batch=32), progress=False)
    assert not s.training and s.embed_head is not None


def test_decision_agreement_and_thresholds_are_logits():
    from selfmis.quantize.metrics import decision_agreement, sigmoid

    a = np.array([[0.1, -2.0], [0.5, 3.0], [-1.0, 0.0]])
    b = np.array([[0.3, -2.0], [0.4, -3.0], [-1.0, 0.0]])
    agree = decision_agreement(a, b, {"MI": 0.2, "NORM": 0.0}, ["MI", "NORM"])
    assert agree == {"MI": pytest.approx(2 / 3), "NORM": pytest.approx(2 / 3)}
    assert sigmoid(0.0) == 0.5


def test_cli_parses_student_options():
    from selfmis.quantize.cli import build_parser

    a = build_parser().parse_args(["--blocks", "16:2,32:1", "--epochs", "3", "--keep-ncw"])
    assert a.blocks == [[16, 2], [32, 1]] and a.epochs == 3 and a.keep_ncw
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--blocks", "16x2"])
