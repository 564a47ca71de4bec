"""The gateway's runtime config (``runtime.json``): which source and lead ``edge-run`` uses.

Written next to a bundle by ``selfmis deploy bundle`` and read by
``edge-run --config``; defined here, on the edge side, like the bundle format.
Command-line options always win over the file.

Example::

    {"format": "selfmis-runtime-config", "format_version": 1, "bundle": ".",
     "lead": "I", "source": {"kind": "serial", "port": "/dev/ttyUSB0", "baud": 115200}}

Decision keys (optional; see ``edge-run --help``): ``operating_point`` (a name on
the model card: ``screening``, ``balanced``, ``alarm``), ``persist_s`` /
``persist_beats`` and ``hysteresis``.

``source.kind`` is one of ``serial`` (``port``, ``baud``, ``ascii``, ``fs``),
``ble`` (``address``) or ``replay`` (``path``, ``fast``).
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["CONFIG_FORMAT", "CONFIG_NAME", "ConfigError", "default_runtime_config",
           "load_runtime_config", "cli_defaults"]

CONFIG_FORMAT = "selfmis-runtime-config"
CONFIG_VERSION = 1
CONFIG_NAME = "runtime.json"
_DECISION_KEYS = ("operating_point", "persist_s", "persist_beats", "hysteresis")
_SOURCE_KEYS = {
    "serial": {"port": "port", "baud": "baud", "ascii": "ascii", "fs": "fs", "uv_per_lsb": "uv_per_lsb"},
    "ble": {"address": "ble"},
    "replay": {"path": "replay", "fast": "fast", "fs": "fs"},
}


class ConfigError(ValueError):
    """A runtime config that cannot be used; the message names the file."""


def default_runtime_config(card) -> dict:
    """What edge-run on the gateway needs besides the bundle: where the ECG comes from."""
    cfg = {"format": CONFIG_FORMAT, "format_version": CONFIG_VERSION, "bundle": ".",
           "lead": card.lead, "source": {"kind": "serial", "port": "/dev/ttyUSB0", "baud": 115200}}
    if getattr(card, "operating_points", None):
        cfg["operating_point"], _ = card.operating_point()
    return cfg


def load_runtime_config(path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable runtime config ({exc})") from None
    if not isinstance(cfg, dict) or cfg.get("format") != CONFIG_FORMAT:
        raise ConfigError(f"{path}: not a SelfMIS runtime config (format={cfg.get('format') if isinstance(cfg, dict) else None!r})")
    if int(cfg.get("format_version", 0)) > CONFIG_VERSION:
        raise ConfigError(f"{path}: format_version {cfg['format_version']} is newer than this runtime")
    kind = (cfg.get("source") or {}).get("kind")
    if kind is not None and kind not in _SOURCE_KEYS:
        raise ConfigError(f"{path}: unknown source kind {kind!r} (one of {sorted(_SOURCE_KEYS)})")
    cfg["_path"] = str(path)
    return cfg


def cli_defaults(cfg: dict, include_source: bool = True) -> dict:
    """The config as ``edge-run`` option defaults (paths relative to the config file).

    ``include_source=False`` when the command line names a source itself: the
    file's source is then replaced, not added to.
    """
    base = Path(cfg["_path"]).parent
    out = {}
    if cfg.get("bundle") is not None:
        out["model"] = str((base / cfg["bundle"]).resolve())
    if cfg.get("lead"):
        out["lead"] = cfg["lead"]
    for key in _DECISION_KEYS:
        if cfg.get(key) is not None:
            out[key] = cfg[key]
    src = dict(cfg.get("source") or {}) if include_source else {}
    for key, dest in _SOURCE_KEYS.get(src.pop("kind", None), {}).items():
        if key in src:
            out[dest] = src[key]
    if "replay" in out:
        out["replay"] = str((base / out["replay"]).resolve())
    return out
