"""No module reads or imports another module's private names (issue 26: clear boundaries).

Walks the AST of every package module (core, edge_runtime, firmware_bridge, train, quantize,
benchmarks). A read ``obj._name`` is a boundary crossing when ``obj`` is not ``self``/``cls``
and ``_name`` is one of *our* private names (assigned as ``self._name``, or a private
function, class or module global somewhere in the packages) that the reading module does not
define itself. A value another module needs is a public (read-only) property; a benchmark
measures through a public hook (``Pipeline(clock=...)``, ``Pipeline.on_beat``), never by
replacing a private. Third-party privates (pyserial's ``_socket``, torch's ``_modules``) are
out of scope: they are not our boundaries. Nothing is allow-listed.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

from selfmis.edge_runtime.sources.base import Source

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "edge_runtime", "firmware_bridge", "train", "quantize", "benchmarks")


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined(tree) -> set:
    """Private names a module defines: ``self._x =``, ``def _x``, ``class _X``, ``_x =``."""
    own = set()
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(n.name)
        elif (isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name)
              and n.value.id in ("self", "cls")):
            own.add(n.attr)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            own.add(n.id)
    return {x for x in own if _private(x)}


@functools.lru_cache(maxsize=1)
def _trees() -> dict:
    return {p: ast.parse(p.read_text(encoding="utf-8"), str(p))
            for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def crossings(extra: dict | None = None) -> list:
    """``path:line: expr`` of every crossing; ``extra`` adds {path: source} modules (the self-test)."""
    trees = {**_trees(), **{REPO / k: ast.parse(v) for k, v in (extra or {}).items()}}
    defined = {p: _defined(t) for p, t in trees.items()}
    ours = set().union(*defined.values())
    found = []
    for p, tree in trees.items():
        for n in ast.walk(tree):
            if not (isinstance(n, ast.Attribute) and _private(n.attr)):
                continue
            if isinstance(n.value, ast.Name) and n.value.id in ("self", "cls"):
                continue
            if n.attr in ours and n.attr not in defined[p]:
                found.append(f"{p.relative_to(REPO)}:{n.lineno}: {ast.unparse(n)}")
        found += _private_imports(p, tree)
    return found


def _private_imports(path, tree) -> list:
    """``from <our module> import _name``: the same crossing as ``module._name``."""
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and (n.level or (n.module or "").split(".")[0] == "selfmis"):
            for a in n.names:
                if _private(a.name):
                    found.append(f"{path.relative_to(REPO)}:{n.lineno}: from {'.' * n.level}{n.module or ''} "
                                 f"import {a.name}")
    return found


def test_no_module_reads_another_modules_private_attributes():
    assert crossings() == []


def test_the_scan_finds_a_crossing():
    """The rule is not vacuous: a benchmark reading Pipeline._signal_s is caught."""
    probe = {"benchmarks/probe.py": "def f(pipe):\n    return pipe._signal_s\n",
             "benchmarks/probe2.py": "from selfmis.benchmarks.latency import _runner\nfrom ..decision import _x\n"}
    assert crossings(probe) == ["benchmarks/probe.py:2: pipe._signal_s",
                                "benchmarks/probe2.py:1: from selfmis.benchmarks.latency import _runner",
                                "benchmarks/probe2.py:2: from ..decision import _x"]


def test_source_is_an_abstract_base():
    import inspect
    assert inspect.isabstract(Source) and "_steps" in Source.__abstractmethods__

    class Incomplete(Source):
        pass
    try:
        Incomplete()
    except TypeError as exc:
        assert "_steps" in str(exc)
    else:
        raise AssertionError("a Source without _steps was instantiated")
