"""The fake hub's HTTP server: a bounded ``ThreadingHTTPServer`` and the handler it runs.

``Handler`` is every endpoint at once (``catalogue.CatalogueRoutes`` + ``files.FileRoutes``
over ``handler.BaseHandler``) and routes each request by its path prefix. ``Server`` binds
the hub to the handler, caps concurrent connections at the hub's ``max_connections`` and
keeps a client that hangs up (or a fault that cuts it off) out of stderr.
"""

from __future__ import annotations

import http.server
from typing import TYPE_CHECKING

from .catalogue import CatalogueRoutes
from .files import FileRoutes
from .handler import Cut

if TYPE_CHECKING:
    from .hub import FakeHub

__all__ = ["Handler", "Server"]


class Handler(CatalogueRoutes, FileRoutes):
    """One request: begin, route to its endpoint, always log it (even when the body was cut)."""

    def _dispatch(self) -> None:
        self._begin()
        try:
            self._route()
        except (BrokenPipeError, ConnectionResetError, Cut):
            self.close_connection = True
        finally:
            self._finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _route(self) -> None:
        p = self._upath
        if p.startswith("/api/"):
            self._rec["endpoint"] = "api"
            if self.command == "POST":
                n = int(self.headers.get("Content-Length") or 0)
                self._body = self.rfile.read(n) if n else b""
            return self._api(p[len("/api/"):])
        if p.startswith("/cdn/"):
            self._rec["endpoint"] = "cdn"
            return self._cdn(p[len("/cdn/"):])
        if p.startswith("/tv/"):
            self._rec["endpoint"] = "tv"
            return self._tv(p[len("/tv/"):])
        if "/resolve/" in p:
            self._rec["endpoint"] = "resolve"
            return self._resolve(p)
        self._error(404, None, "not found")


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    hub: FakeHub

    def handle_error(self, request, client_address):  # a client hanging up is not news
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, Cut)):
            return
        super().handle_error(request, client_address)

    def process_request(self, request, client_address):  # bounded concurrency
        self.hub._conn_slots.acquire()
        try:
            super().process_request(request, client_address)
        except Exception:
            self.hub._conn_slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.hub._conn_slots.release()
