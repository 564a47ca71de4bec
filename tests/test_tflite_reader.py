"""The one .tflite reader (selfmis.bundle.read_tflite_graph / model_operators), checked against LiteRT."""
import subprocess
import sys

import pytest

from selfmis.bundle import BundleError, model_operators, read_tflite_graph
from test_fb_deploy import _FBWriter, tiny_tflite
from test_edge_support import stand_in_bundle

pytest.importorskip("tflite")


def _shipped():
    from selfmis.edge_runtime.models import default_bundle_dir
    return default_bundle_dir() / "model.tflite"


def _benchmark_standins():
    from selfmis.benchmarks.standin import standin_files
    f = standin_files()
    return [f["tflite_fp32"], f["tflite_int8"]]


def _litert(path):
    """LiteRT without its default delegate: the op list is the model's own nodes, not one DELEGATE."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    it = litert.Interpreter(model_path=str(path), num_threads=1,
                            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def _check_against_litert(path):
    g = read_tflite_graph(path)
    it = _litert(path)
    nodes = it._get_ops_details()  # private, but the interpreter's own view of the graph
    assert model_operators(path) == sorted({n["op_name"] for n in nodes})
    # node by node: same operator, same tensors, in the same execution order
    assert [(op.index, op.name, list(op.inputs), list(op.outputs)) for op in g.operators] == \
        [(n["index"], n["op_name"], [int(i) for i in n["inputs"]], [int(o) for o in n["outputs"]])
         for n in nodes]
    details = {d["index"]: d for d in it.get_tensor_details()}
    assert len(details) >= len(g.tensors)  # the interpreter appends its own scratch tensors
    for t in g.tensors:
        d = details[t.index]
        assert (t.name, list(t.shape)) == (d["name"], [int(s) for s in d["shape"]])
        assert t.dtype == __import__("numpy").dtype(d["dtype"]).name
    assert [d["index"] for d in it.get_input_details()] == g.inputs
    assert [d["index"] for d in it.get_output_details()] == g.outputs
    return g


def test_the_shipped_model_reads_as_litert_sees_it():
    model = _shipped()
    if not model.is_file():
        pytest.skip(f"no shipped model at {model}")
    g = _check_against_litert(model)
    assert {"CONV_2D", "FULLY_CONNECTED"} <= set(g.operator_names)


@pytest.mark.parametrize("which", [0, 1], ids=["float32", "int8"])
def test_benchmark_standins_read_as_litert_sees_them(which):
    path = _benchmark_standins()[which]
    if not path.is_file():
        pytest.skip(f"{path} not committed")
    g = _check_against_litert(path)
    assert len(g.operator_names) >= 3


def test_a_tf_converted_model_with_several_op_types():
    pytest.importorskip("tensorflow")
    from pathlib import Path
    path = Path(stand_in_bundle()) / "model.tflite"
    g = _check_against_litert(path)
    # Conv1D -> CONV_2D between reshapes, pooling -> MEAN, Dense -> FULLY_CONNECTED
    assert {"CONV_2D", "FULLY_CONNECTED", "MEAN"} <= set(g.operator_names), g.operator_names
    assert any(t.constant for t in g.tensors) and g.tensors[g.inputs[0]].dtype == "int8"


def _model_with_opcodes(opcodes):
    """tiny_tflite's graph, with the two operators' codes replaced (fields of OperatorCode)."""
    sub = [
        (0, "vec_table", [[(0, "vec_i32", [1, 4]), (3, "str", "in")], [(0, "vec_i32", [1, 4]), (3, "str", "out")]]),
        (1, "vec_i32", [0]), (2, "vec_i32", [1]),
        (3, "vec_table", [[(0, "u32", i), (1, "vec_i32", [0]), (2, "vec_i32", [1])] for i in range(len(opcodes))]),
    ]
    return _FBWriter().finish([(0, "u32", 3), (1, "vec_table", opcodes), (2, "vec_table", [sub]),
                               (4, "vec_table", [[]])])


def test_custom_ops_by_name_and_codes_above_127():
    data = _model_with_opcodes([
        [(0, "i8", 32), (1, "str", "SelfmisCustomFilter"), (2, "i32", 1), (3, "i32", 32)],  # CUSTOM
        [(0, "i8", 127), (2, "i32", 1), (3, "i32", 150)],   # GELU: only in the int32 builtin_code
        [(0, "i8", 14), (2, "i32", 2)],                     # LOGISTIC in an old file: int8 field only
    ])
    g = read_tflite_graph(data)
    assert [(op.name, op.custom, op.version) for op in g.operators] == [
        ("SelfmisCustomFilter", True, 1), ("GELU", False, 1), ("LOGISTIC", False, 2)]
    assert model_operators(data) == ["GELU", "LOGISTIC", "SelfmisCustomFilter"]
    from selfmis.firmware_bridge import deploy
    info = deploy.read_tflite(data)
    assert info["custom_ops"] == ["SelfmisCustomFilter"]


def test_export_c_registers_what_the_reader_lists(tmp_path):
    from selfmis.firmware_bridge import deploy, tflm_export
    model = _shipped()
    if not model.is_file():
        pytest.skip("no shipped model")
    info = deploy.export_c_array(model, tmp_path)
    header = (tmp_path / "model_data.h").read_text()
    assert info["ops"] == model_operators(model)
    for op in model_operators(model):
        assert f"resolver.Add{tflm_export._camel(op)}();" in header
    assert f"MicroMutableOpResolver<{len(info['ops'])}>" in header


def test_damaged_files_name_the_file(tmp_path):
    bad = tmp_path / "cut.tflite"
    bad.write_bytes(tiny_tflite()[:60])
    with pytest.raises(BundleError, match="cut.tflite"):
        read_tflite_graph(bad)
    (tmp_path / "x.tflite").write_bytes(b"\0" * 64)
    with pytest.raises(BundleError, match="TFL3"):
        model_operators(tmp_path / "x.tflite")


def test_the_base_layer_imports_tflite_only_when_reading():
    code = "import sys, selfmis.bundle; print('tflite' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
