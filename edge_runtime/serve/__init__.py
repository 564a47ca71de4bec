"""The live web view of ``edge-run --serve`` (standard library only; see :mod:`.server`).

Imported only when ``--serve`` (or ``serve`` in gateway.json) is given.
"""
from .server import WebView

__all__ = ["WebView"]
