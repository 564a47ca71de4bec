"""The gateway side of ``selfmis deploy``: push, trust, rollback and status on a local directory
or ``HOST:PATH``, and the systemd unit that runs ``current/``.

For a remote target the source of :mod:`.gateway_ops` (stdlib only) is piped to ``python3 -``
over ssh, so the gateway needs Python 3 and sshd, nothing else. Authentication is whatever your
ssh config says; ``BatchMode=yes`` is always set so a missing key fails instead of hanging on a
password prompt.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import subprocess
from pathlib import Path
from typing import List, Optional, Sequence

from . import gateway_ops
from .gateway_ops import TARGET, USAGE, DeployError
from .deploy_release import verify_archive

__all__ = ["is_remote", "push", "trust", "rollback", "status", "render_systemd_unit",
           "SYSTEMD_BACKOFF_VERSION", "SYSTEMD_UNIT"]

log = logging.getLogger("selfmis.firmware_bridge.deploy")

SYSTEMD_UNIT = Path(__file__).resolve().parent / "systemd" / "selfmis-edge.service"


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
        raise DeployError(f"{ssh!r} not found; install an OpenSSH client", TARGET) from None
    except subprocess.TimeoutExpired:
        raise DeployError(f"ssh {host}: no answer within {timeout:.0f} s", TARGET) from None
    out = p.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        result = json.loads(out[-1]) if out else None
    except ValueError:
        result = None
    if result is None:
        err = p.stderr.decode("utf-8", "replace").strip()
        raise DeployError(f"ssh {host} {op} failed (exit {p.returncode}): {err or 'no output'}", TARGET)
    if "error" in result:  # the gateway's DeployError, with its exit code
        code = result.get("code")
        raise DeployError(f"{host}: {result['error']}", code if isinstance(code, int) else TARGET)
    return result


def _split_remote(to: str):
    host, _, path = str(to).partition(":")
    return host, (path or ".")


def push(archive, to, ssh_options: Sequence[str] = (), post_cmd: Optional[str] = None,
         ssh: str = "ssh", scp: str = "scp", force: bool = False, keep: Optional[int] = None,
         allow_unsigned: bool = False) -> dict:
    """Install ``archive`` under ``to`` (a local directory or ``HOST:PATH``) and activate it.

    The gateway verifies the release's signature against its ``allowed_signers`` (:func:`trust`)
    before anything is activated; a gateway without that file refuses the release
    (``DeployError``, exit code MODEL) unless ``allow_unsigned``, which installs it unverified
    and says so in a warning (a gateway *with* allowed_signers ignores it).
    ``ssh_options`` are ``Key=Value`` strings passed as ``-o`` to both ssh
    and scp (``Port=2222``, ``IdentityFile=~/.ssh/pi``, ...).
    ``post_cmd`` runs on the gateway after the switch, e.g.
    ``sudo systemctl restart selfmis-edge``.  ``keep``: delete all but the
    ``keep`` newest releases afterwards (``current``/``previous`` always stay).
    """
    manifest = verify_archive(archive)
    if not is_remote(to):
        result = gateway_ops.install(str(to), str(archive), post_cmd=post_cmd, force=force, keep=keep,
                                     allow_unsigned=allow_unsigned)
    else:
        result = _push_remote(archive, to, manifest, ssh_options, post_cmd, ssh, scp, force, keep,
                              allow_unsigned)
    if not result.get("verified"):
        log.warning("UNVERIFIED RELEASE: %s was installed on %s WITHOUT a signature check "
                    "(--allow-unsigned, and the gateway has no allowed_signers); anyone who can write "
                    "there can replace the model. Set a release key: selfmis deploy trust %s --pubkey "
                    "KEY.pub", manifest["version"], to, to)
    return result


def _push_remote(archive, to, manifest, ssh_options, post_cmd, ssh, scp, force, keep,
                 allow_unsigned) -> dict:
    """scp the archive into the gateway's incoming/, then install it there (gateway_ops)."""
    host, path = _split_remote(to)
    incoming = _remote(host, "prepare", [path], ssh_options, ssh)["incoming"]
    remote_archive = f"{incoming}/{manifest['version']}-{os.getpid()}.tar.gz"
    cmd = [scp, "-q", *_ssh_base(ssh_options), str(archive), f"{host}:{remote_archive}"]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=600)
    except FileNotFoundError:
        raise DeployError(f"{scp!r} not found; install an OpenSSH client", TARGET) from None
    if p.returncode != 0:
        raise DeployError(f"scp to {host} failed (exit {p.returncode}): "
                          f"{p.stderr.decode('utf-8', 'replace').strip()}", TARGET)
    if force:
        log.warning("force is only honoured for local targets")
    return _remote(host, "install", [path, remote_archive, post_cmd or "",
                                     "" if keep is None else str(int(keep)),
                                     "allow-unsigned" if allow_unsigned else ""], ssh_options, ssh)


def trust(to, public_key_file, principal: str = "release", ssh_options: Sequence[str] = (),
          ssh: str = "ssh") -> dict:
    """Set the gateway's ``allowed_signers`` (at install): from then on it activates only releases
    signed by the private half of ``public_key_file`` (an ed25519 ``.pub``)."""
    try:
        key = Path(public_key_file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DeployError(f"{public_key_file}: cannot read the public key ({e})", USAGE) from None
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
            raise DeployError(f"{what} {path!r}: systemd needs an absolute path", USAGE)
        if any(c.isspace() or c in "\"'\\%$" for c in path):
            raise DeployError(f"{what} {path!r}: use a path without spaces, quotes, % or $ "
                              "(systemd would split or expand it)", USAGE)
    if not user or any(c.isspace() for c in user):
        raise DeployError(f"--user {user!r}: not a user name", USAGE)
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
