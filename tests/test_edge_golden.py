"""Single-device ``edge-run`` output is byte-for-byte what it was before the one-runtime refactor.

The golden lines (``tests/data/edge_run_golden.jsonl.gz``) were written by ``tests/edge_golden.py``
from the commit named in their first line, before ``edge-run`` and the gateway became one runtime;
each case is replayed here through today's code (wall-clock fields blanked, see that module).
"""
from __future__ import annotations

import difflib

import pytest

import edge_golden

GOLDEN = edge_golden.load()
CASES = edge_golden.cases()


def test_the_golden_file_covers_every_bundled_record_and_case():
    assert len(edge_golden.records()) >= 10
    assert [n for n, _ in CASES] == [n for n in GOLDEN if n != "head"]


@pytest.mark.parametrize("name,argv", CASES, ids=[n for n, _ in CASES])
def test_single_device_json_lines_are_unchanged(name, argv):
    want = GOLDEN[name]
    assert want["argv"] == argv
    got = edge_golden.run_case(argv)
    assert got["exit_code"] == want["exit_code"]
    if got["lines"] != want["lines"]:
        diff = "\n".join(difflib.unified_diff(want["lines"], got["lines"], "golden", "now", lineterm="", n=1))
        pytest.fail(f"{name}: JSON Lines changed\n{diff[:4000]}")
    assert want["exit_code"] != 0 or any('"type":"decision"' in l for l in got["lines"]) or "quiet" in name
