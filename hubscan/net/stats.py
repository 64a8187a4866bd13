"""Fetch accounting: what fetching one unit of work cost (requests per quota, bytes, retries).

Below the HTTP client that counts into it (``net.http.tracking``) and the sources and
readers that hand it around, so the counting needs no import from either.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

__all__ = ["FetchStats"]


@dataclass
class FetchStats:
    """What fetching a model cost: requests per rate-limit class, bytes, retries.

    One instance per unit of work (the engine passes it to ``open_model`` and records it in
    the ``models`` row). Updated from the thread that fetches; ``add`` merges instances.

    Attributes:
        api_calls: ``/api/…`` requests sent (the Hub's scarce ``api`` quota).
        resolve_calls: ``/{repo}/resolve/…`` requests sent (the ``resolve`` quota).
        other_calls: requests to other URLs (CDN redirects, torchvision mirrors).
        bytes_fetched: response body bytes received (all attempts, partial ones included).
        retries: requests repeated after a 429/5xx/reset/cut.
        range_requests: ranged reads (header reads, resumes, subsets), counted once per
            logical request even when it is redirected to a CDN.
        resumes: streams continued from the last complete tensor after a cut.
        files_verified: files whose sha256 was checked against the hub's metadata.
        cache_hits: files read from a local cache instead of the network.
        notes: facts worth a line in the ``models`` row (e.g. "pickle downloaded whole").
    """

    api_calls: int = 0
    resolve_calls: int = 0
    other_calls: int = 0
    bytes_fetched: int = 0
    retries: int = 0
    range_requests: int = 0
    resumes: int = 0
    files_verified: int = 0
    cache_hits: int = 0
    notes: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count_call(self, call_class: str) -> None:
        with self._lock:
            if call_class == "api":
                self.api_calls += 1
            elif call_class == "resolve":
                self.resolve_calls += 1
            else:
                self.other_calls += 1

    def add_bytes(self, n: int) -> None:
        with self._lock:
            self.bytes_fetched += n

    def bump(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def add(self, other: FetchStats) -> None:
        for f in self.as_dict():
            self.bump(f, getattr(other, f))
        self.notes.extend(other.notes)

    def as_dict(self) -> dict[str, int]:
        """The counters (not the notes), e.g. for a JSON column or a benchmark file."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not f.name.startswith("_") and f.name != "notes"}
