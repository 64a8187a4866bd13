"""A tiny HTTP client for the explorer's tests (``http.client``: exact headers, no redirects
followed, any method, any Host header)."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body)


def fetch(base: str, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
          body: bytes | None = None, timeout: float = 60) -> Reply:
    u = urlsplit(base)
    con = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        con.putrequest(method, path, skip_host="host" in {k.lower() for k in (headers or {})},
                       skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            con.putheader(k, v)
        if body is not None:
            con.putheader("Content-Length", str(len(body)))
        con.endheaders(body)
        r = con.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        con.close()
