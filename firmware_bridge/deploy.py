"""Ship a model bundle to a gateway, roll it back, or export it for TFLite Micro.

``selfmis deploy`` subcommands (see ``selfmis deploy --help``):

``bundle``  pack a bundle directory (``model.tflite`` + ``card.json``, see
            :mod:`selfmis.bundle`) and a runtime config into a
            release archive ``.tar.gz`` with a ``MANIFEST.json`` (version,
            size and sha256 of every file).
``push``    verify the archive, install it as ``releases/<version>/`` on a
            local directory or ``HOST:PATH`` (ssh/scp), switch ``current``
            atomically, keep the old one as ``previous``. The gateway
            activates only a release signed by a key of its
            ``allowed_signers`` (``trust``); a gateway without one refuses
            every release unless ``--allow-unsigned`` (logged as a warning).
``trust``   set a gateway's ``allowed_signers`` (once, at install).
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


The modules: :mod:`.deploy_release` (pack, sign, verify archives), :mod:`.deploy_target` (push,
trust, rollback, status, the systemd unit), :mod:`.tflm_export` (the TFLite Micro C array),
:mod:`.gateway_ops` (what runs on the gateway, stdlib only). This module is the CLI and
re-exports their entry points. Exit codes: :class:`selfmis.exit_codes.ExitCode`; a refused
release is ``MODEL`` (3), an unreachable, busy or refusing gateway ``TARGET`` (7), bad
arguments ``USAGE`` (2), a missing input ``SOURCE`` (4).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

from selfmis.bundle import load_bundle
from selfmis.exit_codes import CodedError, ExitCode
from selfmis.runtime_config import CONFIG_NAME as RUNTIME_CONFIG_NAME

from . import c_model, deploy_gateway
from .deploy_gateway import GATEWAY_CONFIG_NAME
from .deploy_release import pack_bundle, sign_manifest, verify_archive
from .deploy_target import (SYSTEMD_BACKOFF_VERSION, is_remote, push, render_systemd_unit, rollback,
                            status, trust)
from .gateway_ops import DeployError
from .tflm_export import TFLiteSummary, estimate_arena, export_c_array, read_tflite

__all__ = ["DeployError", "pack_bundle", "sign_manifest", "verify_archive", "push", "trust", "rollback",
           "status", "is_remote", "render_systemd_unit", "SYSTEMD_BACKOFF_VERSION", "TFLiteSummary",
           "read_tflite", "estimate_arena", "export_c_array", "main", "RUNTIME_CONFIG_NAME"]

log = logging.getLogger("selfmis.firmware_bridge.deploy")


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
    p.add_argument("--allow-unsigned", action="store_true",
                   help="on a gateway WITHOUT allowed_signers (no `trust` yet), install the release "
                        "unverified instead of refusing it (logged as a warning; a gateway with "
                        "allowed_signers still requires a valid signature)")
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


def _run(args) -> Optional[dict]:
    """Run one subcommand; its result (printed as JSON), or None when it wrote stdout itself."""
    if args.cmd == "bundle":
        m = pack_bundle(args.bundle_dir, args.output, args.version, args.config, args.gateway,
                        args.sign_key)
        log.info("wrote %s: release %s, %d files", args.output, m["version"], len(m["files"]))
        return {"archive": str(args.output), "manifest": m}
    if args.cmd == "verify":
        result = verify_archive(args.archive, args.allowed_signers)
        log.info("%s: release %s OK", args.archive, result["version"])
        return result
    if args.cmd == "push":
        if args.allow_unsigned:
            log.warning("--allow-unsigned: a gateway without allowed_signers installs this release "
                        "WITHOUT verifying who made it")
        result = push(args.archive, args.to, args.ssh_option, args.post_cmd, args.ssh,
                      args.scp, args.force, args.keep, args.allow_unsigned)
        log.info("%s: release %s is current (previous: %s)", args.to, result.get("current"),
                 result.get("previous"))
        return result
    if args.cmd == "trust":
        return trust(args.to, args.pubkey, args.principal, args.ssh_option, args.ssh)
    if args.cmd == "rollback":
        result = rollback(args.to, args.ssh_option, args.post_cmd, args.ssh)
        log.info("%s: rolled back to %s", args.to, result["current"])
        return result
    if args.cmd == "status":
        return status(args.to, args.ssh_option, args.ssh)
    if args.cmd == "systemd-unit":
        edge_args = args.edge_args
        if args.gateway:
            if edge_args:
                raise DeployError("give --gateway or --edge-args, not both", ExitCode.USAGE)
            edge_args = f"--config {os.path.normpath(args.root).rstrip('/')}/current/{GATEWAY_CONFIG_NAME}"
        sys.stdout.write(render_systemd_unit(args.root, args.user, args.venv, edge_args,
                                             args.systemd_version))
        return None
    if args.cmd == "gateway-config":
        result = deploy_gateway.from_args(args)
        log.info("wrote %s: %d device(s)%s", result["gateway_config"], len(result["devices"]),
                 "".join(f", {o}" for o in result["outlets"]))
        return result
    return _export_c(args)


#: subcommands whose OSError is the gateway's (its directory), not the workstation's input
_TARGET_CMDS = ("push", "trust", "rollback", "status")


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``selfmis deploy``; return an :class:`~selfmis.exit_codes.ExitCode`: 0 ok; a refused
    release (caps, hashes, card, signature, a gateway without allowed_signers) ``MODEL`` (3), as
    is a model ``export-c --engine plain`` cannot generate; a gateway unreachable, busy, not
    writable or refusing the operation ``TARGET`` (7); bad arguments or configs ``USAGE`` (2); a
    missing input ``SOURCE`` (4). The message is on stderr."""
    ap = build_parser()
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="selfmis deploy: %(message)s")
    try:
        result = _run(args)
    except CodedError as e:  # e.g. an operator the plain C engine does not implement: ExitCode.MODEL
        log.error("%s", e)
        return int(e.exit_code)
    except DeployError as e:
        log.error("%s", e)
        codes = {int(c) for c in ExitCode}
        return e.exit_code if e.exit_code in codes else int(ExitCode.TARGET)
    except OSError as e:
        log.error("%s", e)
        return int(ExitCode.TARGET if args.cmd in _TARGET_CMDS else ExitCode.SOURCE)
    except ValueError as e:  # a gateway-config the validator refuses
        log.error("%s", e)
        return int(ExitCode.USAGE)
    if result is not None:
        try:
            print(json.dumps(result, indent=2), flush=True)
        except BrokenPipeError:  # `selfmis deploy ... | head`: not an error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
