"""Docstrings that say how to call (issue 26, item 7): Parameters / Returns / Raises / Example
on the public API of selfmis.readers, Pipeline, the interpreter wrapper and the CLI entry points,
and the examples run as written (from the repository root)."""
from __future__ import annotations

import doctest
import os
from pathlib import Path

import pytest

from selfmis import cli as selfmis_cli
from selfmis import readers
from selfmis.edge_runtime import cli, recording_cli, runtime
from selfmis.edge_runtime.interpreter import TFLiteModel
from selfmis.edge_runtime.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]

# object -> the sections it must have
API = {
    readers.read_record: ("Parameters", "Returns", "Raises", "Example"),
    readers.open_lead: ("Parameters", "Returns", "Raises", "Example"),
    readers.stream_lead: ("Parameters", "Returns", "Raises", "Example"),
    readers.detect_format: ("Parameters", "Returns", "Raises", "Example"),
    readers.read_header: ("Parameters", "Returns", "Raises", "Example"),
    readers.Record: ("Parameters", "Example"),
    readers.Record.lead: ("Parameters", "Returns", "Raises"),
    Pipeline: ("Parameters", "Raises", "Example"),
    Pipeline.handle: ("Parameters", "Returns"),
    Pipeline.flush: ("Returns",),
    Pipeline.summary: ("Parameters", "Returns"),
    TFLiteModel: ("Parameters", "Raises", "Example"),
    TFLiteModel.predict_logits: ("Parameters", "Returns", "Raises"),
    TFLiteModel.predict_proba: ("Parameters", "Returns", "Raises"),
    TFLiteModel.predict_int8: ("Parameters", "Returns"),
    cli.main: ("Parameters", "Returns", "Example"),
    cli.run: ("Parameters", "Returns"),
    runtime.run: ("Parameters", "Returns"),
    runtime.device_specs: ("Parameters", "Returns", "Raises"),
    runtime.derive_id: ("Parameters", "Example"),
    recording_cli.main: ("Parameters", "Returns", "Example"),
    selfmis_cli.main: ("Parameters", "Returns", "Example"),
}


@pytest.mark.parametrize("obj", list(API), ids=[o.__qualname__ for o in API])
def test_public_api_says_how_to_call(obj):
    doc = obj.__doc__ or ""
    missing = [s for s in API[obj] if f"\n{s}\n" not in "\n" + "\n".join(l.strip() for l in doc.splitlines())]
    assert not missing, f"{obj.__module__}.{obj.__qualname__}: no {', '.join(missing)} section"


RUNNABLE = [o for o in API if ">>>" in (o.__doc__ or "") and "+SKIP" not in o.__doc__]  # not: a live run


@pytest.mark.parametrize("obj", RUNNABLE, ids=[o.__qualname__ for o in RUNNABLE])
def test_examples_run_as_written(obj, monkeypatch):
    monkeypatch.chdir(REPO)
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    globs = {**vars(__import__(obj.__module__, fromlist=["_"]))}
    for t in finder.find(obj, obj.__qualname__, globs=globs):
        runner.run(t)
    assert runner.tries > 0 and runner.failures == 0, f"{obj.__qualname__}: {runner.failures} example(s) failed"
