"""Ship a model bundle to a gateway, roll it back, or export it for TFLite Micro.

``selfmis deploy`` subcommands (see ``selfmis deploy --help``):

``bundle``  pack a bundle directory (``model.tflite`` + ``card.json``, see
            :mod:`selfmis.bundle`) and a runtime config into a
            release archive ``.tar.gz`` with a ``MANIFEST.json`` (version,
            size and sha256 of every file).
``push``    verify the archive, install it as ``releases/<version>/`` on a
            local directory or ``HOST:PATH`` (ssh/scp), switch ``current``
            atomically, keep the old one as ``previous``.
``rollback`` switch ``current`` back to ``previous``.
``status``  show current/previous/installed releases.
``gateway-config`` write a validated ``gateway.json`` (several devices, web
            view, MQTT, LSL) for a multi-device install (:mod:`.deploy_gateway`);
            ``bundle --gateway`` ships it in the release.
``export-c`` ``--engine tflm`` (default): write ``model_data.h/.cc`` (a C array) for
            TensorFlow Lite Micro, with the operators the model uses and its arena;
            ``--engine plain``: the model as plain C99 int8 code, no interpreter
            (:mod:`.c_model`); an operator it does not implement is refused
            (exit code ``MODEL``).

The gateway side is :mod:`.gateway_ops` (stdlib only); for a remote target
its source is piped to ``python3 -`` over ssh, so the gateway needs Python 3
and sshd, nothing else.  Authentication is whatever your ssh config says;
``BatchMode=yes`` is always set so a missing key fails instead of hanging
on a password prompt.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import logging
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from selfmis.bundle import CARD_NAME, BundleError, load_bundle, read_tflite_graph  # load_bundle verifies card + model sha256
from selfmis.exit_codes import CodedError
from selfmis.runtime_config import CONFIG_NAME as RUNTIME_CONFIG_NAME
from selfmis.runtime_config import default_runtime_config

from . import c_model, deploy_gateway, gateway_ops
from .deploy_gateway import GATEWAY_CONFIG_NAME
from .gateway_ops import DeployError, MANIFEST, RELEASE_FORMAT, RELEASE_FORMAT_VERSION, check_version

__all__ = ["DeployError", "pack_bundle", "verify_archive", "push", "rollback", "status",
           "is_remote", "render_systemd_unit", "TFLiteSummary", "read_tflite", "export_c_array", "main",
           "RUNTIME_CONFIG_NAME"]

log = logging.getLogger("selfmis.firmware_bridge.deploy")

SYSTEMD_UNIT = Path(__file__).resolve().parent / "systemd" / "selfmis-edge.service"


# --------------------------------------------------------------------------
# Packing
# --------------------------------------------------------------------------

def _created() -> str:
    """Now, or SOURCE_DATE_EPOCH (reproducible builds) when set."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return when.isoformat(timespec="seconds")


def _gateway_file(gateway_config) -> bytes:
    """A gateway.json for a release: checked by edge-run's validator; without a ``model`` it runs the
    release's own bundle (``"."``: the release folder, where the config sits)."""
    if isinstance(gateway_config, dict):
        cfg, name = dict(gateway_config), GATEWAY_CONFIG_NAME
    else:
        name = str(gateway_config)
        try:
            cfg = json.loads(Path(gateway_config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DeployError(f"{gateway_config}: unreadable gateway config ({e})") from None
    if not isinstance(cfg, dict):
        raise DeployError(f"{name}: the top level must be a JSON object")
    if not cfg.get("model"):
        cfg["model"] = "."
    try:
        deploy_gateway.validate_gateway_config(cfg, name)
    except ValueError as e:
        raise DeployError(str(e)) from None
    return (json.dumps(cfg, indent=2) + "\n").encode()


def sign_manifest(manifest_bytes: bytes, key) -> bytes:
    """An OpenSSH signature of the manifest (``ssh-keygen -Y sign -n selfmis-release``) with the
    private ed25519 key at ``key``; the manifest pins every file's sha256, so this signs the release."""
    with tempfile.TemporaryDirectory() as tmp:
        msg = Path(tmp) / MANIFEST
        msg.write_bytes(manifest_bytes)
        try:
            p = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(key), "-n", gateway_ops.SIG_NAMESPACE,
                                str(msg)], capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DeployError(f"ssh-keygen (OpenSSH) is needed to sign a release: {e}") from None
        sig = msg.with_name(MANIFEST + ".sig")
        if p.returncode != 0 or not sig.is_file():
            raise DeployError(f"{key}: ssh-keygen could not sign ({p.stderr.decode('utf-8', 'replace').strip()})")
        return sig.read_bytes()


def pack_bundle(bundle_dir, out_archive, version: str, runtime_config=None, gateway_config=None,
                sign_key=None) -> dict:
    """Pack a bundle directory into a verified release archive; return its manifest.

    ``runtime_config``: a dict, a path to a JSON file, or None (use
    ``runtime.json`` in the bundle directory if present, else
    :func:`default_runtime_config`). ``gateway_config`` (a dict or a path):
    a multi-device ``gateway.json`` to ship as well (see :func:`_gateway_file`).
    The archive is reproducible: sorted members, fixed mtimes and owners, no
    gzip timestamp.
    """
    check_version(version)
    try:
        bundle = load_bundle(bundle_dir)
    except ValueError as e:  # BundleError
        raise DeployError(str(e)) from None
    files: Dict[str, bytes] = {
        bundle.card.model_file: bundle.model_path.read_bytes(),
        CARD_NAME: (bundle.directory / CARD_NAME).read_bytes(),
    }
    if runtime_config is None and (bundle.directory / RUNTIME_CONFIG_NAME).is_file():
        runtime_config = bundle.directory / RUNTIME_CONFIG_NAME
    if runtime_config is None:
        cfg = default_runtime_config(bundle.card)
    elif isinstance(runtime_config, dict):
        cfg = runtime_config
    else:
        try:
            cfg = json.loads(Path(runtime_config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise DeployError(f"{runtime_config}: unreadable runtime config ({e})") from None
    files[RUNTIME_CONFIG_NAME] = (json.dumps(cfg, indent=2, sort_keys=True) + "\n").encode()
    if gateway_config is not None:
        files[GATEWAY_CONFIG_NAME] = _gateway_file(gateway_config)
    manifest = {
        "format": RELEASE_FORMAT,
        "format_version": RELEASE_FORMAT_VERSION,
        "version": version,
        "model": bundle.card.name,
        "model_file": bundle.card.model_file,
        "created": _created(),
        "files": {name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
                  for name, data in sorted(files.items())},
    }
    members = [(MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())]
    if sign_key is not None:
        members.append((gateway_ops.SIGNATURE, sign_manifest(members[0][1], sign_key)))
    members += sorted(files.items())
    out_archive = Path(out_archive)
    out_archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_archive.with_name(out_archive.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out_archive)
    verify_archive(out_archive)
    return manifest


def verify_archive(archive, allowed_signers=None) -> dict:
    """Check an archive (streamed, capped: :func:`gateway_ops.read_archive`), its hashes, its card
    (the schema, via :func:`load_bundle`) and, given an ``allowed_signers`` file, its signature;
    return the manifest (with ``signed``: whether it carries a signature)."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest, files = gateway_ops.read_archive(str(archive), tmp)
        if CARD_NAME not in files:
            raise DeployError(f"{archive}: no card.json in the release")
        try:
            load_bundle(tmp)  # schema, model file inside the bundle, TFL3, sha256 against the card
        except ValueError as e:  # BundleError
            raise DeployError(f"{archive}: {e}") from None
        if allowed_signers is not None:
            manifest["signed_by"] = gateway_ops.verify_signature(
                (Path(tmp) / MANIFEST).read_bytes(), files.get(gateway_ops.SIGNATURE), str(allowed_signers))
        manifest["signed"] = gateway_ops.SIGNATURE in files
    return manifest


# --------------------------------------------------------------------------
# Push / rollback
# --------------------------------------------------------------------------

def is_remote(to: str) -> bool:
    """``HOST:PATH`` / ``user@host:PATH`` (scp rule: a colon before any slash)."""
    to = str(to)
    head, sep, _ = to.partition(":")
    return bool(sep) and bool(head) and "/" not in head


def _ssh_base(options: Sequence[str]) -> List[str]:
    opts = ["-o", "BatchMode=yes"]
    for o in options:
        opts += ["-o", o]
    return opts


def _remote(host: str, op: str, args: Sequence[str], ssh_options: Sequence[str],
            ssh: str = "ssh", python: str = "python3", timeout: float = 120) -> dict:
    """Run gateway_ops.OP on HOST by piping its source into ``python3 -``."""
    src = Path(gateway_ops.__file__).read_text(encoding="utf-8")
    # ssh joins arguments into one remote shell command line: quote each
    remote_cmd = " ".join(shlex.quote(a) for a in [python, "-", op, *args])
    cmd = [ssh, *_ssh_base(ssh_options), host, remote_cmd]
    log.debug("running %s", " ".join(shlex.quote(c) for c in cmd))
    try:
        p = subprocess.run(cmd, input=src.encode(), capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise DeployError(f"{ssh!r} not found; install an OpenSSH client") from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"ssh {host}: no answer within {timeout:.0f} s") from None
    out = p.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(out[-1]) if out else None
    except ValueError:
        result = None
    if result is None:
        err = p.stderr.decode("utf-8", "replace").strip()
        raise DeployError(f"ssh {host} {op} failed (exit {p.returncode}): {err or 'no output'}")
    if "error" in result:
        raise DeployError(f"{host}: {result['error']}")
    return result


def _split_remote(to: str):
    host, _, path = str(to).partition(":")
    return host, (path or ".")


def push(archive, to, ssh_options: Sequence[str] = (), post_cmd: Optional[str] = None,
         ssh: str = "ssh", scp: str = "scp", force: bool = False, keep: Optional[int] = None) -> dict:
    """Install ``archive`` under ``to`` (a local directory or ``HOST:PATH``) and activate it.

    ``ssh_options`` are ``Key=Value`` strings passed as ``-o`` to both ssh
    and scp (``Port=2222``, ``IdentityFile=~/.ssh/pi``, ...).
    ``post_cmd`` runs on the gateway after the switch, e.g.
    ``sudo systemctl restart selfmis-edge``.  ``keep``: delete all but the
    ``keep`` newest releases afterwards (``current``/``previous`` always stay).
    """
    manifest = verify_archive(archive)
    if not manifest["signed"]:
        log.warning("%s is not signed: a gateway with an allowed_signers file will refuse it "
                    "(selfmis deploy bundle --sign-key KEY)", archive)
    if not is_remote(to):
        return gateway_ops.install(str(to), str(archive), post_cmd=post_cmd, force=force, keep=keep)
    host, path = _split_remote(to)
    incoming = _remote(host, "prepare", [path], ssh_options, ssh)["incoming"]
    remote_archive = f"{incoming}/{manifest['version']}-{os.getpid()}.tar.gz"
    cmd = [scp, "-q", *_ssh_base(ssh_options), str(archive), f"{host}:{remote_archive}"]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=600)
    except FileNotFoundError:
        raise DeployError(f"{scp!r} not found; install an OpenSSH client") from None
    if p.returncode != 0:
        raise DeployError(f"scp to {host} failed (exit {p.returncode}): "
                          f"{p.stderr.decode('utf-8', 'replace').strip()}")
    if force:
        log.warning("force is only honoured for local targets")
    return _remote(host, "install", [path, remote_archive, post_cmd or "",
                                     "" if keep is None else str(int(keep))], ssh_options, ssh)


def trust(to, public_key_file, principal: str = "release", ssh_options: Sequence[str] = (),
          ssh: str = "ssh") -> dict:
    """Set the gateway's ``allowed_signers`` (at install): from then on it activates only releases
    signed by the private half of ``public_key_file`` (an ed25519 ``.pub``)."""
    try:
        key = Path(public_key_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DeployError(f"{public_key_file}: cannot read the public key ({e})") from None
    if not is_remote(to):
        return gateway_ops.trust(str(to), key, principal)
    host, path = _split_remote(to)
    return _remote(host, "trust", [path, key.strip(), principal], ssh_options, ssh)


def rollback(to, ssh_options: Sequence[str] = (), post_cmd: Optional[str] = None,
             ssh: str = "ssh") -> dict:
    """Switch ``current`` back to ``previous`` on a local directory or ``HOST:PATH``."""
    if not is_remote(to):
        return gateway_ops.rollback(str(to), post_cmd=post_cmd)
    host, path = _split_remote(to)
    return _remote(host, "rollback", [path, post_cmd or ""], ssh_options, ssh)


def status(to, ssh_options: Sequence[str] = (), ssh: str = "ssh") -> dict:
    if not is_remote(to):
        return gateway_ops.status(str(to))
    host, path = _split_remote(to)
    return _remote(host, "status", [path], ssh_options, ssh)


#: systemd 254 added RestartSteps= / RestartMaxDelaySec= (restart backoff)
SYSTEMD_BACKOFF_VERSION = 254
# ProtectHome=yes makes these invisible to the service; a root or venv inside them needs read-only
_HOME_DIRS = ("/home", "/root", "/run/user")


def _under(path: str, parents) -> bool:
    path = os.path.normpath(path)
    return any(path == p or path.startswith(p + "/") for p in parents)


def render_systemd_unit(root: str = "/opt/selfmis", user: str = "selfmis",
                        venv: Optional[str] = None, edge_args: Optional[str] = None,
                        systemd_version: Optional[int] = None) -> str:
    """The unit template ``systemd/selfmis-edge.service`` with other paths/user/arguments.

    ``root``/``venv`` must be absolute (systemd rejects relative paths).  A root
    or venv under ``/home``, ``/root`` or ``/run/user`` gets
    ``ProtectHome=read-only`` (``yes`` would hide it from the service).
    ``systemd_version`` (``systemctl --version`` on the gateway): below 254 the
    restart-backoff keys it does not know are left out.
    """
    root = os.path.normpath(root) if root else "/"
    venv = os.path.normpath(venv) if venv else f"{root.rstrip('/')}/venv"
    for what, path in (("--root", root), ("--venv", venv)):
        if not os.path.isabs(path):
            raise DeployError(f"{what} {path!r}: systemd needs an absolute path")
        if any(c.isspace() or c in "\"'\\%$" for c in path):
            raise DeployError(f"{what} {path!r}: use a path without spaces, quotes, % or $ "
                              "(systemd would split or expand it)")
    if not user or any(c.isspace() for c in user):
        raise DeployError(f"--user {user!r}: not a user name")
    text = SYSTEMD_UNIT.read_text(encoding="utf-8")
    text = text.replace("/opt/selfmis/venv", venv).replace("/opt/selfmis/", root.rstrip("/") + "/")
    text = text.replace("/opt/selfmis", root)
    out = []
    for ln in text.splitlines():
        if ln.startswith("User="):
            ln = f"User={user}"
        elif ln.startswith('Environment="SELFMIS_EDGE_ARGS=') and edge_args is not None:
            ln = f'Environment="SELFMIS_EDGE_ARGS={edge_args}"'
        elif ln.startswith("ProtectHome=") and (_under(root, _HOME_DIRS) or _under(venv, _HOME_DIRS)):
            ln = "ProtectHome=read-only"
        elif ln.startswith(("RestartSteps=", "RestartMaxDelaySec=")) and systemd_version is not None \
                and systemd_version < SYSTEMD_BACKOFF_VERSION:
            continue
        out.append(ln)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# The TFLite Micro export (the model is read by selfmis.bundle.read_tflite_graph)
# --------------------------------------------------------------------------

class TFLiteSummary(dict):
    """Plain-dict summary of a .tflite: ops, tensors, arena estimate."""


def read_tflite(data: bytes) -> TFLiteSummary:
    """What TFLite Micro needs to know from a model, read by :func:`selfmis.bundle.read_tflite_graph`.

    Returns a dict with ``ops`` (sorted operator names, custom ops by their
    name, also listed in ``custom_ops``), ``op_versions``, ``inputs``/``outputs``
    (name, shape, dtype), ``n_tensors``, ``n_operators``, ``weights_bytes`` and
    ``arena`` (see :func:`estimate_arena`).
    """
    try:
        g = read_tflite_graph(data)
    except BundleError as e:
        raise DeployError(str(e)) from None
    versions: Dict[str, int] = {}
    for op in g.operators:
        versions[op.name] = max(op.version, versions.get(op.name, 0))
    tensors = [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "bytes": t.nbytes,
                "constant": t.constant, "variable": t.variable, "dynamic": any(d < 0 for d in t.shape)}
               for t in g.tensors]

    def io_spec(i):
        t = tensors[i]
        return {"name": t["name"], "shape": t["shape"], "dtype": t["dtype"]}

    summary = TFLiteSummary(
        ops=g.operator_names, custom_ops=sorted({op.name for op in g.operators if op.custom}),
        op_versions=versions,
        inputs=[io_spec(i) for i in g.inputs if 0 <= i < len(tensors)],
        outputs=[io_spec(i) for i in g.outputs if 0 <= i < len(tensors)],
        n_tensors=len(tensors), n_operators=len(g.operators), n_subgraphs=g.n_subgraphs,
        weights_bytes=sum(t["bytes"] for t in tensors if t["constant"]),
        description=g.description)
    summary["arena"] = estimate_arena(tensors, [(0, op.inputs, op.outputs) for op in g.operators],
                                      g.inputs, g.outputs)
    return summary


def estimate_arena(tensors, operators, inputs, outputs, align: int = 16) -> dict:
    """Tensor-arena size estimate for TFLite Micro (an *estimate*, not a guarantee).

    Computed as:

    1. ``activations``: peak over the operators, in execution order, of the
       total size of the non-constant tensors alive at that operator (each
       rounded up to ``align`` bytes).  A tensor lives from the operator that
       produces it (graph inputs: from the start) to the last operator that
       reads it (graph outputs: to the end); variable tensors live
       throughout.  This is what an ideal memory planner achieves; TFLM's
       greedy planner is usually within a few percent of it.
    2. ``overhead``: TFLM's persistent bookkeeping, taken as 64 B per tensor
       + 128 B per operator + 1 KiB, a rough allowance from TFLM's
       ``TfLiteEvalTensor``/node structures; kernel scratch buffers (e.g.
       CMSIS-NN convolutions) are *not* included.
    3. ``recommended`` = (activations x 1.1 + overhead) rounded up to 1 KiB.

    Measure the real value on the target with
    ``MicroInterpreter::arena_used_bytes()`` and trim the arena to it.
    """
    n_ops = len(operators)
    first, last = {}, {}
    for i in inputs:
        first[i] = 0
    for k, (_, ins, outs) in enumerate(operators):
        for t in outs:
            first.setdefault(t, k)
        for t in ins:
            if t >= 0:
                first.setdefault(t, k)
                last[t] = k
    for o in outputs:
        last[o] = max(n_ops - 1, 0)

    def size(t):
        return -(-tensors[t]["bytes"] // align) * align

    live_peak, peak_at = 0, 0
    for k in range(max(n_ops, 1)):
        live = sum(size(t) for t in range(len(tensors))
                   if not tensors[t]["constant"] and (
                       tensors[t]["variable"]
                       or (t in first and first[t] <= k <= last.get(t, first[t]))))
        if live > live_peak:
            live_peak, peak_at = live, k
    overhead = 64 * len(tensors) + 128 * n_ops + 1024
    recommended = -(-int(live_peak * 1.1 + overhead) // 1024) * 1024
    return {"activations_peak_bytes": live_peak, "peak_at_operator": peak_at,
            "overhead_bytes": overhead, "recommended_bytes": recommended,
            "dynamic_shapes": any(t["dynamic"] for t in tensors),
            "method": "peak live non-constant tensors (16-byte aligned) x 1.1 + "
                      "64 B/tensor + 128 B/op + 1 KiB; excludes kernel scratch buffers"}


def _camel(op: str) -> str:
    """CONV_2D -> Conv2D, the MicroMutableOpResolver::Add* naming."""
    return "".join(p if p[:1].isdigit() else p.capitalize() for p in op.split("_"))


def export_c_array(tflite_path, out_dir, name: str = "g_model", header_name: str = "model_data.h",
                   measured: Optional[dict] = None) -> dict:
    """Write ``model_data.h`` / ``model_data.cc`` for TensorFlow Lite Micro.

    The array is 16-byte aligned (TFLM reads the flatbuffer in place) and the
    header lists the operators to register and the arena size: the one TFLite Micro
    measured (``measured``: a card's ``micro`` entry, written by ``selfmis quantize``)
    when there is one, else the estimate, labelled as such.  Returns the
    :func:`read_tflite` summary plus the paths written.
    """
    if not name.isidentifier():
        raise DeployError(f"{name!r} is not a valid C identifier")
    data = Path(tflite_path).read_bytes()
    info = read_tflite(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arena = info["arena"]
    if measured and measured.get("measured") and measured.get("arena_bytes"):
        arena_bytes = int(measured["arena_bytes"])
        arena_text = (f"// Tensor arena: MEASURED {arena_bytes} bytes\n"
                      f"//   (TFLite Micro {measured.get('tflite_micro', '?')} allocator on the host: the smallest "
                      f"arena that allocates, found by bisection;\n"
                      f"//    a 32-bit MCU needs at most this; the estimate was {arena['recommended_bytes']} B).")
        info["arena"] = dict(arena, measured_bytes=arena_bytes, method_used="measured")
    else:
        arena_bytes = int(arena["recommended_bytes"])
        arena_text = (f"// Tensor arena: ESTIMATE {arena_bytes} bytes (no TFLite Micro measurement in the card:\n"
                      f"//   pip install 'selfmis-edge[micro]' and re-run selfmis quantize to measure it;\n"
                      f"//   {arena['method']};\n"
                      f"//    activation peak {arena['activations_peak_bytes']} B at operator {arena['peak_at_operator']},\n"
                      f"//    overhead {arena['overhead_bytes']} B"
                      f"{', model has dynamic shapes: estimate is a lower bound' if arena['dynamic_shapes'] else ''}).\n"
                      f"//   Check with MicroInterpreter::arena_used_bytes() on the target.")
        info["arena"] = dict(arena, method_used="estimate")
    guard = "SELFMIS_" + header_name.upper().replace(".", "_").replace("-", "_")
    custom = info["custom_ops"]
    builtin = [op for op in info["ops"] if op not in custom]
    resolver = "\n".join(f"//   resolver.Add{_camel(op)}();" for op in builtin)
    h = f"""// Generated by `selfmis deploy export-c` from {Path(tflite_path).name}
// ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}...). Do not edit.
//
// Operators used ({len(info['ops'])}): {', '.join(info['ops']) or 'none'}
// Register them with a resolver sized to that count, e.g.
//   static tflite::MicroMutableOpResolver<{max(1, len(info['ops']))}> resolver;
{resolver}
{''.join(f'//   (custom op {c!r}: register your own kernel with resolver.AddCustom)' + chr(10) for c in custom)}//
// Inputs:  {'; '.join(f"{t['name']} {t['shape']} {t['dtype']}" for t in info['inputs'])}
// Outputs: {'; '.join(f"{t['name']} {t['shape']} {t['dtype']}" for t in info['outputs'])}
//
{arena_text}
#ifndef {guard}
#define {guard}

#include <cstddef>
#include <cstdint>

constexpr std::size_t k{_camel(name)}TensorArenaSize = {arena_bytes};
extern const unsigned char {name}[];
extern const unsigned int {name}_len;

#endif  // {guard}
"""
    rows = [", ".join(f"0x{b:02x}" for b in data[i:i + 12]) for i in range(0, len(data), 12)]
    cc = (f'// Generated by `selfmis deploy export-c`. Do not edit.\n'
          f'#include "{header_name}"\n\n'
          f"// alignas(16): TFLite Micro uses the flatbuffer in place\n"
          f"alignas(16) const unsigned char {name}[] = {{\n  " + ",\n  ".join(rows) + "\n};\n"
          f"const unsigned int {name}_len = {len(data)};\n")
    hp, cp = out_dir / header_name, out_dir / (Path(header_name).stem + ".cc")
    hp.write_text(h, encoding="utf-8")
    cp.write_text(cc, encoding="utf-8")
    info["header"], info["source"] = str(hp), str(cp)
    return info


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def _add_ssh_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--ssh-option", action="append", default=[], metavar="KEY=VALUE",
                   help="ssh/scp option, e.g. -o Port=2222 -o IdentityFile=~/.ssh/pi (repeatable)")
    p.add_argument("--ssh", default="ssh", help="ssh executable")
    p.add_argument("--post-cmd", metavar="CMD",
                   help="run on the gateway after switching, e.g. 'sudo systemctl restart selfmis-edge'")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="selfmis deploy",
                                 description="Pack, push and roll back model releases; export for TFLite Micro.")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{bundle,verify,trust,push,rollback,status,systemd-unit,gateway-config,export-c}")
    b = sub.add_parser("bundle", help="pack a bundle directory into a release archive")
    b.add_argument("bundle_dir", help="directory with model.tflite and card.json")
    b.add_argument("-o", "--output", required=True, help="archive to write (.tar.gz)")
    b.add_argument("--version", required=True, help="release version, e.g. 1.0.0")
    b.add_argument("--config", help="runtime config JSON to include (default: bundle's runtime.json "
                                    "or a serial /dev/ttyUSB0 default)")
    b.add_argument("--gateway", metavar="GATEWAY_JSON",
                   help="also ship this gateway.json (several devices and outlets; see gateway-config); "
                        "without a model it runs the release's bundle")
    b.add_argument("--sign-key", metavar="KEY",
                   help="sign the release with this ed25519 private key (ssh-keygen -Y sign -n selfmis-release)")
    v = sub.add_parser("verify", help="check a release archive")
    v.add_argument("archive")
    v.add_argument("--allowed-signers", metavar="FILE", help="also check its signature against this file")
    t = sub.add_parser("trust", help="set a gateway's allowed_signers: only releases signed by this key "
                                     "activate from then on")
    t.add_argument("to", help="local directory or HOST:PATH")
    t.add_argument("--pubkey", required=True, metavar="KEY.pub", help="the release key's ed25519 public key")
    t.add_argument("--principal", default="release", help="name recorded for the key (default release)")
    _add_ssh_args(t)
    p = sub.add_parser("push", help="install an archive on a gateway and activate it")
    p.add_argument("archive")
    p.add_argument("to", help="local directory or HOST:PATH (e.g. pi@gateway.local:/opt/selfmis)")
    p.add_argument("--scp", default="scp", help="scp executable")
    p.add_argument("--keep", type=int, metavar="N",
                   help="afterwards delete all but the N newest releases (current/previous stay)")
    p.add_argument("--force", action="store_true", help="replace a different release of the same "
                                                       "version (local targets)")
    _add_ssh_args(p)
    r = sub.add_parser("rollback", help="switch back to the previous release")
    r.add_argument("to")
    _add_ssh_args(r)
    s = sub.add_parser("status", help="show the current/previous/installed releases")
    s.add_argument("to")
    _add_ssh_args(s)
    u = sub.add_parser("systemd-unit", help="print the systemd unit for other paths/user")
    u.add_argument("--root", default="/opt/selfmis", help="gateway root (holds current/)")
    u.add_argument("--user", default="selfmis")
    u.add_argument("--venv", help="virtualenv with edge-run (default ROOT/venv)")
    u.add_argument("--edge-args", help="edge-run arguments (default: --config ROOT/current/runtime.json)")
    u.add_argument("--gateway", action="store_true",
                   help="run the release's gateway.json: --config ROOT/current/gateway.json")
    u.add_argument("--systemd-version", type=int, metavar="N",
                   help="the gateway's systemd version (`systemctl --version`); below 254 the "
                        "restart-backoff keys it does not know are left out")
    g = sub.add_parser("gateway-config", help="write a validated gateway.json for several devices and outlets")
    deploy_gateway.add_arguments(g)
    e = sub.add_parser("export-c", help="write the model as C: a TFLite Micro array or plain C99 kernels")
    e.add_argument("model", help=".tflite file or bundle directory")
    e.add_argument("out_dir")
    e.add_argument("--engine", choices=("tflm", "plain"), default="tflm",
                   help="tflm: model_data.h/.cc (the flatbuffer as a C array, for TensorFlow Lite Micro); "
                        "plain: NAME.h/.c + selfmis_kernels.h/.c, int8 C99 with no interpreter and no heap "
                        "(bit-exact to TFLite Micro; refuses an operator it does not implement)")
    e.add_argument("--name", default=None,
                   help="C name: the array (tflm, default g_model) or the model prefix (plain, default smx_model)")
    return ap


def _export_c(args) -> dict:
    """``export-c``: dispatch on ``--engine`` (the generators live in this module and :mod:`.c_model`)."""
    model, measured = Path(args.model), None
    if model.is_dir():
        bundle = load_bundle(model)
        model, measured = bundle.model_path, bundle.card.micro
    if args.engine == "plain":
        result = c_model.export_plain_c(model, args.out_dir, args.name or "smx_model")
        log.info("wrote %s: %d kernel calls (%s), arena %d bytes, constants %d bytes", args.out_dir,
                 result["n_steps"], ", ".join(result["ops"]), result["arena_bytes"], result["const_bytes"])
        return result
    result = export_c_array(model, args.out_dir, args.name or "g_model", measured=measured)
    a = result["arena"]
    log.info("wrote %s and %s: ops %s, arena %s %d bytes", result["header"], result["source"],
             ", ".join(result["ops"]), a["method_used"], a.get("measured_bytes", a["recommended_bytes"]))
    return result


def main(argv: Optional[List[str]] = None) -> int:
    """Exit codes: 0 ok, 1 deploy error (message on stderr), 2 usage, 3 (``ExitCode.MODEL``) a model
    ``export-c --engine plain`` cannot generate."""
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="selfmis deploy: %(message)s")
    try:
        if args.cmd == "bundle":
            m = pack_bundle(args.bundle_dir, args.output, args.version, args.config, args.gateway,
                            args.sign_key)
            log.info("wrote %s: release %s, %d files", args.output, m["version"], len(m["files"]))
            result = {"archive": str(args.output), "manifest": m}
        elif args.cmd == "verify":
            result = verify_archive(args.archive, args.allowed_signers)
            log.info("%s: release %s OK", args.archive, result["version"])
        elif args.cmd == "push":
            result = push(args.archive, args.to, args.ssh_option, args.post_cmd, args.ssh,
                          args.scp, args.force, args.keep)
            log.info("%s: release %s is current (previous: %s)", args.to, result.get("current"),
                     result.get("previous"))
        elif args.cmd == "trust":
            result = trust(args.to, args.pubkey, args.principal, args.ssh_option, args.ssh)
        elif args.cmd == "rollback":
            result = rollback(args.to, args.ssh_option, args.post_cmd, args.ssh)
            log.info("%s: rolled back to %s", args.to, result["current"])
        elif args.cmd == "status":
            result = status(args.to, args.ssh_option, args.ssh)
        elif args.cmd == "systemd-unit":
            edge_args = args.edge_args
            if args.gateway:
                if edge_args:
                    raise DeployError("give --gateway or --edge-args, not both")
                edge_args = f"--config {os.path.normpath(args.root).rstrip('/')}/current/{GATEWAY_CONFIG_NAME}"
            sys.stdout.write(render_systemd_unit(args.root, args.user, args.venv, edge_args,
                                                 args.systemd_version))
            return 0
        elif args.cmd == "gateway-config":
            result = deploy_gateway.from_args(args)
            log.info("wrote %s: %d device(s)%s", result["gateway_config"], len(result["devices"]),
                     "".join(f", {o}" for o in result["outlets"]))
        else:
            result = _export_c(args)
    except CodedError as e:  # e.g. an operator the plain C engine does not implement: ExitCode.MODEL
        log.error("%s", e)
        return int(e.exit_code)
    except (DeployError, OSError, ValueError) as e:
        log.error("%s", e)
        return 1
    try:
        print(json.dumps(result, indent=2), flush=True)
    except BrokenPipeError:  # `selfmis deploy ... | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
