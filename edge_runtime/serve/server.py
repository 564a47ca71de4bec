"""The live web view: one page, ``/api/status`` and a Server-Sent-Events stream, standard library only.

Why ``http.server`` + threads and SSE (not an async framework, not WebSocket):
a gateway is often a Raspberry Pi, offline, installed with the ``edge`` extra;
the standard library adds no dependency, no build step and about 2 MB of
resident memory, and a few viewers need a few threads. SSE is one-way (the page
is read-only anyway), works through proxies, reconnects by itself in every
browser, and needs no handshake code.

Endpoints (GET/HEAD only; every other method is 405; nothing reads a file
named by the request -- the static files are a fixed list shipped in the package):

* ``/`` the page, ``/app.js``, ``/style.css``;
* ``/api/status`` -- JSON: ``{"model": {...}, "devices": [{"id", "source",
  "state", "fs", "signal_s", "beats", "decisions", ...}], "view": {...}}``;
* ``/api/events`` -- ``text/event-stream``; the first message is a
  ``snapshot`` (last 10 s of trace and beats per device, status, model), then a
  ``tick`` every 100 ms with what changed: ``{"type": "tick", "t_wall",
  "devices": {id: {"trace": [[t0, dt, [mV...]]], "beats": [{"t", "hr", "p"}],
  "new_alarms": [{"t", "wall", "labels", "onset", "cleared", "state"}] (only
  when an alarm changed), "status": {"link", "quality", "hr", "beat_p",
  "decision", "alarm": {"labels", "since", "since_wall", "state"}, "t",
  "t_arrival", "silent_s", "fs", "lead_off", "rate": {"state", "text", "fix",
  ...}, "source", "error"}}}}``; a snapshot carries the last alarm changes as
  ``alarms``, the model (with its ``glossary``) and ``stale_s``. ``decision`` is
  the latest rolling decision, ``alarm`` changes only at an onset or a clear and
  holds alarm labels only (not NORM). Times ``t`` are seconds of the device's
  sample clock, ``t_arrival``/``t_wall``/``wall`` Unix time (see :mod:`.state`).

Each viewer has a bounded queue (:data:`CLIENT_QUEUE` messages, 5 s): a stalled
viewer's queue is emptied and it gets a fresh snapshot when it reads again; the
broadcaster never waits on a socket, so no viewer can slow a pipeline.
With a token (``--serve-token``), every request needs ``?token=`` (the page
passes it on) or ``Authorization: Bearer``; compared in constant time; the
token is never logged.

Bounded by design, because a gateway's web port may face a hostile network:
at most :data:`MAX_CONNECTIONS` connections are served at once (one thread
each; the next ones get a ``503`` and are closed at once, counted in
``/api/status`` as ``view.refused``), and every connection has a
:data:`CONNECTION_TIMEOUT_S` socket timeout, so a client that connects and sends
nothing, or stops reading, is dropped. A client going away (reset, broken pipe,
timeout) is routine: logged at debug level, never a traceback on stderr.
"""
from __future__ import annotations

import hmac
import logging
import queue
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..labels import glossary
from ..outlets import link_kind, source_label
from ..output import to_json
from .state import ViewState

__all__ = ["WebView", "CLIENT_QUEUE", "TICK_S", "MAX_CONNECTIONS", "CONNECTION_TIMEOUT_S"]

log = logging.getLogger("selfmis.edge_runtime")

TICK_S = 0.1
CLIENT_QUEUE = 50
#: connections served at once (a thread each); a few viewers need 2-3 each
MAX_CONNECTIONS = 64
#: socket timeout of every connection: a request must arrive, and a viewer must keep reading, within it
CONNECTION_TIMEOUT_S = 10.0
_STATIC = Path(__file__).resolve().parent / "static"
_FILES = {"/": ("index.html", "text/html; charset=utf-8"), "/index.html": ("index.html", "text/html; charset=utf-8"),
          "/app.js": ("app.js", "text/javascript; charset=utf-8"), "/style.css": ("style.css", "text/css; charset=utf-8")}


class _Client:
    def __init__(self):
        self.queue: queue.Queue = queue.Queue(maxsize=CLIENT_QUEUE)
        self.overflowed = False
        self.dropped = 0


class _Server(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a cap on connections and quiet client errors (see the module doc)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, max_connections: int):
        self.max_connections = int(max_connections)
        self._slots = threading.BoundedSemaphore(self.max_connections)
        self.refused = 0
        super().__init__(address, handler)

    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False):
            self.refused += 1
            try:  # a short answer fits the socket buffer: never blocks the accept loop
                request.setblocking(False)
                request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                             b"Retry-After: 5\r\nConnection: close\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # reset, broken pipe, timeout: the client went away
            log.debug("web: %s: %s", client_address[0], exc)
        else:  # a bug: one line, the traceback only with --verbose
            log.warning("web: a request from %s failed: %s: %s", client_address[0], type(exc).__name__, exc)
            log.debug("web: traceback", exc_info=exc)


class WebView:
    """A gateway sink serving the live page on ``host:port`` (binds at construction: OSError if taken)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, token: str | None = None,
                 max_connections: int = MAX_CONNECTIONS, timeout_s: float = CONNECTION_TIMEOUT_S):
        self.state = ViewState()
        self.token = token
        self._clients: set[_Client] = set()
        self._clients_lock = threading.Lock()
        self._stop = threading.Event()
        self.gateway = None
        self.timeout_s = float(timeout_s)
        # the handler's class for this view: its socket timeout drops a silent or stalled client
        handler = type("Handler", (_Handler,), {"view": self, "timeout": self.timeout_s})
        self.httpd = _Server((host, port), handler, max_connections)
        self.host, self.port = host, self.httpd.server_address[1]
        self._threads = []
        self.ticks = 0

    @property
    def url(self) -> str:
        """The page's address without the token (what may be logged)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # ---------------------------------------------------------------- gateway sink

    def start(self, gateway) -> None:
        self.gateway = gateway
        model = gateway.status()["model"]  # one definition of what the thresholds on the page are
        if model is not None:
            self.state.model = {**model, "lead": gateway.model.card.lead, "glossary": glossary(model["labels"])}
        for d in gateway.devices:  # every device is on the page from the start, under its port's full name
            self.state.describe(d.id, source_label(d.spec.options), link_kind(d.spec.options))
            self.state.on_event(d.id, {"type": "link", "kind": "starting"})
        for target, name in ((self.httpd.serve_forever, "serve-http"), (self._broadcast, "serve-tick")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info("web view on %s%s", self.url, " (viewers need ?token=...)" if self.token else "")

    def on_event(self, did: str, event: dict) -> None:
        self.state.on_event(did, event)

    def on_chunk(self, did: str, chunk, t_end: float) -> None:
        self.state.on_chunk(did, chunk, t_end)

    def close(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---------------------------------------------------------------- push

    def _broadcast(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            next_t += TICK_S
            msg = to_json(self.state.tick())  # NaN-free: a bad value never kills this thread
            self.ticks += 1
            self._fan_out(msg)
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def _fan_out(self, msg: str) -> None:
        """Queue ``msg`` for every viewer without ever waiting: a full queue (a stalled
        viewer) is emptied and the viewer resyncs with a snapshot when it reads again."""
        with self._clients_lock:
            clients = list(self._clients)
        for c in clients:
            try:
                c.queue.put_nowait(msg)
            except queue.Full:
                c.overflowed = True
                c.dropped += CLIENT_QUEUE
                _empty(c.queue)

    def add_viewer(self) -> "_Client":
        """A new viewer's queue, fed by every tick from now on."""
        client = _Client()
        with self._clients_lock:
            self._clients.add(client)
        return client

    def remove_viewer(self, client: "_Client") -> None:
        with self._clients_lock:
            self._clients.discard(client)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def status(self) -> dict:
        st = self.gateway.status() if self.gateway is not None else {"devices": []}
        with self._clients_lock:
            st["view"] = {"viewers": len(self._clients), "ticks": self.ticks,
                          "dropped_messages": sum(c.dropped for c in self._clients),
                          "refused": self.httpd.refused, "max_connections": self.httpd.max_connections}
        return st


class _Handler(BaseHTTPRequestHandler):
    """One connection to ``view`` (set per view by a subclass, with ``timeout``, the socket's):
    the routes are the ``do_*`` methods."""

    server_version = "selfmis-edge"
    protocol_version = "HTTP/1.1"
    view: WebView

    def log_message(self, fmt, *args):  # stderr is for the gateway's logs: debug level only
        log.debug("web: %s - " + fmt, self.address_string(), *args)

    def _authorised(self, query) -> bool:
        if not self.view.token:
            return True
        given = (query.get("token") or [""])[0]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given = auth[7:]
        return hmac.compare_digest(given.encode(), self.view.token.encode())

    def _send(self, code: int, body: bytes, ctype: str, head: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, code, obj, head=False):
        self._send(code, to_json(obj).encode(), "application/json", head)

    def do_HEAD(self):
        self.do_GET(head=True)

    def do_GET(self, head: bool = False):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if not self._authorised(query):
            return self._json(401, {"error": "token required: open the page as /?token=TOKEN"}, head)
        if url.path in _FILES:
            name, ctype = _FILES[url.path]
            return self._send(200, (_STATIC / name).read_bytes(), ctype, head)
        if url.path == "/api/status":
            return self._json(200, self.view.status(), head)
        if url.path == "/api/events" and not head:
            return self._events()
        return self._json(404, {"error": f"no such page: {url.path}"}, head)

    def _refuse(self):
        self._json(405, {"error": "read-only: only GET and HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _events(self):
        """The SSE stream: a snapshot, then every tick (a snapshot again after an overflow)."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        client = self.view.add_viewer()
        try:
            self._write_sse(to_json(self.view.state.snapshot()))
            while not self.view.stopping:
                try:
                    msg = client.queue.get(timeout=10.0)
                except queue.Empty:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    continue
                if client.overflowed:
                    client.overflowed = False
                    msg = to_json(self.view.state.snapshot())
                self._write_sse(msg)
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            pass  # the viewer left
        finally:
            self.view.remove_viewer(client)

    def _write_sse(self, data: str) -> None:
        self.wfile.write(b"data: " + data.encode() + b"\n\n")
        self.wfile.flush()


def _empty(q: queue.Queue) -> None:
    while True:
        try:
            q.get_nowait()
        except queue.Empty:
            return

