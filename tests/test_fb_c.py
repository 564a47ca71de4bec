"""The C99 framing (firmware_bridge/c) against the shared test vectors."""
import shutil
import subprocess
from pathlib import Path

import pytest

import selfmis.firmware_bridge as fb

C_DIR = Path(fb.__file__).resolve().parent / "c"
GCC = shutil.which("gcc")
pytestmark = pytest.mark.skipif(GCC is None, reason="gcc not installed (apt-get install gcc)")

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]


def _build_and_run(tmp_path, extra=()):
    exe = tmp_path / "test_frame"
    cmd = [GCC, *STRICT, *extra, f"-I{C_DIR}", str(C_DIR / "test_frame.c"),
           str(C_DIR / "selfmis_frame.c"), "-o", str(exe)]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, f"{' '.join(cmd)}\n{build.stderr}"
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 failures" in run.stdout
    return run.stdout


def test_c_codec_matches_python_vectors(tmp_path):
    out = _build_and_run(tmp_path, ["-O1"])
    assert int(out.split()[0]) > 500  # the vectors were really exercised


def test_c_codec_under_sanitizers(tmp_path):
    probe = subprocess.run([GCC, "-fsanitize=address,undefined", "-x", "c", "-", "-o",
                            str(tmp_path / "probe")], input="int main(void){return 0;}",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("gcc has no address/undefined sanitizer runtime here")
    _build_and_run(tmp_path, ["-g", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"])


def test_c_codec_compiles_small_and_warning_free(tmp_path):
    """What an AVR build would see: a small buffer, conversions checked."""
    cmd = [GCC, *STRICT, "-Wconversion", "-Wshadow", "-DSM_MAX_PAYLOAD=128u", "-c",
           str(C_DIR / "selfmis_frame.c"), "-o", str(tmp_path / "f.o")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
