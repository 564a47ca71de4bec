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
``export-c`` write ``model_data.h/.cc`` (a C array) for TensorFlow Lite
            Micro, with the operators the model uses and an arena estimate.

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
import struct
import subprocess
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from selfmis.runtime_config import CONFIG_NAME as RUNTIME_CONFIG_NAME
from selfmis.runtime_config import default_runtime_config
from . import gateway_ops
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


def pack_bundle(bundle_dir, out_archive, version: str, runtime_config=None) -> dict:
    """Pack a bundle directory into a verified release archive; return its manifest.

    ``runtime_config``: a dict, a path to a JSON file, or None (use
    ``runtime.json`` in the bundle directory if present, else
    :func:`default_runtime_config`).  The archive is reproducible: sorted
    members, fixed mtimes and owners, no gzip timestamp.
    """
    from selfmis.bundle import CARD_NAME, load_bundle  # verifies card + model sha256
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


def verify_archive(archive) -> dict:
    """Check an archive's manifest, hashes and card/model pairing; return the manifest."""
    manifest, files = gateway_ops.read_archive(str(archive))
    card_raw = files.get("card.json")
    if card_raw is None:
        raise DeployError(f"{archive}: no card.json in the release")
    try:
        card = json.loads(card_raw)
    except ValueError as e:
        raise DeployError(f"{archive}: card.json is not valid JSON ({e})") from None
    model = files.get(card.get("model_file", "model.tflite"))
    if model is None:
        raise DeployError(f"{archive}: the model file named by card.json is missing")
    if model[4:8] != b"TFL3":
        raise DeployError(f"{archive}: {card.get('model_file')} is not a TFLite flatbuffer")
    if card.get("sha256") and hashlib.sha256(model).hexdigest() != card["sha256"]:
        raise DeployError(f"{archive}: model sha256 does not match card.json")
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


def render_systemd_unit(root: str = "/opt/selfmis", user: str = "selfmis",
                        venv: Optional[str] = None, edge_args: Optional[str] = None) -> str:
    """The unit template ``systemd/selfmis-edge.service`` with other paths/user/arguments."""
    text = SYSTEMD_UNIT.read_text(encoding="utf-8")
    root = root.rstrip("/") or "/"
    if venv:
        text = text.replace("/opt/selfmis/venv", venv.rstrip("/"))
    text = text.replace("/opt/selfmis", root)
    text = text.replace("User=selfmis", f"User={user}").replace("Group=selfmis", f"Group={user}")
    if edge_args is not None:
        lines = [f'Environment="SELFMIS_EDGE_ARGS={edge_args}"' if ln.startswith(
            'Environment="SELFMIS_EDGE_ARGS=') else ln for ln in text.splitlines()]
        text = "\n".join(lines) + "\n"
    return text


# --------------------------------------------------------------------------
# TFLite flatbuffer (read-only, minimal) and the TFLite Micro export
# --------------------------------------------------------------------------

# tensorflow/lite/schema/schema.fbs, enum BuiltinOperator, codes 0..161
_BUILTIN_OPS = (
    "ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE "
    "EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D "
    "LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1 "
    "RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS SKIP_GRAM "
    "CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER BATCH_TO_SPACE_ND "
    "SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE "
    "BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM "
    "CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT "
    "SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT "
    "SHAPE POW ARG_MIN FAKE_QUANT REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND "
    "LOGICAL_NOT UNPACK REDUCE_MIN FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE "
    "RESIZE_NEAREST_NEIGHBOR LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL "
    "REVERSE_V2 ADD_N GATHER_ND COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE "
    "MATRIX_SET_DIAG ROUND HARD_SWISH IF WHILE NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 "
    "SCATTER_ND SELECT_V2 DENSIFY SEGMENT_SUM BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM "
    "CALL_ONCE BROADCAST_TO RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND "
    "HASHTABLE_IMPORT HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE "
    "ASSIGN_VARIABLE BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL "
    "GELU DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX "
    "UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN BITCAST BITWISE_XOR RIGHT_SHIFT"
).split()

# TensorType -> bytes per element (schema.fbs enum TensorType); STRING/RESOURCE/VARIANT: 0
_TYPE_SIZES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 0, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16,
               12: 8, 13: 0, 14: 0, 15: 4, 16: 2, 17: 1}
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
               6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128",
               12: "uint64", 13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4"}


def builtin_op_name(code: int) -> str:
    return _BUILTIN_OPS[code] if 0 <= code < len(_BUILTIN_OPS) else f"BUILTIN_{code}"


class _FB:
    """Just enough FlatBuffers to walk a .tflite file (little-endian, read-only).

    Reference: https://flatbuffers.dev/internals/ -- a table starts with a
    signed offset back to its vtable; the vtable lists each field's offset
    inside the table (0 = absent, use the default); references are unsigned
    offsets relative to where they are stored.
    """

    def __init__(self, buf: bytes):
        self.b = buf

    def _u(self, fmt, pos):
        try:
            return struct.unpack_from(fmt, self.b, pos)[0]
        except struct.error:
            raise DeployError(f"truncated flatbuffer (read at byte {pos})") from None

    def root(self) -> int:
        return self._u("<I", 0)

    def field(self, table: int, index: int) -> Optional[int]:
        vtable = table - self._u("<i", table)
        vsize = self._u("<H", vtable)
        slot = 4 + 2 * index
        if slot >= vsize:
            return None
        off = self._u("<H", vtable + slot)
        return table + off if off else None

    def scalar(self, table, index, fmt, default=0):
        pos = self.field(table, index)
        return default if pos is None else self._u(fmt, pos)

    def ref(self, table, index) -> Optional[int]:
        pos = self.field(table, index)
        return None if pos is None else pos + self._u("<I", pos)

    def vector(self, table, index):
        """(start of elements, length) or (None, 0)."""
        pos = self.ref(table, index)
        if pos is None:
            return None, 0
        return pos + 4, self._u("<I", pos)

    def tables(self, table, index) -> List[int]:
        start, n = self.vector(table, index)
        return [start + 4 * i + self._u("<I", start + 4 * i) for i in range(n)]

    def ints(self, table, index, fmt="<i", size=4) -> List[int]:
        start, n = self.vector(table, index)
        return [self._u(fmt, start + size * i) for i in range(n)]

    def string(self, table, index) -> Optional[str]:
        start, n = self.vector(table, index)
        if start is None:
            return None
        return self.b[start:start + n].decode("utf-8", "replace")


class TFLiteSummary(dict):
    """Plain-dict summary of a .tflite: ops, tensors, arena estimate."""


def read_tflite(data: bytes) -> TFLiteSummary:
    """Parse what TFLite Micro needs to know from a model (first subgraph).

    Returns a dict with ``ops`` (sorted operator names; custom ops as
    ``CUSTOM:<name>``), ``op_versions``, ``inputs``/``outputs`` (name,
    shape, dtype), ``n_tensors``, ``n_operators``, ``weights_bytes`` and
    ``arena`` (see :func:`estimate_arena`).
    """
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise DeployError("not a TFLite flatbuffer (no 'TFL3' file identifier)")
    fb = _FB(data)
    model = fb.root()
    opcodes = []
    for oc in fb.tables(model, 1):
        deprecated = fb.scalar(oc, 0, "<b", 0)
        builtin = fb.scalar(oc, 3, "<i", 0)
        # schema >= 2.3 stores codes > 127 in builtin_code; older files only in the int8 field
        code = max(deprecated, builtin)
        name = builtin_op_name(code)
        if name == "CUSTOM":
            name = f"CUSTOM:{fb.string(oc, 1) or '?'}"
        opcodes.append((name, fb.scalar(oc, 2, "<i", 1)))
    subgraphs = fb.tables(model, 2)
    if not subgraphs:
        raise DeployError("model has no subgraph")
    sg = subgraphs[0]
    buffers = fb.tables(model, 4)

    def buffer_has_data(i):
        if i <= 0 or i >= len(buffers):
            return False  # buffer 0 is the empty sentinel
        _, n = fb.vector(buffers[i], 0)
        return n > 0 or fb.scalar(buffers[i], 1, "<Q", 0) > 1  # offset > 1: data after the flatbuffer

    tensors = []
    for t in fb.tables(sg, 0):
        shape = fb.ints(t, 0)
        ttype = fb.scalar(t, 1, "<b", 0)
        buf = fb.scalar(t, 2, "<I", 0)
        n = 1
        for d in shape:
            n *= max(1, d)  # -1 (dynamic) counted as 1: the estimate says so
        tensors.append({"name": fb.string(t, 3) or "", "shape": shape,
                        "dtype": _TYPE_NAMES.get(ttype, f"type{ttype}"),
                        "bytes": (n * _TYPE_SIZES.get(ttype, 4) if ttype != 17 else (n + 1) // 2),
                        "constant": buffer_has_data(buf),
                        "variable": bool(fb.scalar(t, 5, "<B", 0)),
                        "dynamic": any(d < 0 for d in shape)})
    operators = [(fb.scalar(op, 0, "<I", 0), fb.ints(op, 1), fb.ints(op, 2)) for op in fb.tables(sg, 3)]
    used = sorted({opcodes[i][0] for i, _, _ in operators if i < len(opcodes)})
    versions = {}
    for i, _, _ in operators:
        if i < len(opcodes):
            name, ver = opcodes[i]
            versions[name] = max(ver, versions.get(name, 0))
    inputs, outputs = fb.ints(sg, 1), fb.ints(sg, 2)

    def io_spec(i):
        t = tensors[i]
        return {"name": t["name"], "shape": t["shape"], "dtype": t["dtype"]}

    summary = TFLiteSummary(
        ops=used, op_versions=versions,
        inputs=[io_spec(i) for i in inputs if 0 <= i < len(tensors)],
        outputs=[io_spec(i) for i in outputs if 0 <= i < len(tensors)],
        n_tensors=len(tensors), n_operators=len(operators), n_subgraphs=len(subgraphs),
        weights_bytes=sum(t["bytes"] for t in tensors if t["constant"]),
        description=fb.string(model, 3) or "")
    summary["arena"] = estimate_arena(tensors, operators, inputs, outputs)
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


def export_c_array(tflite_path, out_dir, name: str = "g_model", header_name: str = "model_data.h") -> dict:
    """Write ``model_data.h`` / ``model_data.cc`` for TensorFlow Lite Micro.

    The array is 16-byte aligned (TFLM reads the flatbuffer in place) and the
    header lists the operators to register and the arena estimate.  Returns
    the :func:`read_tflite` summary plus the paths written.
    """
    if not name.isidentifier():
        raise DeployError(f"{name!r} is not a valid C identifier")
    data = Path(tflite_path).read_bytes()
    info = read_tflite(data)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arena = info["arena"]
    guard = "SELFMIS_" + header_name.upper().replace(".", "_").replace("-", "_")
    builtin = [op for op in info["ops"] if not op.startswith("CUSTOM:")]
    custom = [op for op in info["ops"] if op.startswith("CUSTOM:")]
    resolver = "\n".join(f"//   resolver.Add{_camel(op)}();" for op in builtin)
    h = f"""// Generated by `selfmis deploy export-c` from {Path(tflite_path).name}
// ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()[:16]}...). Do not edit.
//
// Operators used ({len(info['ops'])}): {', '.join(info['ops']) or 'none'}
// Register them with a resolver sized to that count, e.g.
//   static tflite::MicroMutableOpResolver<{max(1, len(info['ops']))}> resolver;
{resolver}
{''.join(f'//   (custom op {c[7:]!r}: register your own kernel)' + chr(10) for c in custom)}//
// Inputs:  {'; '.join(f"{t['name']} {t['shape']} {t['dtype']}" for t in info['inputs'])}
// Outputs: {'; '.join(f"{t['name']} {t['shape']} {t['dtype']}" for t in info['outputs'])}
//
// Tensor arena: ESTIMATE {arena['recommended_bytes']} bytes
//   ({arena['method']};
//    activation peak {arena['activations_peak_bytes']} B at operator {arena['peak_at_operator']},
//    overhead {arena['overhead_bytes']} B{', model has dynamic shapes: estimate is a lower bound' if arena['dynamic_shapes'] else ''}).
//   Check with MicroInterpreter::arena_used_bytes() on the target.
#ifndef {guard}
#define {guard}

#include <cstddef>
#include <cstdint>

constexpr std::size_t k{_camel(name)}TensorArenaSize = {arena['recommended_bytes']};
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
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{bundle,verify,push,rollback,status,systemd-unit,export-c}")
    b = sub.add_parser("bundle", help="pack a bundle directory into a release archive")
    b.add_argument("bundle_dir", help="directory with model.tflite and card.json")
    b.add_argument("-o", "--output", required=True, help="archive to write (.tar.gz)")
    b.add_argument("--version", required=True, help="release version, e.g. 1.0.0")
    b.add_argument("--config", help="runtime config JSON to include (default: bundle's runtime.json "
                                    "or a serial /dev/ttyUSB0 default)")
    v = sub.add_parser("verify", help="check a release archive")
    v.add_argument("archive")
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
    e = sub.add_parser("export-c", help="write model_data.h/.cc for TensorFlow Lite Micro")
    e.add_argument("model", help=".tflite file or bundle directory")
    e.add_argument("out_dir")
    e.add_argument("--name", default="g_model", help="C array name")
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    """Exit codes: 0 ok, 1 deploy error (message on stderr), 2 usage."""
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="selfmis deploy: %(message)s")
    try:
        if args.cmd == "bundle":
            m = pack_bundle(args.bundle_dir, args.output, args.version, args.config)
            log.info("wrote %s: release %s, %d files", args.output, m["version"], len(m["files"]))
            result = {"archive": str(args.output), "manifest": m}
        elif args.cmd == "verify":
            result = verify_archive(args.archive)
            log.info("%s: release %s OK", args.archive, result["version"])
        elif args.cmd == "push":
            result = push(args.archive, args.to, args.ssh_option, args.post_cmd, args.ssh,
                          args.scp, args.force, args.keep)
            log.info("%s: release %s is current (previous: %s)", args.to, result.get("current"),
                     result.get("previous"))
        elif args.cmd == "rollback":
            result = rollback(args.to, args.ssh_option, args.post_cmd, args.ssh)
            log.info("%s: rolled back to %s", args.to, result["current"])
        elif args.cmd == "status":
            result = status(args.to, args.ssh_option, args.ssh)
        elif args.cmd == "systemd-unit":
            sys.stdout.write(render_systemd_unit(args.root, args.user, args.venv, args.edge_args))
            return 0
        else:
            model = Path(args.model)
            if model.is_dir():
                from selfmis.bundle import load_bundle
                model = load_bundle(model).model_path
            result = export_c_array(model, args.out_dir, args.name)
            log.info("wrote %s and %s: ops %s, arena estimate %d bytes", result["header"],
                     result["source"], ", ".join(result["ops"]), result["arena"]["recommended_bytes"])
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
