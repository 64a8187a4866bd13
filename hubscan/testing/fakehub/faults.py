"""What the fake hub does wrong on purpose, and what it saw: faults and the request log.

A test injects a ``Fault`` and later asserts on ``RequestRecord`` s; both are plain data so
that the rules — which request a fault hits, which records a query selects — can be read
(and checked) apart from the HTTP code that applies them (``handler``, ``files``). The hub
holds the lists and its lock; ``take_fault`` runs under that lock, ``select_records`` on a copy of the log.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Fault", "RequestRecord", "select_records", "take_fault"]


@dataclass
class Fault:
    """One injected misbehaviour (see the package doc). ``hits`` counts the requests it affected."""

    kind: str
    endpoint: str = "any"  # api | resolve | cdn | tv | data (resolve+cdn+tv) | any
    repo: str | None = None  # fnmatch pattern on repo id
    path: str | None = None  # fnmatch pattern on file path
    method: str | None = None
    ranged: bool | None = None  # only Range requests (True), only full ones (False)
    times: int | None = 1  # None = forever
    skip: int = 0
    status: int = 503
    retry_after: float | None = None
    at: int | float = 0.5
    delay: float = 0.0
    lie: int = 0
    hits: int = 0
    seen: int = 0

    KINDS = ("status", "cut", "stall", "slow", "corrupt", "length_lie")

    def matches(self, endpoint: str, method: str, repo: str | None, path: str | None, ranged: bool) -> bool:
        if self.endpoint == "data":
            if endpoint not in ("resolve", "cdn", "tv"):
                return False
        elif self.endpoint != "any" and self.endpoint != endpoint:
            return False
        if self.method and self.method != method:
            return False
        if self.repo and not (repo and fnmatch.fnmatchcase(repo, self.repo)):
            return False
        if self.path and not (path and fnmatch.fnmatchcase(path, self.path)):
            return False
        if self.ranged is not None and self.ranged != ranged:
            return False
        return True

    def offset(self, body_len: int) -> int:
        if isinstance(self.at, float):
            return int(body_len * self.at)
        return int(self.at)


@dataclass
class RequestRecord:
    """One request as the server saw it.

    Logged when the status line is sent (before the body), and ``bytes_sent`` counts bytes
    as they are handed to the socket, so a client that has read a response always finds
    its record complete.
    """

    method: str
    path: str
    query: str
    endpoint: str
    status: int
    range: str | None
    bytes_sent: int
    repo: str | None
    file: str | None
    fault: str | None
    token: str | None
    time: float


def take_fault(faults: Sequence[Fault], endpoint: str, method: str, repo: str | None, path: str | None,
               ranged: bool) -> Fault | None:
    """The first fault with hits left that matches this request, past its ``skip``; counted as a hit."""
    for f in faults:
        if f.times is not None and f.hits >= f.times:
            continue
        if not f.matches(endpoint, method, repo, path, ranged):
            continue
        f.seen += 1
        if f.seen <= f.skip:
            continue
        f.hits += 1
        return f
    return None


def select_records(records: Iterable[RequestRecord], endpoint: str | None = None, *, method: str | None = None,
                   repo: str | None = None, file: str | None = None, ranged: bool | None = None,
                   path_prefix: str | None = None) -> list[RequestRecord]:
    """The records matching every given criterion, in order."""
    out = []
    for r in records:
        if endpoint and r.endpoint != endpoint:
            continue
        if method and r.method != method:
            continue
        if repo and r.repo != repo:
            continue
        if file and r.file != file:
            continue
        if ranged is not None and (r.range is not None) != ranged:
            continue
        if path_prefix and not r.path.startswith(path_prefix):
            continue
        out.append(r)
    return out
