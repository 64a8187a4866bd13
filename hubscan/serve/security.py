"""Who may talk to the explorer, and what every response says about itself.

The explorer is safe by default:

- it binds to 127.0.0.1; any other address needs a token (``check_bind``), because the lake
  may hold private repos' names and numbers;
- with a token, *every* request must present it — ``Authorization: Bearer <token>``, the
  ``hubscan_token`` cookie, or ``?token=<token>`` once (answered with a redirect that sets
  the cookie and drops the token from the address bar). Tokens are compared in constant time
  (``hmac.compare_digest``);
- without a token (loopback only), the ``Host`` header must name the loopback host: a web
  page elsewhere cannot reach the explorer through DNS rebinding;
- only GET/HEAD (and POST to the SQL endpoints) are served; query strings and bodies are
  bounded; every response carries a strict Content-Security-Policy (no inline script, no
  third-party anything), ``nosniff``, no framing, no referrer.

``Guard`` is a plain ASGI middleware, so its refusals happen before routing and are one
line of text (or JSON under ``/api/``), never a traceback.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
from typing import Any, Awaitable, Callable, Iterable
from urllib.parse import parse_qsl, urlencode

from ..errors import ServeError
from .options import TOKEN_ENV

__all__ = ["Guard", "check_bind", "is_loopback", "COOKIE", "SECURITY_HEADERS", "MIN_TOKEN_CHARS"]

COOKIE = "hubscan_token"
MIN_TOKEN_CHARS = 16
SECURITY_HEADERS = (
    (b"content-security-policy",
     b"default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
     b"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_POST_PATHS = ("/sql", "/api/sql")
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]+$")  # safe in a header, a cookie and a URL
Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen beyond loopback without a token (and a token that is too short).

    Raises:
        ServeError: one line saying what to do instead.
    """
    if token is not None and (len(token) < MIN_TOKEN_CHARS or not _TOKEN.match(token)):
        raise ServeError(f"the token must have at least {MIN_TOKEN_CHARS} characters among "
                         "A-Z a-z 0-9 . _ ~ + / = - (e.g. `openssl rand -hex 16`)")
    if not is_loopback(host) and not token:
        raise ServeError(f"refusing to listen on {host} without a token: pass --token or set "
                         f"{TOKEN_ENV} (or bind 127.0.0.1)")


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers") or ()}


def _host_name(value: bytes) -> str:
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):  # [::1]:8000
        return text[1:text.find("]")] if "]" in text else text
    return text.rsplit(":", 1)[0] if text.count(":") == 1 else text


class Guard:
    """ASGI middleware: methods, sizes, host, token; security headers on every response.

    Args:
        app: the wrapped ASGI app.
        token: the shared secret, or None (loopback without authentication).
        allowed_hosts: ``Host`` names accepted (None = any; used when a token is set).
        max_query_string, max_body: request bounds (bytes).
    """

    def __init__(self, app: ASGIApp, *, token: str | None, allowed_hosts: Iterable[str] | None,
                 max_query_string: int, max_body: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.allowed_hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.max_query_string = max_query_string
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        headers = _headers(scope)

        async def send_with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                extra = list(SECURITY_HEADERS)
                have = {k.lower() for k, _ in message.get("headers", [])}
                if b"cache-control" not in have:
                    extra.append((b"cache-control", b"public, max-age=3600"
                                  if path.startswith("/static/") else b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        method = scope.get("method", "GET")
        if method not in ("GET", "HEAD") and not (method == "POST" and path in _POST_PATHS):
            await self._refuse(send_with_headers, path, 405, f"method {method} not allowed here",
                               extra=[(b"allow", b"GET, HEAD" + (b", POST" if path in _POST_PATHS else b""))])
            return
        if len(scope.get("query_string", b"")) > self.max_query_string:
            await self._refuse(send_with_headers, path, 414,
                               f"query string longer than {self.max_query_string} bytes")
            return
        if self.allowed_hosts is not None:
            host = _host_name(headers.get(b"host", b""))
            if host not in self.allowed_hosts:
                await self._refuse(send_with_headers, path, 400, "host not allowed: open the "
                                   "explorer as http://127.0.0.1:<port>/ (or start it with a token)")
                return
        if self.token is not None:
            ok, from_query = self._authorised(scope, headers)
            if not ok:
                await self._refuse(send_with_headers, path, 401, "this explorer needs its token "
                                   "(Authorization: Bearer <token>, or open /?token=<token> once)",
                                   extra=[(b"www-authenticate", b'Bearer realm="hubscan"')])
                return
            if from_query and method in ("GET", "HEAD") and not path.startswith("/api/"):
                await self._redirect_setting_cookie(send_with_headers, scope)
                return
        if method == "POST":
            length = headers.get(b"content-length")
            try:
                n = int(length) if length is not None else -1
            except ValueError:
                n = -1
            if n < 0:
                await self._refuse(send_with_headers, path, 411, "a POST needs a Content-Length")
                return
            if n > self.max_body:
                await self._refuse(send_with_headers, path, 413,
                                   f"request body larger than {self.max_body} bytes")
                return
            receive = _bounded(receive, self.max_body)
        await self.app(scope, receive, send_with_headers)

    def _authorised(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[bool, bool]:
        """(token valid, token came from the query string)."""
        assert self.token is not None
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            return hmac.compare_digest(auth[7:].strip(), self.token), False
        for part in headers.get(b"cookie", b"").split(b";"):
            name, _, value = part.strip().partition(b"=")
            if name == COOKIE.encode():
                if hmac.compare_digest(value.strip(), self.token):
                    return True, False
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1")):
            if name == "token":
                return hmac.compare_digest(value.encode("latin-1"), self.token), True
        hmac.compare_digest(b"", self.token)  # same work whether or not a token was sent
        return False, False

    async def _redirect_setting_cookie(self, send, scope: Scope) -> None:
        rest = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"),
                                             keep_blank_values=True) if k != "token"]
        location = scope.get("path", "/") + ("?" + urlencode(rest) if rest else "")
        cookie = (COOKIE.encode() + b"=" + self.token
                  + b"; Path=/; HttpOnly; SameSite=Strict")
        await send({"type": "http.response.start", "status": 303,
                    "headers": [(b"location", location.encode("latin-1")),
                                (b"set-cookie", cookie), (b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _refuse(send, path: str, status: int, message: str,
                      extra: list[tuple[bytes, bytes]] | None = None) -> None:
        if path.startswith("/api/"):
            body = json.dumps({"error": message}).encode()
            ctype = b"application/json"
        else:
            body = f"{status} {message}\n".encode()
            ctype = b"text/plain; charset=utf-8"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype),
                                (b"content-length", str(len(body)).encode()), *(extra or [])]})
        await send({"type": "http.response.body", "body": body})


def _bounded(receive, limit: int):
    """A ``receive`` that stops a body at ``limit`` bytes (a lying Content-Length)."""
    seen = 0

    async def wrapped() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ServeError(f"request body larger than {limit} bytes")
        return message

    return wrapped
