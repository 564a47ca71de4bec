"""Reports are views of data: each committed Markdown report under benchmarks/results/ is what its
one render function makes of its committed JSON (about 5 s)."""
import json
import math
import re
import shutil

import pytest

from selfmis.benchmarks import reports, students_report

NUM = re.compile(r"(?<![\w.])-?\d+\.\d{2,}(?![\w.])")
#: studies whose every decimal figure comes from a float of their JSON (see surviving_numbers)
FLOAT_VIEWS = ("bench-beats", "bench-gateway", "beats", "export", "gateway-scale", "gateway-scale-run1",
               "gateway-outlets", "live-paths", "paced-10min", "quantize", "seed-check", "training-scale",
               "scaling-reduced")


def _perturb(o, f, c):
    if isinstance(o, bool) or o is None:
        return o
    if isinstance(o, float):
        return o * f + c if math.isfinite(o) else o
    if isinstance(o, dict):
        return {k: _perturb(v, f, c) for k, v in o.items()}
    if isinstance(o, list):
        return [_perturb(v, f, c) for v in o]
    return o


def _strings(o, out):
    if isinstance(o, str):
        out.append(o)
    elif isinstance(o, dict):
        for v in o.values():
            _strings(v, out)
    elif isinstance(o, list):
        for v in o:
            _strings(v, out)
    return out


def surviving_numbers(render, data) -> set:
    """Decimal figures of ``render(data)`` that stay put when every float of the data moves (twice,
    differently) and that no string of the data holds: numbers typed into the generator."""
    a = set(NUM.findall(render(data)))
    for f, c in ((1.37, 0.0113), (0.71, 0.0271)):
        a &= set(NUM.findall(render(_perturb(data, f, c))))
    text = _strings(data, [])
    return {x for x in a if not any(x in t for t in text)}


def test_every_committed_report_is_a_render_of_its_json():
    bad = reports.check()
    assert not bad, "re-render with `make results-render` and commit:\n" + "\n".join(d for _, d in bad)[:6000]
    assert reports._missing() == [], ("a Markdown report under benchmarks/results that no study renders: add a "
                                      "Study (its JSON, render function, command) to benchmarks/reports.py STUDIES")


def test_a_report_edited_by_hand_or_left_stale_is_caught(tmp_path):
    root = tmp_path / "results"
    shutil.copytree(reports.RESULTS, root, ignore=shutil.ignore_patterns("*.png"))
    s = reports.BY_NAME["students"]
    data = json.loads((root / s.json).read_text())
    data["rows"]["dscnn-6k"]["val_int8"]["MI"]["auroc"] = 0.9123  # a new run; the README not re-rendered
    (root / s.json).write_text(json.dumps(data))
    assert [x[0].name for x in reports.check(root)] == ["students"]


@pytest.mark.parametrize("name", FLOAT_VIEWS)
def test_no_figure_is_typed_into_a_generator(name):
    s = reports.BY_NAME[name]
    assert surviving_numbers(s.render, reports.load(s)) == set()


def test_a_planted_number_in_a_generator_is_caught(monkeypatch):
    s = reports.BY_NAME["students"]
    data = reports.load(s)
    honest = surviving_numbers(s.render, data)
    monkeypatch.setattr(students_report, "_shipped_note",  # the sentence the generator used to type
                        lambda rows, pick: "Shipped: `default` = dscnn-6k (validation MI 0.830 against 0.805)")
    planted = surviving_numbers(students_report.render, data)
    assert {"0.830", "0.805"} <= planted - honest
