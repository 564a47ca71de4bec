"""Deployment: release archives, push/rollback (local dir and ssh to a loopback sshd), TFLM export."""
import json
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from selfmis.bundle import ModelCard, TensorSpec, write_bundle
from selfmis.exit_codes import ExitCode
from selfmis.firmware_bridge import deploy
from selfmis.firmware_bridge.deploy import DeployError


# --- a tiny, valid .tflite built by hand ---------------------------------------------
# FlatBuffers written front to back: every table is preceded by its vtable and
# its children (vectors, strings, tables) come after it, so every uoffset points
# forward as the format requires.  Fields: (index, kind, value).

class _FBWriter:
    def __init__(self):
        self.buf = bytearray()

    def _align(self, n):
        self.buf += b"\0" * (-len(self.buf) % n)

    def _patch(self, slot, target):
        struct.pack_into("<I", self.buf, slot, target - slot)

    def table(self, fields):
        self._align(4)
        nslots = max((i for i, _, _ in fields), default=-1) + 1
        layout, size = {}, 4
        for i, kind, _ in sorted(fields, key=lambda f: -_SIZES[f[1]]):
            w = _SIZES[kind]
            size += -size % w
            layout[i] = size
            size += w
        size += -size % 4
        vt = struct.pack("<HH", 4 + 2 * nslots, size) + b"".join(
            struct.pack("<H", layout.get(i, 0)) for i in range(nslots))
        vt_pos = len(self.buf)
        self.buf += vt
        self._align(4)
        pos = len(self.buf)
        self.buf += struct.pack("<i", pos - vt_pos) + b"\0" * (size - 4)
        children = []
        for i, kind, value in fields:
            at = pos + layout[i]
            if kind in _SCALAR:
                struct.pack_into(_SCALAR[kind], self.buf, at, value)
            else:
                children.append((at, kind, value))
        for at, kind, value in children:
            self._patch(at, self._child(kind, value))
        return pos

    def _child(self, kind, value):
        self._align(4)
        pos = len(self.buf)
        if kind == "table":
            return self.table(value)
        if kind == "str":
            raw = value.encode()
            self.buf += struct.pack("<I", len(raw)) + raw + b"\0"
        elif kind == "vec_u8":
            self.buf += struct.pack("<I", len(value)) + bytes(value)
        elif kind == "vec_i32":
            self.buf += struct.pack("<I", len(value)) + struct.pack(f"<{len(value)}i", *value)
        elif kind == "vec_table":
            self.buf += struct.pack("<I", len(value))
            slots = [len(self.buf) + 4 * k for k in range(len(value))]
            self.buf += b"\0" * (4 * len(value))
            for slot, fields in zip(slots, value):
                self._patch(slot, self.table(fields))
        return pos

    def finish(self, root_fields, ident=b"TFL3"):
        self.buf += b"\0\0\0\0" + ident
        self._patch(0, self.table(root_fields))
        return bytes(self.buf)


_SCALAR = {"i8": "<b", "u8": "<B", "i32": "<i", "u32": "<I"}
_SIZES = {"i8": 1, "u8": 1, "i32": 4, "u32": 4, "table": 4, "str": 4, "vec_u8": 4,
          "vec_i32": 4, "vec_table": 4}


def tiny_tflite(n_in=4, n_out=2):
    """float32: y = logistic(W x + b), W (n_out, n_in) = 0.1, b = 0."""
    w = np.full((n_out, n_in), 0.1, dtype=np.float32).tobytes()
    b = np.zeros(n_out, dtype=np.float32).tobytes()

    def tensor(name, shape, buf):
        return [(0, "vec_i32", shape), (1, "i8", 0), (2, "u32", buf), (3, "str", name)]

    subgraph = [
        (0, "vec_table", [tensor("input", [1, n_in], 0), tensor("weights", [n_out, n_in], 1),
                          tensor("bias", [n_out], 2), tensor("fc", [1, n_out], 0),
                          tensor("output", [1, n_out], 0)]),
        (1, "vec_i32", [0]), (2, "vec_i32", [4]),
        (3, "vec_table", [[(0, "u32", 0), (1, "vec_i32", [0, 1, 2]), (2, "vec_i32", [3])],
                          [(0, "u32", 1), (1, "vec_i32", [3]), (2, "vec_i32", [4])]]),
        (4, "str", "main"),
    ]
    model = [
        (0, "u32", 3),
        (1, "vec_table", [[(0, "i8", 9), (2, "i32", 1), (3, "i32", 9)],     # FULLY_CONNECTED
                          [(0, "i8", 14), (2, "i32", 1), (3, "i32", 14)]]),  # LOGISTIC
        (2, "vec_table", [subgraph]),
        (3, "str", "selfmis test model"),
        (4, "vec_table", [[], [(0, "vec_u8", w)], [(0, "vec_u8", b)]]),
    ]
    return _FBWriter().finish(model)


def test_tiny_tflite_runs_in_the_real_interpreter():
    """Keeps the hand-built fixture honest (skipped where no TFLite runtime is installed)."""
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    it = litert.Interpreter(model_content=tiny_tflite())
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], np.ones((1, 4), np.float32))
    it.invoke()
    y = it.get_tensor(it.get_output_details()[0]["index"])
    np.testing.assert_allclose(y, 1 / (1 + np.exp(-0.4)) * np.ones((1, 2)), rtol=1e-6)


def test_read_tflite_ops_io_and_arena():
    info = deploy.read_tflite(tiny_tflite())
    assert info["ops"] == ["FULLY_CONNECTED", "LOGISTIC"]
    assert info["inputs"] == [{"name": "input", "shape": [1, 4], "dtype": "float32"}]
    assert info["outputs"][0]["shape"] == [1, 2] and info["n_operators"] == 2
    assert info["weights_bytes"] == 8 * 4 + 2 * 4
    a = info["arena"]
    # live at op 0: input (16) + fc (8 -> 16) ; at op 1: fc + output -> peak 32 bytes
    assert a["activations_peak_bytes"] == 32
    assert a["recommended_bytes"] % 1024 == 0 and a["recommended_bytes"] >= a["overhead_bytes"]
    with pytest.raises(DeployError, match="TFL3"):
        deploy.read_tflite(b"\0" * 32)


def test_export_c_array_compiles(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(tiny_tflite())
    info = deploy.export_c_array(model, tmp_path / "out", name="g_ecg_model")
    h = (tmp_path / "out" / "model_data.h").read_text()
    assert "resolver.AddFullyConnected();" in h and "resolver.AddLogistic();" in h
    assert "ESTIMATE" in h and str(info["arena"]["recommended_bytes"]) in h
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not installed")
    main_cc = tmp_path / "out" / "main.cc"
    main_cc.write_text('#include "model_data.h"\n#include <cstdio>\n#include <cstring>\n'
                       "int main(){ std::printf(\"%u %zu\\n\", g_ecg_model_len, kGEcgModelTensorArenaSize);"
                       " return std::memcmp(g_ecg_model + 4, \"TFL3\", 4) != 0; }\n")
    exe = tmp_path / "out" / "a.out"
    r = subprocess.run([gxx, "-std=c++17", "-Wall", "-Werror", str(main_cc),
                        str(tmp_path / "out" / "model_data.cc"), "-o", str(exe)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.split()[0] == str(len(tiny_tflite()))


# --- bundles and archives -------------------------------------------------------------

def make_bundle(directory, tag=0):
    card = ModelCard(
        name=f"tiny-{tag}", lead="I", labels=["MI", "NORM"], preprocessing={"fs": 100},
        input=TensorSpec("input", [1, 500, 1], "float32", layout="NWC"),
        output=TensorSpec("output", [1, 2], "float32"), description=f"test bundle {tag}")
    model = bytearray(tiny_tflite())
    model += bytes([tag])  # a trailing byte is ignored by readers: distinct files per tag
    write_bundle(directory, bytes(model), card)
    return directory


@pytest.fixture(scope="module")
def release_key(tmp_path_factory):
    """An ed25519 release key (private at the path, public at path + .pub)."""
    d = tmp_path_factory.mktemp("release-key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", str(d / "k")],
                   check=True)
    return d / "k"


def trusted(root, key):
    """A gateway root that trusts ``key`` (``selfmis deploy trust``, as at install)."""
    deploy.trust(root, str(key) + ".pub")
    return root


@pytest.fixture
def archives(tmp_path, release_key):
    out = {}
    for v, tag in (("1.0.0", 1), ("1.1.0", 2)):
        out[v] = tmp_path / f"release-{v}.tar.gz"
        deploy.pack_bundle(make_bundle(tmp_path / f"b{tag}", tag), out[v], v, sign_key=release_key)
    return out


def test_pack_bundle_manifest_and_reproducible(tmp_path, archives, monkeypatch):
    m = deploy.verify_archive(archives["1.0.0"])
    assert m["version"] == "1.0.0" and set(m["files"]) == {"model.tflite", "card.json", "runtime.json"}
    with tarfile.open(archives["1.0.0"]) as tar:
        assert tar.getnames()[0] == "MANIFEST.json"
        cfg = json.load(tar.extractfile("runtime.json"))
    assert cfg["lead"] == "I"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    one, two = tmp_path / "one.tar.gz", tmp_path / "two.tar.gz"
    assert deploy.pack_bundle(tmp_path / "b1", one, "1.0.0")["created"].startswith("2023-11-14")
    deploy.pack_bundle(tmp_path / "b1", two, "1.0.0")
    assert one.read_bytes() == two.read_bytes()
    with pytest.raises(DeployError, match="version"):
        deploy.pack_bundle(tmp_path / "b1", tmp_path / "x.tar.gz", "../evil")


def _rewrite(src, dst, edit):
    with tarfile.open(src) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(dst, "w:gz") as tar:
        for m, data in edit(members):
            m.size = len(data)
            import io
            tar.addfile(m, io.BytesIO(data))


def test_verify_rejects_tampering(tmp_path, archives):
    src = archives["1.0.0"]
    flipped = tmp_path / "flipped.tar.gz"
    _rewrite(src, flipped, lambda ms: [(m, d[:-1] + b"X" if m.name == "model.tflite" else d)
                                       for m, d in ms])
    with pytest.raises(DeployError, match="model.tflite does not match"):
        deploy.verify_archive(flipped)
    evil = tmp_path / "evil.tar.gz"

    def add_escape(ms):
        m = tarfile.TarInfo("../escape")
        return ms + [(m, b"x")]
    _rewrite(src, evil, add_escape)
    with pytest.raises(DeployError, match="plain file name"):
        deploy.verify_archive(evil)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DeployError, match="readable"):
        deploy.verify_archive(tmp_path / "junk.tar.gz")


def test_push_local_switch_and_rollback(tmp_path, archives, release_key):
    gw = trusted(tmp_path / "gateway", release_key)
    r1 = deploy.push(archives["1.0.0"], gw)
    assert r1["current"] == "1.0.0" and os.readlink(gw / "current") == "releases/1.0.0"
    assert r1["verified"] and r1["signed_by"] == "release"
    assert (gw / "current" / "model.tflite").is_file()
    r2 = deploy.push(archives["1.1.0"], gw)
    assert (r2["current"], r2["previous"]) == ("1.1.0", "1.0.0")
    # the installed release is a valid bundle for the runtime
    from selfmis.bundle import load_bundle
    assert load_bundle(gw / "current").card.name == "tiny-2"
    rb = deploy.rollback(gw)
    assert (rb["current"], rb["previous"]) == ("1.0.0", "1.1.0")
    assert load_bundle(gw / "current").card.name == "tiny-1"
    assert deploy.status(gw)["releases"] == ["1.0.0", "1.1.0"]
    # re-pushing an identical release is fine; a different one under the same version is not
    deploy.push(archives["1.1.0"], gw)
    other = tmp_path / "other.tar.gz"
    deploy.pack_bundle(make_bundle(tmp_path / "b3", 3), other, "1.1.0", sign_key=release_key)
    with pytest.raises(DeployError, match="already exists") as e:
        deploy.push(other, gw)
    assert e.value.exit_code == ExitCode.TARGET
    assert not [p for p in (gw / "releases").iterdir() if p.name.startswith(".")]
    assert not [p for p in gw.iterdir() if ".tmp" in p.name]


def test_rollback_without_previous(tmp_path, archives, release_key):
    gw = trusted(tmp_path / "gw", release_key)
    deploy.push(archives["1.0.0"], gw)
    with pytest.raises(DeployError, match="nothing to roll back"):
        deploy.rollback(gw)


def test_cli_bundle_push_rollback_export(tmp_path, capsys, release_key):
    b = make_bundle(tmp_path / "bundle", 5)
    arc = tmp_path / "r.tar.gz"
    gw = str(tmp_path / "gw")
    assert deploy.main(["bundle", str(b), "-o", str(arc), "--version", "2.0.0",
                        "--sign-key", str(release_key)]) == 0
    assert deploy.main(["verify", str(arc)]) == 0
    assert deploy.main(["trust", gw, "--pubkey", f"{release_key}.pub"]) == 0
    assert deploy.main(["push", str(arc), gw]) == 0
    capsys.readouterr()
    assert deploy.main(["status", gw]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["current"] == "2.0.0" and st["signatures_required"]
    assert deploy.main(["rollback", gw]) == ExitCode.TARGET  # nothing to roll back to
    assert deploy.main(["export-c", str(b), str(tmp_path / "c")]) == 0
    assert (tmp_path / "c" / "model_data.cc").is_file()
    assert deploy.main(["systemd-unit", "--root", "/srv/ecg"]) == 0
    unit = capsys.readouterr().out
    assert "ExecStart=/srv/ecg/venv/bin/edge-run" in unit and "/opt/selfmis" not in unit
    with pytest.raises(SystemExit):
        deploy.main([])


def test_is_remote():
    assert deploy.is_remote("pi@gw.local:/opt/selfmis") and deploy.is_remote("gw:rel")
    assert not deploy.is_remote("/tmp/a:b") and not deploy.is_remote("./x") \
        and not deploy.is_remote(":x")


# --- ssh to a throwaway sshd on 127.0.0.1 ------------------------------------------------

SSHD = shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd",) if os.path.exists(p)), None)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path):
    """An sshd on a free loopback port, key-only, with throwaway host and user keys."""
    if SSHD is None:
        pytest.skip("sshd not installed (apt-get install openssh-server openssh-client)")
    if shutil.which("ssh") is None or shutil.which("scp") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("ssh/scp/ssh-keygen not installed (apt-get install openssh-client)")
    d = tmp_path / "sshd"
    d.mkdir()
    os.chmod(d, 0o700)
    for key in ("host", "user"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    os.chmod(d / "authorized_keys", 0o600)
    sftp = next((p for p in ("/usr/lib/openssh/sftp-server", "/usr/libexec/openssh/sftp-server",
                             "/usr/libexec/sftp-server") if os.path.exists(p)), None)
    port = _free_port()
    user = os.environ.get("USER") or __import__("pwd").getpwuid(os.getuid()).pw_name
    config = [f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host'}",
              f"AuthorizedKeysFile {d / 'authorized_keys'}", "PasswordAuthentication no",
              "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "StrictModes no",
              "UsePAM no", f"PidFile {d / 'sshd.pid'}", "PermitRootLogin prohibit-password",
              f"AllowUsers {user}", "LogLevel ERROR"]
    if sftp:
        config.append(f"Subsystem sftp {sftp}")
    (d / "sshd_config").write_text("\n".join(config) + "\n")
    os.makedirs("/run/sshd", exist_ok=True) if os.geteuid() == 0 else None
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    opts = [f"Port={port}", f"IdentityFile={d / 'user'}", "IdentitiesOnly=yes",
            f"UserKnownHostsFile={d / 'known_hosts'}", "StrictHostKeyChecking=accept-new",
            "ConnectTimeout=10", "LogLevel=ERROR"]
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            pytest.skip(f"sshd would not start here: {proc.stdout.read().decode(errors='replace')[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.skip("sshd did not listen within 15 s")
            time.sleep(0.1)
    probe = subprocess.run(["ssh", *sum((["-o", o] for o in opts + ["BatchMode=yes"]), []),
                            f"{user}@127.0.0.1", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        proc.kill()
        pytest.skip(f"cannot log in to the test sshd as {user}: {probe.stderr.strip()[-300:]}")
    yield f"{user}@127.0.0.1", opts
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_push_and_rollback_over_ssh(tmp_path, archives, sshd, release_key):
    host, opts = sshd
    gw = tmp_path / "remote gateway"  # a space: remote quoting must hold
    to = f"{host}:{gw}"
    # no allowed_signers on the gateway yet: refused (code MODEL, from the gateway's JSON), nothing installed
    with pytest.raises(DeployError, match="no allowed_signers") as e:
        deploy.push(archives["1.0.0"], to, ssh_options=opts)
    assert e.value.exit_code == ExitCode.MODEL and not (gw / "current").exists()
    assert deploy.trust(to, f"{release_key}.pub", ssh_options=opts)["principal"] == "release"
    r1 = deploy.push(archives["1.0.0"], to, ssh_options=opts)
    assert r1["current"] == "1.0.0" and r1["activated"] and r1["signed_by"] == "release"
    r2 = deploy.push(archives["1.1.0"], to, ssh_options=opts,
                     post_cmd=f"touch {str(gw / 'restarted')!r}")
    assert (r2["current"], r2["previous"]) == ("1.1.0", "1.0.0")
    assert (gw / "restarted").exists()
    assert os.readlink(gw / "current") == "releases/1.1.0"
    assert not list((gw / "incoming").iterdir())  # uploaded archives are cleaned up
    rb = deploy.rollback(to, ssh_options=opts)
    assert rb["current"] == "1.0.0" and os.readlink(gw / "current") == "releases/1.0.0"
    st = deploy.status(to, ssh_options=opts)
    assert st["releases"] == ["1.0.0", "1.1.0"] and st["previous"] == "1.1.0"
    # a failing post command is reported, not swallowed
    with pytest.raises(DeployError, match="post command") as e:
        deploy.rollback(to, ssh_options=opts, post_cmd="exit 7")
    assert e.value.exit_code == ExitCode.TARGET


def test_ssh_errors_are_clear(tmp_path, archives):
    port = _free_port()  # nothing listens there
    with pytest.raises(DeployError, match="ssh 127.0.0.1") as e:
        deploy.push(archives["1.0.0"], "127.0.0.1:/tmp/x",
                    ssh_options=[f"Port={port}", "ConnectTimeout=5"])
    assert e.value.exit_code == ExitCode.TARGET


def test_keep_prunes_old_releases_but_never_current_or_previous(tmp_path, release_key):
    gw = trusted(tmp_path / "gw", release_key)
    for k in range(4):
        arc = tmp_path / f"r{k}.tar.gz"
        deploy.pack_bundle(make_bundle(tmp_path / f"b{k}", k), arc, f"0.{k}", sign_key=release_key)
        r = deploy.push(arc, gw, keep=2)
        os.utime(gw / "releases" / f"0.{k}", (1e9 + k, 1e9 + k))  # deterministic age order
    assert deploy.status(gw)["releases"] == ["0.2", "0.3"] and r["current"] == "0.3"
    deploy.rollback(gw)  # current 0.2, previous 0.3
    assert deploy.status(gw)["current"] == "0.2"


def test_concurrent_deploys_are_refused(tmp_path, archives, release_key):
    fcntl = pytest.importorskip("fcntl")
    gw = trusted(tmp_path / "gw", release_key)
    with open(gw / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(DeployError, match="another deploy") as e:
            deploy.push(archives["1.0.0"], gw)
        assert e.value.exit_code == ExitCode.TARGET
    deploy.push(archives["1.0.0"], gw)


def test_read_tflite_agrees_with_the_interpreter_on_the_shipped_model():
    """On a real converter-produced model (once one is shipped): same I/O and operators."""
    from selfmis.edge_runtime.models import default_bundle_dir
    model = default_bundle_dir() / "model.tflite"
    if not model.is_file():
        pytest.skip(f"no shipped model at {model} yet")
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    info = deploy.read_tflite(model.read_bytes())
    it = litert.Interpreter(model_path=str(model))
    it.allocate_tensors()
    assert [list(d["shape"]) for d in it.get_input_details()] == [t["shape"] for t in info["inputs"]]
    assert [list(d["shape"]) for d in it.get_output_details()] == [t["shape"] for t in info["outputs"]]
    # the operator list itself is checked against LiteRT in test_tflite_reader.py


# --- signatures are the default: no allowed_signers, no activation ---------------------

def test_a_gateway_without_allowed_signers_refuses_every_release_unless_allow_unsigned(
        tmp_path, archives, capsys, caplog):
    gw = tmp_path / "gw"
    with pytest.raises(DeployError, match="no allowed_signers.*selfmis deploy trust.*--allow-unsigned") as e:
        deploy.push(archives["1.0.0"], gw)  # signed, but nothing on the gateway to check it against
    assert e.value.exit_code == ExitCode.MODEL
    assert not (gw / "current").exists() and deploy.status(gw)["releases"] == []
    unsigned = tmp_path / "unsigned.tar.gz"
    deploy.pack_bundle(make_bundle(tmp_path / "u", 7), unsigned, "0.9.0")
    assert deploy.main(["push", str(unsigned), str(gw)]) == ExitCode.MODEL
    assert "no allowed_signers" in caplog.text
    assert deploy.status(gw)["current"] is None
    # the explicit opt-out installs, unverified, and says so loudly
    caplog.clear()
    assert deploy.main(["push", str(unsigned), str(gw), "--allow-unsigned"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["current"] == "0.9.0" and out["verified"] is False and out["signed_by"] is None
    assert "UNVERIFIED RELEASE" in caplog.text and not deploy.status(gw)["signatures_required"]


def test_allow_unsigned_never_overrides_a_trusted_gateway(tmp_path, release_key):
    gw = trusted(tmp_path / "gw", release_key)
    unsigned = tmp_path / "unsigned.tar.gz"
    deploy.pack_bundle(make_bundle(tmp_path / "u", 7), unsigned, "0.9.0")
    with pytest.raises(DeployError, match="not signed") as e:
        deploy.push(unsigned, gw, allow_unsigned=True)
    assert e.value.exit_code == ExitCode.MODEL and deploy.status(gw)["current"] is None


def test_deploy_exit_codes_are_the_documented_enum(tmp_path, archives):
    """gateway_ops (stdlib only, piped to gateways) repeats the ExitCode values: pinned here."""
    from selfmis.firmware_bridge import gateway_ops
    assert (gateway_ops.USAGE, gateway_ops.REFUSED, gateway_ops.SOURCE, gateway_ops.TARGET) == (
        ExitCode.USAGE, ExitCode.MODEL, ExitCode.SOURCE, ExitCode.TARGET)
    flipped = tmp_path / "flipped.tar.gz"
    _rewrite(archives["1.0.0"], flipped, lambda ms: [(m, d[:-1] + b"X" if m.name == "model.tflite" else d)
                                                     for m, d in ms])
    assert deploy.main(["verify", str(flipped)]) == ExitCode.MODEL
    assert deploy.main(["push", str(flipped), str(tmp_path / "gw"), "--allow-unsigned"]) == ExitCode.MODEL
    assert deploy.main(["verify", str(tmp_path / "missing.tar.gz")]) == ExitCode.SOURCE
    assert deploy.main(["bundle", str(tmp_path / "b1"), "-o", str(tmp_path / "x.tar.gz"),
                        "--version", "../x"]) == ExitCode.USAGE
    assert deploy.main(["systemd-unit", "--root", "relative/path"]) == ExitCode.USAGE
    assert deploy.main(["trust", str(tmp_path / "gw"), "--pubkey", str(tmp_path / "none.pub")]) == ExitCode.USAGE
