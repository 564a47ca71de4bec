"""Release archives: pack a bundle into a reproducible ``.tar.gz``, sign its manifest, verify it.

A release holds the bundle (``model.tflite`` + ``card.json``), a ``runtime.json``, optionally a
``gateway.json``, a ``MANIFEST.json`` (version, size and sha256 of every file) and, signed with
an ed25519 key through OpenSSH (``ssh-keygen -Y sign -n selfmis-release``), ``MANIFEST.json.sig``.
Reading is streamed and capped by :func:`.gateway_ops.read_archive` (the same code a gateway
runs); the signature is checked against an ``allowed_signers`` file by
:func:`.gateway_ops.verify_signature`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict

from selfmis.bundle import CARD_NAME, load_bundle  # load_bundle verifies card + model sha256
from selfmis.runtime_config import CONFIG_NAME as RUNTIME_CONFIG_NAME
from selfmis.runtime_config import default_runtime_config

from . import deploy_gateway, gateway_ops
from .deploy_gateway import GATEWAY_CONFIG_NAME
from .gateway_ops import MANIFEST, RELEASE_FORMAT, RELEASE_FORMAT_VERSION, USAGE, DeployError, check_version

__all__ = ["pack_bundle", "sign_manifest", "verify_archive"]


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
            raise DeployError(f"{gateway_config}: unreadable gateway config ({e})", USAGE) from None
    if not isinstance(cfg, dict):
        raise DeployError(f"{name}: the top level must be a JSON object", USAGE)
    if not cfg.get("model"):
        cfg["model"] = "."
    try:
        deploy_gateway.validate_gateway_config(cfg, name)
    except ValueError as e:
        raise DeployError(str(e), USAGE) from None
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
            raise DeployError(f"ssh-keygen (OpenSSH) is needed to sign a release: {e}", USAGE) from None
        sig = msg.with_name(MANIFEST + ".sig")
        if p.returncode != 0 or not sig.is_file():
            err = p.stderr.decode("utf-8", "replace").strip()
            raise DeployError(f"{key}: ssh-keygen could not sign ({err})", USAGE)
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
            raise DeployError(f"{runtime_config}: unreadable runtime config ({e})", USAGE) from None
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
