"""The ``edge-run`` options for several devices and outlets, and when the gateway format applies.

Standard library only and tiny (``gateway.json`` is sniffed before anything else
loads); the web server and the outlets load only when one of these options is given.

The *gateway format* is taken when the command line repeats a source option
(``--simulate A --simulate B``), gives ``--device-id``, ``--serve``, ``--mqtt``
or ``--lsl``, or ``--config`` names a ``gateway.json`` (see
:mod:`.gateway_config`). Either way one runtime runs the devices
(:class:`~.gateway.Gateway`); the gateway format only tags every JSON line with its
``"device"`` and restarts a device lost after its retries (one plain device exits 5
instead, as ``edge-run`` always has).
"""
from __future__ import annotations

import ipaddress
import os

__all__ = ["read_secret", "SecretError", "redact_argv", "GATEWAY_FORMAT", "is_gateway_config", "add_arguments", "wanted", "split_sources", "SOURCE_FLAGS",
           "SOURCE_KEYS", "parse_bind", "is_loopback"]

#: the ``format`` of a gateway.json (:mod:`.gateway_config` validates the rest)
GATEWAY_FORMAT = "selfmis-gateway-config"
SOURCE_KEYS = ("port", "ble", "replay", "simulate")
SOURCE_FLAGS = tuple(f"--{k}" for k in SOURCE_KEYS)
_REPEATABLE = SOURCE_FLAGS + ("--device-id",)
_GATEWAY_FLAGS = ("--device-id", "--serve", "--mqtt", "--lsl", "--no-restart", "--restart-cap")  # and --loop

EPILOG = """\
several devices and outlets (gateway mode):
  edge-run --simulate A --simulate B --device-id bed1 --device-id bed2
  edge-run --config gateway.json        # devices, serve, mqtt, lsl (see edge_runtime/README.md)
  edge-run --port socket://127.0.0.1:7000 --serve 127.0.0.1:8080      # live web view
  edge-run --port /dev/ttyUSB0 --mqtt mqtt://user:pass@broker:1883/selfmis
  edge-run --port /dev/ttyUSB0 --lsl                                   # Lab Streaming Layer
  every JSON line then carries "device"; exit code 6: an outlet could not start
  (the MQTT broker refused the login, the web port is in use, pylsl missing).
  An unreachable MQTT broker is waited for: decisions are kept on disk meanwhile.
"""


def add_arguments(parser) -> None:
    """The gateway-mode options, added to ``edge-run``'s parser (shown by ``--help``)."""
    g = parser.add_argument_group("gateway: several devices, web view, MQTT, LSL")
    g.add_argument("--device-id", metavar="ID",
                   help="id of the device given by the next source option, in order (repeatable); "
                        "default: derived from the port or record name")
    g.add_argument("--serve", metavar="HOST:PORT",
                   help="serve the live web view (default host 127.0.0.1; needs the 'serve' extra: none)")
    g.add_argument("--serve-token", metavar="TOKEN",
                   help="viewers must give ?token=TOKEN (required to bind a non-loopback address); "
                        "also from --serve-token-file or $SELFMIS_SERVE_TOKEN, which keep it out of `ps`")
    g.add_argument("--serve-token-file", metavar="FILE", help="read the --serve-token from FILE's first line")
    g.add_argument("--serve-insecure", action="store_true",
                   help="allow a non-loopback bind without a token (anyone on the network can watch)")
    g.add_argument("--mqtt", metavar="URL", help="publish to MQTT: mqtt[s]://[user:pass@]host:port/prefix")
    g.add_argument("--mqtt-ca", metavar="PEM", help="CA certificate for mqtts:// (default: system CAs)")
    g.add_argument("--mqtt-cert", metavar="PEM", help="client certificate for mqtts://")
    g.add_argument("--mqtt-key", metavar="PEM", help="client key for mqtts://")
    g.add_argument("--mqtt-password-file", metavar="FILE",
                   help="the MQTT password from FILE's first line (or $SELFMIS_MQTT_PASSWORD) when the URL "
                        "has a user and no password: kept out of `ps` and shell history")
    g.add_argument("--mqtt-spool", metavar="DIR",
                   help="store-and-forward folder for decisions while the broker is away "
                        "(default: a folder under $XDG_STATE_HOME or ~/.local/state)")
    g.add_argument("--no-restart", action="store_true",
                   help="a device lost after its --retries stays stopped (default: the gateway restarts it "
                        "with capped exponential backoff, 1 s doubling up to --restart-cap)")
    g.add_argument("--restart-cap", type=float, default=60.0, metavar="S",
                   help="longest wait between restarts of a lost device (default 60 s)")
    g.add_argument("--lsl", action="store_true", help="open LSL outlets (ECG + markers) per device (pylsl)")


def is_gateway_config(path) -> bool:
    """True when ``path`` is a JSON file that looks like a gateway config (has ``devices``).
    Here, not in :mod:`.gateway_config`, because ``edge-run`` asks before it imports anything."""
    from selfmis.runtime_config import parse_config_json  # only with --config (start-up stays small)
    try:
        with open(path, encoding="utf-8") as f:
            cfg = parse_config_json(f.read(), str(path))  # size/depth capped: never a RecursionError
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and (cfg.get("format") == GATEWAY_FORMAT or "devices" in cfg)


def _flag(arg: str):
    name = arg.split("=", 1)[0]
    return name if name.startswith("--") else None


def _config_path(argv):
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def wanted(argv) -> bool:
    """True when ``argv`` asks for the gateway mode (see the module doc)."""
    argv = list(argv)
    counts = {}
    for a in argv:
        f = _flag(a)
        if f is not None:
            counts[f] = counts.get(f, 0) + 1
    if any(counts.get(f) for f in _GATEWAY_FLAGS):
        return True
    if sum(counts.get(f, 0) for f in SOURCE_FLAGS) > 1:
        return True
    cfg = _config_path(argv)
    if cfg is not None:
        return is_gateway_config(cfg)
    return False


def split_sources(argv):
    """``(sources, device_ids, rest)``: the repeated source options in order as
    ``(key, value)``, the ``--device-id`` values in order, and the other arguments."""
    sources, ids, rest = [], [], []
    it = iter(list(argv))
    for a in it:
        f = _flag(a)
        if f in _REPEATABLE:
            if "=" in a:
                value = a.split("=", 1)[1]
            else:
                value = next(it, None)
                if value is None:
                    rest.append(a)  # let argparse report the missing value
                    break
            if f == "--device-id":
                ids.append(value)
            else:
                sources.append((f[2:], value))
        else:
            rest.append(a)
    return sources, ids, rest


def parse_bind(text: str):
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); default host 127.0.0.1.

    Raises
    ------
    ValueError
        The text is not HOST:PORT or the port is out of range.
    """
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port_n = int(port)
    except ValueError:
        raise ValueError(f"--serve {text!r}: expected HOST:PORT") from None
    if not 0 <= port_n <= 65535:
        raise ValueError(f"--serve {text!r}: port out of range")
    return host, port_n


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (a web view there needs no token)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class SecretError(ValueError):
    """A secret file that cannot be read; the message names the file, never its content."""


def read_secret(value: str | None, file: str | None, env: str, what: str) -> str | None:
    """The secret given as ``value`` (the command line), else the first line of ``file``, else the
    environment variable ``env``; None when none is set. ``what`` names the option in errors."""
    if value:
        return value
    if file:
        try:
            with open(file, encoding="utf-8") as f:
                text = f.readline().strip()
        except OSError as exc:
            raise SecretError(f"{what}: cannot read {file} ({exc.strerror or exc})") from None
        if not text:
            raise SecretError(f"{what}: {file} is empty")
        return text
    return os.environ.get(env) or None


def redact_argv(argv) -> list:
    """``argv`` as it may be written down (a recording's metadata): the ``--serve-token`` value and
    the password of an ``mqtt[s]://user:password@`` URL replaced by ``***``."""
    import re
    out, hide = [], False
    for a in argv:
        if hide:
            out.append("***")
            hide = False
            continue
        if a == "--serve-token":
            hide = True
        elif a.startswith("--serve-token="):
            a = "--serve-token=***"
        out.append(re.sub(r"(mqtts?://[^:/@\s]*:)[^@/\s]*@", r"\1***@", a))
    return out
