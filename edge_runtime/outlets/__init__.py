"""Outlets of the gateway: MQTT (:mod:`.mqtt`) and Lab Streaming Layer (:mod:`.lsl`), each loaded only when asked for.

Two small helpers every outlet (and the web view) shares live here, standard library only:
:func:`link_kind` (what kind of link a device has: the icon Home Assistant shows, the fix the
live page gives for a wrong rate) and :func:`read_secret` (a token or password from a file
or an environment variable, so that it never appears in ``ps`` or a shell history).
"""
from __future__ import annotations

import os

__all__ = ["link_kind", "source_label", "read_secret", "SecretError"]


class SecretError(ValueError):
    """A secret file that cannot be read; the message names the file, never its content."""


def link_kind(options: dict) -> str:
    """A device's link from its source options: ``ascii``, ``serial``, ``tcp``, ``ble``, ``replay`` or ``simulate``."""
    if "ble" in options:
        return "ble"
    if "port" in options:
        if options.get("ascii"):
            return "ascii"
        port = str(options["port"])
        return "tcp" if port.startswith(("socket://", "rfc2217://")) else "serial"
    return "replay" if "replay" in options else "simulate"


def source_label(options: dict) -> str:
    """How people know a device's source: the port's full name (``/dev/pts/1``, not "1"), the BLE
    address, or the record's file name for a replay or a simulation."""
    kind = link_kind(options)
    if kind == "ble":
        return f"BLE {options['ble']}"
    if kind in ("replay", "simulate"):
        value = str(options[kind]).rstrip("/")
        return f"{'replay' if kind == 'replay' else 'simulated'}: {value.rsplit('/', 1)[-1]}"
    return str(options["port"]) + (" (ASCII)" if kind == "ascii" else "")


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
