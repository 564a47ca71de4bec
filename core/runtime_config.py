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
import re
from pathlib import Path

from .limits import LimitError, check_gain, check_rate

__all__ = ["CONFIG_FORMAT", "CONFIG_NAME", "ConfigError", "default_runtime_config",
           "load_runtime_config", "cli_defaults", "parse_config_json", "MAX_CONFIG_BYTES", "MAX_JSON_DEPTH"]

#: A config file is small and shallow: anything bigger or deeper is refused before parsing
#: (a 100,000-deep file would otherwise end in Python's RecursionError).
MAX_CONFIG_BYTES = 1 << 20
MAX_JSON_DEPTH = 32
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def parse_config_json(text: str, where: str, err=ValueError):
    """``json.loads(text)`` for a config file, refusing (``err``, naming ``where``) a file over
    :data:`MAX_CONFIG_BYTES` or nested deeper than :data:`MAX_JSON_DEPTH` before parsing it."""
    if len(text) > MAX_CONFIG_BYTES:
        raise err(f"{where}: {len(text)} characters; a config file is at most {MAX_CONFIG_BYTES} bytes")
    depth = deepest = 0
    for ch in _STRING.sub('""', text):  # brackets inside strings do not nest
        if ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise err(f"{where}: nested deeper than {MAX_JSON_DEPTH} levels; not a config file")
        elif ch in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise err(f"{where}: not valid JSON at line {exc.lineno}, column {exc.colno} ({exc.msg})") from None
    except RecursionError:  # cannot happen after the depth check; kept so that it never escapes
        raise err(f"{where}: nested too deeply") from None

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
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable runtime config ({exc})") from None
    cfg = parse_config_json(text, str(path), ConfigError)
    if not isinstance(cfg, dict) or cfg.get("format") != CONFIG_FORMAT:
        raise ConfigError(f"{path}: not a SelfMIS runtime config (format={cfg.get('format') if isinstance(cfg, dict) else None!r:.60})")
    version = cfg.get("format_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigError(f"{path}: format_version {version!r:.40} is not an integer")
    if version > CONFIG_VERSION:
        raise ConfigError(f"{path}: format_version {cfg['format_version']} is newer than this runtime")
    src = cfg.get("source") or {}
    if not isinstance(src, dict):
        raise ConfigError(f"{path}: source must be an object")
    kind = src.get("kind")
    if kind is not None and kind not in _SOURCE_KEYS:
        raise ConfigError(f"{path}: unknown source kind {kind!r:.60} (one of {sorted(_SOURCE_KEYS)})")
    try:
        if src.get("fs") is not None:
            check_rate(src["fs"], str(path), "source.fs")
        if src.get("uv_per_lsb") is not None:
            check_gain(src["uv_per_lsb"], str(path), "source.uv_per_lsb")
    except LimitError as exc:
        raise ConfigError(str(exc)) from None
    for key in ("bundle", "lead", "operating_point"):
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise ConfigError(f"{path}: {key} must be a string")
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
