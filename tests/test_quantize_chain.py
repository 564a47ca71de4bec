"""The conversion chain on a TINY student, so a broken toolchain is caught in CI.

torch -> ONNX -> onnx2tf (float32 + full-integer int8) -> bundle (write_bundle)
-> TFLiteModel (the gateway's runtime), in both input layouts, on real windows
of the PTB-XL records shipped in the repository.
"""
import json

import numpy as np
import pytest

pytestmark = [pytest.mark.convert, pytest.mark.slow]

torch = pytest.importorskip("torch")
pytest.importorskip("onnx2tf")
pytest.importorskip("ai_edge_litert")

from selfmis.bundle import load_bundle  # noqa: E402
from selfmis.edge_runtime.interpreter import TFLiteModel  # noqa: E402
from selfmis.preprocess import PreprocessSpec  # noqa: E402
from selfmis.quantize import tflite_predict  # noqa: E402
from selfmis.quantize.card import bundle_tflite, make_card  # noqa: E402
from selfmis.quantize.convert import convert_onnx, tflite_op_names  # noqa: E402
from selfmis.quantize.export_onnx import export_onnx, onnx_op_types, onnx_parity  # noqa: E402
from selfmis.quantize.student import ExportWrapper, Student, StudentConfig, fold_batchnorm  # noqa: E402
from selfmis.quantize.validate import ValidationError, check_fp32_parity  # noqa: E402

TINY = StudentConfig(stem_channels=4, blocks=[[8, 2], [12, 2]], kernel=5)
LABELS = ["MI", "IMI", "ASMI", "ILMI", "AMI", "ALMI", "LMI", "IPLMI", "IPMI", "PMI", "NORM"]


@pytest.fixture(scope="module")
def windows(bundled_ptbxl):
    """Real preprocessed Lead-I windows (9 shipped records, 5 s every 1 s -> 54 windows)."""
    from selfmis.quantize.windows import load_lead1, windows_of

    ds = load_lead1(folds=range(1, 11), data_root=bundled_ptbxl)
    return windows_of(ds).X


@pytest.fixture(scope="module")
def tiny_student():
    torch.manual_seed(0)
    m = Student(TINY)
    # give BN non-trivial statistics, as after training
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(torch.randn(16, 1, 500) * 2)
    return m.eval()


@pytest.fixture(scope="module", params=["NWC", "NCW"])
def converted(request, tmp_path_factory, tiny_student, windows):
    work = tmp_path_factory.mktemp(f"chain-{request.param}")
    onnx_path = export_onnx(tiny_student, work / "tiny.onnx", 500)
    files = convert_onnx(onnx_path, work / "tfl", windows, keep_ncw=request.param == "NCW")
    return request.param, onnx_path, files, work


def test_onnx_is_bn_free_and_matches_torch(converted, tiny_student, windows):
    _, onnx_path, _, _ = converted
    ops = onnx_op_types(onnx_path)
    assert "BatchNormalization" not in ops and "Conv" in ops
    assert onnx_parity(tiny_student, onnx_path, windows[:8]) <= 1e-4


def test_layout_and_dtypes(converted):
    layout, _, files, _ = converted
    assert files.layout == layout
    card = make_card(files.int8, files.layout, LABELS)
    want = [1, 500, 1] if layout == "NWC" else [1, 1, 500]
    assert card.input.shape == want and card.input.layout == layout
    assert card.input.dtype == "int8" and card.output.dtype == "int8"
    assert card.input.scale > 0 and card.output.scale > 0 and card.output.shape == [1, 11]
    f32 = make_card(files.float32, files.layout, LABELS)
    assert f32.input.dtype == "float32" and f32.input.shape == want
    assert "BATCH_MATMUL" not in tflite_op_names(files.int8)


def test_fp32_parity_and_int8_agreement_through_runtime(converted, tiny_student, windows):
    _, _, files, work = converted
    b32 = bundle_tflite(work / "b32", files.float32, make_card(files.float32, files.layout, LABELS))
    b8 = bundle_tflite(work / "b8", files.int8, make_card(files.int8, files.layout, LABELS))
    with torch.no_grad():
        ref = ExportWrapper(fold_batchnorm(tiny_student))(torch.from_numpy(windows[:, None])).numpy()
    f32 = TFLiteModel(b32.directory).predict_logits(windows)
    assert check_fp32_parity(ref, f32) <= 1e-4
    i8 = tflite_predict(b8.directory)(windows[:, None, :])  # (N, 1, W) like the evaluator
    assert i8.shape == ref.shape
    # int8 tracks fp32: error small against the logit spread, and the ranking per task is kept
    spread = ref.max() - ref.min()
    assert np.abs(i8 - f32).max() <= 0.1 * spread + 1e-3
    assert np.corrcoef(i8.ravel(), f32.ravel())[0, 1] > 0.99
    # decisions agree for the tasks whose logits vary well above the int8 output step
    step = load_bundle(b8.directory).card.output.scale
    for j in range(ref.shape[1]):
        if f32[:, j].std() > 10 * step:
            med = np.median(f32[:, j])
            assert np.mean((i8[:, j] >= med) == (f32[:, j] >= med)) >= 0.8


def test_card_fields_roundtrip(converted):
    _, _, files, work = converted
    card = make_card(files.int8, files.layout, LABELS, thresholds={"MI": 0.4}, params=123,
                     metrics={"data": "x", "split": "strat_fold [10]", "fs": 100, "lead": "I", "seed": 0},
                     training={"teacher": "t.pt"})
    b = bundle_tflite(work / "card", files.int8, card)
    loaded = load_bundle(b.directory).card
    assert loaded.spec == PreprocessSpec() and loaded.labels == LABELS and loaded.lead == "I"
    assert loaded.thresholds == {"MI": 0.4} and loaded.params == 123
    assert loaded.file_size == files.int8.stat().st_size and len(loaded.sha256) == 64
    for pkg in ("torch", "onnx", "onnx2tf", "tensorflow"):
        assert loaded.versions.get(pkg), pkg
    raw = json.loads((b.directory / "card.json").read_text())
    assert raw["input"]["layout"] == files.layout


def test_parity_check_fails_loudly():
    with pytest.raises(ValidationError, match="conversion is broken"):
        check_fp32_parity(np.zeros((2, 11)), np.full((2, 11), 1e-3))
