"""Outlets of the gateway: MQTT (:mod:`.mqtt`) and Lab Streaming Layer (:mod:`.lsl`), each loaded only when asked for.

Two small helpers every outlet (and the web view) shares live here, standard library only:
:func:`link_kind` (what kind of link a device has: the icon Home Assistant shows, the fix the
live page gives for a wrong rate) and :func:`source_label` (the name people know a source by).
"""
from __future__ import annotations

__all__ = ["link_kind", "source_label"]


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
