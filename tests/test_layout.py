"""The package layout: one `selfmis` namespace from several folders, imports flowing one way.

* a plain (non-editable) install works from the repository root: no folder there shadows `selfmis`;
* import-linter keeps the contracts in pyproject.toml and catches a back-import when one is added.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder -> where it sits in the installed `selfmis` package (pyproject's [tool.setuptools.package-dir])
FOLDERS = {"core": "", "train": "train", "quantize": "quantize", "edge_runtime": "edge_runtime",
           "firmware_bridge": "firmware_bridge", "benchmarks": "benchmarks"}


def _lint_imports():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[dev]')")
    return str(exe)


def _package_tree(dest: Path) -> Path:
    """The installed layout of the Python sources (what setuptools builds), under ``dest``."""
    root = dest / "selfmis"
    for folder, sub in FOLDERS.items():
        shutil.copytree(REPO / folder, root / sub, dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names
                                                 if not (n.endswith(".py") or (Path(d) / n).is_dir())
                                                 or n in ("__pycache__", "results", "ptbxl")])
    return root


def _run_lint(tree: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(tree))  # the copy shadows the editable install
    return subprocess.run([_lint_imports(), str(REPO / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_contracts_hold_and_a_back_import_breaks_them(tmp_path):
    root = _package_tree(tmp_path)
    ok = _run_lint(tmp_path)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-2000:]
    assert "BROKEN" not in ok.stdout and "KEPT" in ok.stdout

    # the gateway reaching back into training: exactly what the layers forbid
    (root / "edge_runtime" / "_back_import.py").write_text("from selfmis.train import data  # noqa\n")
    bad = _run_lint(tmp_path)
    assert bad.returncode != 0
    assert "BROKEN" in bad.stdout and "selfmis.edge_runtime._back_import -> selfmis.train" in bad.stdout


def test_a_cycle_between_sub_packages_is_caught(tmp_path):
    root = _package_tree(tmp_path)
    # quantize -> train exists; train -> quantize closes a cycle
    (root / "train" / "_cycle.py").write_text("import selfmis.quantize.metrics  # noqa\n")
    bad = _run_lint(tmp_path)
    assert bad.returncode != 0 and "BROKEN" in bad.stdout


@pytest.mark.skipif(os.environ.get("SELFMIS_SKIP_INSTALL_TEST") == "1", reason="SELFMIS_SKIP_INSTALL_TEST=1")
def test_plain_install_of_the_edge_extra_works_from_the_repository_root(tmp_path):
    """`pip install '.[edge]'` (not editable) into a fresh venv, then import from the repository root:
    nothing in the root may shadow the installed package, and no training stack comes along."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    src = tmp_path / "src"  # build from a copy: the build must not write into the checkout
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info",
                                                             "__pycache__", ".pytest_cache", "runs",
                                                             "artifacts"))
    inst = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{src}[edge]"],
                          capture_output=True, text=True, timeout=600)
    if inst.returncode != 0 and ("Could not find a version" in inst.stderr or "No matching distribution"
                                 in inst.stderr):
        pytest.skip(f"package index unreachable: {inst.stderr[-300:]}")
    assert inst.returncode == 0, inst.stderr[-3000:]
    code = ("import sys, selfmis, selfmis.cli, selfmis.edge_runtime.cli, selfmis.firmware_bridge; "
            "print(selfmis.__file__); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorflow', 'scipy', 'pandas'}))")
    out = subprocess.run([str(py), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    where, heavy = out.stdout.split("\n")[:2]
    assert "site-packages" in where and heavy == "[]"
    helped = subprocess.run([str(venv / "bin" / "edge-run"), "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert helped.returncode == 0 and "usage: edge-run" in helped.stdout
