"""The whole `selfmis quantize` pipeline end to end, on the nine shipped records (smoke test)."""
import json

import pytest

pytestmark = [pytest.mark.convert, pytest.mark.slow]

pytest.importorskip("torch")
pytest.importorskip("onnx2tf")


def test_pipeline_with_standin_teacher_writes_a_valid_bundle(tmp_path, bundled_ptbxl):
    from selfmis.bundle import load_bundle
    from selfmis.edge_runtime.interpreter import TFLiteModel
    from selfmis.quantize.distill import DistillConfig
    from selfmis.quantize.pipeline import PipelineOptions, run_pipeline
    from selfmis.quantize.student import StudentConfig
    from selfmis.quantize.windows import Folds

    # the shipped records are all in fold 10: use it for every role (a smoke test, not a measurement)
    opts = PipelineOptions(out=tmp_path / "bundle", standin=True, work=tmp_path / "work", data=str(bundled_ptbxl),
                           student=StudentConfig(stem_channels=4, blocks=[[8, 2], [8, 2]], kernel=5),
                           distill=DistillConfig(epochs=1, batch=32), n_calib=32, n_boot=10, standin_epochs=1,
                           progress=False, folds=Folds(train=(10,), val=(10,), test=(10,)))
    report = run_pipeline(opts)
    assert report["teacher_kind"] == "stand-in"
    assert report["checks"]["fp32_tflite_vs_torch_max_abs"] <= 1e-4
    card = load_bundle(tmp_path / "bundle").card
    assert card.training["teacher_kind"] == "stand-in" and "STAND-IN" in card.description
    assert card.input.dtype == "int8" and card.metrics["split"] == "strat_fold [10]"
    assert TFLiteModel(tmp_path / "bundle").predict_logits([[0.0] * 500]).shape == (1, 11)
    table = json.loads((tmp_path / "work" / "results" / "quantize_results.json").read_text())
    assert set(table["results"]) == {"teacher", "student_torch", "student_fp32_tflite", "student_int8_tflite"}
    assert (tmp_path / "work" / "results" / "quantize_results.md").read_text().startswith("# Quantized")
