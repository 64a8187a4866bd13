"""What every fake-hub endpoint does around its payload: parse, log, answer, misbehave.

The endpoint classes (``catalogue.CatalogueRoutes`` for ``/api``, ``files.FileRoutes`` for
``/resolve``, ``/cdn``, ``/tv``) subclass ``BaseHandler`` so that they all answer the same
way: the request recorded when its status line goes out, JSON bodies with the Hub's error
headers, rate limits and ``status`` faults applied before any work, and the Hub's access
rules for private and gated repos. ``server.Handler`` composes them and routes by path.
"""

from __future__ import annotations

import http.server
import json
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .faults import Fault, RequestRecord
from .repos import FakeRepo

if TYPE_CHECKING:
    from .hub import FakeHub
    from .server import Server

__all__ = ["BaseHandler", "Cut"]


class Cut(Exception):
    """Raised to drop the connection mid-body (faults ``cut`` and a too-long ``length_lie``).

    ``server`` takes it for a closed connection, not for a bug in the hub.
    """


class BaseHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms ACK waits
    server: Server
    timeout = 30  # idle keep-alive connections close after this many seconds

    def log_message(self, format: str, *args: Any) -> None:  # silence stderr
        pass

    # -- plumbing

    @property
    def hub(self) -> FakeHub:
        return self.server.hub

    def _begin(self) -> None:
        self.hub.touch()
        u = urllib.parse.urlsplit(self.path)
        self._upath = urllib.parse.unquote(u.path)
        self._rawpath = u.path
        self._query = u.query
        self._q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        auth = self.headers.get("Authorization", "")
        self._token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        self._user = self.hub.user_of(self._token)
        self._rec: dict[str, Any] = {"endpoint": "other", "repo": None, "file": None, "fault": None}
        self._status = 0
        self._record: RequestRecord | None = None

    @property
    def _sent(self) -> int:
        return self._record.bytes_sent if self._record is not None else 0

    @_sent.setter
    def _sent(self, n: int) -> None:
        if self._record is not None:
            self._record.bytes_sent = n

    def _log(self) -> None:
        if self._record is None:
            self._record = RequestRecord(
                method=self.command, path=self._upath, query=self._query, endpoint=self._rec["endpoint"],
                status=self._status, range=self.headers.get("Range"), bytes_sent=0, repo=self._rec["repo"],
                file=self._rec["file"], fault=self._rec["fault"], token=self._token, time=time.time(),
            )
            self.hub._record(self._record)

    def _finish(self) -> None:
        self._log()
        self.hub.touch()

    def _headers(self, status: int, headers: Mapping[str, str]) -> None:
        self._status = status
        self._log()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()

    def _json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        h = {"Content-Type": "application/json; charset=utf-8", "Content-Length": str(len(body)), **(headers or {})}
        self._headers(status, h)
        if self.command != "HEAD":
            self._sent += len(body)
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, extra: Mapping[str, str] | None = None) -> None:
        h = dict(extra or {})
        if code:
            h["X-Error-Code"] = code
        h["X-Error-Message"] = message
        self._json(status, {"error": message}, h)

    def _fault_or_limit(self, endpoint: str, repo: str | None, path: str | None) -> tuple[Fault | None, dict[str, str]]:
        """Apply rate limits and status faults; returns (body fault, extra headers) or sends the error."""
        rl_headers, over = self.hub._rate_check(endpoint, self._token or self.client_address[0])
        if over:
            retry = rl_headers.get("RateLimit", "t=1").rsplit("t=", 1)[-1]
            self._rec["fault"] = "ratelimit"
            self._error(429, None, "rate limited", {**rl_headers, "Retry-After": retry})
            return None, {}
        fault = self.hub._take_fault(endpoint, self.command, repo, path, "Range" in self.headers)
        if fault is not None:
            self._rec["fault"] = fault.kind
            if fault.kind == "status":
                extra = dict(rl_headers)
                if fault.retry_after is not None:
                    extra["Retry-After"] = str(int(fault.retry_after)) if float(fault.retry_after).is_integer() \
                        else str(fault.retry_after)
                self._error(fault.status, None, f"injected {fault.status}", extra)
                return None, {}
        return fault, rl_headers

    # -- what API and resolve requests share

    def _moved(self, old_prefix: str, new_prefix: str) -> None:
        """307 to the same request under a renamed repo's new id (query string kept)."""
        path = self._rawpath.replace(old_prefix, new_prefix, 1)
        query = urllib.parse.urlsplit(self.path).query
        host = self.headers.get("Host")
        self._headers(307, {"Location": f"http://{host}{path}" + (f"?{query}" if query else ""),
                            "Content-Length": "0"})

    def _repo_gate(self, repo: FakeRepo | None, rid: str, *, files: bool) -> bool:
        """Send the Hub's access errors; True when the request may go on."""
        user = self._user
        if repo is None or not self.hub.can_see(repo, user):
            self._error(401 if self._token is None else 404, "RepoNotFound", f"Repository {rid} not found")
            return False
        if files and repo.gated and not (user and (user in repo.granted or user == repo.author)):
            msg = f"Access to model {rid} is restricted. You must have access to it and be authenticated."
            self._error(401 if user is None else 403, "GatedRepo", msg)
            return False
        return True
